"""The lossbench error family: each names the bad input and what would be right."""

from __future__ import annotations


class LossbenchError(Exception):
    """Base class of every error lossbench raises on purpose."""


def check_choice(kind: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError("unknown norm 'fliter'; expected one of ...")`` for an unknown option."""
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {', '.join(choices)}")


class DataError(LossbenchError, FileNotFoundError):
    """A data set could not be found or read."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none): what a one-line error
    quotes of a library's multi-line one."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class CheckpointError(LossbenchError):
    """A checkpoint or cache entry is missing, corrupt or for another config."""


class NotACheckpointError(CheckpointError):
    """A readable file that is not a lossbench checkpoint (e.g. a plain state dict)."""


class SurfaceFileError(LossbenchError):
    """An HDF5 file is not a readable surface or direction file."""


class NonFiniteLossError(LossbenchError, FloatingPointError):
    """A grid point evaluated to NaN or infinity.

    Attributes:
        coords: the grid coordinates (alpha,) or (alpha, beta) of the point.
        value: the non-finite loss.
    """

    def __init__(self, coords: tuple[float, ...], value: float, dataset: str = "") -> None:
        self.coords = coords
        self.value = value
        where = ", ".join(f"{name}={c:+.6g}" for name, c in zip(("alpha", "beta"), coords))
        on = f" on {dataset}" if dataset else ""
        super().__init__(
            f"non-finite loss {value}{on} at ({where}); the perturbed network diverges there. "
            "Shrink the grid range, or pass allow_nonfinite=True (CLI: --allow-nonfinite) to record it."
        )
