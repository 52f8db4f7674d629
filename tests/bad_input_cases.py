"""A catalogue of bad inputs: files, CLI options, API values, checkpoints, training images.

Each :class:`Case` does one bad thing and names what geoinv must answer: a
:class:`~geoinv.errors.GeoinvError` whose message matches ``match`` (API cases),
or exit status 2 with ``match`` in the message and every protected file
untouched (CLI cases). ``tests/test_bad_inputs.py`` runs them all;
``benchmarks/bad_input_audit.py`` classifies them (clear / misleading /
traceback / silent / hang) for before-and-after counts.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

#: the reference crosshole geometry in a homogeneous 0.07 m/ns medium
VELOCITY = 0.07e9


@dataclass
class Case:
    """One bad input and the answer it must get."""

    name: str
    kind: str  # files | cli | api | checkpoints | training-images | solve
    run: Callable[[Path], object]  # API: raises; CLI: returns (argv, protected paths)
    match: str  # regular expression the error message must contain
    warning: bool = False  # the answer is a GeoinvWarning, not an error
    cli: bool = False
    slow: bool = field(default=False)


CASES: list[Case] = []


def case(name: str, kind: str, match: str, **flags):
    def register(function):
        CASES.append(Case(name, kind, function, match, **flags))
        return function
    return register


# ---------------------------------------------------------------- fixtures

def reference_arrays() -> dict:
    from geoinv import Survey

    survey = Survey.crosshole()
    times = survey.distances / VELOCITY
    return {"sources": survey.sources, "receivers": survey.receivers, "pairs": survey.pairs,
            "traveltimes": times, "errors": np.full_like(times, 0.25e-9)}


def survey_file(tmp: Path, name: str = "survey.h5", attrs: dict | None = None, grid: dict | None = None,
                drop: tuple = (), **fields) -> Path:
    """A survey file in geoinv's layout, with fields replaced, dropped or attributes changed."""
    arrays = {**reference_arrays(), **fields}
    path = tmp / name
    with h5py.File(path, "w") as handle:
        root = handle.create_group("survey")
        settings = {"format": "geoinv-survey/1", "time_unit": "s", **(attrs or {})}
        root.attrs.update({key: value for key, value in settings.items() if value is not None})
        for key, value in arrays.items():
            if key not in drop:
                root.create_dataset(key, data=value)
        if grid is not None:
            group = root.create_group("grid")
            for key, value in grid.items():
                group.attrs[key] = value
    return path


def read(path: Path, **options):
    from geoinv import read_survey

    return read_survey(path, **options)


def vae_checkpoint(tmp: Path, name: str = "vae.pt", edit: Callable[[dict], None] | None = None) -> Path:
    """A small real VAE checkpoint, optionally edited before saving."""
    from geoinv.prior.vae import VAE, VAEConfig, save_checkpoint

    torch.manual_seed(0)
    vae = VAE(VAEConfig((16, 12), 4, channels=(4, 8), kernels=(3, 3), strides=(2, 2), hidden=16))
    path = tmp / name
    save_checkpoint(path, vae, {"note": "test"})
    if edit is not None:
        payload = torch.load(path, weights_only=True)
        edit(payload)
        torch.save(payload, path)
    return path


def load(path: Path):
    from geoinv.prior.vae import load_vae

    return load_vae(path)


# ---------------------------------------------------------------- survey files

@case("format attribute of another geoinv file", "files", r"format.*geoinv-survey/1")
def _(tmp):
    read(survey_file(tmp, attrs={"format": "geoinv-solutions/1"}))


@case("format attribute missing", "files", r"format.*geoinv-survey/1")
def _(tmp):
    read(survey_file(tmp, attrs={"format": None}))


@case("picks in ns labelled s", "files", r"(?s)traveltimes\[\d+\].*velocity.*time_unit")
def _(tmp):
    arrays = reference_arrays()
    read(survey_file(tmp, traveltimes=arrays["traveltimes"] * 1e9, errors=arrays["errors"] * 1e9))


@case("picks in s labelled ns", "files", r"(?s)traveltimes\[\d+\].*velocity.*time_unit")
def _(tmp):
    read(survey_file(tmp, attrs={"time_unit": "ns"}))


@case("all-zero traveltimes", "files", r"traveltimes.*zero")
def _(tmp):
    read(survey_file(tmp, traveltimes=np.zeros(625)))


@case("complex traveltimes", "files", r"traveltimes.*complex")
def _(tmp):
    read(survey_file(tmp, traveltimes=reference_arrays()["traveltimes"] * (1 + 1j)))


@case("boolean traveltimes", "files", r"traveltimes.*bool")
def _(tmp):
    read(survey_file(tmp, traveltimes=np.ones(625, dtype=bool)))


@case("traveltimes stored as strings", "files", r"traveltimes.*(string|text|numeric)")
def _(tmp):
    read(survey_file(tmp, traveltimes=np.array([b"1e-7"] * 625)))


@case("errors of 1e30 s", "files", r"errors.*(larger|exceed)")
def _(tmp):
    read(survey_file(tmp, errors=np.full(625, 1e30)))


