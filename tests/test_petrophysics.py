import pytest
import torch

from geoinv import ConfigError, FaciesVelocity, m_per_ns_to_m_per_s, ns_to_s, s_to_ns


def test_reference_values():
    petro = FaciesVelocity()
    model = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)
    velocity = petro.velocity(model)
    torch.testing.assert_close(velocity, torch.tensor([0.08e9, 0.06e9, 0.07e9], dtype=torch.float64))
    torch.testing.assert_close(petro(model), 1 / velocity)


def test_units_and_interpolation():
    si = FaciesVelocity(6e7, 8e7, unit="m/s", interpolation="slowness")
    model = torch.tensor([0.5], dtype=torch.float64)
    expected = 0.5 * (1 / 6e7 + 1 / 8e7)
    assert si.slowness(model).item() == pytest.approx(expected)
    assert m_per_ns_to_m_per_s(0.06) == pytest.approx(6e7)
    assert s_to_ns(ns_to_s(3.5)) == pytest.approx(3.5)


@pytest.mark.parametrize("interpolation", ["velocity", "slowness"])
def test_gradcheck(interpolation):
    petro = FaciesVelocity(interpolation=interpolation, unit="m/s", channel_velocity=0.6, matrix_velocity=0.8)
    model = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(petro, (model,))


@pytest.mark.parametrize("kwargs, match", [
    ({"channel_velocity": 0.0}, "channel_velocity"),
    ({"matrix_velocity": -1.0}, "matrix_velocity"),
    ({"matrix_velocity": float("nan")}, "matrix_velocity"),
    ({"unit": "km/s"}, "unit"),
    ({"interpolation": "log"}, "interpolation"),
])
def test_rejects_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FaciesVelocity(**kwargs)
