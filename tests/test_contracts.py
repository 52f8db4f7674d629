"""Contract tests over the registries: every installed forward, task and solver, plug-ins included.

A new forward, task or solver registered under the entry-point groups is
picked up here without editing this file; it must pass these checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from geoinv import (
    ACCEPTANCE,
    ConfigError,
    FaciesVelocity,
    Grid2D,
    GridError,
    InverseProblem,
    Solutions,
    Survey,
)
from geoinv.forward import FORWARDS
from geoinv.solvers import SOLVERS, LatentSGDConfig, NetworkConfig, load_solver, solver
from geoinv.tasks import TASKS, task
from geoinv.testing import check_forward

from .helpers import TinyDecoder

FORWARD_NAMES = FORWARDS.names()


@pytest.fixture(scope="module")
def geometry():
    """A small non-square grid with an origin offset; sensors on cell corners (pyGIMLi snaps to nodes)."""
    grid = Grid2D((24, 14), 0.25, origin=(0.5, 1.0))
    depths = np.array([1.0, 2.0, 3.5, 5.0, 6.25])
    return grid, Survey.crosshole(1.0, 4.5, depths)


@pytest.fixture(scope="module")
def operators(geometry):
    grid, survey = geometry
    return {name: FORWARDS.get(name)(grid=grid, survey=survey) for name in FORWARD_NAMES}


def _smooth_slowness(grid: Grid2D, batch: int = 2) -> torch.Tensor:
    zz, xx = np.meshgrid(grid.z_centers, grid.x_centers, indexing="ij")
    models = [0.07e9 * (1 + 0.15 * np.sin(zz / (1.3 + k)) * np.cos(xx / (0.9 + k))) for k in range(batch)]
    return torch.as_tensor(1 / np.stack(models), dtype=torch.float64)


@pytest.mark.parametrize("name", FORWARD_NAMES)
def test_forward_shapes_and_batching(name, operators, geometry):
    grid, survey = geometry
    op = operators[name]
    slowness = _smooth_slowness(grid, 3)
    times = op(slowness)
    assert times.shape == (3, survey.n_data) and times.dtype == slowness.dtype
    assert torch.isfinite(times).all() and (times > 0).all()
    one_by_one = torch.stack([op(model) for model in slowness])  # unbatched input → (n_data,)
    torch.testing.assert_close(times, one_by_one, rtol=1e-10, atol=0)


@pytest.mark.parametrize("name", FORWARD_NAMES)
def test_forward_homogeneous_medium_and_euler(name, operators, geometry):
    """Homogeneous medium: straight-ray times (to the operator's discretisation); and since
    traveltimes are homogeneous of degree 1 in slowness, J(s)·s = t(s) (Euler's theorem)."""
    grid, survey = geometry
    op = operators[name]
    velocity = 0.07e9
    times = op(torch.full(grid.shape, 1 / velocity, dtype=torch.float64)).numpy()
    exact = survey.distances / velocity
    assert np.max(np.abs(times - exact) / exact) < 2e-2
    slowness = _smooth_slowness(grid, 1)[0]
    jacobian = op.jacobian(slowness)
    assert sp.isspmatrix_csr(jacobian) and jacobian.shape == (survey.n_data, grid.n_cells)
    predicted = jacobian @ slowness.numpy().ravel()
    np.testing.assert_allclose(predicted, op(slowness).numpy(), rtol=2e-2)


@pytest.mark.parametrize("name", FORWARD_NAMES)
def test_forward_passes_check_forward(name, operators):
    """The public contract check: subsets, dot test of the derivative, backward == VJP == Jᵀ, JVP == J,
    finite differences, and the linear dot test where linear."""
    errors = check_forward(operators[name], generator=torch.Generator().manual_seed(1))
    assert errors["derivative dot test"] < 1e-8 and errors["backward == vjp"] < 1e-8
    if FORWARDS.get(name).linear:
        assert errors["linear dot test"] < 1e-10


def test_eikonal_with_workers_passes_check_forward(geometry):
    from geoinv import Eikonal

    operator = Eikonal(*geometry, workers=2)
    try:
        errors = check_forward(operator, generator=torch.Generator().manual_seed(1))
        assert operator._model_pool is not None  # its batches went to the workers
    finally:
        operator.close()
    assert errors["derivative dot test"] < 1e-8 and errors["backward == vjp"] < 1e-8


@pytest.mark.parametrize("name", [n for n in FORWARD_NAMES if FORWARDS.get(n).linear])
def test_linear_forward_gradcheck(name, operators, geometry):
    grid, _ = geometry
    slowness = (0.5 + torch.rand(2, *grid.shape, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(operators[name], (slowness,))


@pytest.mark.parametrize("name", FORWARD_NAMES)
@pytest.mark.parametrize("bad", [float("nan"), -1e-9, 0.0, float("inf")])
def test_forward_rejects_unphysical_slowness(name, operators, geometry, bad):
    grid, _ = geometry
    slowness = _smooth_slowness(grid, 1)
    slowness[0, 3, 2] = bad
    with pytest.raises(GridError, match="slowness must be finite and > 0"):
        operators[name](slowness)


# -- problems and tasks ---------------------------------------------------------------------------

def _latent_problems(geometry) -> dict[str, InverseProblem]:
    grid, survey = geometry
    return {f"latent tomography ({name})": InverseProblem.latent_tomography(
        TinyDecoder(grid.shape), FaciesVelocity(), FORWARDS.get(name)(grid=grid, survey=survey), noise_std=0.1)
        for name in FORWARD_NAMES}


@pytest.mark.parametrize("name", TASKS.names())
def test_task_data_index_equals_slicing(name):
    problem = task(name)
    _check_problem_index(problem)


@pytest.mark.parametrize("name", FORWARD_NAMES)
def test_latent_problem_data_index_equals_slicing(name, geometry):
    _check_problem_index(_latent_problems(geometry)[f"latent tomography ({name})"])


def _check_problem_index(problem: InverseProblem) -> None:
    x = problem.sample_prior(3, torch.Generator().manual_seed(0))
    full = problem.forward(x)
    assert full.shape == (3, problem.n_data)
    index = np.arange(problem.n_data)[::-1].copy()
    torch.testing.assert_close(problem.forward(x, index), full[:, index], rtol=1e-6, atol=1e-6)
    single = np.array([problem.n_data - 1])
    torch.testing.assert_close(problem.forward(x, single), full[:, single], rtol=1e-6, atol=1e-6)
    assert problem.prior_mean.shape == problem.prior_range.shape == (problem.n_parameters,)
    for kind in ("ring", "origin", "none"):
        penalty = problem.regularization(x, kind)
        assert penalty.shape == (3,) and torch.isfinite(penalty).all()


# -- solvers ----------------------------------------------------------------------------------------

TINY_SETTINGS = {
    "neural-adjoint": {"forward": NetworkConfig(hidden=(16,), epochs=2), "n_starts": 4, "search_steps": 3,
                       "n_candidates": 2, "n_train": 200},
    "tandem": {"forward": NetworkConfig(hidden=(16,), epochs=2), "inverse": NetworkConfig(hidden=(16,), epochs=2),
               "n_train": 200},
    "encoder-decoder": {"forward": NetworkConfig(hidden=(16,), epochs=2),
                        "inverse": NetworkConfig(hidden=(16,), epochs=2), "n_train": 200,
                        "hermite_weight": 0.1, "smoothness_weight": 0.1, "smoothness_points": 50},
    "inverse-misfit": {"inverse": NetworkConfig(hidden=(16,), epochs=2), "n_train": 200},
    # minibatches on: one datum per step, so a problem that ignored data_index would be caught
    "latent-sgd": {"config": LatentSGDConfig(epochs=2, batch_size=1, regularization="ring", reg_weight=0.1,
                                             n_starts=3, step_size=1e-3)},
    "latent-gauss-newton": {"n_starts": 2, "max_iterations": 3},
    # ballistics' prior has a discrete (Poisson) speed: no log-density to sample, refused by name (checked below)
    "latent-mcmc": {"n_chains": 2, "n_temperatures": 2, "n_warmup": 10, "n_draws": 20, "n_samples": 8,
                    "approach_steps": 2},
    # tomography only: on a task it must refuse by name (checked below), on tomography it runs
    "pygimli-smooth": {"max_iterations": 2, "secondary_nodes": 1, "tomography_only": True},
}


def _tiny_solver(name: str):
    assert name in TINY_SETTINGS, f"add tiny settings for the new solver {name!r}"
    settings = dict(TINY_SETTINGS[name])
    config = settings.pop("config", None)
    tomography_only = settings.pop("tomography_only", False)
    return solver(name, config, progress=False, **settings), tomography_only


def _check_solutions(name, solutions, targets, n_parameters):
    assert isinstance(solutions, Solutions)
    assert solutions.parameters.shape[:1] == (len(targets),) and solutions.parameters.shape[2] == n_parameters
    assert solutions.data.shape[:2] == solutions.parameters.shape[:2]
    assert torch.isfinite(solutions.misfit).all()
    assert solutions.config["solver"] == name and solutions.config["acceptance"] == ACCEPTANCE
    assert torch.equal(solutions.accepted, solutions.normalised_misfit <= ACCEPTANCE)


@pytest.mark.parametrize("name", SOLVERS.names())
@pytest.mark.parametrize("task_name", ["robotic-arm", "ballistics"])
def test_every_solver_contract(name, task_name, tmp_path):
    method, tomography_only = _tiny_solver(name)
    problem = task(task_name)
    targets = problem.forward(problem.sample_prior(3, torch.Generator().manual_seed(0)))
    noisy = problem.with_observed(targets, noise_std=0.05)
    if tomography_only:
        with pytest.raises(ConfigError, match="tomography"):
            method.fit(noisy).solve(noisy)
        return
    if method.samples and not noisy.has_log_prior:
        with pytest.raises(ConfigError, match="log-density"):
            method.fit(noisy).solve(noisy)
        return
    solutions = method.fit(noisy).solve(noisy)
    _check_solutions(name, solutions, targets, problem.n_parameters)
    # the one acceptance rule, and misfits that are those of the re-simulated data
    expected_rmse, expected_normalised = noisy.misfits(noisy.forward(solutions.parameters.reshape(
        -1, problem.n_parameters)).reshape(solutions.data.shape), targets[:, None, :])
    torch.testing.assert_close(solutions.misfit, expected_rmse, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(solutions.normalised_misfit, expected_normalised, rtol=1e-4, atol=1e-5)
    if hasattr(method, "save"):
        method.save(tmp_path / "solver.pt")
        again = load_solver(tmp_path / "solver.pt").solve(noisy)
        torch.testing.assert_close(again.parameters, solutions.parameters)


@pytest.mark.parametrize("name", SOLVERS.names())
def test_every_solver_takes_initial_starts_or_refuses_them(name):
    """Solvers that start from points start from initial= (R of them, per data set); the others refuse it
    by name."""
    method, tomography_only = _tiny_solver(name)
    if tomography_only:
        return
    problem = task("robotic-arm")
    noisy = problem.with_observed(problem.forward(problem.sample_prior(2, torch.Generator().manual_seed(1))),
                                  noise_std=0.05)
    method.fit(noisy)
    initial = problem.sample_prior(3, torch.Generator().manual_seed(2)).float()
    if not method.takes_starts:
        with pytest.raises(ConfigError, match="takes no initial"):
            method.solve(noisy, initial=initial)
        return
    solutions = method.solve(noisy, initial=initial)
    # a sampler returns its draws (n_samples), an optimiser at most one candidate per start
    expected = method.config.n_samples if method.samples else 3
    assert solutions.parameters.shape[:2][0] == 2 and solutions.parameters.shape[1] <= expected
    with pytest.raises(ConfigError, match="initial must have shape"):
        method.solve(noisy, initial=initial[:, :1])


@pytest.mark.parametrize("name", SOLVERS.names())
def test_every_solver_on_latent_tomography(name, geometry):
    """Every solver on a tiny latent-tomography problem: shapes, misfits of the re-simulated data
    (model-space solvers: of their models), models on the grid, the one acceptance rule."""
    grid, survey = geometry
    prior = TinyDecoder(grid.shape)
    operator = FORWARDS.get("straight-ray")(grid=grid, survey=survey)
    problem = InverseProblem.latent_tomography(prior, FaciesVelocity(), operator, noise_std=0.3)
    targets = problem.forward(prior.sample_latent(2, torch.Generator().manual_seed(4)))
    noisy = problem.with_observed(targets)
    method, _ = _tiny_solver(name)
    solutions = method.fit(noisy).solve(noisy)
    n_parameters = grid.n_cells if method.model_space else problem.n_parameters
    _check_solutions(name, solutions, targets, n_parameters)
    assert solutions.models.shape[2:] == grid.shape
    flat = solutions.parameters.reshape(-1, n_parameters)
    data = (problem.model_forward(flat.reshape(-1, *grid.shape)) if method.model_space else problem.forward(flat))
    expected_rmse, _ = noisy.misfits(data.reshape(solutions.data.shape), targets[:, None, :])
    torch.testing.assert_close(solutions.misfit, expected_rmse, rtol=1e-4, atol=1e-6)


def test_latent_sgd_minibatches_follow_the_data_index():
    """Robotic arm, two data: one-datum minibatches must converge like full batches (issue found
    when task forwards ignored data_index: best re-simulation MSE 0.45 against 0.005)."""
    problem = task("robotic-arm")
    truth = problem.sample_prior(1, torch.Generator().manual_seed(3))
    problem = problem.with_observed(problem.forward(truth)[0], noise_std=0.01)
    errors = []
    for batch_size in (None, 1):
        config = LatentSGDConfig(epochs=300, batch_size=batch_size, regularization="none", step_size=2e-2,
                                 step_decay=0.99, n_starts=8, progress=False, seed=1)
        errors.append(float(solver("latent-sgd", config).solve(problem).misfit[0, 0]))
    assert errors[1] < 0.02 and errors[0] < 0.02
