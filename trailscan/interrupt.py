"""SIGTERM taken as Ctrl-C while trailscan reads CloudTrail.

A Kubernetes CronJob that reaches its deadline, or a ``kill``, sends SIGTERM.  Python's
default is to die on the spot: no ``finally`` runs, so downloaded and inflated files are
left behind and no coverage says what was not read.  Inside :func:`sigterm_as_interrupt`
SIGTERM raises :class:`Terminated`, a :class:`KeyboardInterrupt`, so every clean-up that
Ctrl-C runs runs for it too, and the command line reports it as it reports Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM."""


_terminated = False


def _terminate(signum: int, frame: object) -> None:
    global _terminated
    _terminated = True
    raise Terminated(f"terminated by signal {signum}")


def interruption(error: BaseException) -> BaseException:
    """What ``error`` stands for.  DuckDB checks for signals while a statement runs and,
    when one arrives, cancels the statement and raises ``RuntimeError("Query
    interrupted")`` in place of the handler's exception (Ctrl-C's too): that error is the
    interruption, :class:`Terminated` after SIGTERM, else :class:`KeyboardInterrupt`."""
    if isinstance(error, RuntimeError) and "interrupted" in str(error).lower():
        return Terminated("terminated") if _terminated else KeyboardInterrupt()
    return error


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread, and a
    statement DuckDB cancelled for a signal raises what the signal stands for
    (:func:`interruption`).  Where the process already handles SIGTERM its own way (or
    ignores it), or outside the main thread, SIGTERM is left as it is."""
    global _terminated
    install = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )
    if install:
        _terminated = False
        signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except RuntimeError as error:
        stands_for = interruption(error)
        if stands_for is error:
            raise
        raise stands_for from None
    finally:
        if install:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
