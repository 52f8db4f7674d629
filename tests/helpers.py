"""Small real components shared by the tests (not mocks: a real decoder, just tiny)."""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from geoinv import StandardNormalPrior
from geoinv._float_traps import _libm

#: latent-SGD settings that recover a TinyDecoder truth on the small fixtures' grid in ~1 s
SMALL = {"step_size": 5e-3, "step_decay": 0.97, "epochs": 60, "batch_size": 5, "reg_weight": 1.0,
         "reg_decay": 0.99, "n_starts": 6, "progress": False, "seed": 1}


class TinyDecoder(nn.Module, StandardNormalPrior):
    """A fixed smooth decoder g(z) = sigmoid(W z + b) onto a small grid, with z ~ N(0, I)."""

    def __init__(self, shape, latent_dim=3, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        n_cells = shape[0] * shape[1]
        zz, xx = torch.meshgrid(torch.linspace(0, 1, shape[0]), torch.linspace(0, 1, shape[1]), indexing="ij")
        basis = [torch.sin(math.pi * (k + 1) * zz + k) * torch.cos(math.pi * xx * (k % 2 + 1))
                 for k in range(latent_dim)]
        self.weight = nn.Parameter(2.0 * torch.stack([b.reshape(-1) for b in basis], dim=1), requires_grad=False)
        self.bias = nn.Parameter(0.2 * torch.randn(n_cells, generator=generator), requires_grad=False)
        self._latent_dim, self._model_shape = latent_dim, tuple(shape)

    @property
    def latent_dim(self):
        return self._latent_dim

    @property
    def model_shape(self):
        return self._model_shape

    @property
    def device(self):
        return self.weight.device

    def decode_logits(self, latent):
        return (latent @ self.weight.T + self.bias).reshape(-1, *self.model_shape)

    def decode(self, latent):
        return torch.sigmoid(self.decode_logits(latent))


@contextmanager
def float_traps_restored():
    """Run a block that may switch on floating-point traps (pyGIMLi's Triangle meshing does, process-wide:
    a later inf or NaN anywhere, e.g. h5py's float16 conversion, then kills the process with SIGFPE),
    and switch them off again after it."""
    libm = _libm()
    try:
        yield
    finally:
        if libm is not None:
            libm.fedisableexcept(libm.fegetexcept())


def refusal_under_memory_limit(call: str, path, gib: int = 4, imports: str = "") -> str:
    """Run ``call`` (Python text reading ``sys.argv[1]``, e.g. ``"geoinv.read_survey(sys.argv[1])"``) on
    ``path`` in a child process whose address space is capped at ``gib`` GiB, so that a reader that
    allocates without bound fails there instead of taking the machine's memory. The call must raise
    ``geoinv.FileFormatError``; returns the child's stdout (``"refused: <message>"``)."""
    import subprocess
    import sys

    program = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({gib} << 30, {gib} << 30))\n"
               f"import geoinv\n{imports}\n"
               f"try:\n    {call}\nexcept geoinv.FileFormatError as exc:\n"
               "    print('refused:', exc); sys.exit(0)\nsys.exit(3)")
    done = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
