"""geoinv inside pyGIMLi: GeoinvModelling in pg.Inversion, LatentModelling, latent Gauss-Newton, results on meshes."""

import matplotlib
import numpy as np
import pygimli as pg
import pytest
import torch

import geoinv
from geoinv import FaciesVelocity, Grid2D, InverseProblem, Survey
from geoinv.interop import GeoinvModelling, LatentModelling, quiet_pygimli, solutions_to_mesh
from geoinv.io.pygimli import grid_to_mesh, model_from_mesh, model_to_mesh, survey_to_data_container

from .helpers import TinyDecoder

matplotlib.use("Agg")

V0 = 0.07e9


@pytest.fixture(scope="module")
def anomaly_case():
    """A slow Gaussian anomaly (−12 % velocity) between two boreholes, eikonal data with 0.5 ns noise."""
    grid = Grid2D((24, 14), 0.5)
    survey = Survey.crosshole(0.0, 7.0, np.arange(1, 12) * 1.0)
    centres = grid.cell_centers()
    velocity = V0 * (1 - 0.12 * np.exp(-((centres[:, 0] - 3.5) ** 2 + (centres[:, 1] - 6) ** 2) / (2 * 1.5 ** 2)))
    truth = (1 / velocity).reshape(grid.shape)
    operator = geoinv.forward("eikonal", grid=grid, survey=survey)
    data = operator.make_synthetic_data(truth, 0.5e-9, torch.Generator().manual_seed(0))
    container = survey_to_data_container(data)
    mesh = grid_to_mesh(grid)
    with quiet_pygimli():
        manager = pg.physics.traveltime.TravelTimeManager(secNodes=3)
        velocity = manager.invert(container, mesh=mesh, useGradient=False, lam=5000, zWeight=1, maxIter=10,
                                  verbose=False)
        reference = model_from_mesh(np.asarray(velocity), grid, manager.paraDomain)
    return {"grid": grid, "truth": truth, "container": container, "mesh": mesh, "pygimli": reference}


def _relative_velocity_rms(slowness, truth):
    return float(np.sqrt(np.mean((1 / slowness - 1 / truth) ** 2)) / V0)


@pytest.mark.parametrize("forward", ["straight-ray", "eikonal"])
def test_pg_inversion_drives_geoinv_forwards_and_agrees_with_the_travel_time_manager(anomaly_case, forward):
    """pg.Inversion, unchanged, with a geoinv forward: the anomaly is recovered (velocity error under half
    that of the homogeneous start) and the result is within 1 % RMS of pyGIMLi's own TravelTimeManager
    (Dijkstra, same mesh, data, lam, zWeight); measured 0.4–0.6 %."""
    case = anomaly_case
    container = case["container"]
    with quiet_pygimli():
        modelling = GeoinvModelling(forward, mesh=case["mesh"], data=container)
        inversion = pg.Inversion(fop=modelling)
        inversion.dataTrans = pg.trans.Trans()
        model = inversion.run(np.asarray(container["t"]), np.asarray(container["err"]) / np.asarray(container["t"]),
                              lam=5000, zWeight=1, maxIter=10, verbose=False)
    slowness = modelling.slowness(model)
    start = _relative_velocity_rms(np.full(case["grid"].shape, 1 / V0), case["truth"])
    assert _relative_velocity_rms(slowness, case["truth"]) < 0.5 * start
    assert inversion.chi2() < 1.5
    agreement = float(np.sqrt(np.mean((1 / slowness - case["pygimli"]) ** 2)) / V0)
    assert agreement < 0.01


def test_geoinv_modelling_jacobian_is_the_operators_kernel_in_mesh_order(anomaly_case):
    """Straight rays are linear: J·s = t must hold with J as pyGIMLi holds it (columns in its cell order),
    and J has a column for every cell even where no ray goes (pyGIMLi infers the shape from the largest
    index: the top row, last in its order, was dropped, and its solver read past the model: random NaN)."""
    case = anomaly_case
    with quiet_pygimli():
        modelling = GeoinvModelling("straight-ray", mesh=case["mesh"], data=case["container"])
        model = pg.Vector(model_to_mesh(case["truth"], case["grid"]))
        modelling.createJacobian(model)
        assert (modelling.jacobian().rows(), modelling.jacobian().cols()) == (121, case["grid"].n_cells)
        predicted = np.asarray(modelling.jacobian().mult(model))
    np.testing.assert_allclose(predicted, modelling.response(model), rtol=1e-10)
    start = modelling.createStartModel(np.asarray(case["container"]["t"]))
    assert 1 / 0.075e9 < start[0] < 1 / 0.065e9  # homogeneous slowness from time / distance


@pytest.fixture(scope="module")
def tiny_latent():
    grid = Grid2D((12, 8), 0.5)
    survey = Survey.crosshole(0.0, 4.0, np.array([0.5, 1.5, 3.0, 4.5, 5.5]))
    prior = TinyDecoder(grid.shape)
    operator = geoinv.forward("eikonal", grid=grid, survey=survey)
    truth = torch.tensor([[0.8, -1.2, 0.5]])
    problem = InverseProblem.latent_tomography(prior, FaciesVelocity(), operator, noise_std=0.2)
    clean = problem.forward(truth)[0]
    observed = clean + 0.2 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))
    return problem.with_observed(observed), truth, prior


