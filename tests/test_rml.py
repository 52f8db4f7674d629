"""Randomized maximum likelihood: exact on a linear-Gaussian posterior; refill keeps accepted basins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoinv import ConfigError, InverseProblem
from geoinv.solvers import Refill, RefillConfig, Solver, rml_samples
from geoinv.solvers.base import Search

from .conftest import TINY_TRUTH
from .test_sampling import latent_problem


class AsGiven(Solver):
    """A solver whose candidates are its starts (stands for a search that found some basins and missed others)."""

    name = "as-given"
    config_class = RefillConfig

    def search(self, problem, target, starts, generator, n_candidates):
        return Search(starts)


def linear_gaussian(n_data: int = 40, seed: int = 0):
    """F(z) = A z, z ~ N(0, I), σ = 0.5: the posterior N(C Aᵀd/σ², C), C = (I + AᵀA/σ²)⁻¹."""
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(n_data, 3, generator=generator) / 8  # data and prior weigh alike in the posterior
    sigma = 0.5
    observed = matrix @ torch.randn(3, generator=generator) + sigma * torch.randn(n_data, generator=generator)
    problem = latent_problem(lambda z: z @ matrix.T, 3, observed, sigma)
    # the closed-form Jacobian (autograd's, per point, is tested elsewhere and slow for thousands of points)
    problem.jacobian = lambda points: matrix.double().expand(len(points), -1, -1)  # type: ignore[method-assign]
    covariance = torch.linalg.inv(torch.eye(3) + matrix.T @ matrix / sigma**2)
    return problem, covariance @ matrix.T @ observed / sigma**2, covariance


def test_rml_samples_are_posterior_samples_on_a_linear_gaussian_problem():
    problem, mean, covariance = linear_gaussian()
    n = 8000
    starts = torch.zeros(n, 3)  # away from the posterior mean: the iterations get there
    samples = rml_samples(problem, problem.targets(), starts, torch.Generator().manual_seed(1),
                          RefillConfig(iterations=5, min_decrease=0.0)).double()
    standard_error = covariance.diagonal().sqrt() / n**0.5
    assert ((samples.mean(dim=0) - mean).abs() < 4 * standard_error).all()
    # each entry of the sample covariance within ~4 standard errors (√(2/n) ≈ 0.016 relative on the diagonal);
    # leaving out the prior's perturbation would shrink it by ~25 %, the data's by ~75 %
    torch.testing.assert_close(torch.cov(samples.T), covariance.double(),
                               atol=0.06 * float(covariance.diagonal().max()), rtol=0)


def test_rml_refuses_a_problem_without_noise():
    problem = InverseProblem(lambda z: z, 2, 2, lambda n, generator=None: torch.zeros(n, 2), observed=[0.0, 0.0])
    with pytest.raises(ConfigError, match="noise_std"):
        rml_samples(problem, problem.targets(), torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="noise_std"):
        Refill(AsGiven()).solve(problem, initial=torch.zeros(2, 2))


def test_refill_replaces_unaccepted_candidates_from_the_accepted_basin(tiny_latent_problem):
    problem = tiny_latent_problem
    wrong = torch.tensor([[-1.5, 1.5, -1.0], [1.5, 1.5, 1.5], [-2.0, -2.0, 0.0]])
    starts = torch.cat([TINY_TRUTH, wrong])
    alone = AsGiven().solve(problem, initial=starts)
    assert alone.accepted[0].tolist() == [True, False, False, False]  # the truth fits; the wrong points do not
    solutions = Refill(AsGiven(), seed=3).solve(problem, initial=starts)
    assert solutions.accepted.all()
    refilled = solutions.history["refilled"]
    assert refilled.shape == (1, 4) and refilled.sum() == 3
    kept = solutions.parameters[0][~torch.as_tensor(refilled[0])]
    torch.testing.assert_close(kept, TINY_TRUTH)  # accepted candidates are returned as they were
    new = solutions.parameters[0][torch.as_tensor(refilled[0])]
    distances = (new - TINY_TRUTH).norm(dim=1)
    assert (distances > 1e-3).all() and (distances < 0.5).all()  # spread around the accepted basin, not copies
    assert torch.pdist(new).min() > 1e-3
    assert solutions.config["solver"] == "refill" and solutions.config["search"]["solver"] == "as-given"
    assert "accepted (≤ 1.1 σ) 4/4 (3 by RML refill)" in solutions.summary()
    # the same seed, the same candidates
    again = Refill(AsGiven(), seed=3).solve(problem, initial=starts)
    torch.testing.assert_close(again.parameters, solutions.parameters)


def test_refill_leaves_a_data_set_without_accepted_candidates_as_the_search_left_it(tiny_latent_problem):
    problem = tiny_latent_problem
    wrong = torch.tensor([[-1.5, 1.5, -1.0], [1.5, 1.5, 1.5]])
    searched = AsGiven().solve(problem, initial=wrong)
    solutions = Refill(AsGiven()).solve(problem, initial=wrong)
    assert not solutions.accepted.any() and not np.asarray(solutions.history["refilled"]).any()
    torch.testing.assert_close(solutions.parameters, searched.parameters)


def test_refill_refuses_what_it_cannot_refill():
    from geoinv.solvers.pygimli_smooth import PyGimliSmooth

    with pytest.raises(ConfigError, match="returns models"):
        Refill(PyGimliSmooth())
    with pytest.raises(ConfigError, match="Solver"):
        Refill(object())
    with pytest.raises(ConfigError, match="iterations"):
        RefillConfig(iterations=0)
    with pytest.raises(ConfigError, match="min_decrease"):
        RefillConfig(min_decrease=-1.0)


class Scripted(Solver):
    """A search that returns, call after call, the candidates it was given (a first search that misses the
    basin and a second that finds it)."""

    name = "scripted"
    config_class = RefillConfig
    takes_starts = False

    def __init__(self, rounds) -> None:
        super().__init__()
        self.rounds, self.calls = list(rounds), 0

    def search(self, problem, target, starts, generator, n_candidates):
        candidates = self.rounds[self.calls]
        self.calls += 1
        return Search(candidates[None].expand(target.shape[0], -1, -1).clone())


def test_refill_searches_again_where_no_candidate_was_accepted(tiny_latent_problem):
    problem = tiny_latent_problem
    miss = torch.tensor([[-1.5, 1.5, -1.0], [1.5, 1.5, 1.5]])
    hit = torch.cat([torch.tensor([[-2.0, -2.0, 0.0]]), TINY_TRUTH])
    once = Refill(Scripted([miss, hit]), rounds=1).solve(problem)
    assert not once.accepted.any() and once.history["search_rounds"].tolist() == [1]
    search = Scripted([miss, hit])
    twice = Refill(search, rounds=3).solve(problem)
    assert search.calls == 2  # the second round found the basin: no third
    assert twice.accepted.all() and twice.history["search_rounds"].tolist() == [2]
    first, second = twice.history["round_best_misfit"][0]  # each round's own best: the miss, then the hit
    assert first == pytest.approx(once.normalised_misfit.min().item()) and second <= 1.0 < first
    assert twice.history["refilled"].sum() == 1  # the best miss of both rounds, replaced from the truth
    assert (twice.parameters[0] - TINY_TRUTH).norm(dim=1).min() < 1e-6
    with pytest.raises(ConfigError, match="rounds"):
        RefillConfig(rounds=0)


def test_refill_stops_searching_again_once_a_round_reproduces_the_best_fit(tiny_latent_problem):
    problem = tiny_latent_problem
    miss = torch.tensor([[-1.5, 1.5, -1.0], [1.5, 1.5, 1.5]])
    closer = torch.tensor([[-1.5, 1.5, -1.0], [0.8, -0.5, 1.3]])  # one coordinate off the truth
    hit = torch.cat([torch.tensor([[-2.0, -2.0, 0.0]]), TINY_TRUTH])
    misfits = [Refill(Scripted([c]), rounds=1).solve(problem).normalised_misfit.min().item() for c in (miss, closer)]
    assert misfits[1] < 0.95 * misfits[0]  # the scripted rounds are what the test says they are
    # the second round reaches the first's fit again: a third search is not worth its cost
    search = Scripted([miss, miss, hit])
    stopped = Refill(search, rounds=3, min_round_gain=0.05).solve(problem)
    assert search.calls == 2 and stopped.history["search_rounds"].tolist() == [2] and not stopped.accepted.any()
    # a second round that improves by more than 5 % earns the third, which finds the basin
    search = Scripted([miss, closer, hit])
    found = Refill(search, rounds=3, min_round_gain=0.05).solve(problem)
    assert search.calls == 3 and found.history["search_rounds"].tolist() == [3] and found.accepted.all()
    # without the rule every round is searched
    search = Scripted([miss, miss, hit])
    assert Refill(search, rounds=3).solve(problem).accepted.all() and search.calls == 3
    with pytest.raises(ConfigError, match="min_round_gain"):
        RefillConfig(min_round_gain=1.0)


def test_gauss_newton_refuses_a_shift_of_the_wrong_shape():
    from geoinv.solvers.gauss_newton_step import GaussNewtonStep

    problem, _, _ = linear_gaussian()
    with pytest.raises(ConfigError, match="shift must be"):
        GaussNewtonStep(problem, problem.targets().expand(4, -1), shift=torch.zeros(4, 2))
