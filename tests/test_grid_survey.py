import numpy as np
import pytest

from geoinv import Grid2D, GridError, Survey, SurveyError


def test_grid_geometry():
    grid = Grid2D((3, 2), (0.5, 1.0), (10.0, -1.0))
    np.testing.assert_allclose(grid.z_edges, [10.0, 10.5, 11.0, 11.5])
    np.testing.assert_allclose(grid.x_centers, [-0.5, 0.5])
    centres = grid.cell_centers()
    assert centres.shape == (6, 2)
    np.testing.assert_allclose(centres[1], [0.5, 10.25])  # row-major: (0, 1) is second
    assert grid.contains([[-1.0, 10.0], [1.0, 11.5]]).all()
    assert not grid.contains([[1.01, 11.0]]).any()


@pytest.mark.parametrize("kwargs, match", [
    ({"shape": (0, 3)}, "shape"),
    ({"shape": (3, 3), "spacing": -0.1}, "spacing"),
    ({"shape": (3, 3), "spacing": float("nan")}, "spacing"),
    ({"shape": (3, 3), "origin": (0.0, float("inf"))}, "origin"),
])
def test_grid_rejects_bad_definitions(kwargs, match):
    with pytest.raises(GridError, match=match):
        Grid2D(**kwargs)


def test_grid_check_model_names_expected_shape():
    with pytest.raises(GridError, match=r"\(batch, 129, 65\)"):
        Grid2D.crosshole().check_model(np.zeros((2, 65, 129)))


def test_crosshole_reference_geometry(reference_survey):
    assert reference_survey.n_data == 625
    assert reference_survey.sources.shape == (25, 2)
    np.testing.assert_allclose(reference_survey.sources[:, 1], np.arange(1, 26) * 0.5)
    np.testing.assert_allclose(reference_survey.receivers[:, 0], 6.5)
    # source-major order
    assert tuple(reference_survey.pairs[1]) == (0, 1)
    assert reference_survey.distances[0] == pytest.approx(6.5)


def test_survey_with_data_roundtrip(reference_survey):
    times = reference_survey.distances / 7e7
    survey = reference_survey.with_data(times, 0.25e-9)
    np.testing.assert_array_equal(survey.traveltimes, times)
    assert survey.errors.shape == (625,)


@pytest.mark.parametrize("change, match", [
    ({"traveltimes": [np.nan, 1.0]}, "NaN"),
    ({"traveltimes": [-1e-9, 1e-9]}, "negative"),
    ({"traveltimes": [1e-9]}, "pairs"),
    ({"traveltimes": [1e-9, 1e-9], "errors": 0.0}, "errors"),
    ({"traveltimes": [1e-9, 1e-9], "errors": [1e-9, -1e-9]}, "errors"),
    ({"pairs": [[0, 0], [0, 5]]}, "receiver 5"),
    ({"pairs": [[-1, 0], [0, 0]]}, "source -1"),
    ({"sources": [[0.0, 1.0, 2.0]]}, "sources"),
    ({"receivers": [[np.inf, 1.0]]}, "receivers"),
])
def test_survey_validation(change, match):
    arguments = {"sources": [[0.0, 1.0]], "receivers": [[2.0, 1.0], [2.0, 2.0]]}
    arguments.update(change)
    with pytest.raises(SurveyError, match=match):
        Survey(**arguments)


def test_sensor_outside_grid_is_named(reference_grid):
    survey = Survey.crosshole(x_receivers=7.0)
    with pytest.raises(SurveyError, match=r"receivers\[0\].*outside the grid"):
        survey.check_grid(reference_grid)
