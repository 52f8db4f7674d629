"""Worker processes that run a numpy-kernel operator's per-model solves in parallel.

scikit-fmm holds the GIL, so threads do not overlap its solves; processes do.
A batch of ``B`` models is cut into ``workers`` contiguous chunks, each solved
by one process holding its own copy of the operator. The per-model arithmetic
is the same as in one process, so the results are bit-for-bit those of
``workers=1``.
"""

from __future__ import annotations

import multiprocessing
import pickle
import weakref
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

__all__ = ["ModelPool"]

_WORKER_OPERATOR: Any = None


def _install(operator_bytes: bytes) -> None:
    """Worker initializer: unpickle the operator once."""
    global _WORKER_OPERATOR
    _WORKER_OPERATOR = pickle.loads(operator_bytes)
    _WORKER_OPERATOR.workers = 1  # a worker solves its chunk itself


def _run_chunk(method: str, shared: tuple, per_model: list[tuple]) -> list:
    call = getattr(_WORKER_OPERATOR, method)
    return [call(*arguments[:1], *shared, *arguments[1:]) for arguments in per_model]


class ModelPool:
    """A pool of ``workers`` processes, each with a copy of one operator.

    Parameters
    ----------
    operator : NumpyKernelOperator
        The operator whose per-model methods the workers call; pickled once per worker
        (its own pool is not carried).
    workers : int
        Number of processes (>= 2).

    Notes
    -----
    Workers start on first use with the platform's default start method (as
    torch's ``DataLoader`` workers do): forked on Linux, spawned on macOS and
    Windows, where a script must guard its top level with
    ``if __name__ == "__main__":``. They run numpy and scikit-fmm only, never
    torch. They end with :meth:`close`, when the operator is garbage-collected,
    or at interpreter exit.
    """

    def __init__(self, operator: Any, workers: int) -> None:
        self.workers = int(workers)
        self._operator_bytes = pickle.dumps(operator)
        self._executor: ProcessPoolExecutor | None = None
        self._finalizer: weakref.finalize | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(),
                                                 initializer=_install, initargs=(self._operator_bytes,))
            self._finalizer = weakref.finalize(self, self._executor.shutdown, wait=False, cancel_futures=True)
        return self._executor

    def map(self, method: str, per_model: list[tuple], shared: tuple = ()) -> list:
        """``[operator.method(first, *shared, *rest) for (first, *rest) in per_model]``, in parallel.

        ``per_model`` holds one tuple of arguments per model (the model first); ``shared``
        arguments (e.g. the data index) are inserted after the model's first argument.
        """
        chunks = np.array_split(np.arange(len(per_model)), min(self.workers, len(per_model)))
        try:
            futures = [self._pool().submit(_run_chunk, method, shared, [per_model[i] for i in chunk])
                       for chunk in chunks]
            return [result for future in futures for result in future.result()]
        except BrokenProcessPool:
            self.close()  # a worker died (killed, out of memory): the next batch starts a fresh pool
            raise

    def close(self) -> None:
        """Stop the worker processes and wait for them (a later call starts them again)."""
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = None
        self._finalizer = None

