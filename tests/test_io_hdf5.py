import h5py
import numpy as np
import pytest

from geoinv import FileFormatError, Grid2D, Survey, SurveyError
from geoinv.io import read_survey, write_survey

from .helpers import refusal_under_memory_limit


@pytest.mark.parametrize("unit", ["s", "ns"])
def test_survey_roundtrip(tmp_path, reference_survey, unit):
    times = reference_survey.distances / 7e7
    survey = reference_survey.with_data(times, 0.25e-9)
    write_survey(tmp_path / "s.h5", survey, Grid2D.crosshole(), time_unit=unit)
    loaded, grid = read_survey(tmp_path / "s.h5")
    np.testing.assert_allclose(loaded.traveltimes, times, rtol=1e-12)
    np.testing.assert_allclose(loaded.errors, 0.25e-9)
    np.testing.assert_array_equal(loaded.pairs, survey.pairs)
    assert grid == Grid2D.crosshole()
    if unit == "ns":
        with h5py.File(tmp_path / "s.h5") as handle:
            assert handle["survey/traveltimes"][0] == pytest.approx(times[0] * 1e9)


def test_bad_files(tmp_path, reference_survey):
    with pytest.raises(FileFormatError, match="does not exist"):
        read_survey(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(FileFormatError, match="HDF5"):
        read_survey(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "empty.h5", "w") as handle:
        handle.create_group("other")
    with pytest.raises(FileFormatError, match="no group"):
        read_survey(tmp_path / "empty.h5")
    write_survey(tmp_path / "neg.h5", reference_survey)
    with h5py.File(tmp_path / "neg.h5", "a") as handle:
        handle["survey"].create_dataset("traveltimes", data=-np.ones(625))
    with pytest.raises(SurveyError, match="negative"):
        read_survey(tmp_path / "neg.h5")


def test_sensor_outside_stored_grid(tmp_path):
    survey = Survey.crosshole(x_receivers=7.5)
    write_survey(tmp_path / "s.h5", survey, Grid2D.crosshole())
    with pytest.raises(SurveyError, match="outside the grid"):
        read_survey(tmp_path / "s.h5")


def test_a_file_locked_by_another_program_is_named_as_locked(tmp_path):
    """h5py's lock error (another process has the file open for writing) is not 'truncated or not HDF5'."""
    import subprocess
    import sys

    from geoinv.io.campaign import CampaignSurvey, read_campaign, write_campaign

    survey = Survey.crosshole()
    path = write_campaign(tmp_path / "campaign.h5", [CampaignSurvey("A", survey.with_data(
        survey.distances / 0.07e9, 0.25e-9))])
    holder = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time\nf = h5py.File(sys.argv[1], 'a')\n"
                               "print('ready', flush=True)\ntime.sleep(60)", str(path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(FileFormatError, match="locked by another program"):
            read_campaign(path)
        with pytest.raises(FileFormatError, match="locked by another program"):
            read_survey(path, group="surveys/A")
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("name", ["pairs", "traveltimes"])
def test_a_dataset_declaring_a_billion_values_is_refused_before_it_is_read(tmp_path, reference_survey, name):
    """A compressed dataset can declare 10⁹ rows in a few kB; reading it whole took 8–16 GB. Read in a child
    process under a 4 GB address-space limit, so a regression fails the test instead of taking the machine."""
    path = tmp_path / "huge.h5"
    write_survey(path, reference_survey.with_data(reference_survey.distances / 7e7, 0.25e-9))
    with h5py.File(path, "a") as handle:
        del handle[f"survey/{name}"]
        shape, dtype = ((10**9, 2), "i8") if name == "pairs" else ((10**9,), "f8")
        handle["survey"].create_dataset(name, shape=shape, dtype=dtype, chunks=True, compression="gzip")
    assert path.stat().st_size < 10**6
    refused = refusal_under_memory_limit("geoinv.read_survey(sys.argv[1])", path)
    assert f"dataset '{name}' declares shape" in refused and "1000000000" in refused
