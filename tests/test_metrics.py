import numpy as np
import pytest

from geoinv.metrics import binary_fraction, connectivity, mean_thickness, rmse, variogram


def test_variogram_of_stripes():
    stripes = np.zeros((1, 8, 6))
    stripes[:, ::2] = 1  # alternating rows
    np.testing.assert_allclose(variogram(stripes, 2, axis=1), [0.5, 0.0])
    np.testing.assert_allclose(variogram(stripes, 2, axis=2), [0.0, 0.0])


def test_connectivity_of_two_bodies():
    image = np.zeros((1, 5, 6))
    image[0, 1, :] = 1
    image[0, 3, :] = 1
    assert connectivity(image, 1, axis=2)[0] == 1.0   # along each channel
    assert connectivity(image, 2, axis=1)[0] == 0.0   # across: two different bodies


def test_thickness_binary_fraction_rmse():
    image = np.zeros((2, 10, 3))
    image[:, 2:5] = 1
    assert mean_thickness(image) == pytest.approx(3.0)
    assert binary_fraction(np.array([0.05, 0.5, 0.95, 0.2])) == 0.5
    assert rmse([1.0, 3.0], [1.0, 1.0]) == pytest.approx(np.sqrt(2))
