import numpy as np
import pytest
import torch

from geoinv import Grid2D, Survey


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(12345)


@pytest.fixture(scope="session")
def reference_grid():
    return Grid2D.crosshole()


@pytest.fixture(scope="session")
def reference_survey():
    return Survey.crosshole()


@pytest.fixture
def small_grid():
    return Grid2D((12, 8), 0.5)


@pytest.fixture
def small_survey():
    depths = np.array([0.7, 1.9, 3.3, 4.6, 5.8])
    return Survey.crosshole(0.0, 4.0, depths)


#: latent vector of the tiny problem's truth (3 latent dimensions)
TINY_TRUTH = torch.tensor([[0.8, -0.5, 0.3]])


@pytest.fixture
def tiny_latent_problem(small_grid, small_survey):
    """Straight-ray latent tomography of a tiny decoder's model at TINY_TRUTH, σ = 0.05 ns."""
    from geoinv import FaciesVelocity, StraightRay, build_problem

    from .helpers import TinyDecoder

    prior, petro = TinyDecoder(small_grid.shape), FaciesVelocity()
    operator = StraightRay(small_grid, small_survey)
    field = operator.make_synthetic_data(petro.slowness(prior.decode(TINY_TRUTH)[0].double()), 0.05e-9,
                                         torch.Generator().manual_seed(3))
    return build_problem(field, prior, operator, petro)
