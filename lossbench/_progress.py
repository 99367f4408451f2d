"""One place that decides whether a progress bar is shown.

An explicit argument wins; otherwise the bar shows only when stderr is a terminal, so it steps aside
under pytest's capture and in CI logs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def show_progress(progress: bool | None) -> bool:
    """Resolve a user's ``progress`` argument: None means "only on an interactive terminal"."""
    if progress is not None:
        return bool(progress)
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(iterable: Iterable[T] | None = None, *, progress: bool | None = None, **kwargs) -> "tqdm[T]":
    """A tqdm bar over ``iterable`` that is disabled unless :func:`show_progress` says otherwise."""
    return tqdm(iterable, disable=not show_progress(progress), dynamic_ncols=True, leave=False, **kwargs)

