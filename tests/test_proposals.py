"""Amortized proposals: cached training pairs, the data → latent network, and proposals that seed a finish."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from geoinv import ConfigError, Eikonal, FaciesVelocity, LatentSGD, LatentSGDConfig, StraightRay, Survey, build_problem
from geoinv.solvers import Stage
from geoinv.solvers.proposals import ProposalConfig, ProposalNetwork, Proposals, problem_key, simulate_pairs

from .conftest import TINY_TRUTH
from .helpers import TinyDecoder


def test_pairs_are_cached_per_problem_and_resume(tiny_latent_problem, tmp_path):
    problem = tiny_latent_problem
    parameters, data = simulate_pairs(problem, 40, tmp_path, chunk=16)
    assert parameters.shape == (48, 3) and data.shape == (48, problem.n_data)
    with torch.no_grad():
        torch.testing.assert_close(data, problem.forward(parameters).float())
    folder = tmp_path / problem_key(problem)
    chunks = sorted(folder.glob("*.npz"))
    assert len(chunks) == 3
    stamps = [path.stat().st_mtime_ns for path in chunks]
    chunks[1].unlink()  # an interrupted simulation: only the missing chunk is simulated again
    again, _ = simulate_pairs(problem, 40, tmp_path, chunk=16)
    torch.testing.assert_close(again, parameters)
    assert [chunks[0].stat().st_mtime_ns, chunks[2].stat().st_mtime_ns] == [stamps[0], stamps[2]]
    # two processes, one part each, fill the same cache with the same pairs
    half, _ = simulate_pairs(problem, 40, tmp_path / "parts", chunk=16, part=(0, 2))
    assert half.numel() == 0
    both, _ = simulate_pairs(problem, 40, tmp_path / "parts", chunk=16, part=(1, 2))
    torch.testing.assert_close(both, parameters)


def test_processes_filling_one_cache_share_its_chunks(tiny_latent_problem, tmp_path):
    """A chunk whose lock another process holds is left to it (the pairs come back once it is written),
    and a chunk whose holder stopped without writing it is simulated here."""
    import threading

    from filelock import FileLock

    problem = tiny_latent_problem
    reference, _ = simulate_pairs(problem, 48, tmp_path / "reference", chunk=16)
    folder = tmp_path / "shared" / problem_key(problem)
    folder.mkdir(parents=True)
    chunk_paths = [folder / f"chunk_0_16_{k:05d}.npz" for k in range(3)]
    taken, seen = threading.Event(), {}

    def other_process(k: int, write: bool) -> None:
        with FileLock(str(chunk_paths[k]) + ".lock"):
            taken.set()
            time.sleep(1.0)  # while simulate_pairs does the chunks nobody holds
            seen[k] = [path.exists() for path in chunk_paths]
            if write:  # marked pairs, to tell whose chunk came back
                stored = np.load(tmp_path / "reference" / problem_key(problem) / chunk_paths[k].name)
                with open(chunk_paths[k], "wb") as handle:
                    np.savez(handle, parameters=stored["parameters"] + 100.0, data=stored["data"])

    for k, write in ((1, True), (2, False)):
        taken.clear()
        worker = threading.Thread(target=other_process, args=(k, write))
        worker.start()
        taken.wait()
        parameters, _ = simulate_pairs(problem, 48, tmp_path / "shared", chunk=16)
        worker.join()
        assert seen[k] == [j != k for j in range(3)]  # the free chunks first; the held one left to its holder
        if k == 1:
            torch.testing.assert_close(parameters[16:32], reference[16:32] + 100.0)  # the holder's chunk
            chunk_paths[2].unlink()  # next: a holder that stops without writing its chunk
        else:
            torch.testing.assert_close(parameters[32:], reference[32:])  # simulated here after the wait


def test_the_cache_key_follows_what_the_pairs_depend_on(tiny_latent_problem, small_grid):
    problem = tiny_latent_problem
    survey = problem.operator.survey.with_data(np.full(problem.n_data, 5e-8))
    moved = Survey(np.asarray(survey.sources) + np.array([0.0, -0.25]), survey.receivers, survey.pairs,
                   np.full(problem.n_data, 5e-8))
    other_geometry = build_problem(moved, problem.prior, StraightRay(small_grid, moved), FaciesVelocity(),
                                   noise_std=0.05e-9)
    other_prior = build_problem(survey, TinyDecoder(small_grid.shape, seed=1), problem.operator, FaciesVelocity(),
                                noise_std=0.05e-9)
    other_velocities = build_problem(survey, problem.prior, problem.operator,
                                     FaciesVelocity(0.05e9, 0.09e9), noise_std=0.05e-9)
    same = build_problem(survey.with_data(np.full(survey.n_data, 4e-8)), problem.prior, problem.operator,
                         FaciesVelocity(), noise_std=0.1e-9)
    key = problem_key(problem)
    assert key == problem_key(same)  # observed data and noise do not enter
    assert len({key, problem_key(other_geometry), problem_key(other_prior), problem_key(other_velocities)}) == 4


def test_proposals_seed_a_gauss_newton_finish_at_the_truth(tiny_latent_problem, tmp_path):
    problem = tiny_latent_problem
    parameters, data = simulate_pairs(problem, 2048, tmp_path, chunk=512)
    network = ProposalNetwork(problem.n_data, 3, ProposalConfig(hidden=(64, 64), epochs=25, members=2))
    network.fit(parameters, data, problem.noise_std.mean())
    means, stds = network.predict(problem.targets())
    assert means.shape == stds.shape == (2, 1, 3)
    assert float((means[:, 0] - TINY_TRUTH).norm(dim=1).max()) < 0.5  # near the truth before any search
    finish = LatentSGD(LatentSGDConfig(progress=False).with_stages([Stage.gauss_newton(10)]))
    solutions = Proposals(finish, network, n_starts=4).solve(problem)
    assert solutions.accepted.all() and solutions.config["solver"] == "latent-sgd"
    network.save(tmp_path / "proposals.pt", metadata={"key": problem_key(problem)})
    loaded = ProposalNetwork.load(tmp_path / "proposals.pt")
    torch.testing.assert_close(loaded.predict(problem.targets())[0], means)
    assert loaded.metadata["key"] == problem_key(problem)


def test_proposals_are_validated(tiny_latent_problem):
    network = ProposalNetwork(tiny_latent_problem.n_data, 3)
    with pytest.raises(ConfigError, match="starts from points"):
        Proposals("latent-sgd", network)
    with pytest.raises(ConfigError, match="initial"):
        Proposals(LatentSGD(), network).solve(tiny_latent_problem, initial=torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="part"):
        simulate_pairs(tiny_latent_problem, 10, "unused", part=(2, 2))


def test_fit_builds_the_network_once_and_invert_reports_its_cost(tiny_latent_problem, tmp_path):
    """A Proposals solver without a network builds it on fit (simulated pairs, training) and caches it;
    the next fit loads it; geoinv.invert fits it first and reports the one-off cost in the config."""
    problem = tiny_latent_problem
    finish = LatentSGD(LatentSGDConfig(progress=False).with_stages([Stage.gauss_newton(10)]))
    settings = {"n_starts": 3, "n_pairs": 512, "network_config": ProposalConfig(hidden=(32,), epochs=5),
                "cache": str(tmp_path)}
    built = Proposals(finish, **settings).fit(problem)
    assert not built.network_info["cached"] and built.network_info["pairs"] == 512
    again = Proposals(finish, **settings).fit(problem)
    assert again.network_info["cached"]
    torch.testing.assert_close(again.network.predict(problem.targets())[0],
                               built.network.predict(problem.targets())[0])
    import geoinv

    field = problem.operator.survey.with_data(problem.targets()[0].double().numpy() * 1e-9,
                                              problem.noise_std.double().numpy() * 1e-9)
    solutions = geoinv.invert(field, problem.prior, problem.operator, Proposals(finish, **settings), refine=None)
    assert solutions.config["proposals"]["network"]["cached"] and solutions.n_candidates == 3
    # wrapped as the nonlinear default wraps them (RML refill): fitted through the wrapper, cost still reported
    from geoinv.solvers import Refill

    refilled = geoinv.invert(field, problem.prior, problem.operator, Refill(Proposals(finish, **settings)),
                             refine=None)
    assert refilled.config["proposals"]["network"]["cached"] and refilled.config["solver"] == "refill"
    assert refilled.n_candidates == 3 and "refilled" in refilled.history


def test_two_processes_wanting_one_network_train_it_once(tiny_latent_problem, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from geoinv.solvers.proposals import proposal_network

    def build(_: int) -> dict:
        return proposal_network(tiny_latent_problem, 128, ProposalConfig(hidden=(16,), epochs=2, members=1),
                                cache=tmp_path, chunk=16)[1]

    with ThreadPoolExecutor(2) as pool:
        costs = list(pool.map(build, range(2)))
    assert sorted(cost["cached"] for cost in costs) == [False, True]  # one trained, the other loaded it


def test_screening_keeps_the_proposals_with_the_lowest_misfit(tiny_latent_problem):
    from geoinv.solvers.proposals import _screened

    problem = tiny_latent_problem
    target = problem.targets()
    proposals = problem.sample_prior(12, torch.Generator().manual_seed(0))[None]
    kept = _screened(problem, target, proposals, 4)
    with torch.no_grad():
        misfit = problem.misfits(problem.forward(proposals[0]), target[0])[0]
    assert kept.shape == (1, 4, 3)
    torch.testing.assert_close(kept[0], proposals[0][misfit.argsort()[:4]])
    with pytest.raises(ConfigError, match="screen"):
        Proposals(LatentSGD(), ProposalNetwork(problem.n_data, 3), screen=0)


def test_eikonal_workers_do_not_enter_the_cache_key(tiny_latent_problem, small_grid):
    survey = tiny_latent_problem.operator.survey.with_data(np.full(tiny_latent_problem.n_data, 5e-8))
    keys = {problem_key(build_problem(survey, tiny_latent_problem.prior, Eikonal(small_grid, survey, workers=workers),
                                      FaciesVelocity(), noise_std=0.05e-9)) for workers in (1, 2)}
    assert len(keys) == 1  # same pairs, solved in one process or two
