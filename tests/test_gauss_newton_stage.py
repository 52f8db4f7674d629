"""The Gauss-Newton stage of latent SGD: damped Gauss-Newton on the problem's own Jacobian."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoinv import ConfigError, Eikonal, FaciesVelocity, LatentSGDConfig, StraightRay, build_problem, solver
from geoinv.solvers import Stage
from geoinv.solvers.callbacks import Callback, ProgressBar
from geoinv.solvers.gauss_newton_step import GaussNewtonStep

from .helpers import TinyDecoder

TRUTH = torch.tensor([[0.8, -0.5, 0.3]])


def _problem(operator, grid, noise=0.05e-9, seed=3):
    prior, petro = TinyDecoder(grid.shape), FaciesVelocity()
    field = operator.make_synthetic_data(petro.slowness(prior.decode(TRUTH)[0].double()), noise,
                                         torch.Generator().manual_seed(seed))
    return build_problem(field, prior, operator, petro)


def test_gauss_newton_stage_reaches_the_noise_from_near_the_truth_on_eikonal_data(small_grid, small_survey):
    problem = _problem(Eikonal(small_grid, small_survey), small_grid)
    offsets = 0.3 * torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    config = LatentSGDConfig(optimizer="gauss-newton", epochs=8, step_size=1e-3, batch_size=None,
                             regularization="none", reg_weight=0.0, n_starts=4, progress=False)
    solutions = solver("latent-sgd", config).solve(problem, initial=TRUTH + offsets)
    assert bool(solutions.accepted[0].all())
    assert float((solutions.parameters[0] - TRUTH).abs().max()) < 0.05
    # a start stops once it fits the noise: the stage ends before its 8 iterations
    assert len(solutions.history["step_size"]) < 8
    before = solutions.history["data_rmse"][0, 0]
    after = solutions.history["data_rmse"][-1, 0]
    assert np.all(after < 0.2 * before)


def test_gauss_newton_finishes_a_short_gradient_search(small_grid, small_survey):
    problem = _problem(StraightRay(small_grid, small_survey), small_grid)
    search = {"step_size": 5e-3, "epochs": 10, "batch_size": 5, "reg_weight": 1.0, "n_starts": 6,
              "progress": False, "seed": 1}
    alone = solver("latent-sgd", LatentSGDConfig(**search)).solve(problem)
    finished = solver("latent-sgd", LatentSGDConfig(**search, then=(Stage.gauss_newton(6, reg_weight=0.0),))
                      ).solve(problem)
    assert int(finished.accepted[0].sum()) > int(alone.accepted[0].sum())
    assert float(finished.normalised_misfit[0, 0]) <= 1.0
    assert set(np.unique(finished.history["stage"])) == {0, 1}


def test_gauss_newton_direction_solves_the_damped_normal_equations(small_grid, small_survey):
    problem = _problem(StraightRay(small_grid, small_survey), small_grid)
    points = torch.tensor([[0.1, 0.2, -0.3], [1.0, -1.0, 0.5]])
    rows = problem.targets().repeat(2, 1)
    step = GaussNewtonStep(problem, rows, "origin", reg_weight=0.5, damping=0.0)
    direction = step._direction(points, problem.forward(points) - rows, torch.zeros(2)).double()
    sigma = problem.noise_std.double()
    for b in range(2):
        jacobian = problem.jacobian(points[b:b + 1])[0] / sigma[:, None]
        residual = ((problem.forward(points[b:b + 1])[0] - rows[b]) / problem.noise_std).double()
        # φ = ‖r‖² + λ‖z‖²: the Gauss-Newton system (JᵀJ + λI) Δ = −(Jᵀr + λz)
        expected = -torch.linalg.solve(jacobian.T @ jacobian + 0.5 * torch.eye(3),
                                       jacobian.T @ residual + 0.5 * points[b].double())
        np.testing.assert_allclose(direction[b].numpy(), expected.numpy(), rtol=1e-4, atol=1e-7)


def test_a_trust_radius_shortens_long_gauss_newton_directions_only(small_grid, small_survey):
    problem = _problem(StraightRay(small_grid, small_survey), small_grid)
    points = torch.tensor([[2.0, 2.0, -2.0], [0.8, -0.5, 0.31]])  # far from the truth, next to it
    rows = problem.targets().repeat(2, 1)
    residual = problem.forward(points) - rows
    full = GaussNewtonStep(problem, rows, "none", 0.0, damping=0.0)._direction(points, residual, torch.zeros(2))
    capped = GaussNewtonStep(problem, rows, "none", 0.0, damping=0.0, max_step=0.2)._direction(
        points, residual, torch.zeros(2))
    assert float(full[0].norm()) > 1.0  # the far point's full step is long: it is cut to the radius
    assert float(capped[0].norm()) == pytest.approx(0.2, rel=1e-5)
    np.testing.assert_allclose(capped[0].numpy(), (0.2 * full[0] / full[0].norm()).numpy(), rtol=1e-5)
    assert float(full[1].norm()) < 0.2  # a short step is left as it is
    np.testing.assert_allclose(capped[1].numpy(), full[1].numpy())


def test_gauss_newton_iterations_move_no_further_than_the_trust_radius(small_grid, small_survey):
    problem = _problem(StraightRay(small_grid, small_survey), small_grid)
    latent = torch.tensor([[2.0, 2.0, -2.0]])  # 3.8 latent units from the truth
    iterate = GaussNewtonStep(problem, problem.targets(), "origin", 1.0, max_step=0.5)
    path = [latent.clone()]
    while not iterate.finished and len(path) < 40:
        iterate(latent)
        path.append(latent.clone())
    moves = torch.cat(path[1:]) - torch.cat(path[:-1])
    assert float(moves.norm(dim=1).max()) <= 0.5 + 1e-5
    assert len(path) - 1 >= 7  # no fewer capped iterations than the distance needs
    assert float(iterate.state.residual.div(problem.noise_std).pow(2).mean().sqrt()) <= 1.0  # reached the noise


def test_a_start_stops_when_its_objective_falls_by_less_than_min_decrease(small_grid, small_survey):
    """pyGIMLi's dPhi rule: a start whose accepted step lowers φ by less than min_decrease % stops there."""
    problem = _problem(StraightRay(small_grid, small_survey), small_grid, noise=0.001e-9)
    latent = torch.tensor([[2.0, 2.0, -2.0], [0.5, -0.2, 0.0]])
    rows = problem.targets().repeat(2, 1)
    free, ruled = latent.clone(), latent.clone()
    plain, stopping = GaussNewtonStep(problem, rows, "none", 0.0), GaussNewtonStep(problem, rows, "none", 0.0,
                                                                                    min_decrease=99.0)
    stopping.begin(ruled)
    objectives = [stopping.state.objective.clone()]
    for _ in range(12):
        was_active = stopping.active.clone()
        stopping(ruled)
        plain(free)
        objectives.append(torch.where(was_active, stopping.state.objective, objectives[-1]))
    history = torch.stack(objectives)  # (iterations + 1, starts)
    drops = 100 * (1 - history[1:] / history[:-1])
    for start in range(2):
        accepted = drops[:, start][drops[:, start] > 0]
        assert len(accepted) and float(accepted[-1]) < 99.0  # it stopped after its first small decrease
        assert bool((accepted[:-1] >= 99.0).all())
    assert not bool(stopping.active.any())
    assert float(plain.state.objective.max()) < float(stopping.state.objective.min())  # without it: further


