"""Atomic file writes: write beside the target, then ``os.replace``, so a reader never sees half a file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_writable(path: str | Path) -> None:
    """Fail before any work if ``path`` cannot be written (a read-only folder, a parent that is a file,
    a full disk): ``OSError`` with one line naming the path and the reason."""
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=f".{path.name}.", suffix=".probe", dir=path.parent) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(f"cannot write {path}: {reason}; choose another output path (-o) or free the disk") from None


def remove_stale_temporaries(path: str | Path, *, before: float) -> list[Path]:
    """Remove the temporaries of ``path`` (from :func:`atomic_path`) last written before ``before``
    (a ``time.time()``): what a run killed mid-write left behind. Returns what was removed."""
    import glob

    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if tmp.stat().st_mtime < before:
                tmp.unlink()
                removed.append(tmp)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def torch_save_atomic(obj: object, path: str | Path) -> None:
    """``torch.save`` through a buffer: the zip then names its root folder ``archive`` rather than
    after the random temporary file, so the same object always gives the same bytes (and sha256)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of named tensors (names, dtypes, shapes and bytes, in order), independent of how
    ``torch.save`` lays out its zip file."""
    digest = hashlib.sha256()
    for name, t in state.items():
        _update(digest, f"{name}:", t)
    return digest.hexdigest()


def tensors_sha256(tensors: Iterable[torch.Tensor]) -> str:
    """sha256 of a sequence of tensors (dtypes, shapes and bytes, in order)."""
    digest = hashlib.sha256()
    for t in tensors:
        _update(digest, "", t)
    return digest.hexdigest()


def _update(digest, prefix: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    digest.update(f"{prefix}{t.dtype}:{tuple(t.shape)};".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
