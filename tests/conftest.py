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
