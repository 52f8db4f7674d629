import numpy as np
import pytest
import torch

from geoinv import Grid2D, GridError, StraightRay, Survey, forward
from geoinv.forward.straight_ray import ray_length_matrix


def test_row_sums_equal_distances(reference_grid, reference_survey):
    op = StraightRay(reference_grid, reference_survey)
    row_sums = np.asarray(op.matrix.sum(axis=1)).ravel()
    np.testing.assert_allclose(row_sums, reference_survey.distances, rtol=1e-10)


def test_random_rays_row_sums(rng):
    grid = Grid2D((17, 11), (0.3, 0.7), (1.0, -2.0))
    sources = np.column_stack([rng.uniform(-2.0, 5.7, 200), rng.uniform(1.0, 6.1, 200)])
    receivers = np.column_stack([rng.uniform(-2.0, 5.7, 200), rng.uniform(1.0, 6.1, 200)])
    matrix = ray_length_matrix(grid, sources, receivers)
    np.testing.assert_allclose(np.asarray(matrix.sum(1)).ravel(),
                               np.linalg.norm(receivers - sources, axis=1), rtol=1e-10)
    assert (matrix.data >= 0).all()


def test_ray_along_cell_edge_is_split_between_neighbours():
    grid = Grid2D((4, 4), 1.0)
    survey = Survey([[0.0, 2.0]], [[4.0, 2.0]])  # runs along the edge between rows 1 and 2
    lengths = StraightRay(grid, survey).matrix.toarray().reshape(4, 4)
    np.testing.assert_allclose(lengths[1], 0.5)
    np.testing.assert_allclose(lengths[2], 0.5)
    assert lengths[[0, 3]].sum() == 0


def test_ray_on_grid_boundary_goes_to_inner_cells():
    grid = Grid2D((4, 4), 1.0)
    survey = Survey([[0.0, 0.0]], [[0.0, 4.0]])  # along the left boundary, top to bottom
    lengths = StraightRay(grid, survey).matrix.toarray().reshape(4, 4)
    np.testing.assert_allclose(lengths[:, 0], 1.0)
    assert lengths[:, 1:].sum() == 0


def test_diagonal_ray_through_corners():
    grid = Grid2D((3, 3), 1.0)
    survey = Survey([[0.0, 0.0]], [[3.0, 3.0]])
    lengths = StraightRay(grid, survey).matrix.toarray().reshape(3, 3)
    np.testing.assert_allclose(np.diag(lengths), np.sqrt(2))
    assert lengths.sum() == pytest.approx(3 * np.sqrt(2))


def test_homogeneous_medium(reference_grid, reference_survey):
    op = StraightRay(reference_grid, reference_survey)
    velocity = 0.07e9
    slowness = torch.full((2, *reference_grid.shape), 1 / velocity, dtype=torch.float64)
    times = op(slowness)
    assert times.shape == (2, 625)
    np.testing.assert_allclose(times[0].numpy(), reference_survey.distances / velocity, rtol=1e-10)


def test_dot_test(reference_grid, reference_survey, rng):
    op = StraightRay(reference_grid, reference_survey)
    model = torch.as_tensor(rng.normal(size=(3, *reference_grid.shape)))
    data = torch.as_tensor(rng.normal(size=(3, op.n_data)))
    lhs = (op.matvec(model) * data).sum()
    rhs = (model * op.adjoint(data)).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-12)


def test_gradcheck_small(small_grid, small_survey):
    op = StraightRay(small_grid, small_survey)
    slowness = (0.1 + torch.rand(2, *small_grid.shape, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(op, (slowness,))


def test_unbatched_and_float32(reference_grid, reference_survey):
    op = StraightRay(reference_grid, reference_survey)
    slowness = torch.rand(*reference_grid.shape)
    times = op(slowness)
    assert times.shape == (625,) and times.dtype == torch.float32
    np.testing.assert_allclose(times.numpy(), op.matrix @ slowness.double().numpy().ravel(), rtol=1e-5)


def test_wrong_model_shape_raises(reference_grid, reference_survey):
    op = StraightRay(reference_grid, reference_survey)
    with pytest.raises(GridError, match="slowness"):
        op(torch.zeros(1, 65, 129))


def test_registry_builds_by_name(small_grid, small_survey):
    op = forward("straight-ray", grid=small_grid, survey=small_survey)
    assert isinstance(op, StraightRay)
    with pytest.raises(Exception, match="available"):
        forward("no-such-operator", grid=small_grid, survey=small_survey)
