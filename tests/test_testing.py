"""geoinv.testing.check_forward fails on deliberately broken operators, naming what broke."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from geoinv import Grid2D, StraightRay, Survey
from geoinv.forward import ForwardOperator
from geoinv.testing import check_forward, smooth_slowness


@pytest.fixture
def geometry():
    return Grid2D((12, 8), 0.5), Survey.crosshole(0.0, 4.0, np.array([0.7, 1.9, 3.3, 4.6, 5.8]))


class DoubledBackward(StraightRay):
    """The VJP is twice the transpose of the JVP (a classic hand-written adjoint slip)."""

    def _vjp(self, slowness, data_index, state, cotangent):
        return 2 * super()._vjp(slowness, data_index, state, cotangent)


class IgnoresIndex(StraightRay):
    """Claims to compute subsets but returns all data (the bug the data_index contract catches)."""

    computes_subsets = True


class WrongTangent(StraightRay):
    """JVP and VJP agree with each other, but not with the forward: forward squared, derivative linear."""

    linear = False

    def _simulate(self, slowness, data_index):
        times, state = super()._simulate(slowness, data_index)
        return times**2 / 5e-8, state


class SlippedProducts(StraightRay):
    """A batched shortcut that slips: the products of the first model's kernel for every model."""

    def jacobian_products(self, slowness, tangents, data_index=None):
        kernel = self.jacobian(slowness[0], data_index)
        return np.stack([kernel @ tangent for tangent in np.asarray(tangents)]) * 1.5


class TorchQuadratic(ForwardOperator):
    """A plug-in written in torch: t = A s², derivatives by the base class's autograd defaults."""

    def __init__(self, grid, survey):
        super().__init__(grid, survey)
        self.rays = StraightRay(grid, survey)

    def _simulate(self, slowness, data_index):
        return self.rays._kernel.matmul((slowness**2).reshape(slowness.shape[0], -1)) * 1e9, None


def test_check_forward_passes_a_correct_operator(geometry):
    errors = check_forward(StraightRay(*geometry))
    assert max(errors.values()) < 1e-10 and "linear dot test" in errors


def test_a_torch_plugin_gets_its_derivatives_from_the_base_class(geometry):
    operator = TorchQuadratic(*geometry)
    errors = check_forward(operator)
    assert errors["derivative dot test"] < 1e-10 and errors["jvp vs finite differences"] < 1e-3
    slowness = smooth_slowness(operator, 1)[0]
    expected = operator.rays.matrix.toarray() * 2e9 * slowness.numpy().ravel()[None, :]
    np.testing.assert_allclose(operator.jacobian(slowness).toarray(), expected, rtol=1e-10)


@pytest.mark.parametrize("broken, check", [(DoubledBackward, "derivative dot test"),
                                           (IgnoresIndex, "forward data_index"),
                                           (WrongTangent, "jvp vs finite differences"),
                                           (SlippedProducts, "jacobian_products == jacobians @ tangents")])
def test_check_forward_fails_a_broken_operator(geometry, broken, check):
    with pytest.raises(AssertionError, match=re.escape(f"check_forward({broken.__name__}): {check} failed")):
        check_forward(broken(*geometry))


def test_vjp_jvp_validate_shapes(geometry):
    operator = StraightRay(*geometry)
    slowness = smooth_slowness(operator, 2)
    with pytest.raises(Exception, match="cotangent must have shape"):
        operator.vjp(slowness, torch.zeros(2, 3))
    with pytest.raises(Exception, match="tangent must have shape"):
        operator.jvp(slowness, torch.zeros(2, 3))


def test_nonlinear_operator_has_no_adjoint(geometry):
    with pytest.raises(Exception, match="not linear"):
        WrongTangent(*geometry).adjoint(torch.zeros(1, 25))
