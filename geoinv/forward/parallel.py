"""Worker processes that run a numpy-kernel operator's per-model solves in parallel.

scikit-fmm holds the GIL, so threads do not overlap its solves; processes do.
A batch of ``B`` models is cut into ``workers`` contiguous chunks, each solved
by one process holding its own copy of the operator. The per-model arithmetic
is the same as in one process, so the results are bit-for-bit those of
``workers=1``.

The states the derivatives reuse (the eikonal's time fields: megabytes per
model) stay in the worker that computed them; the parent holds a small handle
and sends the backward pass of each model to that worker. Sending the states
back and forth cost a third of the forward's time on the reference problem.
A worker keeps the states of its last two batches; a derivative whose state is
gone (an older batch, a restarted worker) solves the forward again, which
gives the same state.
"""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
import signal
import weakref
from collections import OrderedDict
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["ModelPool", "RemoteState"]

#: batches whose states a worker keeps (a forward and the backward of the batch before it)
KEPT_BATCHES = 2


@dataclass(frozen=True)
class RemoteState:
    """Where a model's derivative state lives: a worker of one pool start, a batch, a position in it."""

    start: int
    worker: int
    batch: int
    position: int


def _serve(connection: Any, operator_bytes: bytes) -> None:
    """A worker's loop: simulate chunks (keeping their states) and apply derivatives to them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    operator = pickle.loads(operator_bytes)
    operator.workers = 1
    batches: OrderedDict[int, list] = OrderedDict()
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            reply = _answer(operator, batches, request)
        except Exception as error:  # handed to the parent, which raises it
            try:
                connection.send(("error", error))
            except Exception:  # an error that does not pickle: its type and message do
                connection.send(("error", RuntimeError(f"{type(error).__name__}: {error}")))
        else:
            connection.send(("ok", reply))


def _answer(operator: Any, batches: OrderedDict, request: tuple) -> list:
    kind, shared, payload = request[0], request[1], request[2:]
    if kind == "simulate":
        batch, models = payload
        results = [operator.simulate_numpy(model, *shared) for model in models]
        batches[batch] = [state for _, state in results]
        while len(batches) > KEPT_BATCHES:
            batches.popitem(last=False)
        return [times for times, _ in results]
    method, items = payload
    answers = []
    for model, place, vector in items:
        if place[0] == "given":
            state = place[1]
        else:  # kept here, unless its batch is gone: then the same forward again gives the same state
            kept = batches.get(place[1]) if place[0] == "kept" else None
            state = kept[place[2]] if kept is not None else operator.simulate_numpy(model, *shared)[1]
        answers.append(getattr(operator, method)(model, *shared, state, vector))
    return answers


class ModelPool:
    """``workers`` processes, each with a copy of one operator, solving the models of a batch.

    Parameters
    ----------
    operator : NumpyKernelOperator
        The operator whose per-model methods the workers call; pickled once (its own pool is
        not carried).
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

    _starts = itertools.count()

    def __init__(self, operator: Any, workers: int) -> None:
        self.workers = int(workers)
        self._operator_bytes = pickle.dumps(operator)
        self._connections: list = []
        self._processes: list = []
        self._start = -1
        self._batches = itertools.count()
        self._finalizer: weakref.finalize | None = None

    def _ensure_started(self) -> None:
        if self._connections:
            return
        context = multiprocessing.get_context()
        connections, processes = [], []
        try:
            for _ in range(self.workers):
                parent_end, child_end = context.Pipe()
                process = context.Process(target=_serve, args=(child_end, self._operator_bytes), daemon=True)
                process.start()
                child_end.close()
                connections.append(parent_end)
                processes.append(process)
        except AssertionError as error:  # "daemonic processes are not allowed to have children"
            _stop(connections, processes)
            raise ConfigError("workers > 1 cannot start worker processes inside a daemonic process (a Dask "
                              "or multiprocessing worker); leave workers at 1 there, the pool already runs "
                              "one survey per process") from error
        self._connections, self._processes, self._start = connections, processes, next(self._starts)
        self._finalizer = weakref.finalize(self, _stop, connections, processes)

    def simulate(self, models: list[np.ndarray], shared: tuple) -> tuple[list, list[RemoteState]]:
        """Traveltimes of every model (``simulate_numpy(model, *shared)``) and handles of their states."""
        self._ensure_started()
        batch = next(self._batches)
        chunks = np.array_split(np.arange(len(models)), min(self.workers, len(models)))
        for worker, chunk in enumerate(chunks):
            self._send(worker, ("simulate", shared, batch, [models[i] for i in chunk]))
        times = [result for reply in self._receive(range(len(chunks))) for result in reply]
        handles = [RemoteState(self._start, worker, batch, position)
                   for worker, chunk in enumerate(chunks) for position in range(len(chunk))]
        return times, handles

    def derive(self, method: str, items: list[tuple], shared: tuple) -> list:
        """``method(model, *shared, state, vector)`` for every ``(model, state, vector)``, each in the
        worker that holds its state (states from another pool start are solved again)."""
        self._ensure_started()
        chunks = np.array_split(np.arange(len(items)), min(self.workers, len(items)))
        home = {index: worker for worker, chunk in enumerate(chunks) for index in chunk}
        routed: list[list[int]] = [[] for _ in range(self.workers)]
        for index, (_, state, _) in enumerate(items):
            here = isinstance(state, RemoteState) and state.start == self._start
            routed[state.worker if here else home[index]].append(index)
        for worker, indices in enumerate(routed):
            if indices:
                self._send(worker, ("derive", shared, method, [_item(items[i], self._start) for i in indices]))
        busy = [worker for worker, indices in enumerate(routed) if indices]
        results: list[Any] = [None] * len(items)
        for worker, reply in zip(busy, self._receive(busy)):
            for index, result in zip(routed[worker], reply):
                results[index] = result
        return results

    def _send(self, worker: int, request: tuple) -> None:
        try:
            self._connections[worker].send(request)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as error:
            self._broken(error)

    def _receive(self, workers) -> list[list]:
        """Every worker's reply (all read before an error is raised, so none is left in a pipe)."""
        replies = []
        for worker in workers:
            try:
                replies.append(self._connections[worker].recv())
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as error:
                self._broken(error)
        for status, reply in replies:
            if status == "error":
                raise reply
        return [reply for _, reply in replies]

    def _broken(self, error: BaseException) -> None:
        self.close()
        raise BrokenProcessPool("a worker process of the forward operator ended (killed, or out of memory); "
                                "the next batch starts new ones") from error

    def close(self) -> None:
        """Stop the worker processes and wait for them (a later call starts them again)."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._connections, self._processes = [], []


def _item(item: tuple, start: int) -> tuple:
    """``(model, place, vector)``: the state kept in the worker, given with the request, or to solve again."""
    model, state, vector = item
    if not isinstance(state, RemoteState):
        return model, ("given", state), vector
    return model, (("kept", state.batch, state.position) if state.start == start else ("solve",)), vector


def _stop(connections: list, processes: list) -> None:
    for connection in connections:
        try:
            connection.send(None)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            pass
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join()
    for connection in connections:
        connection.close()
