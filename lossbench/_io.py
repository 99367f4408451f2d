"""Output files: atomic writes (write beside the target, then ``os.replace``, so a reader never sees
half a file), a lock while a run owns an output, and content hashes of tensors."""

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


class OutputBusyError(OSError):
    """Another process is writing the same output with other settings."""


@contextlib.contextmanager
def output_lock(path: str | Path, settings: str, *, say=None) -> Iterator[None]:
    """Own ``path`` for the block through ``<path>.lock`` (an advisory ``flock``).

    A second run with the same ``settings`` (e.g. a hash of the metadata) waits for the first and then
    goes on (it finds the work done and resumes); one with other settings fails at once with
    :class:`OutputBusyError`, naming the process that holds it. The lock file is removed on exit; a
    lock left by a killed process is free again (the kernel drops it with the process).
    """
    import fcntl
    import json

    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:
                holder = {}
            if holder.get("settings") not in (None, settings):
                os.close(fd)
                raise OutputBusyError(f"{path} is being written by process {holder.get('pid', '?')} with other "
                                      "settings; wait for it to finish, or choose another output path (-o)") from None
            if say is not None:
                say(f"{path} is being written by process {holder.get('pid', '?')} with the same settings: waiting "
                    "for it, then resuming")
            fcntl.flock(fd, fcntl.LOCK_EX)
        # the holder before us may have removed the file while we waited: then lock the new one
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "settings": settings}).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)  # closing releases the flock


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
