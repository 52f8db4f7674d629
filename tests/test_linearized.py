"""Search stages on a forward linearised at each start's model (the bent-ray iteration)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoinv import (
    ConfigError,
    Eikonal,
    FaciesVelocity,
    Grid2D,
    LatentSGDConfig,
    StraightRay,
    Survey,
    build_problem,
    solver,
)
from geoinv.forward.linearized import LinearizedBatch
from geoinv.solvers import Stage

from .helpers import SMALL, TinyDecoder

TRUTH = torch.tensor([[0.8, -0.5, 0.3]])


@pytest.fixture
def eikonal(small_grid, small_survey):
    return Eikonal(small_grid, small_survey)


def _slowness(grid, seed, contrast=0.25):
    generator = torch.Generator().manual_seed(seed)
    return (1 + contrast * torch.rand((2, *grid.shape), generator=generator, dtype=torch.float64)) / 0.07e9


def test_linearisation_is_exact_at_its_points_and_first_order_near_them(small_grid, small_survey):
    eikonal = Eikonal(small_grid, small_survey, linearization="gradient")
    points = _slowness(small_grid, 0)
    local = LinearizedBatch(eikonal, points)
    np.testing.assert_allclose(local(points).numpy(), eikonal(points).numpy(), rtol=1e-12)
    direction = _slowness(small_grid, 1) - points
    errors = []
    for step in (1e-3, 1e-4):
        moved = points + step * direction
        errors.append(float((local(moved) - eikonal(moved)).abs().max()))
    change = float((eikonal(points) - eikonal(points + 1e-4 * direction)).abs().max())
    # with the exact kernel the local model's error is second order: far below the change itself
    assert errors[1] < 1e-3 * change and errors[1] < 0.1 * errors[0]
    index = np.array([3, 0, 7])
    np.testing.assert_allclose(local(points, index).numpy(), eikonal(points).numpy()[:, index], rtol=1e-12)
    with pytest.raises(ConfigError, match="holds 2 models"):
        local(points[:1])


def test_linearised_forward_gradient_is_its_kernel(eikonal, small_grid):
    points = _slowness(small_grid, 2)
    local = LinearizedBatch(eikonal, points)
    probe = points.clone().requires_grad_(True)
    weights = torch.randn(2, eikonal.n_data, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (local(probe) * weights).sum().backward()
    kernel = eikonal.linearization_kernel(points[1].numpy())
    np.testing.assert_allclose(probe.grad[1].numpy().ravel(), kernel.T @ weights[1].numpy(), rtol=1e-10)


def test_linear_problems_are_their_own_linearisation(small_grid, small_survey):
    prior = TinyDecoder(small_grid.shape)
    operator = StraightRay(small_grid, small_survey)
    field = operator.make_synthetic_data(FaciesVelocity().slowness(prior.decode(TRUTH)[0].double()), 0.05e-9)
    problem = build_problem(field, prior, operator, FaciesVelocity())
    assert problem.linearized(torch.zeros(2, 3)) is problem


def test_relinearised_stages_recover_a_known_truth_on_eikonal_data(eikonal, small_grid):
    prior, petro = TinyDecoder(small_grid.shape), FaciesVelocity()
    field = eikonal.make_synthetic_data(petro.slowness(prior.decode(TRUTH)[0].double()), 0.05e-9,
                                        torch.Generator().manual_seed(3))
    problem = build_problem(field, prior, eikonal, petro)
    latent = problem.sample_prior(4, torch.Generator().manual_seed(0))
    linearized = problem.linearized(latent)
    np.testing.assert_allclose(linearized.forward(latent).numpy(), problem.forward(latent).numpy(), rtol=1e-5)
    # no exact-forward stage: the linearised steps alone (ray kernel, refreshed every 10 epochs) find it
    solutions = solver("latent-sgd", LatentSGDConfig(**SMALL, relinearize=10)).solve(problem)
    history = solutions.history
    assert history["step"][1] == 10 * 5  # exact full-data records at each linearisation
    assert solutions.accepted[0, 0]
    assert float((solutions.parameters[0, 0] - TRUTH[0]).abs().max()) < 0.1


def test_relinearize_is_validated():
    with pytest.raises(ConfigError, match="relinearize"):
        Stage(relinearize=-1)
    with pytest.raises(ConfigError, match="relinearize"):
        Stage(relinearize=2.5)
    with pytest.raises(ConfigError, match="linearization"):
        Eikonal(Grid2D((4, 4), 1.0), Survey.crosshole(0.0, 4.0, [1.0, 2.0]), linearization="exact")


def test_straight_ray_kernel_carries_the_bending_in_its_offset(eikonal, small_grid, small_survey):
    points = _slowness(small_grid, 3)
    local = LinearizedBatch(eikonal, points, kernel="straight-ray")
    np.testing.assert_allclose(local(points).numpy(), eikonal(points).numpy(), rtol=1e-12)
    moved = _slowness(small_grid, 4)
    straight = StraightRay(small_grid, small_survey)
    np.testing.assert_allclose((local(moved) - local(points)).numpy(), (straight(moved) - straight(points)).numpy(),
                               rtol=1e-9, atol=1e-20)
    with pytest.raises(ConfigError, match="kernel"):
        LinearizedBatch(eikonal, points, kernel="bent")
    with pytest.raises(ConfigError, match="kernel"):
        Stage(relinearize=1, kernel="bent")
