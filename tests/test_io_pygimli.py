"""pyGIMLi interchange: Survey ↔ DataContainer ↔ .sgt, Grid2D ↔ mesh, model vectors."""

import numpy as np
import pygimli as pg
import pytest

import geoinv
from geoinv import FileFormatError, Grid2D, GridError, Survey, SurveyError
from geoinv.io.pygimli import (
    grid_from_mesh,
    grid_to_mesh,
    mesh_cell_order,
    model_from_mesh,
    model_to_mesh,
    survey_from_data_container,
    survey_to_data_container,
)

from .helpers import float_traps_restored, refusal_under_memory_limit


@pytest.fixture
def crosshole_with_data():
    survey = Survey.crosshole(0.0, 6.5, np.arange(1, 6) * 1.0)
    rng = np.random.default_rng(0)
    times = survey.distances / 0.07e9 + rng.uniform(0, 1e-9, survey.n_data)
    return survey.with_data(times, np.linspace(0.2e-9, 0.4e-9, survey.n_data))


def _assert_same_survey(first: Survey, second: Survey):
    np.testing.assert_allclose(second.source_positions, first.source_positions, atol=1e-12)
    np.testing.assert_allclose(second.receiver_positions, first.receiver_positions, atol=1e-12)
    for name in ("traveltimes", "errors"):
        np.testing.assert_allclose(getattr(second, name), getattr(first, name), rtol=1e-12)


def test_data_container_round_trip_keeps_geometry_times_errors_and_depth_sign(crosshole_with_data):
    data = survey_to_data_container(crosshole_with_data)
    assert data.size() == crosshole_with_data.n_data
    sensors = np.asarray(data.sensors())
    # pyGIMLi's y points up: y = −z
    np.testing.assert_allclose(sensors[:, 1], -np.concatenate([crosshole_with_data.sources[:, 1],
                                                               crosshole_with_data.receivers[:, 1]]))
    np.testing.assert_allclose(np.asarray(data["t"]), crosshole_with_data.traveltimes)
    back = survey_from_data_container(data)
    _assert_same_survey(crosshole_with_data, back)
    np.testing.assert_array_equal(back.pairs, crosshole_with_data.pairs)


def test_sensors_used_as_source_and_receiver_stay_shared():
    positions = np.column_stack([np.arange(6.0), np.zeros(6)])  # a surface line: every sensor shoots and records
    pairs = np.array([(s, r) for s in range(6) for r in range(6) if s != r])
    survey = Survey(positions, positions, pairs, np.full(len(pairs), 1e-8), 1e-10)
    data = survey_to_data_container(survey)
    assert data.sensorCount() == 6
    again = survey_to_data_container(survey_from_data_container(data))
    assert again.sensorCount() == 6
    np.testing.assert_array_equal(np.asarray(again["s"]), np.asarray(data["s"]))
    np.testing.assert_array_equal(np.asarray(again["g"]), np.asarray(data["g"]))


def test_sgt_file_round_trip_through_pygimli(crosshole_with_data, tmp_path):
    path = geoinv.write_survey(tmp_path / "picks.sgt", crosshole_with_data)
    loaded = pg.physics.traveltime.load(str(path))  # pyGIMLi itself reads what we wrote
    np.testing.assert_allclose(np.asarray(loaded["t"]), crosshole_with_data.traveltimes, rtol=1e-12)
    survey, grid = geoinv.read_survey(path)
    assert grid is None
    _assert_same_survey(crosshole_with_data, survey)
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left behind


SGT_WITHOUT_ERRORS = """4
# x y
0 101.0
1 101.5
2 101.2
3 100.4
4
# s g t valid
1 2 1.0e-8 1
1 3 2.0e-8 1
1 4 3.0e-8 0
2 4 2.5e-8 1
"""


def test_file_without_err_column_is_refused_until_an_error_model_is_given(tmp_path):
    path = tmp_path / "line.sgt"
    path.write_text(SGT_WITHOUT_ERRORS)
    with pytest.raises(SurveyError, match=r"no 'err' column.*absolute_error"):
        geoinv.read_survey(path)
    with pytest.warns(UserWarning, match="dropped 1 of 4 data marked invalid"):
        survey, _ = geoinv.read_survey(path, absolute_error=0.5e-9, relative_error=0.02)
    np.testing.assert_allclose(survey.traveltimes, [1e-8, 2e-8, 2.5e-8])
    np.testing.assert_allclose(survey.errors, 0.5e-9 + 0.02 * survey.traveltimes)


def test_surface_line_with_topography_loads_and_gets_a_grid_or_a_named_refusal(tmp_path):
    path = tmp_path / "line.sgt"
    path.write_text(SGT_WITHOUT_ERRORS)
    with pytest.warns(UserWarning):
        survey, _ = geoinv.read_survey(path, absolute_error=0.5e-9)
    np.testing.assert_allclose(survey.sources[:, 1], [-101.0, -101.5])  # elevation up → depth down
    grid = Grid2D.covering(survey, spacing=0.25, margin=1.0)
    survey.check_grid(grid)
    assert grid.origin[0] <= -101.5 - 1.0 + 1e-9 and grid.z_edges[-1] >= -100.4 + 1.0 - 1e-9
    too_small = Grid2D((8, 8), 0.25, (grid.origin[0], grid.origin[1]))
    with pytest.raises(SurveyError, match=r"receivers\[1\] at \(x=2 m, z=-101.2 m\) lies outside the grid"):
        survey.check_grid(too_small)


