"""Pattern statistics of facies models, and misfit measures."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from ._typing import TensorLike
    from .solvers.base import Solutions

__all__ = ["binary_fraction", "connectivity", "mean_thickness", "rmse", "variogram"]


def rmse(predicted: TensorLike, observed: TensorLike, axis: int | None = -1) -> np.ndarray | float:
    """Root-mean-square difference along ``axis``."""
    return np.sqrt(np.mean((np.asarray(predicted) - np.asarray(observed)) ** 2, axis=axis))


def variogram(models: np.ndarray, max_lag: int, axis: int) -> np.ndarray:
    """Experimental semivariogram γ(h) = ½·E[(m(u+h) − m(u))²] for lags 1…max_lag.

    Parameters
    ----------
    models : numpy.ndarray, shape (B, nz, nx)
        Facies models.
    max_lag : int
        Largest lag in cells.
    axis : {1, 2}
        1 along depth (z), 2 along x.
    """
    models = np.asarray(models, dtype=np.float64)
    gamma = np.empty(max_lag)
    for lag in range(1, max_lag + 1):  # loop over lags; every model and cell at once
        head = np.take(models, np.arange(lag, models.shape[axis]), axis=axis)
        tail = np.take(models, np.arange(0, models.shape[axis] - lag), axis=axis)
        gamma[lag - 1] = 0.5 * np.mean((head - tail) ** 2)
    return gamma


def connectivity(models: np.ndarray, max_lag: int, axis: int, threshold: float = 0.5) -> np.ndarray:
    """Two-point connectivity τ(h): P(u and u+h in one connected channel body | both channel).

    Channel bodies are 4-connected components of ``models > threshold``.
    """
    binary = np.asarray(models) > threshold
    labels = np.stack([ndimage.label(image)[0] for image in binary])
    tau = np.empty(max_lag)
    for lag in range(1, max_lag + 1):
        head = np.take(labels, np.arange(lag, labels.shape[axis]), axis=axis)
        tail = np.take(labels, np.arange(0, labels.shape[axis] - lag), axis=axis)
        both = (head > 0) & (tail > 0)
        tau[lag - 1] = np.sum(both & (head == tail)) / max(int(np.sum(both)), 1)
    return tau


def mean_thickness(models: np.ndarray, threshold: float = 0.5) -> float:
    """Mean vertical run length (cells) of channel pixels, over all columns of all models."""
    binary = (np.asarray(models) > threshold).astype(np.int8)
    padded = np.pad(binary, ((0, 0), (1, 1), (0, 0)))
    edges = np.diff(padded, axis=1)
    runs = np.count_nonzero(edges == 1)
    return float(binary.sum() / runs) if runs else 0.0


def binary_fraction(models: np.ndarray, low: float = 0.1, high: float = 0.9) -> float:
    """Fraction of cells below ``low`` or above ``high`` (how binary-like decoded models are)."""
    values = np.asarray(models)
    return float(np.mean((values < low) | (values > high)))


def resimulation_error(solutions: Solutions, observed: TensorLike) -> np.ndarray:
    """Re-simulation MSE of every candidate, ``mean((F(x̂) − y)²)``, shape ``(S, T)``."""
    data = np.asarray(solutions.data, dtype=np.float64)
    target = np.asarray(observed, dtype=np.float64).reshape(data.shape[0], 1, -1)
    return np.mean((data - target) ** 2, axis=-1)


def r_t_curve(solutions: Solutions, observed: TensorLike, max_t: int | None = None) -> np.ndarray:
    """``r_T`` for T = 1 … max_t: the minimum re-simulation MSE among the first T
    candidates (in the solver's ranking order), averaged over the targets (seed 001).

    Solvers with fewer candidates than T keep their last value (a flat curve).
    """
    errors = resimulation_error(solutions, observed)
    max_t = max_t or errors.shape[1]
    running = np.minimum.accumulate(errors, axis=1).mean(axis=0)
    if running.size < max_t:
        running = np.concatenate([running, np.full(max_t - running.size, running[-1])])
    return running[:max_t]
