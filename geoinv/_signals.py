"""SIGTERM/SIGINT as an exception, and one that cannot be lost (internal).

A signal handler's exception is swallowed when it fires inside a finalizer
(``__del__``, a weakref callback: h5py runs some while writing), and the
process would run on as if never told to stop. So the handler also records
the signal, and :func:`check` — called before a file is renamed into place
and at every solver step — raises it again until someone acknowledges it.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_pending: int | None = None


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT, raised in the main thread so every ``finally`` (temporary files) runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _handle(signum, frame):
    global _pending
    _pending = signum
    raise Interrupted(signum)


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived and was not acknowledged (e.g. it was swallowed)."""
    if _pending is not None:
        raise Interrupted(_pending)


def acknowledge() -> None:
    """The interruption reached a handler (which cleans up and re-raises): stop re-raising it."""
    global _pending
    _pending = None


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block SIGTERM and SIGINT raise :class:`Interrupted`; handlers are restored after."""
    global _pending
    _pending = None
    previous = {sig: signal.signal(sig, _handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous_hook = sys.unraisablehook

    def quiet_hook(unraisable):  # a swallowed interruption is re-raised by check(): no traceback for it
        if not isinstance(unraisable.exc_value, Interrupted):
            previous_hook(unraisable)

    sys.unraisablehook = quiet_hook
    try:
        yield
    except Exception as exc:
        if _pending is not None:  # the signal surfaced as another error (h5py converts exceptions raised in it)
            raise Interrupted(_pending) from exc
        raise
    finally:
        _pending = None
        sys.unraisablehook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)
