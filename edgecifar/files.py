"""Write files atomically: a reader never sees a half-written artifact."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .errors import UserError


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists here (another user's process counts as alive: never touch its files)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _host_tag() -> str:
    """8 hex digits naming this machine: a process id only means something on the host that made it."""
    import socket
    import zlib

    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


HOST = _host_tag()


def owner_tag() -> str:
    """This process' tag for temporary names (after a fork the child has its own pid)."""
    return f"{HOST}-{os.getpid()}"


def sweep_dead(folder, pattern: str) -> list[Path]:
    """Remove what a killed edgecifar process left in `folder`: entries whose name matches `pattern`
    (a regex with (?P<host>...) and (?P<pid>...) groups) made on this host, by this user, by a
    process that is gone. Returns what was removed.

    kill -9 skips every `finally`, so temporary files and folders are named with their host tag and
    process id, and the next run of the same kind clears the dead ones. A live process' entries, and
    those of another machine sharing the folder (NFS, a mounted volume) or another user, are left alone.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    rx = re.compile(pattern)
    for entry in entries:
        m = rx.match(entry.name)
        if not m or m.group("host") != HOST:
            continue
        pid = int(m.group("pid"))
        try:
            if pid == os.getpid() or pid_alive(pid) or entry.lstat().st_uid != os.getuid():
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry)
        except OSError:
            pass  # not ours to remove after all, or gone already
    return removed


OWNER_PATTERN = r"(?P<host>[0-9a-f]{8})-(?P<pid>\d{1,10})"
SCRATCH_PATTERN = rf"^edgecifar-[a-z0-9]+-{OWNER_PATTERN}-"


@contextlib.contextmanager
def scratch_dir(kind: str):
    """A private temporary folder (system temp dir) named edgecifar-KIND-HOST-PID-*, removed afterwards;
    folders of killed processes (SavedModels of an export killed with -9) are cleared first."""
    root = Path(tempfile.gettempdir())
    sweep_dead(root, SCRATCH_PATTERN)
    path = Path(tempfile.mkdtemp(prefix=f"edgecifar-{kind}-{owner_tag()}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The data is fsynced before the rename and the folder after it, so a power cut leaves either
    the old file or the complete new one, never an empty one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Named with the process id, so a later write clears what a killed writer left (sweep_dead).
        sweep_dead(path.parent, rf"^\.{re.escape(path.name)}\.{OWNER_PATTERN}\.\w+{re.escape(suffix or path.suffix + '.tmp')}$")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=suffix or path.suffix + ".tmp", dir=path.parent)
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
    write_text(path, dumps(obj, indent=2) + "\n")


def dumps(obj, **kw) -> str:
    """json.dumps through the one JSON sanitiser (json_finite, json_default): what every file and --json output uses."""
    return json.dumps(json_finite(obj), default=json_default, **kw)


def json_finite(value):
    """`value` with every NaN and infinity (JSON has neither; browsers and strict parsers reject them) as null.

    With json_default, the one JSON sanitiser (files.dumps, files.write_json): reports, the debug reports,
    the --json outputs and the live view's stats use both.
    A null where a quality figure was infinite means "no error at all" (an SQNR of a lossless tensor)."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_finite(v) for v in value]
    return value


def json_default(o):
    """json.dumps' `default` for numpy scalars and arrays and paths (json_finite handles NaN and infinities)."""
    import numpy as np

    if isinstance(o, np.generic):
        return json_finite(o.item())
    if isinstance(o, np.ndarray):
        return json_finite(o.tolist())
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


SIZE_UNITS = {"KiB": (1 << 10, ".0f"), "MiB": (1 << 20, ".2f")}  # unit: (bytes, default number format)


def human_size(n, unit: str | None = None, spec: str | None = None) -> str:
    """Bytes as people read them, in binary units spelled as such: 197 KiB, 2.34 MiB (1 KiB = 1024 bytes).

    `unit` ("KiB" or "MiB") fixes the unit, for sizes compared side by side; `spec` the number's format
    (default .0f for KiB, .2f for MiB; "+.1f" for a signed difference)."""
    if n is None:
        return "-"
    unit = unit or ("KiB" if n < 1 << 20 else "MiB")
    scale, default_spec = SIZE_UNITS[unit]
    return f"{n / scale:{spec or default_spec}} {unit}"
