"""Atomic file writes: a failed command never leaves a partial file behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from planner.errors import PlannerError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    ensure_writable_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            # mkstemp creates 0600; give the result the mode an ordinary new file would get.
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging directory; on success its files are moved into `path` (created if needed).

    Files are renamed one by one, each rename atomic, so a reader never sees a half-written file,
    and a failure inside the block leaves `path` untouched.
    """
    target = Path(path)
    parent = target.parent if target.parent != Path("") else Path(".")
    ensure_writable_dir(parent)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".stage", dir=parent))
    try:
        yield stage
        target.mkdir(parents=True, exist_ok=True)
        for item in sorted(stage.iterdir()):
            dest = target / item.name
            if dest.is_dir() and item.is_dir():
                shutil.rmtree(dest)
            os.replace(item, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` if needed and check that we can write into it; raise PlannerError if not."""
    p = Path(path) if str(path) else Path(".")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlannerError(f"cannot create output directory {p}: {exc.strerror or exc}") from None
    if not p.is_dir():
        raise PlannerError(f"output path {p} exists and is not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise PlannerError(f"output directory {p} is not writable")
    return p


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
