import h5py
import numpy as np
import pytest
import torch

from geoinv import FaciesVelocity, Grid2D, Solutions, StraightRay, Survey
from geoinv.cli import main
from geoinv.io import write_survey
from geoinv.prior import default_vae


def test_simulate(tmp_path, capsys):
    assert main(["simulate", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "eikonal" in out and (tmp_path / "simulation.png").stat().st_size > 10_000
    saved = np.load(tmp_path / "simulation.npz")
    assert saved["eikonal"].shape == (625,)
    # bent rays are never much slower than straight ones
    assert np.all(saved["eikonal"] <= saved["straight_ray"] * 1.005)


@pytest.mark.parametrize("forward", ["straight-ray", "eikonal"])
def test_demo_short_run(tmp_path, capsys, forward):
    refine = [] if forward == "straight-ray" else ["--no-refine"]  # refining with bent rays takes minutes
    code = main(["demo", "--forward", forward, "--starts", "2", "--epochs", "1", "--quiet",
                 "--output", str(tmp_path), *refine])
    assert code == 0
    out = capsys.readouterr().out
    assert "data RMSE best / median" in out and "accepted" in out and " σ" in out
    assert ("refined beyond prior" in out) == (forward == "straight-ray")
    solutions = Solutions.from_hdf5(tmp_path / "demo.h5")
    assert solutions.parameters.shape == (1, 2, 20)
    with h5py.File(tmp_path / "demo.h5") as handle:
        assert handle["truth"].shape == (129, 65)
        assert handle["survey/traveltimes"].shape == (625,)
    assert (tmp_path / "demo.png").exists()


def test_invert_user_survey(tmp_path, capsys):
    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    vae = default_vae()
    with torch.no_grad():
        truth = vae.decode(torch.randn(1, 20, generator=torch.Generator().manual_seed(4)))
        times = StraightRay(grid, survey)(FaciesVelocity().slowness(truth.double()))[0].numpy()
    write_survey(tmp_path / "field.h5", survey.with_data(times, 0.25e-9), grid, time_unit="ns")
    output = tmp_path / "out" / "result.h5"
    assert main(["invert", str(tmp_path / "field.h5"), "--starts", "3", "--epochs", "2", "--quiet",
                 "--output", str(output)]) == 0
    assert Solutions.from_hdf5(output).n_candidates == 3
    assert output.with_suffix(".png").exists()


def test_cli_reports_geoinv_errors(tmp_path, capsys):
    assert main(["invert", str(tmp_path / "missing.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_choices_come_from_the_registries(capsys):
    from geoinv.cli import build_parser
    from geoinv.forward import FORWARDS
    from geoinv.solvers import SOLVERS

    parser = build_parser()
    invert = next(a for a in parser._subparsers._group_actions[0].choices["invert"]._actions if a.dest == "forward")
    assert sorted(invert.choices) == FORWARDS.names()
    solver = next(a for a in parser._subparsers._group_actions[0].choices["invert"]._actions if a.dest == "solver")
    assert sorted(solver.choices) == SOLVERS.names()


def test_preset_help_names_the_schedules_the_cli_picks(small_grid, small_survey):
    from dataclasses import asdict

    from geoinv import Eikonal, LatentSGDConfig, default_latent_sgd
    from geoinv.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for command in ("invert", "batch"):
        preset = next(a for a in commands[command]._actions if a.dest == "preset")
        assert "default-linear" in preset.help and "default-nonlinear" in preset.help
    for operator, name in ((StraightRay(small_grid, small_survey), "default-linear"),
                           (Eikonal(small_grid, small_survey), "default-nonlinear")):
        assert asdict(default_latent_sgd(operator)) == asdict(LatentSGDConfig.named(name, progress=False))


def test_invert_with_velocities_and_guarded_outputs(tmp_path, capsys):
    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    vae = default_vae()
    petro = FaciesVelocity(0.07, 0.1)
    with torch.no_grad():
        truth = vae.decode(torch.randn(1, 20, generator=torch.Generator().manual_seed(4)))
        times = StraightRay(grid, survey)(petro.slowness(truth.double()))[0].numpy()
    source = tmp_path / "field.h5"
    write_survey(source, survey.with_data(times, 0.25e-9), grid)
    output = tmp_path / "result.h5"
    arguments = ["invert", str(source), "--starts", "2", "--epochs", "1", "--quiet", "--velocities", "0.07,0.1"]
    assert main([*arguments, "--output", str(output)]) == 0
    assert Solutions.from_hdf5(output).n_candidates == 2
    # results never overwrite the input, and a figure name cannot be given as results
    before = source.read_bytes()
    assert main([*arguments, "--output", str(source)]) == 2
    assert "is the input file" in capsys.readouterr().err and source.read_bytes() == before
    assert main([*arguments, "--output", str(tmp_path / "result.png")]) == 2
    assert "must end in .h5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*arguments[:-1], "0.07"])  # one velocity only: argparse names the option
    assert "--velocities: expected two numbers" in capsys.readouterr().err
    # --search-rounds sets the bent-ray default's searches; a straight-ray run searches once and says so
    assert main([*arguments, "--search-rounds", "1", "--output", str(tmp_path / "rounds.h5")]) == 2
    assert "--search-rounds sets the bent-ray default search" in capsys.readouterr().err
    assert not (tmp_path / "rounds.h5").exists()


def test_search_rounds_reach_the_bent_ray_default():
    from geoinv import Eikonal, make_solver
    from geoinv.workflows import configured

    grid = Grid2D((16, 12), 0.5)
    operator = Eikonal(grid, Survey.crosshole(0.25, 5.75, np.linspace(0.5, 7.5, 4)))
    solver = make_solver("latent-sgd", operator, n_starts=2)
    assert solver.name == "refill" and solver.config.rounds == 3 and solver.config.min_round_gain == 0.05
    assert configured(solver, {"rounds": 1}).rounds == 1
    with pytest.raises(SystemExit):
        main(["invert", "picks.h5", "--search-rounds", "0"])  # argparse: 1 to 10


def test_invert_a_pygimli_file_with_the_latent_gauss_newton_solver(tmp_path, capsys):
    """A .sgt without errors is refused by name; with an error model it inverts (pyGIMLi's GN on z)."""
    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    with torch.no_grad():
        truth = default_vae().decode(torch.randn(1, 20, generator=torch.Generator().manual_seed(4)))
        times = StraightRay(grid, survey)(FaciesVelocity().slowness(truth.double()))[0].numpy()
    write_survey(tmp_path / "picks.sgt", survey.with_data(times))
    arguments = ["invert", str(tmp_path / "picks.sgt"), "--solver", "latent-gauss-newton", "--starts", "1",
                 "--no-refine", "--quiet", "--output", str(tmp_path / "result.h5")]
    assert main(arguments) == 2
    assert "no 'err' column" in capsys.readouterr().err
    assert main([*arguments, "--absolute-error", "2.5e-10"]) == 0
    solutions = Solutions.from_hdf5(tmp_path / "result.h5")
    assert solutions.config["solver"] == "latent-gauss-newton" and solutions.n_candidates == 1


def test_the_preconditioner_option_offers_every_preconditioner_the_sampler_has():
    from geoinv.cli import build_parser
    from geoinv.sampling.engine import PRECONDITIONERS

    for name in PRECONDITIONERS:  # the option's literal choices (the CLI imports no torch) keep up with the engine
        assert build_parser().parse_args(["invert", "field.h5", "--preconditioner", name]).preconditioner == name


def test_invert_with_the_sampler_reports_mixing(tmp_path, capsys):
    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    with torch.no_grad():
        truth = default_vae().decode(torch.randn(1, 20, generator=torch.Generator().manual_seed(4)))
        times = StraightRay(grid, survey)(FaciesVelocity().slowness(truth.double()))[0].numpy()
    write_survey(tmp_path / "field.h5", survey.with_data(times, 0.25e-9), grid, time_unit="ns")
    output = tmp_path / "samples.h5"
    arguments = ["invert", str(tmp_path / "field.h5"), "--solver", "latent-mcmc", "--starts", "3", "--epochs", "1",
                 "--chains", "2", "--draws", "12", "--samples", "16", "--leapfrog-steps", "2", "--no-refine",
                 "--differential-evolution", "2", "--line-directions", "2", "--preconditioner", "widened-gauss-newton",
                 "--quiet", "--output", str(output)]
    optimiser = ["latent-sgd" if word == "latent-mcmc" else word for word in arguments]
    assert main(optimiser) == 2  # sampler options are refused for an optimiser
    assert "--solver latent-mcmc" in capsys.readouterr().err
    assert main(arguments) == 0
    assert "R-hat max" in capsys.readouterr().out
    solutions = Solutions.from_hdf5(output)
    assert solutions.from_sampler and solutions.n_candidates == 16
    assert solutions.history["chain_latent"].shape == (12, 1, 2, 20)
    assert solutions.config["starter"]["solver"] == "latent-sgd" and solutions.config["leapfrog_steps"] == 2
    assert solutions.config["differential_evolution"] == 2 and "evolution_rate" in solutions.history
    assert solutions.config["line_directions"] == 2 and solutions.history["line_scale"].shape[-1] == 2
    assert solutions.config["preconditioner"] == "widened-gauss-newton"
    with h5py.File(output) as handle:
        assert bool(handle["solutions/posterior/from_sampler"][0])
    assert main([*optimiser, "--chain-starts", "laplace"]) == 2  # a sampler option (run in test_sampling)
    assert "--chain-starts" in capsys.readouterr().err


def test_invert_with_eikonal_workers_matches_one_process(tmp_path, capsys):
    grid, survey = Grid2D.crosshole(), Survey.crosshole(0.0, 6.4, np.arange(1.0, 12.5, 1.5))
    with torch.no_grad():
        truth = default_vae().decode(torch.randn(1, 20, generator=torch.Generator().manual_seed(8)))
        times = StraightRay(grid, survey)(FaciesVelocity().slowness(truth.double()))[0].numpy()
    write_survey(tmp_path / "field.h5", survey.with_data(times, 0.5e-9), grid, time_unit="ns")
    arguments = ["invert", str(tmp_path / "field.h5"), "--forward", "eikonal", "--starts", "2", "--epochs", "1",
                 "--no-refine", "--quiet"]
    assert main([*arguments, "--workers", "2", "--output", str(tmp_path / "two.h5")]) == 0
    assert main([*arguments, "--output", str(tmp_path / "one.h5")]) == 0
    one, two = (Solutions.from_hdf5(tmp_path / name) for name in ("one.h5", "two.h5"))
    assert torch.equal(one.parameters, two.parameters)
    capsys.readouterr()
    refused = ["invert", str(tmp_path / "field.h5"), "--workers", "2", "--output", str(tmp_path / "sr.h5")]
    assert main(refused) == 2
    assert "--workers" in capsys.readouterr().err and not (tmp_path / "sr.h5").exists()