@case("errors of 1e-30 s", "files", r"errors.*(small|unit)")
def _(tmp):
    read(survey_file(tmp, errors=np.full(625, 1e-30)))


@case("errors negative", "files", r"errors.*> 0")
def _(tmp):
    read(survey_file(tmp, errors=np.full(625, -1e-9)))


@case("pairs dataset missing", "files", r"pairs")
def _(tmp):
    read(survey_file(tmp, drop=("pairs",)))


@case("pairs out of range", "files", r"pairs\[\d+\] refers to receiver")
def _(tmp):
    pairs = reference_arrays()["pairs"].copy()
    pairs[3, 1] = 99
    read(survey_file(tmp, pairs=pairs))


@case("pairs not integers", "files", r"pairs.*integer")
def _(tmp):
    read(survey_file(tmp, pairs=reference_arrays()["pairs"] + 0.5))


@case("boolean pairs", "files", r"pairs must hold integer.*bool")
def _(tmp):
    read(survey_file(tmp, pairs=np.ones((625, 2), dtype=bool)))


@case("pairs stored as text", "files", r"pairs must hold integer")
def _(tmp):
    read(survey_file(tmp, pairs=reference_arrays()["pairs"].astype("S4")))


@case("traveltimes stored as float16", "files", r"float16.*float32")
def _(tmp):
    read(survey_file(tmp, traveltimes=reference_arrays()["traveltimes"].astype(np.float16) * 1e9,
                     errors=np.full(625, 0.25, dtype=np.float32), attrs={"time_unit": "ns"}))


@case("NaN in sources", "files", r"sources.*NaN")
def _(tmp):
    sources = reference_arrays()["sources"].copy()
    sources[2, 1] = np.nan
    read(survey_file(tmp, sources=sources))


@case("sources with three columns", "files", r"sources.*\(n, 2\)")
def _(tmp):
    read(survey_file(tmp, sources=np.zeros((25, 3))))


@case("negative traveltime", "files", r"traveltimes\[\d+\].*negative")
def _(tmp):
    times = reference_arrays()["traveltimes"].copy()
    times[7] = -1e-8
    read(survey_file(tmp, traveltimes=times))


@case("traveltimes of the wrong length", "files", r"traveltimes has 600 values")
def _(tmp):
    read(survey_file(tmp, traveltimes=reference_arrays()["traveltimes"][:600]))


@case("unknown time unit", "files", r"time_unit")
def _(tmp):
    read(survey_file(tmp, attrs={"time_unit": "ms?"}))


@case("grid group without spacing", "files", r"spacing")
def _(tmp):
    read(survey_file(tmp, grid={"shape": (129, 65), "origin": (0.0, 0.0)}))


@case("grid shape not integer", "files", r"shape.*integer")
def _(tmp):
    read(survey_file(tmp, grid={"shape": (129.5, 65.0), "spacing": (0.1, 0.1), "origin": (0.0, 0.0)}))


@case("receiver outside the stored grid", "files", r"receivers\[\d+\].*outside the grid")
def _(tmp):
    read(survey_file(tmp, grid={"shape": (129, 60), "spacing": (0.1, 0.1), "origin": (0.0, 0.0)}))


@case("a text file named .h5", "files", r"HDF5")
def _(tmp):
    path = tmp / "notes.h5"
    path.write_text("this is not HDF5\n")
    read(path)


@case("survey file without a survey group", "files", r"no group '/survey'")
def _(tmp):
    path = tmp / "empty.h5"
    h5py.File(path, "w").close()
    read(path)


@case("a survey file with an unknown suffix", "files", r"suffix")
def _(tmp):
    path = survey_file(tmp)
    read(path.rename(tmp / "survey.xyz"))