def test_unknown_suffixes_and_misplaced_options_are_refused(tmp_path, crosshole_with_data):
    with pytest.raises(FileFormatError, match=r"unknown survey file suffix '\.xyz'"):
        geoinv.read_survey(tmp_path / "x.xyz")
    with pytest.raises(FileFormatError, match=r"cannot write a survey as '\.xyz'"):
        geoinv.write_survey(tmp_path / "x.xyz", crosshole_with_data)
    with pytest.raises(FileFormatError, match="neither a grid"):
        geoinv.write_survey(tmp_path / "x.sgt", crosshole_with_data, grid=Grid2D((4, 4)))


@pytest.fixture
def offset_grid():
    return Grid2D((7, 4), (0.5, 0.25), (-2.0, 10.0))  # non-square cells, not square, origin offset


def test_grid_mesh_round_trip_on_a_non_square_grid_with_an_offset(offset_grid):
    mesh = grid_to_mesh(offset_grid)
    assert mesh.cellCount() == offset_grid.n_cells
    assert grid_from_mesh(mesh) == offset_grid


def test_model_vectors_follow_the_cells_both_ways(offset_grid):
    centres = offset_grid.cell_centers()
    model = (centres[:, 0] + 10 * centres[:, 1]).reshape(offset_grid.shape)  # a function of position
    mesh = grid_to_mesh(offset_grid)
    vector = model_to_mesh(model, offset_grid)
    expected = [cell.center().x() + 10 * -cell.center().y() for cell in mesh.cells()]
    np.testing.assert_allclose(vector, expected)
    np.testing.assert_allclose(model_to_mesh(model, offset_grid, mesh), expected)
    np.testing.assert_allclose(model_from_mesh(vector, offset_grid), model)
    batch = model_to_mesh(np.stack([model, 2 * model]), offset_grid)
    np.testing.assert_allclose(model_from_mesh(batch, offset_grid)[1], 2 * model)


def test_a_mesh_of_another_grid_is_refused(offset_grid):
    shifted = Grid2D(offset_grid.shape, offset_grid.spacing, (offset_grid.origin[0] + 1.0, offset_grid.origin[1]))
    with pytest.raises(GridError, match="do not coincide"):
        mesh_cell_order(grid_to_mesh(shifted), offset_grid)
    with pytest.raises(GridError, match="has 12 cells"):
        mesh_cell_order(grid_to_mesh(Grid2D((3, 4))), offset_grid)
    with float_traps_restored():  # Triangle switches floating-point traps on for the whole process
        triangles = pg.meshtools.createMesh(pg.meshtools.createRectangle(start=[0, 0], end=[1, 1]), quality=30)
    with pytest.raises(GridError, match="not a regular 2-D grid"):
        grid_from_mesh(triangles)


def test_covering_grid_snaps_edges_to_the_spacing_so_sensors_sit_on_corners():
    survey = Survey.crosshole()  # sensors at x = 0 and 6.5 m, z = 0.5 … 12.5 m
    grid = Grid2D.covering(survey, spacing=0.1)
    assert grid.origin == pytest.approx((0.5, 0.0)) and grid.shape == (120, 65)
    survey.check_grid(grid)
    padded = Grid2D.covering(survey, spacing=(0.25, 0.5), margin=0.3)
    assert padded.origin == pytest.approx((0.0, -0.5)) and padded.spacing == (0.25, 0.5)
    assert padded.x_edges[-1] >= 6.8 - 1e-9 and padded.z_edges[-1] >= 12.8 - 1e-9
    with pytest.raises(GridError, match="margin"):
        Grid2D.covering(survey, margin=-1.0)


def test_files_with_the_vertical_in_the_third_column_read_as_depth(tmp_path):
    path = tmp_path / "xz.sgt"
    path.write_text("2\n# x y z\n0 0 -1.5\n4 0 -2.5\n1\n# s g t err\n1 2 5e-8 1e-9\n")
    survey, _ = geoinv.read_survey(path)
    np.testing.assert_allclose(survey.sources, [[0.0, 1.5]])
    np.testing.assert_allclose(survey.receivers, [[4.0, 2.5]])


_HEADER_CASES = {
    "a billion sensors": "1000000000\n# x y\n0 0\n1 0\n2\n# s g t\n1 2 1e-8\n2 1 1e-8\n",
    "more data than rows": "2\n# x y\n0 0\n1 0\n1000000000\n# s g t\n1 2 1e-8\n",
    "a sensor count that runs into the data": "3\n# x y\n0 0\n1 0\n2\n# s g t\n1 2 1e-8\n2 1 1e-8\n",
}


@pytest.mark.parametrize("case", sorted(_HEADER_CASES))
def test_header_counts_are_checked_against_the_file_before_pygimli_allocates(case, tmp_path):
    """A header claiming 10⁹ sensors or data took 22.5 GB in pyGIMLi's loader; now it is refused from the
    file's length. Read in a child process under a 6 GB address-space limit, so a regression fails the
    test instead of taking the machine's memory."""
    path = tmp_path / "picks.sgt"
    path.write_text(_HEADER_CASES[case])
    refused = refusal_under_memory_limit("geoinv.read_survey(sys.argv[1])", path, gib=6)
    assert "refused: picks.sgt" in refused and ("declares" in refused or "expected" in refused)
