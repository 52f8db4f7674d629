"""Type aliases of geoinv's public signatures (what a caller may pass)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import torch

#: a file path
PathType: TypeAlias = str | os.PathLike[str]
#: numbers, arrays or tensors (converted where they are used)
TensorLike: TypeAlias = torch.Tensor | npt.ArrayLike
#: which data of a survey: indices (a tensor, an array or a sequence), a slice, or None for all
DataIndex: TypeAlias = torch.Tensor | np.ndarray | Sequence[int] | slice | None
#: a noise level per datum (data unit), one for all, or None for the problem's own
NoiseStd: TypeAlias = float | TensorLike | None
#: a velocity range (m/s) that picks must imply, or None to skip the check
VelocityRange: TypeAlias = tuple[float, float] | None
#: a torch device or its name
Device: TypeAlias = str | torch.device