def _sgt(tmp: Path, times, errors=None) -> Path:
    arrays = reference_arrays()
    path = tmp / "line.sgt"
    sensors = np.vstack([arrays["sources"], arrays["receivers"]])
    lines = [f"{len(sensors)}", "# x y"] + [f"{x} {-z}" for x, z in sensors]
    lines += [f"{len(times)}", "# s g t" + (" err" if errors is not None else "")]
    for k, (s, g) in enumerate(arrays["pairs"]):
        row = f"{s + 1} {g + 26} {times[k]}"
        lines.append(row + (f" {errors[k]}" if errors is not None else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


@case("pyGIMLi file without err", "files", r"no 'err' column")
def _(tmp):
    read(_sgt(tmp, reference_arrays()["traveltimes"]))


@case("pyGIMLi file with picks in ns", "files", r"(?s)traveltimes\[\d+\].*velocity")
def _(tmp):
    arrays = reference_arrays()
    read(_sgt(tmp, arrays["traveltimes"] * 1e9, arrays["errors"] * 1e9))


def _sgt_edited(tmp: Path, row: int, text: str) -> Path:
    """The reference ``.sgt`` (with errors) with data row ``row`` (0-based) replaced by ``text``."""
    arrays = reference_arrays()
    path = _sgt(tmp, arrays["traveltimes"], arrays["errors"])
    lines = path.read_text().splitlines()
    lines[lines.index("# s g t err") + 1 + row] = text
    path.write_text("\n".join(lines) + "\n")
    return path


@case("pyGIMLi file with a NaN pick", "files", r"data row 3 \(t = nan\).*NaN")
def _(tmp):
    read(_sgt_edited(tmp, 2, "1 28 nan 2.5e-10"))


@case("pyGIMLi file with a sensor number out of range", "files", r"data row 5 \(g = 77\).*1\.\.50")
def _(tmp):
    read(_sgt_edited(tmp, 4, "1 77 9.4e-08 2.5e-10"))


@case("pyGIMLi file whose data count is shorter than its rows", "files", r"declares 600 data but 25 more rows")
def _(tmp):
    arrays = reference_arrays()
    path = _sgt(tmp, arrays["traveltimes"], arrays["errors"])
    path.write_text(path.read_text().replace("\n625\n", "\n600\n", 1))
    read(path)


@case("pyGIMLi file with a decimal comma", "files", r"line \d+ holds a decimal comma")
def _(tmp):
    read(_sgt_edited(tmp, 0, "1 26 9,4e-08 2,5e-10"))


@case("picks in ns labelled s with errors in s", "api", r"picks in ns stored as s")
def _(tmp):
    from geoinv import Survey

    arrays = reference_arrays()
    Survey(arrays["sources"], arrays["receivers"], arrays["pairs"], arrays["traveltimes"] * 1e9,
           arrays["errors"]).check_plausible()


@case("one misplaced sensor", "api", r"involve source 3 at \(x=-60 m.*position right")
def _(tmp):
    from geoinv import Survey

    arrays = reference_arrays()
    sources = arrays["sources"].copy()
    sources[3] = [-60.0, 2.0]
    Survey(sources, arrays["receivers"], arrays["pairs"], arrays["traveltimes"], arrays["errors"]).check_plausible()


@case("an error model for an HDF5 survey that stores errors", "files",
      r"stores the picks' errors.*leave the error model out")
def _(tmp):
    from geoinv import read_survey

    read_survey(survey_file(tmp), absolute_error=0.25e-9)


@case("pyGIMLi file of garbage", "files", r"line.sgt")
def _(tmp):
    path = tmp / "line.sgt"
    path.write_text("12\nnonsense here\n\x00\x01")
    read(path)


@case("campaign with a wrong format attribute", "files", r"format.*geoinv-campaign/1")
def _(tmp):
    from geoinv.io.campaign import read_campaign

    path = tmp / "campaign.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["format"] = "something-else/3"
        handle.create_group("surveys")
    read_campaign(path)


@case("solutions read from a survey file", "files", r"no geoinv solutions")
def _(tmp):
    from geoinv import Solutions

    Solutions.from_hdf5(survey_file(tmp))


@case("solutions group missing a dataset", "files", r"solutions.*(lacks|missing).*misfit")
def _(tmp):
    from geoinv import Solutions

    path = tmp / "result.h5"
    with h5py.File(path, "w") as handle:
        root = handle.create_group("solutions")
        root.attrs["format"] = "geoinv-solutions/1"
        root.create_dataset("parameters", data=np.zeros((1, 2, 3)))
    Solutions.from_hdf5(path)


def column_file(tmp: Path, text: str | None = None, time_scale: float = 1e9, name: str = "picks.txt") -> Path:
    """A pick file in columns (sx sz rx rz t err) of the reference geometry, times in ns, or ``text``."""
    if text is None:
        arrays = reference_arrays()
        survey_pairs = arrays["pairs"]
        rows = np.column_stack([arrays["sources"][survey_pairs[:, 0]], arrays["receivers"][survey_pairs[:, 1]],
                                arrays["traveltimes"] * time_scale, arrays["errors"] * time_scale])
        text = "sx sz rx rz t err\n" + "\n".join(" ".join(f"{v:.9g}" for v in row) for row in rows) + "\n"
    path = tmp / name
    path.write_text(text)
    return path


@case("column file with a short line", "files", r"line 3 has 5 columns, expected 6")
def _(tmp):
    from geoinv import read_survey

    read_survey(column_file(tmp, "sx sz rx rz t err\n0 1 6.5 1 93 0.25\n0 1 6.5 2 94\n"))


@case("column file in s read as ns", "files", r"time_unit = 'ns'.*--time-unit")
def _(tmp):
    from geoinv import read_survey

    read_survey(column_file(tmp, time_scale=1.0))


@case("column file picking one pair twice", "files", r"lines 2, 627 pick the same source and receiver")
def _(tmp):
    from geoinv import read_survey

    path = column_file(tmp)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    read_survey(path)


@case("column file with a header naming an unknown column", "files", r"unknown column 'amp'.*--columns")
def _(tmp):
    from geoinv import read_survey

    read_survey(column_file(tmp, "sx sz rx rz t amp\n0 1 6.5 1 93 0.25\n"))


@case("column file given --columns that miss the time", "files", r"lacks \['t'\]")
def _(tmp):
    from geoinv import read_survey

    read_survey(column_file(tmp), columns="sx,sz,rx,rz,-,err")


@case("a time zero per 'borehole' (not a grouping)", "api", r"time_zero_by must be one of.*source-borehole")
def _(tmp):
    from geoinv import FieldUnknowns

    FieldUnknowns(time_zero_by="borehole")


# ---------------------------------------------------------------- training images

def _png(tmp: Path, pixels: np.ndarray, name: str = "ti.png") -> Path:
    import matplotlib.image as mpimg

    path = tmp / name
    mpimg.imsave(path, pixels, vmin=0, vmax=1, cmap="gray") if pixels.ndim == 2 else mpimg.imsave(path, pixels)
    return path


def _channels(shape=(200, 200), proportion=0.26, seed=0) -> np.ndarray:
    from geoinv.prior.channels import ChannelConfig, channelized_image

    return channelized_image(shape, ChannelConfig(proportion=proportion), seed=seed)


@case("constant training image (PNG, all white)", "training-images", r"(one facies|constant)")
def _(tmp):
    from geoinv.prior.images import read_image

    read_image(_png(tmp, np.ones((100, 100))))


@case("fully transparent RGBA training image", "training-images", r"transparent")
def _(tmp):
    from geoinv.prior.images import read_image

    pixels = np.zeros((100, 100, 4))
    pixels[::2, :, :3] = 1.0  # stripes, but alpha 0 everywhere
    read_image(_png(tmp, pixels))


@case("constant training image (NPY zeros)", "training-images", r"(one facies|constant)")
def _(tmp):
    from geoinv.prior.images import read_image

    np.save(tmp / "ti.npy", np.zeros((100, 100), dtype=np.uint8))
    read_image(tmp / "ti.npy")


@case("white-channel PNG read as dark-channel", "training-images", r"polarity", warning=True)
def _(tmp):
    from geoinv.prior.images import read_image

    read_image(_png(tmp, _channels().astype(float)))  # channels white = 1 in the grey map


@case("GSLIB header claiming 1e9 variables", "training-images", r"variables")
def _(tmp):
    from geoinv.prior.images import read_image

    path = tmp / "ti.gslib"
    path.write_text("100 100 1\n1000000000\nfacies\n" + "0\n1\n" * 5000)
    read_image(path)


@case("GSLIB with fewer values than the header", "training-images", r"values")
def _(tmp):
    from geoinv.prior.images import read_image

    path = tmp / "ti.gslib"
    path.write_text("100 100 1\n1\nfacies\n" + "0\n1\n" * 100)
    read_image(path)


@case("NPY holding a pickled object", "training-images", r"ti.npy")
def _(tmp):
    np.save(tmp / "ti.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    from geoinv.prior.images import read_image

    read_image(tmp / "ti.npy")


@case("complex NPY training image", "training-images", r"complex")
def _(tmp):
    from geoinv.prior.images import read_image

    np.save(tmp / "ti.npy", _channels().astype(complex))
    read_image(tmp / "ti.npy")


@case("unknown polarity option", "training-images", r"channels.*'dark'.*'light'")
def _(tmp):
    from geoinv.prior.images import read_image

    read_image(_png(tmp, 1.0 - _channels().astype(float)), channels="black-ish")


# ---------------------------------------------------------------- checkpoints

@case("checkpoint whose config is a list", "checkpoints", r"config")
def _(tmp):
    load(vae_checkpoint(tmp, edit=lambda p: p.__setitem__("config", [1, 2, 3])))


@case("checkpoint without state_dict", "checkpoints", r"state_dict")
def _(tmp):
    load(vae_checkpoint(tmp, edit=lambda p: p.pop("state_dict")))


@case("checkpoint claiming a 100000 x 100000 model", "checkpoints", r"model_shape.*(large|cells)")
def _(tmp):
    def huge(payload):
        payload["config"]["model_shape"] = [100000, 100000]
    load(vae_checkpoint(tmp, edit=huge))


@case("checkpoint with all-NaN weights", "checkpoints", r"NaN")
def _(tmp):
    def poison(payload):
        for value in payload["state_dict"].values():
            if value.is_floating_point():
                value.fill_(float("nan"))
    load(vae_checkpoint(tmp, edit=poison))


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/geoinv-pwned"),))


@case("checkpoint that would run code", "checkpoints", r"not a readable torch checkpoint")
def _(tmp):
    path = tmp / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"format": "geoinv-vae/1", "x": _Exploit()}, handle)
    try:
        load(path)
    finally:
        assert not Path("/tmp/geoinv-pwned").exists(), "a checkpoint ran code"


@case("random bytes as a checkpoint", "checkpoints", r"not a readable torch checkpoint")
def _(tmp):
    path = tmp / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    load(path)


# ---------------------------------------------------------------- API constructors and operators

@case("Grid2D with a fractional cell count", "api", r"shape.*integer")
def _(tmp):
    from geoinv import Grid2D

    Grid2D((129.7, 65))


@case("Grid2D with a string shape", "api", r"shape")
def _(tmp):
    from geoinv import Grid2D

    Grid2D(("a", 65))


@case("Grid2D with a huge shape", "api", r"shape.*cells")
def _(tmp):
    from geoinv import Grid2D

    Grid2D((10**6, 10**6))


@case("FaciesVelocity with string velocities", "api", r"channel_velocity.*number")
def _(tmp):
    from geoinv import FaciesVelocity

    FaciesVelocity("fast", 0.08)


@case("FaciesVelocity with equal velocities", "api", r"differ")
def _(tmp):
    from geoinv import FaciesVelocity

    FaciesVelocity(0.07, 0.07)


@case("facies values outside [0, 1]", "api", r"facies.*\[0, 1\]")
def _(tmp):
    from geoinv import FaciesVelocity

    FaciesVelocity().slowness(torch.full((4, 4), 5.0))


@case("Survey with complex positions", "api", r"sources.*complex")
def _(tmp):
    from geoinv import Survey

    Survey(np.zeros((3, 2)) + 1j, np.ones((3, 2)))


@case("Survey with string traveltimes", "api", r"traveltimes.*(numeric|string|text)")
def _(tmp):
    from geoinv import Survey

    Survey(np.zeros((1, 2)), np.ones((1, 2)), traveltimes=["1e-8"])


@case("Survey with boolean errors", "api", r"errors.*bool")
def _(tmp):
    from geoinv import Survey

    Survey(np.zeros((1, 2)), np.ones((1, 2)), traveltimes=[1e-8], errors=[True])


def _operator(name: str):
    from geoinv import Grid2D, Survey
    from geoinv.forward import forward

    grid = Grid2D((10, 8), 0.5)
    survey = Survey([[0.0, 1.0], [0.0, 3.0]], [[4.0, 1.0], [4.0, 4.0]])
    return forward(name, grid=grid, survey=survey)


@case("NaN slowness into the straight-ray operator", "api", r"slowness.*NaN")
def _(tmp):
    model = torch.full((10, 8), 1e-8, dtype=torch.float64)
    model[3, 3] = float("nan")
    _operator("straight-ray")(model)


@case("negative slowness into the straight-ray operator", "api", r"slowness.*> 0")
def _(tmp):
    _operator("straight-ray")(torch.full((10, 8), -1e-8, dtype=torch.float64))


@case("NaN slowness into the eikonal operator", "api", r"slowness.*NaN")
def _(tmp):
    model = torch.full((10, 8), 1e-8, dtype=torch.float64)
    model[3, 3] = float("nan")
    _operator("eikonal")(model)


@case("zero slowness into the eikonal operator", "api", r"slowness.*> 0")
def _(tmp):
    _operator("eikonal")(torch.zeros((10, 8), dtype=torch.float64))


@case("slowness of the wrong shape", "api", r"shape")
def _(tmp):
    _operator("eikonal")(torch.full((9, 8), 1e-8, dtype=torch.float64))


def _problem(noise_std=0.1, observed=None):
    from geoinv import InverseProblem

    return InverseProblem(lambda x: x * 2.0, 2, 2, lambda n, generator=None: torch.zeros(n, 2),
                          observed=torch.ones(2) if observed is None else observed, noise_std=noise_std)


@case("InverseProblem with noise_std 0", "api", r"noise_std")
def _(tmp):
    _problem(noise_std=0.0)


@case("InverseProblem with NaN noise_std", "api", r"noise_std")
def _(tmp):
    _problem(noise_std=float("nan"))


@case("InverseProblem with NaN observed data", "api", r"observed.*NaN")
def _(tmp):
    _problem(observed=torch.tensor([1.0, float("nan")]))


@case("latent-SGD step_size inf", "api", r"step_size")
def _(tmp):
    from geoinv import LatentSGDConfig

    LatentSGDConfig(step_size=float("inf"))


@case("latent-SGD epochs 0", "api", r"epochs")
def _(tmp):
    from geoinv import LatentSGDConfig

    LatentSGDConfig(epochs=0)


@case("latent-SGD n_starts of 1e9", "api", r"n_starts")
def _(tmp):
    from geoinv import LatentSGDConfig

    LatentSGDConfig(n_starts=10**9)


@case("a solve whose steps produce NaN misfits", "solve", r"(?s)step \d+.*NaN.*step_size")
def _(tmp):
    from geoinv import InverseProblem, LatentSGD, LatentSGDConfig

    problem = InverseProblem(torch.log, 1, 1, lambda n, generator=None: torch.ones(n, 1),
                             observed=torch.tensor([-5.0]), noise_std=0.1)
    LatentSGD(LatentSGDConfig(step_size=10.0, epochs=20, n_starts=2, progress=False, reg_weight=0.0,
                              regularization="none")).solve(problem)


@case("a decoder that returns NaN", "solve", r"facies.*NaN")
def _(tmp):
    from geoinv import Grid2D, LatentSGD, LatentSGDConfig, Survey, invert
    from geoinv.forward import forward

    from .helpers import TinyDecoder

    grid = Grid2D((10, 8), 0.5)
    survey = Survey([[0.0, 1.0], [0.0, 3.0]], [[4.0, 1.0], [4.0, 4.0]])
    operator = forward("straight-ray", grid=grid, survey=survey)
    data = survey.distances / VELOCITY
    decoder = TinyDecoder(grid.shape)
    with torch.no_grad():
        decoder.bias[5] = float("nan")
    solver = LatentSGD(LatentSGDConfig(epochs=3, n_starts=2, progress=False))
    invert(survey.with_data(data, 1e-9), decoder, operator, solver)


@case("invert a survey without traveltimes", "solve", r"traveltimes")
def _(tmp):
    from geoinv import Grid2D, LatentSGD, LatentSGDConfig, Survey, invert

    from .helpers import TinyDecoder

    grid = Grid2D((10, 8), 0.5)
    survey = Survey([[0.0, 1.0], [0.0, 3.0]], [[4.0, 1.0], [4.0, 4.0]])
    invert(survey, TinyDecoder(grid.shape), "straight-ray",
           LatentSGD(LatentSGDConfig(epochs=3, n_starts=2, progress=False)), grid=grid)


@case("invert with errors of 1e30 s (every start would be 'accepted')", "solve", r"errors.*larger")
def _(tmp):
    from geoinv import Grid2D, LatentSGD, LatentSGDConfig, Survey, invert

    from .helpers import TinyDecoder

    grid = Grid2D((10, 8), 0.5)
    survey = Survey([[0.0, 1.0], [0.0, 3.0]], [[4.0, 1.0], [4.0, 4.0]])
    invert(survey.with_data(survey.distances / VELOCITY, 1e30), TinyDecoder(grid.shape), "straight-ray",
           LatentSGD(LatentSGDConfig(epochs=3, n_starts=2, progress=False)), grid=grid)


# ---------------------------------------------------------------- CLI (argv, protected files)

QUICK = ["--starts", "2", "--epochs", "1", "--quiet", "--no-refine"]


def cli_case(name: str, match: str, slow: bool = False):
    return case(name, "cli", match, cli=True, slow=slow)


@cli_case("invert --output equal to the input", r"is the input file")
def _(tmp):
    source = survey_file(tmp)
    return ["invert", str(source), *QUICK, "--output", str(source)], [source]


@cli_case("invert --output ending in .png", r"must end in \.h5")
def _(tmp):
    source = survey_file(tmp)
    return ["invert", str(source), *QUICK, "--output", str(tmp / "result.png")], [source]


@cli_case("invert whose figure would replace an input", r"figure.*field.png.*input")
def _(tmp):
    source = survey_file(tmp, name="field.png")  # an HDF5 survey under a figure's name
    return ["invert", str(source), *QUICK, "--output", str(tmp / "field.h5")], [source]


@cli_case("invert whose figure would replace the VAE", r"figure.*input")
def _(tmp):
    source = survey_file(tmp)
    vae = vae_checkpoint(tmp, name="result.png")
    return ["invert", str(source), *QUICK, "--vae", str(vae), "--output", str(tmp / "result.h5")], [source, vae]


@cli_case("invert into an existing result without --overwrite", r"exists.*--overwrite")
def _(tmp):
    source = survey_file(tmp)
    result = tmp / "result.h5"
    result.write_bytes(b"an earlier result")
    return ["invert", str(source), *QUICK, "--output", str(result)], [source, result]


@cli_case("invert into a folder under a file", r"is a file")
def _(tmp):
    source = survey_file(tmp)
    (tmp / "blocker").write_text("x")
    return ["invert", str(source), *QUICK, "--output", str(tmp / "blocker" / "r.h5")], [source]


@cli_case("invert --output naming a folder", r"is a folder")
def _(tmp):
    source = survey_file(tmp)
    (tmp / "results.h5").mkdir()
    return ["invert", str(source), *QUICK, "--output", str(tmp / "results.h5")], [source]


@cli_case("invert --starts 1000000000", r"--starts")
def _(tmp):
    source = survey_file(tmp)
    return ["invert", str(source), "--starts", "1000000000", "--quiet", "--output", str(tmp / "r.h5")], [source]


@cli_case("invert --starts 0", r"--starts")
def _(tmp):
    source = survey_file(tmp)
    return ["invert", str(source), "--starts", "0", "--quiet", "--output", str(tmp / "r.h5")], [source]


@cli_case("invert --epochs -3", r"--epochs")
def _(tmp):
    source = survey_file(tmp)
    return ["invert", str(source), "--starts", "2", "--epochs", "-3", "--output", str(tmp / "r.h5")], [source]


@cli_case("invert --epochs with a non-SGD solver", r"epochs")
def _(tmp):
    source = survey_file(tmp)
    return ["invert", str(source), "--solver", "latent-gauss-newton", "--epochs", "3",
            "--output", str(tmp / "r.h5")], [source]


@cli_case("invert picks in ns labelled s", r"velocity")
def _(tmp):
    arrays = reference_arrays()
    source = survey_file(tmp, traveltimes=arrays["traveltimes"] * 1e9, errors=arrays["errors"] * 1e9)
    return ["invert", str(source), *QUICK, "--output", str(tmp / "r.h5")], [source]


@cli_case("invert with a NaN-weights VAE", r"NaN")
def _(tmp):
    def poison(payload):
        for value in payload["state_dict"].values():
            if value.is_floating_point():
                value.fill_(float("nan"))
    source = survey_file(tmp)
    vae = vae_checkpoint(tmp, edit=poison)
    return ["invert", str(source), *QUICK, "--vae", str(vae), "--output", str(tmp / "r.h5")], [source, vae]


@cli_case("invert --absolute-error negative", r"--absolute-error")
def _(tmp):
    source = _sgt(tmp, reference_arrays()["traveltimes"])
    return ["invert", str(source), *QUICK, "--absolute-error=-1e-9", "--output", str(tmp / "r.h5")], [source]


@cli_case("invert --relative-error 5 (500 %)", r"--relative-error")
def _(tmp):
    source = _sgt(tmp, reference_arrays()["traveltimes"])
    return ["invert", str(source), *QUICK, "--relative-error", "5", "--output", str(tmp / "r.h5")], [source]


@cli_case("invert a missing file", r"does not exist")
def _(tmp):
    return ["invert", str(tmp / "missing.h5"), *QUICK, "--output", str(tmp / "r.h5")], []


@cli_case("demo --noise -1", r"--noise")
def _(tmp):
    return ["demo", *QUICK, "--noise", "-1", "--output", str(tmp / "demo")], []


@cli_case("demo --noise nan", r"--noise")
def _(tmp):
    return ["demo", *QUICK, "--noise", "nan", "--output", str(tmp / "demo")], []


@cli_case("demo --starts 0", r"--starts")
def _(tmp):
    return ["demo", "--starts", "0", "--quiet", "--output", str(tmp / "demo")], []


@cli_case("demo --output is a file", r"(is a file|not a folder)")
def _(tmp):
    (tmp / "demo").write_text("keep me")
    return ["demo", *QUICK, "--output", str(tmp / "demo")], [tmp / "demo"]


@cli_case("make-ti --rows 0", r"--rows")
def _(tmp):
    return ["make-ti", str(tmp / "ti.h5"), "--rows", "0"], []


@cli_case("make-ti --proportion 1.5", r"proportion")
def _(tmp):
    return ["make-ti", str(tmp / "ti.h5"), "--rows", "50", "--cols", "50", "--proportion", "1.5"], []


@cli_case("make-ti --rows 10000000", r"--rows")
def _(tmp):
    return ["make-ti", str(tmp / "ti.h5"), "--rows", "10000000", "--cols", "10000000"], []


@cli_case("make-ti --width wider than the image", r"half the image")
def _(tmp):
    return ["make-ti", str(tmp / "ti.h5"), "--rows", "200", "--cols", "200", "--width", "10000"], []


@cli_case("make-ti settings that cannot reach the proportion", r"cannot make the asked proportion")
def _(tmp):
    return ["make-ti", str(tmp / "ti.h5"), "--rows", "200", "--cols", "200", "--width", "40",
            "--proportion", "0.01"], []


@cli_case("make-ti to an unknown suffix", r"suffix")
def _(tmp):
    return ["make-ti", str(tmp / "ti.jpg"), "--rows", "50", "--cols", "50"], []


@cli_case("make-ti over an existing image without --overwrite", r"exists.*--overwrite")
def _(tmp):
    (tmp / "ti.h5").write_bytes(b"keep")
    return ["make-ti", str(tmp / "ti.h5"), "--rows", "50", "--cols", "50"], [tmp / "ti.h5"]


def _train_vae(tmp, *options: str, image: np.ndarray | None = None, shape: tuple[str, str] = ("32", "32")) -> list:
    """``geoinv train-vae`` for one step on a small saved image, with ``options``."""
    np.save(tmp / "ti.npy", _channels((300, 300)) if image is None else image)
    return ["train-vae", "--image", str(tmp / "ti.npy"), "--steps", "1", "--nz", shape[0], "--nx", shape[1],
            "--checkpoint", str(tmp / "ck.pt"), *options]


@cli_case("train-vae on a constant image", r"(one facies|constant)")
def _(tmp):
    return _train_vae(tmp, image=np.zeros((300, 300), dtype=np.uint8)), []


@cli_case("train-vae --batch-size 0", r"batch")
def _(tmp):
    return _train_vae(tmp, "--batch-size", "0"), []


@cli_case("train-vae --nz 100000 --nx 100000", r"model_shape.*(large|cells)")
def _(tmp):
    return _train_vae(tmp, shape=("100000", "100000")), []


@cli_case("train-vae --export equal to the checkpoint", r"--export.*checkpoint")
def _(tmp):
    return _train_vae(tmp, "--export", str(tmp / "ck.pt")), []


@cli_case("train-vae --variogram-weight without --adversarial", r"variogram_weight.*adversarial > 0")
def _(tmp):
    return _train_vae(tmp, "--variogram-weight", "1"), []


@cli_case("train-vae --proportion-spread-weight without --adversarial", r"proportion_spread_weight.*adversarial > 0")
def _(tmp):
    return _train_vae(tmp, "--proportion-spread-weight", "1"), []


@cli_case("train-vae --keep-tolerance above 1", r"--keep-tolerance.*\[0, 1\]")
def _(tmp):
    return _train_vae(tmp, "--keep-tolerance", "2"), []


@cli_case("export-vae onto its own checkpoint", r"is the input file")
def _(tmp):
    vae = vae_checkpoint(tmp)
    return ["export-vae", str(vae), str(vae)], [vae]


@cli_case("survey-info on a text file", r"HDF5")
def _(tmp):
    (tmp / "x.h5").write_text("hello")
    return ["survey-info", str(tmp / "x.h5")], [tmp / "x.h5"]


@cli_case("batch --workers 0", r"--workers")
def _(tmp):
    source = survey_file(tmp)
    return ["batch", str(source), str(tmp / "out.h5"), "--workers", "0"], [source]


@cli_case("batch output equal to the campaign", r"is the input file")
def _(tmp):
    source = survey_file(tmp)
    return ["batch", str(source), str(source)], [source]


@cli_case("batch on a campaign with no surveys", r"holds no surveys")
def _(tmp):
    with h5py.File(tmp / "campaign.h5", "w") as handle:
        handle.attrs["format"] = "geoinv-campaign/1"
        handle.create_group("surveys")
    return ["batch", str(tmp / "campaign.h5"), str(tmp / "out.h5"), "--quiet"], [tmp / "campaign.h5"]


@cli_case("invert a folder named like a survey", r"is a folder, not a file")
def _(tmp):
    (tmp / "survey.h5").mkdir()
    return ["invert", str(tmp / "survey.h5"), *QUICK, "--output", str(tmp / "r.h5")], []


@cli_case("invert --velocities faster than light", r"--velocities.*m/ns")
def _(tmp):
    source = survey_file(tmp)
    return ["invert", str(source), *QUICK, "--velocities", "0.5,0.9", "--output", str(tmp / "r.h5")], [source]


@cli_case("invert --output ''", r"names no file")
def _(tmp):
    source = survey_file(tmp)
    return ["invert", str(source), *QUICK, "--output", ""], [source]


@cli_case("make-ti --direction nan", r"--direction")
def _(tmp):
    return ["make-ti", str(tmp / "ti.h5"), "--rows", "50", "--cols", "50", "--direction", "nan"], []


def case_names() -> list[str]:
    return [c.name for c in CASES]


def dump(path: Path, rows: list[dict]) -> None:
    path.write_text(json.dumps(rows, indent=1))


# ---------------------------------------------------------------- classification

OUTCOMES = ("clear", "misleading", "traceback", "silent", "hang")


class _Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hang


def classify(entry: Case, tmp: Path, timeout_s: int = 60) -> tuple[str, str]:
    """Run one case; return its outcome (one of :data:`OUTCOMES`) and what geoinv said."""
    import contextlib
    import io
    import re
    import signal
    import traceback
    import warnings

    from geoinv.errors import GeoinvError

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    try:
        if entry.cli:
            return _classify_cli(entry, tmp)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                entry.run(tmp)
            except GeoinvError as exc:
                return ("clear" if re.search(entry.match, str(exc)) else "misleading"), str(exc)
            except _Hang:
                return "hang", f"no answer within {timeout_s} s"
            except Exception as exc:  # classifying the outcome is the point
                return "traceback", "".join(traceback.format_exception_only(exc)).strip()
        said = [str(w.message) for w in caught]
        if entry.warning and any(re.search(entry.match, text) for text in said):
            return "clear", said[-1]
        return "silent", "accepted without an error" + (f" (warned: {said[-1][:200]})" if said else "")
    except _Hang:
        return "hang", f"no answer within {timeout_s} s"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        with contextlib.suppress(FileNotFoundError):
            Path("/tmp/geoinv-pwned").unlink()
        del io


def _classify_cli(entry: Case, tmp: Path) -> tuple[str, str]:
    import contextlib
    import io
    import re
    import signal
    import traceback

    from geoinv.cli import main

    argv, protected = entry.run(tmp)
    before = {path: path.read_bytes() for path in protected if path.is_file()}
    stderr, stdout = io.StringIO(), io.StringIO()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
    except _Hang:
        raise
    except Exception as exc:
        return "traceback", "".join(traceback.format_exception_only(exc)).strip()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    said = stderr.getvalue().strip()
    changed = [str(path) for path, data in before.items() if not path.is_file() or path.read_bytes() != data]
    if changed:
        return "silent", f"exit {code}; changed or removed {changed}"
    if code == 0:
        return "silent", "exit 0: " + stdout.getvalue().strip()[-200:]
    if "Traceback" in said or "internal error" in said:
        return "traceback", said[-300:]
    if code == 2 and re.search(entry.match, said):
        return "clear", said
    return "misleading", f"exit {code}: {said[-300:]}"
