"""Is the uncertainty calibrated? Coverage of credible intervals and reliability of channel probabilities.

Both are measured over synthetic truths whose answer is known: a calibrated 90 %
interval holds the truth 90 % of the time, and of the cells given a channel
probability near 0.8, about 80 % are channels.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from .._typing import TensorLike
from .._validation import require_count
from ..errors import ConfigError

__all__ = ["interval_coverage", "reliability_curve"]


def interval_coverage(samples: TensorLike, truth: TensorLike, level: float = 0.9) -> np.ndarray:
    """Whether each coordinate's central credible interval holds the true value.

    Parameters
    ----------
    samples : array_like, shape (R, n)
        Posterior draws (e.g. latent vectors of one data set).
    truth : array_like, shape (n,)
        The true values.
    level : float
        Probability mass of the central interval, in (0, 1).

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    if not 0 < level < 1:
        raise ConfigError(f"level must lie in (0, 1), got {level!r}")
    draws = np.asarray(torch.as_tensor(samples).double())
    true = np.asarray(torch.as_tensor(truth).double()).reshape(-1)
    if draws.ndim != 2 or draws.shape[1] != true.size:
        raise ConfigError(f"samples must have shape (R, {true.size}) to match truth, got {draws.shape}")
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return (true >= low) & (true <= high)


def reliability_curve(probability: npt.ArrayLike, outcome: npt.ArrayLike, bins: int = 10) -> dict[str, np.ndarray]:
    """Observed frequency of channels per bin of predicted channel probability.

    Parameters
    ----------
    probability : array_like
        Predicted channel probability per cell (any shape; several truths may be stacked).
    outcome : array_like of bool, same shape
        Whether the cell is a channel in the truth.
    bins : int
        Equal-width bins on [0, 1] (the last includes 1).

    Returns
    -------
    dict
        ``edges`` ``(bins + 1,)``; per bin ``predicted`` (mean predicted probability),
        ``observed`` (fraction of channels), ``count`` (cells); NaN where a bin is empty.
    """
    predicted = np.asarray(torch.as_tensor(probability).double()).ravel()
    observed = np.asarray(torch.as_tensor(outcome)).astype(bool).ravel()
    if predicted.shape != observed.shape:
        raise ConfigError(f"probability and outcome must have the same number of cells, got {predicted.size} "
                          f"and {observed.size}")
    require_count(bins, "bins", error=ConfigError)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(which, weights=predicted, minlength=bins) / count
        frequency = np.bincount(which, weights=observed.astype(float), minlength=bins) / count
    return {"edges": edges, "predicted": mean_predicted, "observed": frequency, "count": count}
