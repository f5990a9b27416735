"""Write files atomically: a reader never sees a half-written artifact."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from .errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The data is fsynced before the rename and the folder after it, so a power cut leaves either
    the old file or the complete new one, never an empty one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write to {path.parent}: {e.strerror}; choose a writable output directory") from None
    os.close(fd)
    # mkstemp makes 0600 files; artifacts should get the usual permissions (umask applies).
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    tmp = Path(tmp)
    try:
        yield tmp
        fsync(tmp)
        os.replace(tmp, path)
        fsync(path.parent)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}; free some disk space or choose another output "
                        "directory (nothing was replaced)") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def fsync(path) -> None:
    """Flush a file's (or a folder's) data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (and folders on some systems) do not support fsync: best effort
    finally:
        os.close(fd)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(o):
    """json.dumps' `default` for numpy scalars and arrays and paths: the one JSON sanitiser."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path, chunk=1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def ensure_writable_dir(out, option: str = "--out") -> None:
    """Create `out` (and parents) and prove a file can be written there, before any slow work starts.

    Folders created for the probe are removed again when it fails, so nothing is left behind.
    """
    out = Path(out)
    created = []
    try:
        for p in reversed([out, *out.parents]):
            if not p.exists():
                p.mkdir()
                created.append(p)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        for p in reversed(created):
            try:
                p.rmdir()
            except OSError:
                pass
        raise UserError(f"cannot write to output directory {out}: {e.strerror or e}; pass {option} to a writable folder") from None


def human_size(n) -> str:
    """Bytes as people read them, in binary units spelled as such: 197 KiB, 2.34 MiB (1 KiB = 1024 bytes)."""
    if n is None:
        return "-"
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"
