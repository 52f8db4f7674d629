"""Batch inversion of campaigns on a real Dask LocalCluster, with real HDF5 files and a tiny real VAE."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

import geoinv
from geoinv import FaciesVelocity, FileFormatError, Grid2D, Survey
from geoinv.batch import BatchSettings, canvas_grid, invert_panel, read_batch_results, run_batch
from geoinv.io.campaign import CampaignSurvey, read_campaign, write_campaign
from geoinv.prior.vae import save_checkpoint

SHAPE = (16, 12)  # the tiny prior's canvas: 8 m × 6 m in cells of 0.5 m


@pytest.fixture(scope="module")
def prior_path(tmp_path_factory):
    torch.manual_seed(0)
    vae = geoinv.VAE(geoinv.VAEConfig(SHAPE, latent_dim=3, channels=(4, 8), kernels=(4, 4), strides=(2, 2),
                                      hidden=16))
    path = tmp_path_factory.mktemp("prior") / "tiny.pt"
    save_checkpoint(path, vae.eval(), {"note": "tiny untrained VAE for the batch tests"})
    return str(path)


def _panel(name: str, width: float, depth: float, n_sensors: int, velocities, seed: int,
           grid_shape=None) -> CampaignSurvey:
    depths = np.linspace(0.5, depth, n_sensors)
    survey = Survey.crosshole(0.0, width, depths)
    rng = np.random.default_rng(seed)
    times = survey.distances / 0.07e9 + rng.uniform(0, 2e-9, survey.n_data)
    grid = None if grid_shape is None else Grid2D(grid_shape, 0.5)
    petrophysics = FaciesVelocity(*velocities)
    return CampaignSurvey(name, survey.with_data(times, 0.5e-9), grid, petrophysics, {"seed": seed})


@pytest.fixture(scope="module")
def panels():
    # six geometries: borehole separations 3–5.5 m, depths 5–7.5 m, 4–7 sensors, two grid sizes, own velocities
    return [_panel("P01", 3.0, 5.0, 4, (0.06, 0.08), 1, (12, 8)),
            _panel("P02", 4.5, 6.5, 5, (0.065, 0.085), 2, (14, 10)),
            _panel("P03", 5.5, 7.5, 6, (0.06, 0.08), 3, (16, 12)),
            _panel("P04", 3.5, 6.0, 7, (0.055, 0.075), 4),
            _panel("P05", 5.0, 7.0, 5, (0.06, 0.09), 5, (16, 11)),
            _panel("P06", 4.0, 5.5, 4, (0.07, 0.08), 6, (12, 9))]


SETTINGS = {"solver": "latent-sgd", "forward": "straight-ray", "n_starts": 2, "seed": 3, "epochs": 2,
            "refine": False, "canvas_spacing": 0.5}


def test_campaign_files_round_trip_and_name_the_bad_survey(tmp_path, panels):
    path = write_campaign(tmp_path / "campaign.h5", panels)
    campaign = read_campaign(path)
    assert campaign.names == [p.name for p in panels] and campaign.problems == {}
    for written, read in zip(panels, campaign.surveys):
        np.testing.assert_allclose(read.survey.traveltimes, written.survey.traveltimes)
        assert read.grid == written.grid and read.metadata == written.metadata
        assert read.petrophysics.channel_velocity == pytest.approx(written.petrophysics.channel_velocity)
        assert read.input_hash() == written.input_hash()
    with h5py.File(path, "a") as handle:  # damage three panels in three ways
        del handle["surveys/P02/traveltimes"]
        handle["surveys/P03/traveltimes"][0] = np.nan
        handle["surveys/P05/sources"][0, 0] = 40.0  # outside its grid
    campaign = read_campaign(path)
    assert campaign.names == ["P01", "P04", "P06"]
    assert "no traveltimes" in campaign.problems["P02"]
    assert "survey 'P03'" in campaign.problems["P03"] and "NaN" in campaign.problems["P03"]
    assert "sources[0] at (x=40 m" in campaign.problems["P05"]


@pytest.mark.parametrize(("petrophysics", "message"), [
    ({"channel_velocity": 0.06, "matrix_velocity": 0.08}, "has no 'unit'"),
    ({"channel_velocity": 0.06, "matrix_velocity": 0.08, "unit": "m/s"}, "is the unit right"),
    ({"channel_velocity": 6e8, "matrix_velocity": 8e7, "unit": "m/s"}, "light in vacuum"),
])
def test_campaign_petrophysics_need_a_unit_and_physical_velocities(tmp_path, panels, petrophysics, message):
    path = write_campaign(tmp_path / "campaign.h5", panels[:2])
    with h5py.File(path, "a") as handle:
        handle["surveys/P02"].attrs["petrophysics"] = json.dumps(petrophysics)
    campaign = read_campaign(path)
    assert campaign.names == ["P01"]  # the bad panel is reported, the good one kept
    assert message in campaign.problems["P02"] and "P02" in campaign.problems["P02"]


def test_single_survey_files_read_as_one_survey_campaigns_and_truncated_files_are_refused(tmp_path, panels):
    geoinv.write_survey(tmp_path / "one.h5", panels[0].survey, panels[0].grid)
    campaign = read_campaign(tmp_path / "one.h5")
    assert campaign.names == ["survey"] and campaign.surveys[0].grid == panels[0].grid
    data = (tmp_path / "one.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"cut\.h5"):
        read_campaign(tmp_path / "cut.h5")


def test_panels_go_on_the_priors_canvas_or_are_refused_with_both_shapes(panels):
    canvas = canvas_grid(panels[0], SHAPE, 0.5)
    assert canvas.shape == SHAPE and canvas.origin == panels[0].grid.origin
    too_big = CampaignSurvey("big", panels[2].survey, Grid2D((20, 12), 0.5))
    with pytest.raises(geoinv.ConfigError, match=r"\(20, 12\).*does not fit the prior's models \(16, 12\)"):
        canvas_grid(too_big, SHAPE, 0.5)
    with pytest.raises(geoinv.ConfigError, match=r"0\.25"):
        canvas_grid(CampaignSurvey("fine", panels[0].survey, Grid2D((24, 16), 0.25)), SHAPE, 0.5)


def test_batch_on_a_local_cluster_equals_direct_inversions_and_resumes(tmp_path, panels, prior_path):
    settings = BatchSettings(**SETTINGS, prior_path=prior_path)
    campaign_path = write_campaign(tmp_path / "campaign.h5", panels)
    output = tmp_path / "out" / "results.h5"
    summary = run_batch(campaign_path, output, settings, workers=2, progress=False)
    assert sorted(summary.inverted) == [p.name for p in panels] and not summary.failed
    results = read_batch_results(output)
    assert set(results) == {p.name for p in panels}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers: oneDNN's convolutions sum in another order on more threads
    try:
        for panel in panels:
            direct = invert_panel(panel, settings)
            assert direct["status"] == "done", direct["error"]
            torch.testing.assert_close(results[panel.name]["solutions"].parameters, direct["solutions"].parameters)
            assert results[panel.name]["worker"] != ""
    finally:
        torch.set_num_threads(threads)
    workers = {results[p.name]["worker"] for p in panels}
    assert len(workers) >= 1
    # a rerun skips everything; a changed panel is redone alone
    again = run_batch(campaign_path, output, settings, workers=2, progress=False)
    assert sorted(again.skipped) == sorted(p.name for p in panels) and again.inverted == []
    assert "no panel was inverted in this run" in "\n".join(again.lines())  # not "accepted 0/0"
    changed = list(panels)
    changed[1] = _panel("P02", 4.5, 6.5, 5, (0.065, 0.085), 99, (14, 10))
    write_campaign(campaign_path, changed)
    third = run_batch(campaign_path, output, settings, workers=2, progress=False)
    assert third.inverted == ["P02"]


def test_a_bad_panel_fails_alone_and_is_recorded(tmp_path, panels, prior_path):
    settings = BatchSettings(**SETTINGS, prior_path=prior_path)
    bad = CampaignSurvey("wide", panels[2].survey, Grid2D((16, 14), 0.5))  # wider than the prior's canvas
    campaign_path = write_campaign(tmp_path / "campaign.h5", [panels[0], bad, panels[3], panels[4]])
    with h5py.File(campaign_path, "a") as handle:
        handle["surveys/P05/traveltimes"][2] = np.nan  # unreadable: reported, not inverted
    output = tmp_path / "results.h5"
    summary = run_batch(campaign_path, output, settings, workers=1, progress=False)
    assert sorted(summary.inverted) == ["P01", "P04"] and sorted(summary.failed) == ["P05", "wide"]
    assert "NaN" in summary.failed["P05"] and any("failed wide" in line for line in summary.lines())
    results = read_batch_results(output)
    assert results["wide"]["status"] == "failed" and "does not fit" in results["wide"]["error"]
    assert results["P01"]["status"] == "done"
    with h5py.File(output, "r") as handle:
        assert "NaN" in handle["unreadable"].attrs["P05"]


def test_unwritable_output_is_refused_before_any_work(tmp_path, panels, prior_path):
    campaign_path = write_campaign(tmp_path / "campaign.h5", panels[:1])
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(geoinv.ConfigError, match="is a file"):
        run_batch(campaign_path, blocker / "results.h5", BatchSettings(**SETTINGS, prior_path=prior_path))
    with pytest.raises(geoinv.ConfigError, match="is the input file"):
        run_batch(campaign_path, campaign_path, BatchSettings(**SETTINGS, prior_path=prior_path))


def _batch_command(campaign, output, prior_path, epochs=2):
    return [sys.executable, "-m", "geoinv.cli", "batch", str(campaign), str(output), "--vae", prior_path,
            "--starts", "2", "--epochs", str(epochs), "--no-refine", "--cell-size", "0.5", "--workers", "2",
            "--quiet"]


#: the interrupted runs' pace: every part (and merge) held 1 s before its rename (fault injection), so
#: a signal lands mid-batch with cheap panels instead of slow ones
HELD_WRITES = {**os.environ, "PYTHONUNBUFFERED": "1", "GEOINV_HOLD_WRITES_S": "1.0"}


def test_client_killed_then_rerun_finishes_without_redoing_or_losing(tmp_path, panels, prior_path):
    """SIGKILL to the client mid-batch: parts written so far are whole, the output file (if any) reads,
    and the rerun completes only the missing panels."""
    many = [_panel(f"K{k:02d}", 3.0 + 0.2 * k, 6.0, 5, (0.06, 0.08), 10 + k, (14, 10)) for k in range(6)]
    campaign = write_campaign(tmp_path / "campaign.h5", many)
    output = tmp_path / "results.h5"
    parts = tmp_path / "results.h5.parts"
    process = subprocess.Popen(_batch_command(campaign, output, prior_path), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=HELD_WRITES)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("K*.h5"))) < 2:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = sorted(p.stem for p in parts.glob("K*.h5"))
    assert 2 <= len(finished) < len(many), "kill the client in the middle of the batch"
    for part in parts.glob("K*.h5"):
        with h5py.File(part, "r") as handle:  # whole files only under final names
            assert handle["result"].attrs["status"] == "done"
    rerun = subprocess.run(_batch_command(campaign, output, prior_path), capture_output=True, text=True,
                           timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"skipped (already done) {len(finished)}" in rerun.stdout
    results = read_batch_results(output)
    assert sorted(results) == [p.name for p in many]
    assert all(entry["status"] == "done" for entry in results.values())
    assert json.loads(results["K00"]["settings"])["epochs"] == 2


def test_ctrl_c_puts_the_finished_panels_into_the_output(tmp_path, prior_path):
    """SIGINT to the batch process mid-batch: it exits 130 after merging the finished panels into OUT.h5."""
    many = [_panel(f"C{k:02d}", 3.0 + 0.2 * k, 6.0, 5, (0.06, 0.08), 50 + k, (14, 10)) for k in range(6)]
    campaign = write_campaign(tmp_path / "campaign.h5", many)
    output, parts = tmp_path / "results.h5", tmp_path / "results.h5.parts"
    process = subprocess.Popen(_batch_command(campaign, output, prior_path), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=HELD_WRITES)
    deadline = time.time() + 120
    while time.time() < deadline and not list(parts.glob("C*.h5")):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    text, _ = process.communicate(timeout=120)
    finished = sorted(p.stem for p in parts.glob("C*.h5"))
    assert 1 <= len(finished) < len(many), "interrupt the batch in the middle"
    assert process.returncode == 130, text
    results = read_batch_results(output)  # written at the interruption, not only by a rerun
    assert sorted(results) == finished and all(entry["status"] == "done" for entry in results.values())


def test_worker_killed_mid_batch_loses_nothing(tmp_path, panels, prior_path):
    """One worker process is killed while it runs a panel: Dask reschedules its task, every panel ends up
    in the output exactly once."""
    import threading

    from dask.distributed import Client, LocalCluster

    settings = BatchSettings(**{**SETTINGS, "epochs": 20}, prior_path=prior_path)
    many = [_panel(f"W{k:02d}", 3.0 + 0.2 * k, 6.0, 5, (0.06, 0.08), 30 + k, (14, 10)) for k in range(4)]
    campaign = write_campaign(tmp_path / "campaign.h5", many)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        address, victim = next(iter(client.run(os.getpid).items()))  # a worker process and its pid
        killed_while_busy = []

        def kill_when_busy():
            deadline = time.time() + 120
            while time.time() < deadline and not client.processing(workers=[address]).get(address):
                time.sleep(0.05)
            time.sleep(0.5)  # inside the panel's inversion, not at its hand-over
            killed_while_busy.append(bool(client.processing(workers=[address]).get(address)))
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        summary = run_batch(campaign, tmp_path / "results.h5", settings, scheduler=cluster.scheduler_address,
                            progress=False)
        killer.join(timeout=10)
    assert killed_while_busy == [True], "kill the worker while it holds a panel"
    assert sorted(summary.inverted) == [p.name for p in many] and not summary.failed
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)  # the victim is gone; its tasks ran elsewhere
    results = read_batch_results(tmp_path / "results.h5")
    assert sorted(results) == [p.name for p in many]
    assert all(entry["status"] == "done" for entry in results.values())


def test_survey_info_lists_panels_and_problems(tmp_path, panels, capsys):
    from geoinv.cli import main

    path = write_campaign(tmp_path / "campaign.h5", panels[:3])
    with h5py.File(path, "a") as handle:
        del handle["surveys/P02/sources"]
    assert main(["survey-info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 readable survey(s), 1 with problems" in out
    assert "P01: 4 sources, 4 receivers, 16 picks" in out and "(12, 8) of 0.5 m" in out and "v 0.06/0.08 m/ns" in out
    assert "P02: PROBLEM:" in out and "sources" in out
    assert main(["survey-info", str(tmp_path / "missing.h5")]) == 2


def test_batch_never_replaces_a_file_that_is_not_this_campaigns_result(tmp_path, panels):
    """An existing output that is another file, or another campaign's results, is refused before any
    work (it was replaced with exit 0); --replace-output says so explicitly."""
    import h5py

    campaign = write_campaign(tmp_path / "campaign.h5", panels)
    other = write_campaign(tmp_path / "other.h5", [_panel("elsewhere", 3.0, 5.0, 4, (0.06, 0.08), 1, (12, 8))])
    settings = BatchSettings(n_starts=1, epochs=1, refine=False)
    foreign = tmp_path / "notes.h5"
    with h5py.File(foreign, "w") as handle:
        handle["mine"] = [1, 2, 3]
    with pytest.raises(geoinv.ConfigError, match=r"not a geoinv batch result.*--replace-output"):
        run_batch(campaign, foreign, settings, workers=1, progress=False)
    with h5py.File(foreign, "r") as handle:
        assert list(handle) == ["mine"]  # untouched
    earlier = tmp_path / "earlier.h5"
    with h5py.File(earlier, "w") as handle:  # another campaign's batch result
        handle.attrs["format"] = "geoinv-batch-results/1"
        handle.create_group("results").create_group("elsewhere")
    with pytest.raises(geoinv.ConfigError, match=r"another campaign.*elsewhere"):
        run_batch(campaign, earlier, settings, workers=1, progress=False)
    assert read_campaign(other).surveys[0].name == "elsewhere"


def test_invert_refuses_to_replace_an_existing_figure(tmp_path):
    from geoinv.workflows import check_output

    (tmp_path / "result.png").write_bytes(b"an earlier figure")
    with pytest.raises(geoinv.ConfigError, match=r"result\.png' exists; pass --overwrite"):
        check_output(tmp_path / "result.h5", (".h5",), overwrite=False, figure=tmp_path / "result.png")
    assert check_output(tmp_path / "result.h5", (".h5",), overwrite=True, figure=tmp_path / "result.png")


def test_a_batch_with_failed_panels_exits_with_status_3(tmp_path, panels, prior_path, capsys):
    from geoinv.cli import PANELS_FAILED, main

    bad = CampaignSurvey("wide", panels[2].survey, Grid2D((16, 14), 0.5))  # wider than the prior's canvas
    campaign_path = write_campaign(tmp_path / "campaign.h5", [bad])
    status = main(["batch", str(campaign_path), str(tmp_path / "results.h5"), "--vae", prior_path,
                   "--workers", "1", "--starts", "2", "--epochs", "1", "--no-refine", "--quiet"])
    assert status == PANELS_FAILED == 3
    captured = capsys.readouterr()
    assert "failed wide" in captured.out and "1 panel(s) failed" in captured.err
    assert read_batch_results(tmp_path / "results.h5")["wide"]["status"] == "failed"  # still recorded


@pytest.mark.parametrize("address", ["not an address", "tcp://host-without-port", "http://10.0.0.5:8786",
                                     "tcp://10.0.0.5:99999", "tcp://10.0.0.5:8786/path"])
def test_scheduler_addresses_are_checked_before_connecting(address):
    from geoinv.batch import check_scheduler_address

    with pytest.raises(geoinv.ConfigError, match="tcp://HOST:PORT"):
        check_scheduler_address(address)
    assert check_scheduler_address("10.0.0.5:8786") == "tcp://10.0.0.5:8786"


def test_a_scheduler_that_does_not_answer_is_a_message_within_the_timeout(monkeypatch):
    """Something listens but never speaks Dask (it hung past 2 minutes), or nothing listens: both end in a
    ConfigError naming the address, within the connect timeout."""
    import socket
    import threading

    from geoinv import batch

    monkeypatch.setattr(batch, "SCHEDULER_TIMEOUT_S", 2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    started = time.perf_counter()
    with pytest.raises(geoinv.ConfigError, match=f"no Dask scheduler answered at {address}"):
        batch._connect(address)
    assert time.perf_counter() - started < 30
    server.close()
    with pytest.raises(geoinv.ConfigError, match="no Dask scheduler answered"):
        batch._connect(address)  # now nothing listens there


def test_search_rounds_are_a_setting_of_the_bent_ray_default_and_old_keys_stay_valid():
    plain = BatchSettings(forward="eikonal")
    assert BatchSettings(forward="eikonal", search_rounds=None).key("prior") == plain.key("prior")
    assert BatchSettings(forward="eikonal", search_rounds=1).key("prior") != plain.key("prior")
    for refused in ({"forward": "straight-ray"}, {"forward": "eikonal", "epochs": 2},
                    {"forward": "eikonal", "preset": "default-nonlinear"}):
        with pytest.raises(geoinv.ConfigError, match="search_rounds=1 sets the bent-ray default search"):
            BatchSettings(**refused, search_rounds=1)
