"""Cross-check geoinv's eikonal first arrivals against pyGIMLi's shortest path
===========================================================================

Runs both on a held-out channelized model of the reference survey and plots the
difference per source-receiver pair. pyGIMLi takes about 15 s; the eikonal
operator about 0.03 s. Run: ``python examples/eikonal_vs_pygimli.py``.
"""

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import geoinv
from geoinv.plot import plot_model
from geoinv.prior import PatchSampler, default_training_image
from geoinv.workflows import representative_crop

grid, survey = geoinv.Grid2D.crosshole(), geoinv.Survey.crosshole()
facies = representative_crop(PatchSampler(default_training_image()), seed=3).double()
slowness = geoinv.FaciesVelocity().slowness(facies)

timings, times = {}, {}
for name in ("eikonal", "pygimli"):
    operator = geoinv.forward(name, grid=grid, survey=survey)
    start = time.perf_counter()
    times[name] = operator(slowness).numpy() * 1e9   # ns
    timings[name] = time.perf_counter() - start
difference = times["pygimli"] - times["eikonal"]
print(f"eikonal {timings['eikonal']:.3f} s, pyGIMLi {timings['pygimli']:.1f} s")
print(f"pyGIMLi − eikonal: mean {difference.mean():+.3f} ns, "
      f"range [{difference.min():+.3f}, {difference.max():+.3f}] ns")

fig, (ax_model, ax_diff) = plt.subplots(1, 2, figsize=(10, 5), width_ratios=[1, 2])
plot_model(ax_model, grid, facies.numpy(), survey, "facies (1 = channel)", "gray_r")
ax_diff.imshow(difference.reshape(25, 25), cmap="RdBu_r", vmin=-abs(difference).max(), vmax=abs(difference).max())
ax_diff.set_xlabel("receiver index")
ax_diff.set_ylabel("source index")
ax_diff.set_title("pyGIMLi − eikonal traveltime (ns)")
fig.colorbar(ax_diff.images[0], ax=ax_diff)
fig.tight_layout()
fig.savefig("eikonal_vs_pygimli.png", dpi=110)
print("wrote eikonal_vs_pygimli.png")
