from dataclasses import replace

import numpy as np
import pytest
import torch

from geoinv import ConfigError
from geoinv.metrics import r_t_curve
from geoinv.solvers import (
    EncoderDecoder,
    EnsembleMLP,
    InverseMisfit,
    NetworkConfig,
    NeuralAdjoint,
    Solutions,
    Tandem,
)
from geoinv.solvers.base import resorted_order
from geoinv.tasks import TASKS, quadratic, quadratic_reduced, robotic_arm, sine_wave, task

SMALL = NetworkConfig(hidden=(64, 64), epochs=100, batch_size=100, lr=3e-3)
TARGETS = torch.linspace(64.0, 1089.0, 40)[:, None]  # y; away from 0 where relative errors blow up


def relative_error(solutions: Solutions) -> torch.Tensor:
    estimate = solutions.best[:, 0]
    return (estimate.pow(2) - TARGETS[:, 0]).abs() / TARGETS[:, 0]


def test_inverse_misfit_l2_collapses_to_zero():
    """Seed 000, Theorem 1: the l2 minimiser of ‖G(y) − x‖ for y = x² is G(y) = 0."""
    fitted = InverseMisfit(inverse=SMALL, progress=False).fit(quadratic())
    estimate = fitted.solve(quadratic(), TARGETS).best[:, 0]
    assert estimate.abs().max() < 0.5


def test_inverse_misfit_l1_stays_between_branches():
    fitted = InverseMisfit(inverse=SMALL, norm="l1", progress=False).fit(quadratic())
    estimate = fitted.solve(quadratic(), TARGETS).best[:, 0]
    assert torch.all(estimate.abs() <= TARGETS[:, 0].sqrt() + 0.5)
    assert relative_error(fitted.solve(quadratic(), TARGETS)).median() > 0.5  # it does not solve the problem


@pytest.mark.parametrize("make", [
    lambda: Tandem(forward=SMALL, inverse=SMALL, boundary_weight=0.0, progress=False),
    lambda: NeuralAdjoint(forward=SMALL, n_starts=20, search_steps=200, n_candidates=5, progress=False),
    lambda: NeuralAdjoint(forward=SMALL, ensemble=3, n_starts=20, search_steps=200, n_candidates=5, progress=False),
    lambda: EncoderDecoder(mode="resimulation", inverse=SMALL, progress=False),
])
def test_solvers_recover_a_branch_of_the_square_root(make):
    fitted = make().fit(quadratic())
    assert relative_error(fitted.solve(quadratic(), TARGETS)).max() < 0.05


def _three_sample_surrogate(hermite: float, smooth: float):
    net = NetworkConfig(hidden=(32, 32), epochs=1500, batch_size=3, lr=3e-3)
    fitted = EncoderDecoder(mode="two-step", forward=net, inverse=NetworkConfig(hidden=(8,), epochs=1),
                            hermite_weight=hermite, hermite_epsilon=1.0, smoothness_weight=smooth,
                            smoothness_points=200, progress=False, seed=2).fit(quadratic_reduced())

    def surrogate(x):
        with torch.no_grad():
            return fitted.networks["surrogate"](fitted.scaler.x_in(x)) * fitted.scaler.y_std + fitted.scaler.y_mean

    return surrogate


def test_hermite_and_smoothness_terms_on_three_sample_surrogate():
    """With three forward samples the derivative term makes F_φ right near them (seed 000); the
    smoothness term penalises |∂F_φ|, so it lowers the surrogate's total variation.

    (Seed 000 also reports a better fit near zero with a small smoothness weight; over seeds 2-4
    here that effect changes sign, so it is not asserted.)"""
    x_near = torch.tensor([[-30.0], [-27.0], [27.0], [30.0]])
    x_all = torch.linspace(-33.0, 33.0, 200)[:, None]
    plain, hermite, smooth = (_three_sample_surrogate(*w) for w in ((0.0, 0.0), (1.0, 0.0), (1.0, 1e-2)))
    near = [(f(x_near) - x_near.pow(2)).abs().mean().item() for f in (plain, hermite)]
    assert near[1] < 0.7 * near[0]
    variation = [f(x_all).diff(dim=0).abs().sum().item() for f in (hermite, smooth)]
    assert variation[1] < 0.95 * variation[0]


