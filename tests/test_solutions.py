"""Solutions: posterior maps, HDF5 layout, summary in σ units."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from geoinv import (
    FaciesVelocity,
    FileFormatError,
    Grid2D,
    LatentSGDConfig,
    Solutions,
    StraightRay,
    Survey,
    invert,
    solver,
)

from .helpers import TinyDecoder, refusal_under_memory_limit


class SplitDecoder(TinyDecoder):
    """z0, z1 shape the left half of the grid, z2 only the right half."""

    def __init__(self, shape):
        super().__init__(shape, latent_dim=3)
        weight = self.weight.detach().reshape(*shape, 3).clone()
        half = shape[1] // 2
        weight[:, :half, 2] = 0.0
        weight[:, half:, :2] = 0.0
        weight[:, half:, 2] = 3.0
        self.weight.data = weight.reshape(-1, 3)


@pytest.fixture(scope="module")
def ambiguous():
    """Rays only cross the left half (boreholes at x = 0 and 2 m of a 4 m wide grid)."""
    grid = Grid2D((12, 8), 0.5)
    survey = Survey.crosshole(0.0, 2.0, np.array([0.7, 1.9, 3.3, 4.6, 5.8]))
    prior = SplitDecoder(grid.shape)
    truth = prior.decode(torch.tensor([[0.8, -0.5, 0.3]]))[0]
    operator = StraightRay(grid, survey)
    field = operator.make_synthetic_data(FaciesVelocity().slowness(truth.double()), 0.05e-9,
                                         torch.Generator().manual_seed(3))
    config = LatentSGDConfig(step_size=5e-3, step_decay=0.97, epochs=60, batch_size=5, regularization="none",
                             reg_weight=0.0, n_starts=16, progress=False, seed=2)
    return grid, invert(field, prior, operator, solver("latent-sgd", config))


def test_posterior_is_uncertain_where_no_ray_goes(ambiguous):
    grid, solutions = ambiguous
    posterior = solutions.posterior()
    assert bool(posterior["from_accepted"][0]) and int(posterior["n_used"][0]) == int(solutions.accepted.sum()) >= 4
    std = posterior["std"][0]
    half = grid.nx // 2
    assert std[:, half:].mean() > 10 * std[:, :half].mean()
    assert std[:, :half].max() < 0.05
    probability = posterior["channel_probability"][0]
    assert ((probability >= 0) & (probability <= 1)).all()
    accepted = solutions.models[0][solutions.accepted[0]]
    torch.testing.assert_close(posterior["mean"][0], accepted.mean(dim=0))


def test_posterior_falls_back_to_all_candidates_and_says_so(ambiguous):
    _, solutions = ambiguous
    none = Solutions(solutions.parameters, solutions.data, solutions.misfit, torch.zeros_like(solutions.accepted),
                     solutions.models, solutions.history, solutions.config, 0.0, solutions.normalised_misfit)
    posterior = none.posterior()
    assert not bool(posterior["from_accepted"][0]) and int(posterior["n_used"][0]) == solutions.n_candidates
    torch.testing.assert_close(posterior["mean"][0], solutions.models[0].mean(dim=0))


def test_posterior_and_normalised_misfit_in_hdf5(ambiguous, tmp_path):
    _, solutions = ambiguous
    path = tmp_path / "result.h5"
    solutions.to_hdf5(path)
    loaded = Solutions.from_hdf5(path)
    torch.testing.assert_close(loaded.normalised_misfit, solutions.normalised_misfit)
    with h5py.File(path) as handle:
        np.testing.assert_allclose(handle["solutions/posterior/std"][()], solutions.posterior()["std"].numpy())
    summary = solutions.summary()
    assert " σ" in summary and "accepted (≤ 1.1 σ)" in summary


def test_inversion_figure_has_posterior_panels(ambiguous, tmp_path):
    from geoinv.plot import inversion_figure

    grid, solutions = ambiguous
    inversion_figure(grid, solutions, tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 20_000
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_solutions_file_declaring_too_much_is_refused_before_it_is_read(ambiguous, tmp_path):
    """A compressed dataset can declare 10⁹ rows in a few kB: refused from its declared shape, read in a child
    process under a 4 GB address-space limit so a regression fails the test instead of taking the machine."""
    _, solutions = ambiguous
    path = tmp_path / "result.h5"
    solutions.to_hdf5(path)
    surveys, candidates = solutions.misfit.shape
    with h5py.File(path, "a") as handle:
        del handle["solutions/models"]
        handle["solutions"].create_dataset("models", shape=(surveys, candidates, 10**9), dtype="f4", chunks=True,
                                           compression="gzip")
    assert path.stat().st_size < 10**6
    refused = refusal_under_memory_limit("geoinv.Solutions.from_hdf5(sys.argv[1])", path)
    assert "largest: 'models'" in refused and "geoinv.io.solutions.MAX_BYTES" in refused
    with h5py.File(path, "a") as handle:
        del handle["solutions/models"]
        handle["solutions"].create_dataset("models", data=np.zeros((surveys + 1, candidates, 4), "f4"))
    with pytest.raises(FileFormatError, match=r"'/solutions/models' has shape .* but misfit's"):
        Solutions.from_hdf5(path)
