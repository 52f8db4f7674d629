import numpy as np
import pytest
import torch

from geoinv import Grid2D, StraightRay, Survey, forward
from geoinv.forward.pygimli import PyGimliShortestPath


@pytest.fixture(scope="module")
def setup():
    grid = Grid2D((21, 11), 0.5)
    survey = Survey.crosshole(0.0, 5.5, np.arange(1, 10) * 1.0)
    return grid, survey, PyGimliShortestPath(grid, survey, secondary_nodes=3)


def test_homogeneous_medium(setup):
    grid, survey, op = setup
    times = op.response(np.full(grid.shape, 1 / 0.07e9))
    relative = (times - survey.distances / 0.07e9) / (survey.distances / 0.07e9)
    assert np.abs(relative).max() < 1.5e-2  # Dijkstra paths run along mesh edges
    assert relative.min() > -1e-9  # and are never shorter than the straight line


def test_jacobian_reproduces_response_and_cell_order(setup):
    grid, _, op = setup
    rng = np.random.default_rng(0)
    slowness = 1 / rng.uniform(0.06e9, 0.08e9, grid.shape)
    jacobian = op.jacobian(slowness)
    np.testing.assert_allclose(jacobian @ slowness.ravel(), op.response(slowness), rtol=1e-9)
    # a horizontal ray at 1 m depth crosses rows 1 and 2 (edge at 1.0 m) only
    row = jacobian[0].toarray().reshape(grid.shape)
    assert row[3:].sum() == 0
    assert row.sum() == pytest.approx(5.5, rel=1e-6)


def test_autograd_and_registry(setup):
    grid, survey, _ = setup
    built = forward("pygimli", grid=grid, survey=survey, secondary_nodes=1)
    slowness = torch.full((1, *grid.shape), 1 / 0.07e9, dtype=torch.float64, requires_grad=True)
    built(slowness).sum().backward()
    straight = StraightRay(grid, survey).matrix
    column_sums = np.asarray(straight.sum(0)).ravel()
    gradient = slowness.grad[0].numpy().ravel()
    assert gradient.sum() == pytest.approx(column_sums.sum(), rel=2e-2)


def test_warns_when_sensors_are_not_on_nodes():
    grid = Grid2D((10, 6), 1.0)
    with pytest.warns(UserWarning, match="nearest mesh node"):
        PyGimliShortestPath(grid, Survey([[0.0, 2.5]], [[6.0, 3.0]]), secondary_nodes=0)