def test_neural_adjoint_on_sine_wave_and_boundary():
    problem = sine_wave(grid_points=60)
    fitted = NeuralAdjoint(forward=NetworkConfig(hidden=(128, 128, 128), epochs=60, batch_size=128, lr=3e-3),
                           n_starts=50, search_steps=150, n_candidates=10, progress=False).fit(problem)
    generator = torch.Generator().manual_seed(1)
    targets = problem.forward(problem.sample_prior(30, generator))
    solutions = fitted.solve(problem, targets)
    curve = r_t_curve(solutions, targets)
    assert curve[9] < 2e-3
    assert np.all(np.diff(curve) <= 1e-12)  # r_T never increases with T
    low, high = problem.bounds
    assert torch.all(solutions.parameters >= low - 1e-3) and torch.all(solutions.parameters <= high + 1e-3)


def test_neural_adjoint_rankings_order_the_same_candidates():
    """'surrogate' (seed 001) keeps the surrogate's order; 'resimulated' puts the truly best first."""
    problem = sine_wave(grid_points=40)
    fitted = NeuralAdjoint(forward=NetworkConfig(hidden=(64, 64), epochs=30, batch_size=128, lr=3e-3),
                           n_starts=30, search_steps=60, n_candidates=8, ranking="surrogate",
                           progress=False).fit(problem)
    targets = problem.forward(problem.sample_prior(6, torch.Generator().manual_seed(3)))
    by_surrogate = fitted.solve(problem, targets)
    assert np.all(np.diff(by_surrogate.history["surrogate_loss"], axis=1) >= 0)
    assert "resorted" not in by_surrogate.config
    fitted.config = replace(fitted.config, ranking="resimulated")
    resimulated = fitted.solve(problem, targets)
    assert resimulated.config["resorted"] == 8
    torch.testing.assert_close(resimulated.misfit[:, 0], by_surrogate.misfit.min(dim=1).values)
    assert torch.all(resimulated.misfit.diff(dim=1) >= 0)
    for first, second in zip(by_surrogate.parameters, resimulated.parameters):  # the same 8 per target
        assert torch.cdist(first, second).min(dim=1).values.max() < 1e-6
    assert r_t_curve(resimulated, targets)[0] <= r_t_curve(by_surrogate, targets)[0]
    with pytest.raises(ConfigError, match="ranking must be one of"):
        NeuralAdjoint(ranking="best")


def test_ensemble_members_are_independent_networks():
    """Each member is exactly the fully connected network of its weight slices; forward is their mean."""
    torch.manual_seed(0)
    ensemble = EnsembleMLP(3, 2, (5, 4), members=4)
    inputs = torch.randn(6, 7, 3)
    members = ensemble.members(inputs)
    assert members.shape == (4, 6, 7, 2)
    for k in range(4):
        hidden = inputs
        for index, (weight, bias) in enumerate(zip(ensemble.weights, ensemble.biases)):
            hidden = hidden @ weight[k] + bias[k, 0]
            hidden = torch.relu(hidden) if index < 2 else hidden
        torch.testing.assert_close(members[k], hidden)
    torch.testing.assert_close(ensemble(inputs), members.mean(dim=0))
    assert not torch.allclose(members[0], members[1])  # different initial weights
    with pytest.raises(ConfigError, match="ensemble has >= 2 members"):
        EnsembleMLP(3, 2, (5,), members=1)


def test_neural_adjoint_ensemble_ranks_by_the_members_mean_misfit(tmp_path):
    """Candidates are ordered by the misfit averaged over members ((F̄ − y)² + variance); the
    ensemble's mean fits better than its average member; it saves and loads."""
    problem = sine_wave(grid_points=40)
    fitted = NeuralAdjoint(forward=NetworkConfig(hidden=(64, 64), epochs=30, batch_size=128, lr=3e-3),
                           ensemble=3, n_starts=30, search_steps=60, n_candidates=8, ranking="surrogate",
                           progress=False).fit(problem)
    generator = torch.Generator().manual_seed(3)
    targets = problem.forward(problem.sample_prior(6, generator))
    solutions = fitted.solve(problem, targets)
    surrogate, scaler = fitted.networks["surrogate"], fitted.scaler
    with torch.no_grad():
        members = surrogate.members(scaler.x_in(solutions.parameters.float()))
        expected = (members - scaler.y_in(targets.float())[:, None, :]).pow(2).mean(dim=(0, -1))
    np.testing.assert_allclose(solutions.history["surrogate_loss"], expected.numpy(), rtol=1e-4, atol=1e-9)
    assert np.all(np.diff(solutions.history["surrogate_loss"], axis=1) >= 0)
    x_test = problem.sample_prior(500, generator)
    with torch.no_grad():
        truth = scaler.y_in(problem.forward(x_test).float())
        each = (surrogate.members(scaler.x_in(x_test.float())) - truth).pow(2).mean(dim=(1, 2))
        mean_error = (surrogate(scaler.x_in(x_test.float())) - truth).pow(2).mean()
    assert mean_error < each.mean()
    fitted.save(tmp_path / "na.pt")
    loaded = NeuralAdjoint.load(tmp_path / "na.pt")
    torch.testing.assert_close(loaded.predict_data(x_test), fitted.predict_data(x_test))
    with pytest.raises(ConfigError, match="ensemble must be >= 1"):
        NeuralAdjoint(ensemble=0)
    with pytest.raises(ConfigError, match="ensemble must be <= 64"):
        NeuralAdjoint(ensemble=10**6)  # would allocate 10⁶ networks


