"""Sampling patches from training images (binary facies maps: channel = 1, matrix = 0).

Their files (PNG, NPY, HDF5, GSLIB) are read and written by :mod:`geoinv.io.images`, re-exported here.
"""

from __future__ import annotations

import hashlib
from functools import cached_property

import numpy as np
import torch

from ..errors import ConfigError
from ..io.images import (
    IMAGE_SUFFIXES,
    MAX_GSLIB_VARIABLES,
    MIN_FACIES_FRACTION,
    POLARITIES,
    default_polarity,
    read_image,
    write_image,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_GSLIB_VARIABLES",
    "MIN_FACIES_FRACTION",
    "POLARITIES",
    "PatchSampler",
    "default_polarity",
    "image_hash",
    "read_image",
    "write_image",
]

def image_hash(image: np.ndarray) -> str:
    """SHA-256 of a binary image's shape and pixels (provenance in checkpoints)."""
    binary = np.ascontiguousarray(np.asarray(image) > 0.5)
    digest = hashlib.sha256(str(binary.shape).encode())
    digest.update(np.packbits(binary).tobytes())
    return digest.hexdigest()


class PatchSampler:
    """Random crops of a training image, with held-out rows for test truths.

    Parameters
    ----------
    image : numpy.ndarray, shape (rows, cols)
        Binary training image.
    patch_shape : tuple of int
        ``(nz, nx)`` of each crop; default the reference 129 × 65 model.
    holdout_fraction : float
        Fraction of the image's rows, at the bottom, that training never sees.
        Test crops come from there only.

    Notes
    -----
    Crops are taken by vectorized fancy indexing, so a batch of 100 crops costs
    one gather, not 100 Python slices.
    """

    def __init__(self, image: np.ndarray, patch_shape: tuple[int, ...] = (129, 65),
                 holdout_fraction: float = 0.1) -> None:
        self.image = torch.as_tensor(np.asarray(image) > 0.5, dtype=torch.float32)
        if self.image.ndim != 2:
            raise ConfigError(f"image must be 2-D, got shape {tuple(self.image.shape)}")
        proportion = float(self.image.mean())
        if min(proportion, 1 - proportion) < MIN_FACIES_FRACTION:
            raise ConfigError(f"the training image is (nearly) one facies: {100 * proportion:.2f} % channel; "
                              "crops of it teach a prior nothing about channels")
        self.patch_shape = tuple(int(n) for n in patch_shape)
        if not 0.0 <= holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
        rows, cols = self.image.shape
        nz, nx = self.patch_shape
        split = round(rows * (1.0 - holdout_fraction))
        self.train_rows = (0, split)
        self.test_rows = (split, rows)
        if split < nz or nx > cols or (holdout_fraction > 0 and rows - split < nz):
            raise ConfigError(
                f"patch_shape {self.patch_shape} does not fit the image {tuple(self.image.shape)} "
                f"with holdout_fraction={holdout_fraction}"
            )
        self._quantile_cache: dict[int, torch.Tensor] = {}
        self._row_offsets = torch.arange(nz)
        self._col_offsets = torch.arange(nx)

    @cached_property  # read every adversarial training step; the image does not change
    def train_proportion(self) -> float:
        """Expected channel fraction of a random training crop (cells near the image
        border are covered by fewer crops, so this differs from the image's mean)."""
        nz, nx = self.patch_shape
        row_weight = self._coverage(self.image.shape[0], self.train_rows, nz)
        col_weight = self._coverage(self.image.shape[1], (0, self.image.shape[1]), nx)
        weighted = row_weight @ self.image.double() @ col_weight
        return float(weighted / (row_weight.sum() * col_weight.sum()))

    @cached_property  # read every step of a variogram-matched training; the image does not change
    def train_variograms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Expected indicator variograms of a random training crop along x (lags 1…nx // 2) and z
        (lags 1…nz // 2), the lags the prior report compares.

        Exact, not sampled: each pair of cells is weighted by the number of crop
        positions that hold both (as :attr:`train_proportion` weights cells).
        """
        nz, nx = self.patch_shape
        image = self.image[self.train_rows[0]:self.train_rows[1]].double()
        return (self._crop_variogram(image.T, nx, nz, nx // 2), self._crop_variogram(image, nz, nx, nz // 2))

    def train_proportion_quantiles(self, n: int) -> torch.Tensor:
        """Quantiles at ``(i + ½) / n``, i = 0 … n − 1, of the channel proportion of a random training crop.

        Exact, not sampled: the proportions of every crop position, from one integral image.
        """
        if n not in self._quantile_cache:
            nz, nx = self.patch_shape
            image = self.image[self.train_rows[0]:self.train_rows[1]].double().numpy()
            integral = np.zeros((image.shape[0] + 1, image.shape[1] + 1))
            integral[1:, 1:] = image.cumsum(axis=0).cumsum(axis=1)
            sums = integral[nz:, nx:] - integral[:-nz, nx:] - integral[nz:, :-nx] + integral[:-nz, :-nx]
            levels = (np.arange(n) + 0.5) / n
            self._quantile_cache[n] = torch.as_tensor(np.quantile(sums / (nz * nx), levels), dtype=torch.float32)
        return self._quantile_cache[n]

    @classmethod
    def _crop_variogram(cls, image: torch.Tensor, size: int, across: int, max_lag: int) -> torch.Tensor:
        """γ(h) along the rows of ``image`` (crops ``size`` long that way and ``across`` the other way)."""
        rows, cols = image.shape
        col_weight = cls._coverage(cols, (0, cols), across)
        gamma = torch.empty(max_lag, dtype=torch.float64)
        for lag in range(1, max_lag + 1):  # loop over lags; every cell at once
            # a pair (r, r + lag) lies in the crops whose first row is in [r + lag − size + 1, r]
            row_weight = cls._coverage(rows - lag, (0, rows - lag), size - lag)
            squares = (image[lag:] - image[:-lag]).square()
            gamma[lag - 1] = 0.5 * (row_weight @ squares @ col_weight) / (row_weight.sum() * col_weight.sum())
        return gamma.float()

    @staticmethod
    def _coverage(length: int, index_range: tuple[int, int], size: int) -> torch.Tensor:
        """How many crop positions inside ``index_range`` cover each index."""
        index = torch.arange(length, dtype=torch.float64)
        first, last = index_range[0], index_range[1] - size
        return (torch.minimum(index, torch.tensor(float(last)))
                - torch.maximum(index - size + 1, torch.tensor(float(first))) + 1).clamp(min=0)

    def _crop(self, row_range: tuple[int, int], n: int, generator: torch.Generator | None):
        nz, nx = self.patch_shape
        top = torch.randint(row_range[0], row_range[1] - nz + 1, (n,), generator=generator)
        left = torch.randint(0, self.image.shape[1] - nx + 1, (n,), generator=generator)
        rows = (top[:, None] + self._row_offsets)[:, :, None]
        cols = (left[:, None] + self._col_offsets)[:, None, :]
        return self.image[rows, cols]

    def train_batch(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` crops from the training rows, shape ``(n, nz, nx)``, values in {0, 1}."""
        return self._crop(self.train_rows, n, generator)

    def test_batch(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` crops from the held-out rows, shape ``(n, nz, nx)``."""
        if self.test_rows[1] - self.test_rows[0] < self.patch_shape[0]:
            raise ConfigError("this sampler has no held-out rows (holdout_fraction=0)")
        return self._crop(self.test_rows, n, generator)
