"""A stop asked for by a signal, which the long loops (grid points, training steps) honour at their
next step.

The CLI turns SIGTERM into a ``KeyboardInterrupt`` at once, so the run saves what it finished and
exits. Python cannot raise where the signal lands in a finalizer or a weakref callback: it prints
"Exception ignored" and goes on, and the run then finished its whole grid as if never asked to stop
(seen in ``tests/test_kill_resume.py``, about one SIGTERM in ten landing right after a flush). So the
handler also records the request here, and :func:`check` raises it again at the next point or step.
"""

from __future__ import annotations

_requested: list[int] = []


def request(signum: int) -> None:
    """Record that signal ``signum`` asked the run to stop."""
    _requested.append(signum)


def clear() -> None:
    """Forget earlier requests (the CLI does this when a command returns)."""
    _requested.clear()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was requested and not yet honoured."""
    if _requested:
        raise KeyboardInterrupt(f"stop requested by signal {_requested[0]}")
