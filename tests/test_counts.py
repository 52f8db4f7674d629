"""Every integer count of a config is checked by one rule: an int (not a bool) at or above its least value."""

from __future__ import annotations

import numpy as np
import pytest

from geoinv import ConfigError, Grid2D, Survey
from geoinv.forward.eikonal import Eikonal
from geoinv.sampling import reliability_curve
from geoinv.sampling.rto import RTOConfig
from geoinv.solvers.mcmc import LatentMCMCConfig
from geoinv.solvers.rml import RefillConfig
from geoinv.solvers.schedule import LatentSGDConfig
from geoinv.solvers.searches import ExploreConfig

COUNTS = [
    (lambda value: LatentMCMCConfig(n_chains=value), "n_chains", 2),
    (lambda value: LatentMCMCConfig(n_warmup=value), "n_warmup", 0),
    (lambda value: RefillConfig(rounds=value), "rounds", 1),
    (lambda value: RefillConfig(iterations=value), "iterations", 1),
    (lambda value: RTOConfig(iterations=value), "iterations", 1),
    (lambda value: ExploreConfig(draws_per_start=value), "draws_per_start", 1),
    (lambda value: LatentSGDConfig(explore=value), "explore", 1),
    (lambda value: Eikonal(Grid2D.crosshole(), Survey.crosshole(), workers=value), "workers", 1),
    (lambda value: reliability_curve(np.full(4, 0.5), np.ones(4, bool), bins=value), "bins", 1),
]


@pytest.mark.parametrize(("make", "name", "low"), COUNTS, ids=[f"{name}-{low}" for _, name, low in COUNTS])
@pytest.mark.parametrize("bad", ["below", True, 2.0, "3"])
def test_a_count_refuses_what_is_not_an_integer_at_or_above_its_least(make, name, low, bad):
    value = low - 1 if bad == "below" else bad
    with pytest.raises(ConfigError, match=rf"{name} must be an integer >= {low}\b.*got {value!r}"):
        make(value)


@pytest.mark.parametrize(("make", "name", "low"), COUNTS[:-2], ids=[f"{name}-{low}" for _, name, low in COUNTS[:-2]])
def test_a_count_accepts_a_numpy_integer_as_an_int(make, name, low):
    config = make(np.int64(low + 1))
    assert type(getattr(config, name)) is int
