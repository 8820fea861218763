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


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(f"terminated by signal {signum}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread.  Where the
    process already handles SIGTERM its own way (or ignores it), or outside the main
    thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
