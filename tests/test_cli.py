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
    code = main(["demo", "--forward", forward, "--starts", "2", "--epochs", "1", "--quiet",
                 "--output", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "data RMSE best / median" in out and "accepted" in out
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