def test_resorted_order_sorts_only_the_first_count():
    key = torch.tensor([[3.0, 1.0, 2.0, 0.5, 0.1]])
    assert resorted_order(key, 3).tolist() == [[1, 2, 0, 3, 4]]
    assert resorted_order(key, 0).tolist() == [[0, 1, 2, 3, 4]]
    assert resorted_order(key, 99).tolist() == [[4, 3, 1, 2, 0]]


def test_scaler_box_is_the_training_data_range():
    problem = robotic_arm()
    fitted = Tandem(forward=NetworkConfig(hidden=(8,), epochs=1), inverse=NetworkConfig(hidden=(8,), epochs=1),
                    n_train=500, progress=False).fit(problem)
    x, _ = problem.training_set(500, torch.Generator().manual_seed(0))
    torch.testing.assert_close(fitted.scaler.x_mean - fitted.scaler.x_range / 2, x.min(0).values.float())
    torch.testing.assert_close(fitted.scaler.x_mean + fitted.scaler.x_range / 2, x.max(0).values.float())


def test_boundary_loss_keeps_tandem_inside_the_box():
    problem = robotic_arm()
    net = NetworkConfig(hidden=(64, 64), epochs=20, batch_size=256, lr=3e-3)
    targets = problem.forward(problem.sample_prior(200, torch.Generator().manual_seed(0)))
    excess = []
    for weight in (0.0, 10.0):
        fitted = Tandem(forward=net, inverse=net, n_train=3000, boundary_weight=weight, progress=False).fit(problem)
        estimate = fitted.solve(problem, targets).best
        # the box is the training data's [min, max] (seed 001's μ_x ± R_x/2)
        low = fitted.scaler.x_mean - fitted.scaler.x_range / 2
        high = fitted.scaler.x_mean + fitted.scaler.x_range / 2
        excess.append((torch.relu(low - estimate) + torch.relu(estimate - high)).sum(dim=1).mean().item())
    assert excess[1] < 0.2 * excess[0]
    assert excess[1] < 0.01 * problem.prior_range.min()


def test_tasks_registry_and_definitions():
    assert {"quadratic", "ballistics", "sine-wave", "robotic-arm", "latent-tomography"} <= set(TASKS.names())
    arm = robotic_arm()
    end = arm.forward(torch.tensor([[0.3, 0.0, 0.0, 0.0], [0.0, np.pi / 2, 0.0, 0.0]]))
    torch.testing.assert_close(end, torch.tensor([[2.0, 0.3], [0.0, 2.0]]), atol=1e-6, rtol=0)
    ballistics = task("ballistics")
    # with negligible speed the ball drops straight down: it lands where it started
    landing = ballistics.forward(torch.tensor([[0.7, 1.5, 0.5, 1e-6]]))
    assert landing.item() == pytest.approx(0.7, abs=1e-5)
    samples = ballistics.sample_prior(2000, torch.Generator().manual_seed(0))
    assert samples[:, 3].mean().item() == pytest.approx(15.0, abs=0.5)
    assert np.radians(9) <= samples[:, 2].min() and samples[:, 2].max() <= np.radians(72)


def test_unfitted_and_bad_configs():
    with pytest.raises(ConfigError, match="fit"):
        NeuralAdjoint().solve(sine_wave(10), torch.zeros(1, 1))
    with pytest.raises(ConfigError, match="mode"):
        EncoderDecoder(mode="sideways")
    with pytest.raises(ConfigError, match="norm"):
        InverseMisfit(norm="l3")