def test_gauss_newton_stage_settings_are_validated():
    with pytest.raises(ConfigError, match="relinearize=0"):
        Stage(optimizer="gauss-newton", relinearize=5)
    with pytest.raises(ConfigError, match="max_step"):
        Stage(max_step=0.5)  # an SGD stage has no trust radius
    with pytest.raises(ConfigError, match="max_step"):
        Stage.gauss_newton(4, max_step=0.0)
    stage = Stage.gauss_newton(4)
    assert (stage.optimizer, stage.epochs, stage.regularization, stage.batch_size) == ("gauss-newton", 4, "origin",
                                                                                       None)


def test_tempered_gauss_newton_records_the_prior_decoders_misfit(small_grid, small_survey):
    problem = _problem(StraightRay(small_grid, small_survey), small_grid)
    config = LatentSGDConfig(optimizer="gauss-newton", epochs=3, step_size=1e-3, batch_size=None,
                             regularization="none", reg_weight=0.0, temperature=2.0, n_starts=2, progress=False)
    start = TRUTH + torch.tensor([[0.4, 0.2, -0.3], [-0.2, 0.3, 0.1]])
    solutions = solver("latent-sgd", config).solve(problem, initial=start)
    rows = problem.targets().repeat(2, 1)
    at_one = (problem.forward(solutions.parameters[0]) - rows).pow(2).mean(dim=1).sqrt()
    recorded = np.sort(solutions.history["data_rmse"][-1, 0])
    np.testing.assert_allclose(recorded, np.sort(at_one.detach().numpy()), rtol=1e-4)
    tempered = problem.tempered(2.0)
    at_two = (tempered.forward(solutions.parameters[0]) - rows).pow(2).mean(dim=1).sqrt()
    assert not np.allclose(np.sort(at_two.detach().numpy()), recorded, rtol=1e-3)


def test_gauss_newton_continuation_recovers_the_truth_from_prior_draws(small_grid, small_survey):
    problem = _problem(StraightRay(small_grid, small_survey), small_grid)
    config = LatentSGDConfig.gauss_newton_continuation(n_starts=3, explore=2, progress=False, seed=2)
    solutions = solver("latent-sgd", config).solve(problem)
    assert bool(solutions.accepted[0].all())
    assert float((solutions.parameters[0, 0] - TRUTH[0]).abs().max()) < 0.1
    # the decoder cools from T = 32 to 1, and the kept starts are the best of 6 finished draws
    temperatures = solutions.history["temperature"]
    assert temperatures[0] == 32.0 and temperatures[-1] == 1.0 and np.all(np.diff(temperatures) <= 0)
    assert solutions.history["explore_draws"] == 6


class _Ends(Callback):
    def on_end(self, run):
        self.steps, self.total = run.step, run.total_steps


def test_progress_ends_full_when_every_start_fits_before_the_last_iteration(small_grid, small_survey, capsys):
    problem = _problem(StraightRay(small_grid, small_survey), small_grid)
    ends, bar = _Ends(), ProgressBar()
    config = LatentSGDConfig(n_starts=2, progress=False).with_stages((Stage.gauss_newton(20),))
    solver("latent-sgd", config, callbacks=[ends, bar]).solve(problem, initial=TRUTH + 0.05)
    assert ends.steps < 20
    assert ends.total == ends.steps and bar._bar.total == ends.steps and bar._bar.n == ends.steps
