"""Invert a small field campaign in batch on Dask and plot the panels
==================================================================

Builds a campaign file of four crosshole panels with different borehole
separations, depths and facies velocities (synthetic picks over decoder
samples, 0.25 ns noise), inverts it with ``geoinv.batch.run_batch`` on a local
Dask cluster of two worker processes (what ``geoinv batch`` does), and plots
each panel's best model beside its truth. Rerunning skips finished panels.

Run from the repository root: ``python examples/batch_campaign.py`` (≈ 3 minutes on 2 cores).
"""

import os
import sys
from pathlib import Path

import matplotlib
import torch

import geoinv
from geoinv.batch import BatchSettings, read_batch_results, run_batch
from geoinv.io.campaign import CampaignSurvey, write_campaign

matplotlib.use("Agg")
import matplotlib.pyplot as plt

QUICK = os.environ.get("GEOINV_QUICK") == "1" or "--quick" in sys.argv  # small settings (the docs build)


def main() -> None:
    output = Path("batch_campaign")
    output.mkdir(exist_ok=True)
    prior = geoinv.default_vae()
    truths = prior.sample(4, torch.Generator().manual_seed(5))

    # four panels: (separation m, deepest sensor m, sensors, channel and matrix velocity m/ns)
    layouts = [(6.5, 12.5, 25, 0.06, 0.08), (5.0, 11.0, 20, 0.065, 0.085), (4.0, 9.5, 16, 0.055, 0.075),
               (6.0, 12.0, 12, 0.06, 0.09)]
    panels = []
    for index, ((separation, deepest, count, channel, matrix), truth) in enumerate(zip(layouts, truths)):
        survey = geoinv.Survey.crosshole(0.0, separation, torch.linspace(0.5, deepest, count).numpy())
        grid = geoinv.Grid2D.covering(survey, spacing=0.1)       # the panel's own grid, inside the prior's canvas
        petrophysics = geoinv.FaciesVelocity(channel, matrix)
        canvas = geoinv.Grid2D(prior.model_shape, 0.1, grid.origin)
        operator = geoinv.StraightRay(canvas, survey)
        data = operator.make_synthetic_data(petrophysics.slowness(truth.double()), 0.25e-9,
                                            torch.Generator().manual_seed(index))
        panels.append(CampaignSurvey(f"borehole-pair-{index + 1}", data, grid, petrophysics,
                                     {"separation_m": separation}))
    campaign = write_campaign(output / "campaign.h5", panels)
    print(f"wrote {campaign} with {len(panels)} panels")

    quick = {"n_starts": 2, "epochs": 2, "refine": False} if QUICK else {"n_starts": 4}
    settings = BatchSettings(solver="latent-sgd", forward="straight-ray", seed=0, **quick)
    summary = run_batch(campaign, output / "results.h5", settings, workers=2)
    print("\n".join(summary.lines()))

    results = read_batch_results(output / "results.h5")
    figure, axes = plt.subplots(2, len(panels), figsize=(2.6 * len(panels), 7))
    for column, (panel, truth) in enumerate(zip(panels, truths)):
        entry = results[panel.name]
        axes[0, column].imshow(truth.numpy(), cmap="gray_r", vmin=0, vmax=1)
        axes[0, column].set_title(f"{panel.name}\ntruth", fontsize=8)
        if entry["status"] == "done":
            solutions = entry["solutions"]
            axes[1, column].imshow(solutions.models[0, 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
            axes[1, column].set_title(f"best: {float(solutions.normalised_misfit[0, 0]):.2f} σ", fontsize=8)
        else:
            axes[1, column].set_title(f"failed: {entry['error'][:40]}", fontsize=7)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(output / "batch_campaign.png", dpi=110)
    print(f"wrote {output / 'batch_campaign.png'}")


if __name__ == "__main__":  # Dask starts worker processes that import this file
    main()
