"""The fast-sweeping eikonal in torch: accuracy against exact and fast-marching times, exact smooth derivatives,
the temperature's bound, and its settings refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoinv import ConfigError, Eikonal, GeoinvWarning, Grid2D, StraightRay, Survey, SweepingEikonal
from geoinv.testing import check_forward


@pytest.fixture(scope="module")
def geometry():
    """A crosshole panel of 0.1 m cells: 6 sources and 6 receivers 2.9 m apart."""
    grid = Grid2D((40, 30), 0.1)
    depths = np.linspace(0.3, 3.7, 6)
    return grid, Survey.crosshole(0.0, 2.9, depths)


@pytest.fixture(scope="module")
def small():
    """A small panel for the derivative checks (one VJP per datum): 3 sources, 3 receivers."""
    grid = Grid2D((24, 16), 0.1)
    return grid, Survey.crosshole(0.0, 1.5, np.array([0.4, 1.2, 2.1]))


def _two_facies(grid: Grid2D) -> torch.Tensor:
    """A fast channel (0.08 m/ns) crossing a slow matrix (0.06 m/ns): first arrivals that bend."""
    zz, xx = np.meshgrid(grid.z_centers, grid.x_centers, indexing="ij")
    channel = np.abs(zz - (1.2 + 0.5 * xx)) < 0.35
    return torch.as_tensor(np.where(channel, 1 / 0.08e9, 1 / 0.06e9))[None]


def test_homogeneous_times_are_the_straight_distances(geometry):
    grid, survey = geometry
    slowness = torch.full((1, *grid.shape), 1 / 0.07e9, dtype=torch.float64)
    exact = StraightRay(grid, survey)(slowness)
    for order, tolerance in ((2, 6e-3), (1, 3e-2)):
        times = SweepingEikonal(grid, survey, order=order)(slowness)
        assert float(((times - exact) / exact).abs().max()) < tolerance
    second = SweepingEikonal(grid, survey)(slowness)
    first = SweepingEikonal(grid, survey, order=1)(slowness)
    assert float((second - exact).abs().max()) < 0.4 * float((first - exact).abs().max())


def test_bent_rays_agree_with_fast_marching(geometry):
    grid, survey = geometry
    model = _two_facies(grid)
    reference = Eikonal(grid, survey, refine=4)(model)  # scikit-fmm on 4 × 4 nodes per cell
    sweeping = SweepingEikonal(grid, survey)(model)
    marching = Eikonal(grid, survey)(model)
    straight = StraightRay(grid, survey)(model)
    error = ((sweeping - reference) / reference).abs()
    marching_error = ((marching - reference) / reference).abs()
    # the same class of accuracy as scikit-fmm's second order on the same nodes (both are off most
    # where a source sits beside the channel's edge, which the finer reference resolves)
    assert float(error.median()) < 2 * float(marching_error.median()) and float(error.median()) < 1e-2
    assert float(error.max()) < 1.5 * float(marching_error.max())
    assert float(((straight - reference) / reference).abs().max()) > 2 * float(error.max())  # the rays do bend


def test_derivatives_are_exact_and_smooth(small):
    """Exact derivatives of the discrete solution (dot tests at round-off), and close to central finite
    differences, where scikit-fmm's stencil switches leave percent-level gaps."""
    grid, survey = small
    errors = check_forward(SweepingEikonal(grid, survey), generator=torch.Generator().manual_seed(2))
    assert errors["derivative dot test"] < 1e-10 and errors["jacobian == vjp"] < 1e-10
    assert errors["jvp vs finite differences"] < 5e-3


def test_a_temperature_keeps_the_times_near_the_exact_ones_within_its_bound(geometry, small):
    grid, survey = geometry
    model = _two_facies(grid)
    exact = SweepingEikonal(grid, survey)(model)
    warm = SweepingEikonal(grid, survey, temperature=0.2e-9)  # 0.25 × 0.1 m / 0.08 m/ns = 0.31 ns at most
    assert float((warm(model) - exact).abs().max()) < 0.2e-9  # within the temperature of the exact times
    grid, survey = small
    model = _two_facies(grid)
    warm = SweepingEikonal(grid, survey, temperature=0.2e-9)
    errors = check_forward(warm, model.expand(2, -1, -1).clone(), generator=torch.Generator().manual_seed(3))
    assert errors["derivative dot test"] < 1e-8
    with pytest.raises(ConfigError, match="fastest cell's crossing time"):
        SweepingEikonal(grid, survey, temperature=0.5e-9)(model)


def test_batches_sources_subsets_and_float32(geometry):
    grid, survey = geometry
    model = _two_facies(grid)
    operator = SweepingEikonal(grid, survey)
    times = operator(model)
    subset = [7, 2, 30, 2]
    torch.testing.assert_close(operator(model, data_index=subset), times[:, subset], rtol=1e-12, atol=0)
    single = operator(model.float())
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), times, rtol=1e-5, atol=0)
    fields = operator.traveltime_fields(model[0])
    assert fields.shape == (len(survey.sources), *operator.nodes.shape)


def test_settings_are_validated_and_non_convergence_is_said(geometry):
    grid, survey = geometry
    with pytest.raises(ConfigError, match="pass seconds"):
        SweepingEikonal(grid, survey, temperature=0.5)  # ns given where s are asked
    with pytest.raises(ConfigError, match="order must be 1 or 2"):
        SweepingEikonal(grid, survey, order=3)
    with pytest.raises(ConfigError, match="temperature must be a finite time"):
        SweepingEikonal(grid, survey, temperature=-1e-10)
    with pytest.raises(ConfigError, match="tolerance must lie in"):
        SweepingEikonal(grid, survey, tolerance=2.0)
    with pytest.warns(GeoinvWarning, match="did not converge in 1 rounds"):
        SweepingEikonal(grid, survey, max_rounds=1)(_two_facies(grid))