def test_latent_jacobian_by_forward_mode_equals_reverse_mode(tiny_latent):
    """The chained Jacobian (sparse kernel × decoder's forward-mode Jacobian) against n_data backward passes."""
    problem, truth, _ = tiny_latent
    chained = problem.jacobian(truth)[0]
    reverse = torch.autograd.functional.jacobian(lambda z: problem.forward(z[None])[0], truth[0])
    torch.testing.assert_close(chained, reverse.double(), rtol=1e-4, atol=1e-4 * float(reverse.abs().max()))


def test_latent_modelling_response_and_jacobian(tiny_latent):
    problem, truth, _ = tiny_latent
    with quiet_pygimli():
        modelling = LatentModelling(problem)
        response = modelling.response(truth[0].numpy())  # standard-normal prior: u is z
        modelling.createJacobian(truth[0].numpy())
        jacobian = np.array([np.asarray(modelling.jacobian().row(i)) for i in range(problem.n_data)])
    np.testing.assert_allclose(response, problem.forward(truth)[0].numpy(), rtol=1e-6)
    expected = problem.jacobian(truth)[0].numpy()  # float32 decoder: agreement to its precision
    np.testing.assert_allclose(jacobian, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    torch.testing.assert_close(modelling.decode(truth[0].numpy()), problem.model(truth)[0])


@pytest.mark.parametrize("engine", ["geoinv", "pygimli"])
def test_latent_gauss_newton_recovers_a_known_truth(tiny_latent, engine):
    problem, truth, prior = tiny_latent
    solutions = geoinv.solver("latent-gauss-newton", n_starts=4, max_iterations=10, engine=engine).solve(problem)
    assert solutions.accepted[0].sum() >= 2
    best = solutions.models[0, 0]
    assert float((best - prior.decode(truth)[0]).pow(2).mean().sqrt()) < 0.03
    torch.testing.assert_close(solutions.parameters[0, 0], truth[0], atol=0.15, rtol=0)
    assert solutions.history["jacobians"].max() <= 10


@pytest.mark.parametrize("engine", ["geoinv", "pygimli"])
def test_latent_gauss_newton_polishes_given_starts(tiny_latent, engine):
    """From explicit starts (e.g. another solver's candidates) GN keeps their number and lowers their misfit."""
    problem, truth, _ = tiny_latent
    starts = truth + 0.3 * torch.randn(3, truth.shape[1], generator=torch.Generator().manual_seed(5))
    _, before = problem.misfits(problem.forward(starts), problem.observed)
    solutions = geoinv.solver("latent-gauss-newton", max_iterations=5, engine=engine).solve(problem, initial=starts)
    assert solutions.n_candidates == 3
    assert float(solutions.normalised_misfit[0].max()) < float(before.min())
    with pytest.raises(geoinv.ConfigError, match="initial must have shape"):
        geoinv.solver("latent-gauss-newton").solve(problem, initial=torch.zeros(2, truth.shape[1] + 1))


def test_latent_gauss_newton_needs_a_noise_level(tiny_latent):
    problem, _, _ = tiny_latent
    quiet = InverseProblem.latent_tomography(TinyDecoder((12, 8)), FaciesVelocity(), problem.operator,
                                             observed=problem.observed)
    with pytest.raises(geoinv.ConfigError, match="noise"):
        geoinv.solver("latent-gauss-newton").solve(quiet)
    with pytest.raises(geoinv.ConfigError, match="engine must be one of"):
        geoinv.solver("latent-gauss-newton", engine="scipy")


def test_both_gauss_newton_engines_reach_the_same_optimum_from_near_starts(tiny_latent):
    """geoinv's batched engine and pyGIMLi's inversion minimise the same objective with the same stopping
    rules: from starts in the truth's basin they reach the same points (their damping and line searches
    differ, so from far starts they may not)."""
    problem, truth, _ = tiny_latent
    starts = truth + 0.5 * torch.randn(4, truth.shape[1], generator=torch.Generator().manual_seed(11))
    ends = {engine: geoinv.solver("latent-gauss-newton", max_iterations=20, min_dphi=0.01, engine=engine)
            .solve(problem, initial=starts) for engine in ("geoinv", "pygimli")}
    for engine, solutions in ends.items():
        assert float(solutions.normalised_misfit[0].max()) < 1.1, engine
        for trace in solutions.history["chi2"][:, 0].T:  # per start, until it stopped
            finite = trace[np.isfinite(trace)]
            assert len(finite) >= 2 and finite[-1] < finite[0], engine
    first, second = (ends[engine].parameters[0] for engine in ("geoinv", "pygimli"))
    assert torch.cdist(first, second).min(dim=1).values.max() < 0.1


def test_smooth_baseline_through_invert_is_not_refined_and_lands_on_the_mesh(tiny_latent, tmp_path):
    problem, _, prior = tiny_latent
    operator = problem.operator
    times = problem.observed.double().numpy() * 1e-9
    survey = operator.survey.with_data(times, 0.2e-9)
    solutions = geoinv.invert(survey, prior, operator, "pygimli-smooth", refine="default")
    assert solutions.refined is None and solutions.n_candidates == 1
    assert solutions.models.min() >= 0 and solutions.models.max() <= 1
    assert np.isfinite(solutions.history["pygimli_chi2"]).any()
    vectors = solutions_to_mesh(solutions, operator.grid)
    assert set(vectors) == {"best", "mean", "std", "channel_probability"}
    np.testing.assert_allclose(vectors["best"], model_to_mesh(solutions.models[0, 0], operator.grid))
    axes, _ = pg.show(grid_to_mesh(operator.grid), vectors["best"])  # ready for pg.show
    axes.figure.savefig(tmp_path / "best.png")
    assert (tmp_path / "best.png").stat().st_size > 1000
