"""Field surveys: pick files in columns, the prior's canvas, and facies velocities and time zero as unknowns."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

import geoinv
from geoinv import (
    ConfigError,
    FaciesVelocity,
    FieldUnknowns,
    Grid2D,
    StraightRay,
    Survey,
    SurveyError,
    build_problem,
    invert,
    read_column_survey,
    read_survey,
    start_velocities,
    write_column_survey,
)
from geoinv.canvas import describe_placement, place_on_canvas
from geoinv.cli import main
from geoinv.errors import FileFormatError
from geoinv.io.pygimli import write_pygimli_survey

from .helpers import TinyDecoder


def _picks(survey: Survey, velocity: float = 0.07e9, shift: float = 0.0) -> Survey:
    return survey.with_data(survey.distances / velocity + shift, 0.8e-9)


# -- column files ---------------------------------------------------------------------------------------
def test_column_files_round_trip_and_deduplicate_sensors(tmp_path):
    survey = _picks(Survey.crosshole())
    for name in ("picks.txt", "picks.csv"):
        path = write_column_survey(tmp_path / name, survey)
        back = read_column_survey(path)
        assert back.n_data == 625 and len(back.sources) == 25 and len(back.receivers) == 25
        np.testing.assert_array_equal(back.pairs, survey.pairs)
        np.testing.assert_allclose(back.traveltimes, survey.traveltimes, rtol=1e-8)
        np.testing.assert_allclose(back.errors, survey.errors, rtol=1e-8)
    # a header with aliases and an extra column; times in s
    rows = [f"{sx} {sz} {rx} {rz} 17 {t} {e}" for (sx, sz), (rx, rz), t, e in
            zip(survey.source_positions, survey.receiver_positions, survey.traveltimes, survey.errors, strict=True)]
    (tmp_path / "named.txt").write_text("# picked by hand\nsource_x source_z receiver_x receiver_z trace time "
                                        "sigma\n" + "\n".join(rows) + "\n")
    with pytest.raises(FileFormatError, match="unknown column 'trace'"):
        read_column_survey(tmp_path / "named.txt", time_unit="s")
    named = read_column_survey(tmp_path / "named.txt", "sx,sz,rx,rz,-,t,err", time_unit="s")
    np.testing.assert_allclose(named.traveltimes, survey.traveltimes)
    # read_survey dispatches by suffix and refuses column options for other formats
    assert read_survey(tmp_path / "picks.txt")[1] is None
    with pytest.raises(FileFormatError, match="columns"):
        read_survey(tmp_path / "x.sgt", time_unit="ns")


@pytest.mark.parametrize("text, error, match", [
    ("sx sz rx rz t err\n0 1 5 1 70 0.8\n0 1 5 2\n", FileFormatError, "line 3 has 4 columns, expected 6"),
    ("0 1 5 1 70 0.8\n0 1 5 2 x 0.8\n", FileFormatError, "line 2 holds 'x'"),
    ("0 1 5 1 70\n0 1 5 2 71\n", SurveyError, "no 'err' column"),
    ("sx sz rx t err\n0 1 5 70 0.8\n", FileFormatError, r"lacks \['rz'\]"),
    ("0 1 5 1 70 0.8\n0 1 5 2 71 0.8\n0 1 5 1 72 0.8\n", SurveyError, "lines 1, 3 pick the same"),
    ("0 1 5 1 70 0.8\n0 1 5 2 nan 0.8\n", SurveyError, "line 2 holds NaN"),
    ("0 1 5 1 -7 0.8\n0 1 5 2 71 0.8\n", SurveyError, "line 1 has a negative time"),
    ("0 1 5 1 70e-9 0.8e-9\n0 1 5 2 71e-9 0.8e-9\n", SurveyError, "time_unit"),  # s written, ns read
    ("0 1 5 1 70 0\n0 1 5 2 71 0.8\n", SurveyError, "errors must be > 0"),
    ("0 1 5 1 70 0.8 3 4\n", FileFormatError, "8 columns and the file has no header"),
    ("# nothing\n\n", FileFormatError, "no picks"),
])
def test_column_files_refuse_bad_input_by_line(tmp_path, text, error, match):
    path = tmp_path / "picks.txt"
    path.write_text(text)
    with pytest.raises(error, match=match):
        read_column_survey(path)


def test_survey_info_reads_every_format(tmp_path, capsys):
    survey = _picks(Survey.crosshole())
    write_column_survey(tmp_path / "picks.csv", survey)
    geoinv.write_survey(tmp_path / "picks.sgt", survey)
    for name in ("picks.csv", "picks.sgt"):
        assert main(["survey-info", str(tmp_path / name)]) == 0
        out = capsys.readouterr().out
        assert "25 sources, 25 receivers, 625 picks" in out and "apparent velocities 0.07-0.07 m/ns" in out
        assert "on the shipped prior's canvas: 65 × 129 cells of 0.1 m: x 0 to 6.5 m" in out


# -- the prior's canvas -----------------------------------------------------------------------------------
def test_surveys_are_placed_on_the_prior_canvas():
    assert place_on_canvas(Survey.crosshole(), (129, 65)) == Grid2D.crosshole()
    depths = np.arange(1.0, 12.01, 0.25)
    field = Survey(np.c_[np.full(depths.size, 10.0), depths], np.c_[np.full(depths.size, 15.0), depths])
    canvas = place_on_canvas(field, (129, 65))
    assert canvas.shape == (129, 65) and canvas.contains(field.sources).all()
    margins = (field.sources[0, 0] - canvas.x_edges[0], canvas.x_edges[-1] - field.receivers[0, 0])
    assert abs(margins[0] - margins[1]) <= 0.1 + 1e-9  # centred, to a whole cell
    assert "x 9.2 to 15.7 m" in describe_placement(canvas)
    smaller = Grid2D((100, 60), 0.1, (0.5, 9.8))
    assert place_on_canvas(field, (129, 65), grid=smaller).origin == (0.5, 9.8)  # anchored, as in batch
    with pytest.raises(ConfigError, match="cells of"):
        place_on_canvas(field, (129, 65), grid=Grid2D((50, 30), 0.2, (0.5, 9.8)))
    wide = Survey([[0.0, 1.0]], [[7.0, 1.0]])
    with pytest.raises(ConfigError, match=r"span 7 m × 0 m .* canvas of 6.5 m × 12.9 m"):
        place_on_canvas(wide, (129, 65))


# -- field unknowns ---------------------------------------------------------------------------------------
def test_field_unknowns_validate_and_map_to_physical_values():
    with pytest.raises(ConfigError, match="estimates nothing"):
        FieldUnknowns(velocities=False, time_zero=False)
    with pytest.raises(ConfigError, match="Did you mean ns"):
        FieldUnknowns(time_zero_std=3.0)
    unknowns = FieldUnknowns()
    start = FaciesVelocity(0.06, 0.08)
    values = unknowns.values(torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0]]), start)
    np.testing.assert_allclose(values["channel_velocity"], [0.06e9, 0.06e9 * np.exp(0.1)])
    np.testing.assert_allclose(values["matrix_velocity"], [0.08e9, 0.08e9 * np.exp(-0.1)])
    np.testing.assert_allclose(values["time_zero"], [0.0, 6e-9])
    # the start from picks: the slow end to the slower facies
    picks = _picks(Survey.crosshole())
    picks = picks.with_data(picks.traveltimes * np.linspace(0.9, 1.1, picks.n_data))
    start = start_velocities(picks)
    assert start.channel_velocity < start.matrix_velocity
    assert start_velocities(picks, FaciesVelocity(0.09, 0.07)).channel_velocity > start.channel_velocity


@pytest.fixture
def tiny_field(small_grid, small_survey):
    """TinyDecoder truth, straight-ray picks at velocities 15 % from the default, 2 ns late, 0.05 ns errors."""
    prior = TinyDecoder(small_grid.shape)
    truth = prior.decode(torch.tensor([[0.8, -0.5, 0.3]]))
    operator = StraightRay(small_grid, small_survey)
    velocities = FaciesVelocity(0.069, 0.092)
    clean = operator(velocities.slowness(truth.double()))[0].numpy() + 2e-9
    noisy = clean + np.random.default_rng(0).normal(0, 0.05e-9, clean.shape)
    return prior, operator, small_survey.with_data(noisy, 0.05e-9), truth, velocities


def _checked_jacobian(problem, point: torch.Tensor) -> torch.Tensor:
    """The problem's Jacobian at one point, after checking Jᵀr against autograd through the whole chain."""
    residual = torch.randn(problem.n_data, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    point = point.clone().requires_grad_(True)
    (problem(point)[0].double() @ residual).backward()
    jacobian = problem.jacobian(point.detach())[0]
    np.testing.assert_allclose(jacobian.T @ residual, point.grad[0].double(), rtol=1e-4, atol=1e-5)
    return jacobian


def test_latent_problem_with_unknowns_keeps_the_operator_contract(tiny_field):
    prior, operator, survey, _, _ = tiny_field
    problem = build_problem(survey, prior, operator, FaciesVelocity(), unknowns=FieldUnknowns())
    assert problem.n_parameters == prior.latent_dim + 3 and problem.model_forward is None
    parameters = problem.sample_prior(3, torch.Generator().manual_seed(0))
    jacobian = _checked_jacobian(problem, parameters[:1])  # latent, velocities, time zero
    assert jacobian[:, -1].allclose(torch.full((survey.n_data,), 3.0, dtype=torch.float64))  # ∂t/∂u_t = σ_t in ns
    # a linearised copy is exact at its expansion points; subsets keep the time shift
    index = np.array([4, 1, 7])
    assert torch.allclose(problem.linearized(parameters)(parameters), problem(parameters), atol=1e-5)
    assert torch.allclose(problem(parameters, index), problem(parameters)[:, index], atol=1e-5)
    # the prior is N(0, I) over every coordinate
    assert torch.allclose(problem.log_prior(parameters), -0.5 * parameters.pow(2).sum(dim=1), atol=1e-5)
    assert problem.regularization(parameters, "none").abs().max() == 0
    # fixing the unknowns at a vector reproduces its data with plain petrophysics
    fixed = problem.with_unknowns_fixed(parameters[0])
    shift = float(problem.unknown_values(parameters[:1])["time_zero"][0]) * 1e9
    assert torch.allclose(fixed(parameters[:1, :prior.latent_dim]) + shift, problem(parameters[:1]), atol=1e-6)
    assert torch.allclose(fixed.observed + shift, problem.observed)


def test_invert_recovers_velocities_and_time_zero(tiny_field):
    prior, operator, survey, truth, velocities = tiny_field
    solutions = invert(survey, prior, operator, "latent-gauss-newton", FaciesVelocity(0.06, 0.08), n_candidates=4,
                       unknowns=FieldUnknowns())
    assert solutions.accepted[0, 0]
    best = {name: float(value[0, 0]) for name, value in solutions.unknowns.items()}
    assert best["channel_velocity"] == pytest.approx(velocities.channel_velocity, rel=0.01)
    assert best["matrix_velocity"] == pytest.approx(velocities.matrix_velocity, rel=0.01)
    assert best["time_zero"] == pytest.approx(2e-9, abs=0.1e-9)
    assert (solutions.models[0, 0] - truth[0]).abs().mean() < 0.02
    assert solutions.refined["accepted"][0, 0]  # refined at the estimated velocities and time zero
    summary = solutions.summary()
    assert "channel velocity: best 0.069" in summary and "time zero: best 2.0" in summary
    with pytest.raises(ConfigError, match="model space"):
        invert(survey, prior, operator, "pygimli-smooth", unknowns=FieldUnknowns())


# -- a time zero per borehole --------------------------------------------------------------------------
def _reciprocal(survey: Survey) -> Survey:
    """``survey`` with its gathers repeated from the other borehole (transmitters in both)."""
    sensors = np.concatenate([survey.sources, survey.receivers])
    n = len(survey.sources)
    pairs = np.concatenate([survey.pairs, survey.pairs[:, ::-1] + n])
    return Survey(sensors, np.concatenate([survey.receivers, survey.sources]), pairs)


def test_boreholes_of_picks_are_found_from_sensor_positions():
    survey = _reciprocal(Survey.crosshole(0.0, 6.5))
    assert list(np.bincount(survey.borehole_of_picks("source"))) == [625, 625]
    assert (survey.borehole_of_picks("source") == 1 - survey.borehole_of_picks("receiver")).all()
    tilted = Survey(np.c_[0.05 * np.arange(10), np.arange(10.0)], [[6.5, 1.0]])  # 0.45 m of x drift: one hole
    assert (tilted.borehole_of_picks() == 0).all()
    assert (tilted.borehole_of_picks(gap=0.01) == np.arange(10)).all()
    with pytest.raises(SurveyError, match="side must be"):
        survey.borehole_of_picks("both")
    with pytest.raises(ConfigError, match="time_zero_by must be one of"):
        FieldUnknowns(time_zero_by="borehole")
    with pytest.raises(ConfigError, match="bind it to the survey"):
        _ = FieldUnknowns(time_zero_by="source-borehole").names
    from geoinv.batch import BatchSettings

    with pytest.raises(ConfigError, match="estimate_time_zero=True"):
        BatchSettings(time_zero_by="source-borehole")
    assert BatchSettings(estimate_time_zero=True, time_zero_by="receiver-borehole").unknowns.time_zero_by == \
        "receiver-borehole"


@pytest.fixture
def reciprocal_field(small_grid, small_survey):
    """TinyDecoder truth, straight-ray picks from transmitters in both boreholes: 2 ns and −1 ns late."""
    prior = TinyDecoder(small_grid.shape)
    truth = prior.decode(torch.tensor([[0.8, -0.5, 0.3]]))
    survey = _reciprocal(small_survey)
    operator = StraightRay(small_grid, survey)
    clean = operator(FaciesVelocity().slowness(truth.double()))[0].numpy()
    shifts = np.where(survey.borehole_of_picks() == 0, 2e-9, -1e-9)
    noisy = clean + shifts + np.random.default_rng(0).normal(0, 0.05e-9, clean.shape)
    return prior, operator, survey.with_data(noisy, 0.05e-9)


def test_a_time_zero_per_borehole_keeps_the_contract_and_is_recovered(reciprocal_field):
    prior, operator, survey = reciprocal_field
    unknowns = FieldUnknowns(velocities=False, time_zero_by="source-borehole")
    problem = build_problem(survey, prior, operator, FaciesVelocity(), unknowns=unknowns)
    assert problem.unknowns.names == ("time_zero_0", "time_zero_1") and problem.n_parameters == prior.latent_dim + 2
    parameters = problem.sample_prior(3, torch.Generator().manual_seed(0))
    jacobian = _checked_jacobian(problem, parameters[:1])
    first = survey.borehole_of_picks() == 0
    expected = 3.0 * torch.stack([torch.as_tensor(first), torch.as_tensor(~first)], dim=1).double()
    assert torch.allclose(jacobian[:, -2:], expected)  # each shift moves its own picks, by σ_t = 3 ns
    index = np.array([30, 1, 7, 26])  # picks of both boreholes
    assert torch.allclose(problem(parameters, index), problem(parameters)[:, index], atol=1e-5)
    assert torch.allclose(problem.linearized(parameters)(parameters), problem(parameters), atol=1e-5)
    fixed = problem.with_unknowns_fixed(parameters[0])
    values = problem.unknown_values(parameters[:1])
    shift = (torch.where(torch.as_tensor(first), values["time_zero_0"][0], values["time_zero_1"][0]) * 1e9).float()
    assert torch.allclose(fixed(parameters[:1, :prior.latent_dim])[0] + shift, problem(parameters[:1])[0], atol=1e-5)
    solutions = invert(survey, prior, operator, "latent-gauss-newton", FaciesVelocity(), n_candidates=4,
                       unknowns=unknowns)
    assert solutions.accepted[0, 0]
    assert float(solutions.unknowns["time_zero_0"][0, 0]) == pytest.approx(2e-9, abs=0.1e-9)
    assert float(solutions.unknowns["time_zero_1"][0, 0]) == pytest.approx(-1e-9, abs=0.1e-9)
    assert "time zero 1: best -0.9" in solutions.summary()
    # one shift for both boreholes cannot fit picks that are 3 ns apart
    single = invert(survey, prior, operator, "latent-gauss-newton", FaciesVelocity(), n_candidates=4,
                    unknowns=FieldUnknowns(velocities=False), refine=None)
    assert not single.accepted[0].any()


def test_cli_estimates_a_time_zero_per_transmitter_borehole(tmp_path, capsys):
    depths = np.arange(1.0, 12.01, 1.0)
    survey = _reciprocal(Survey(np.c_[np.full(depths.size, 10.0), depths], np.c_[np.full(depths.size, 15.0), depths]))
    write_column_survey(tmp_path / "picks.txt", survey.with_data(survey.distances / 0.07e9 + 1e-9, 0.5e-9))
    output = tmp_path / "result.h5"
    assert main(["invert", "--time-zero-by", "source-borehole", str(tmp_path / "picks.txt"), "--starts", "1",
                 "--epochs", "1", "--quiet", "--no-refine", "--output", str(output)]) == 0
    assert "time zero 0" in capsys.readouterr().out
    with h5py.File(output, "r") as handle:
        assert set(handle["solutions/unknowns"]) == {"time_zero_0", "time_zero_1"}


def test_cli_inverts_a_column_file_off_the_canvas_with_unknowns(tmp_path, capsys):
    """A column file whose boreholes lie at x = 10 and 15 m, 1.5 ns late, velocities unknown: one command."""
    vae = geoinv.default_vae()
    depths = np.arange(1.0, 12.01, 0.5)
    survey = Survey(np.c_[np.full(depths.size, 10.0), depths], np.c_[np.full(depths.size, 15.0), depths])
    canvas = place_on_canvas(survey, vae.model_shape)
    with torch.no_grad():
        truth = vae.decode(torch.randn(1, vae.latent_dim, generator=torch.Generator().manual_seed(4)))
        times = StraightRay(canvas, survey)(FaciesVelocity(0.065, 0.085).slowness(truth.double()))[0].numpy()
    write_column_survey(tmp_path / "picks.txt", survey.with_data(times + 1.5e-9, 0.5e-9))
    output = tmp_path / "result.h5"
    arguments = ["invert", str(tmp_path / "picks.txt"), "--starts", "2", "--epochs", "2", "--quiet", "--no-refine",
                 "--estimate-velocities", "--estimate-time-zero", "--output", str(output)]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "on the prior's canvas: 65 × 129 cells of 0.1 m: x 9.2 to 15.7 m" in out
    assert "channel velocity" in out and "time zero" in out
    with h5py.File(output, "r") as handle:
        assert handle["survey/grid"].attrs["origin"][1] == pytest.approx(9.2)
        assert set(handle["solutions/unknowns"]) == {"channel_velocity", "matrix_velocity", "time_zero"}
    assert geoinv.Solutions.from_hdf5(output).unknowns["time_zero"].shape == (1, 2)
    # seismic picks pass with a velocity range of their own
    seismic = survey.with_data(survey.distances / 1500.0, 0.5e-3)
    write_column_survey(tmp_path / "seismic.txt", seismic, time_unit="ms")
    seismic_arguments = ["invert", str(tmp_path / "seismic.txt"), "--time-unit", "ms", "--starts", "1", "--epochs",
                         "1", "--quiet", "--no-refine", "--output", str(tmp_path / "seismic.h5")]
    assert main(seismic_arguments) == 2
    assert "velocity_range" in capsys.readouterr().err
    assert main([*seismic_arguments, "--velocity-range", "300,6000", "--velocity-unit", "m/s",
                 "--velocities", "1200,2000"]) == 0


def test_batch_panels_estimate_their_own_unknowns_and_old_keys_stay_valid(small_grid, small_survey):
    import hashlib
    import json
    from dataclasses import asdict

    from geoinv.batch import BatchSettings, invert_panel
    from geoinv.io.campaign import CampaignSurvey

    plain = BatchSettings(n_starts=2, epochs=1, refine=False)
    before = {key: value for key, value in asdict(plain).items()
              if not key.startswith("estimate_") and key not in ("time_zero_by", "search_rounds")}
    digest = hashlib.sha256(json.dumps(before, sort_keys=True).encode())
    digest.update(b"prior")
    assert plain.key("prior") == digest.hexdigest()  # results of batches before field unknowns still resume
    estimating = BatchSettings(n_starts=2, epochs=1, refine=False, estimate_velocities=True, estimate_time_zero=True)
    assert estimating.key("prior") != plain.key("prior") and estimating.unknowns == FieldUnknowns()
    panel = CampaignSurvey("P1", _picks(Survey.crosshole(), shift=1e-9), None, FaciesVelocity(0.065, 0.075))
    record = invert_panel(panel, estimating)
    assert record["status"] == "done", record["error"]
    assert set(record["solutions"].unknowns) == {"channel_velocity", "matrix_velocity", "time_zero"}


def test_missing_and_binary_pick_files_are_refused_by_name(tmp_path):
    with pytest.raises(FileFormatError, match=r"pick file .*absent\.txt.* does not exist"):
        read_column_survey(tmp_path / "absent.txt")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(FileFormatError, match="not a text file"):
        read_column_survey(tmp_path / "binary.txt")


def test_the_sampler_gives_the_unknowns_a_spread_that_holds_the_truth(tiny_field):
    """latent-mcmc samples the unknowns with the latent vector: their spread is the one to quote."""
    prior, operator, survey, _, velocities = tiny_field
    starter = geoinv.make_solver("latent-gauss-newton", operator, n_starts=4)
    sampler = geoinv.LatentMCMC(geoinv.LatentMCMCConfig(n_chains=4, n_draws=150, n_warmup=150, n_temperatures=2,
                                                        n_samples=100, progress=False), starter=starter)
    draws = invert(survey, prior, operator, sampler, FaciesVelocity(0.06, 0.08), unknowns=FieldUnknowns(),
                   refine=None)
    assert draws.from_sampler
    truth = {"channel_velocity": velocities.channel_velocity, "matrix_velocity": velocities.matrix_velocity,
             "time_zero": 2e-9}
    for name, (_, mean, spread) in draws.unknowns_summary().items():
        assert spread > 0 and abs(mean - truth[name]) < 4 * spread + 0.01 * abs(truth[name]), name



def test_proposals_seed_the_unknowns_too_and_key_their_cache(tiny_field, tmp_path):
    """With unknowns, the proposal network predicts the velocities and time zero with the latent vector,
    and its cache is keyed by them."""
    from geoinv import LatentSGD, LatentSGDConfig
    from geoinv.solvers import Stage
    from geoinv.solvers.proposals import ProposalConfig, Proposals, problem_key

    prior, operator, survey, _, velocities = tiny_field
    plain = build_problem(survey, prior, operator, FaciesVelocity(0.06, 0.08))
    estimating = build_problem(survey, prior, operator, FaciesVelocity(0.06, 0.08), unknowns=FieldUnknowns())
    assert problem_key(plain) != problem_key(estimating)
    finish = LatentSGD(LatentSGDConfig(progress=False).with_stages([Stage.gauss_newton(15)]))
    method = Proposals(finish, n_starts=3, n_pairs=2048, cache=str(tmp_path),
                       network_config=ProposalConfig(hidden=(64, 64), epochs=25, members=2))
    solutions = invert(survey, prior, operator, method, FaciesVelocity(0.06, 0.08), unknowns=FieldUnknowns(),
                       refine=None)
    assert solutions.parameters.shape[-1] == prior.latent_dim + 3
    assert solutions.accepted[0, 0]
    channel = float(solutions.unknowns["channel_velocity"][0, 0])
    assert channel == pytest.approx(velocities.channel_velocity, rel=0.02)


def test_an_hdf5_survey_without_errors_takes_the_error_model(tmp_path):
    survey = _picks(Survey.crosshole())
    geoinv.write_survey(tmp_path / "bare.h5", Survey(survey.sources, survey.receivers, survey.pairs,
                                                     survey.traveltimes))
    read, _ = read_survey(tmp_path / "bare.h5", absolute_error=0.5e-9, relative_error=0.01)
    np.testing.assert_allclose(read.errors, 0.5e-9 + 0.01 * survey.traveltimes)


def test_every_reader_refuses_an_error_model_for_a_file_with_errors(tmp_path):
    """One rule across formats: a file's own errors and an error model are refused together, by one message."""
    survey = _picks(Survey.crosshole())
    geoinv.write_survey(tmp_path / "picks.h5", survey)
    write_column_survey(tmp_path / "picks.csv", survey)
    write_pygimli_survey(tmp_path / "picks.sgt", survey)
    for name in ("picks.h5", "picks.csv", "picks.sgt"):
        with pytest.raises((SurveyError, FileFormatError), match=rf"{name}: the file stores the picks' errors and "
                                                                 r"an error model was given too.*leave the error"):
            read_survey(tmp_path / name, absolute_error=0.5e-9)
        assert read_survey(tmp_path / name)[0].errors is not None
