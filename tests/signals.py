"""Spawning children that can be interrupted, whatever the test run's own SIGINT is."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def sigint_not_ignored() -> Iterator[None]:
    """Children started inside get SIGINT's default action, as at a terminal.

    A shell starts a background job (``pytest ... &`` in a script) with SIGINT ignored,
    and an ignored signal stays ignored across exec: Python then installs no
    KeyboardInterrupt handler, and the child rightly never sees Ctrl-C. Exec resets
    a handled signal to its default, so handling it here for the moment of the spawn
    is enough.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
