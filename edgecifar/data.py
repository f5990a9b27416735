"""Stage 1 — data: load the real CIFAR-10 from the standard python layout, safely.

Lookup order (first hit wins):
    1. an explicit path (``--data-dir``): a ``cifar-10-batches-py`` folder, its parent,
       or the ``cifar-10-python.tar.gz`` archive
    2. the ``EDGECIFAR_DATA`` environment variable (same forms)
    3. ``~/.keras/datasets/cifar-10-batches-py`` (where Keras caches it)
    4. the normal Keras download (needs the network and the ``train`` extra)

Everything read is validated (shapes, label range, per-split counts) and unpickled with a
restricted unpickler that only admits numpy arrays, lists, ints and bytes: a batch file
that references any other class is refused instead of executed.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError

ENV_VAR = "EDGECIFAR_DATA"
FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
KERAS_ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
ROWS_PER_BATCH = 10_000
NUM_CLASSES = 10
DEFAULT_CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# The only globals a CIFAR-10 pickle needs to rebuild its uint8 array.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle; pure, no side effects
    # numpy >= 2 pickles arrays with protocol 5 as frombuffer(bytes, dtype).reshape(shape): pure too.
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


@dataclass
class Split:
    images: np.ndarray  # (N, 32, 32, 3) uint8, RGB, NHWC
    labels: np.ndarray  # (N,) int64 in [0, 10)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Cifar10:
    train: Split
    test: Split
    class_names: list[str]
    source: str
    fingerprint: dict = field(default_factory=dict)


def _split_fingerprint(split: Split) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(split.images).tobytes())
    h.update(split.labels.astype("<i8").tobytes())
    return h.hexdigest()


def fingerprint(train: Split, test: Split) -> dict:
    """Content hash of the decoded pixels and labels: same data, same fingerprint, whatever the files."""
    return {
        "train_sha256": _split_fingerprint(train),
        "test_sha256": _split_fingerprint(test),
        "train_count": len(train),
        "test_count": len(test),
    }


# --- reading one batch -------------------------------------------------------------------


def _unpickle(raw: bytes, name: str) -> dict:
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        if "refusing" in str(e):
            raise UserError(f"{name}: {e}; this is not a CIFAR-10 batch file, replace it with the original") from None
        raise UserError(f"{name}: corrupt or truncated pickle ({e}); re-download CIFAR-10") from None
    except MemoryError:
        raise UserError(f"{name}: too large to unpickle; this is not a CIFAR-10 batch file, replace it with the original") from None
    except Exception as e:  # a crafted or damaged pickle can raise anything (LookupError from _codecs, ...); none is a bug here
        raise UserError(f"{name}: corrupt or truncated batch ({type(e).__name__}); re-download CIFAR-10") from None
    if not isinstance(obj, dict):
        raise UserError(f"{name}: expected a dict, found {type(obj).__name__}; not a CIFAR-10 batch file")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _parse_batch(raw: bytes, name: str) -> Split:
    d = _unpickle(raw, name)
    if "data" not in d or "labels" not in d:
        raise UserError(f"{name}: missing 'data' or 'labels'; not a CIFAR-10 batch file")
    data, labels = d["data"], d["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise UserError(f"{name}: 'data' has shape {shape} dtype {dtype}, expected (N, 3072) uint8; re-download CIFAR-10")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{name}: {labels.shape} labels for {len(data)} images; re-download CIFAR-10")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(f"{name}: labels outside 0..9 (found {labels.min()}..{labels.max()}); re-download CIFAR-10")
    # Rows are R plane, G plane, B plane of 32x32: go to NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels.astype(np.int64))


def _parse_meta(raw: bytes) -> list[str]:
    d = _unpickle(raw, META_FILE)
    names = d.get("label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise UserError(f"{META_FILE}: expected 10 label_names; re-download CIFAR-10")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


# --- sources: a folder or the tar.gz archive ----------------------------------------------


class _FolderReader:
    def __init__(self, folder: Path):
        self.folder = folder

    def read(self, name: str) -> bytes:
        path = self.folder / name
        if not path.is_file():
            raise UserError(f"{path}: missing CIFAR-10 batch file; re-download CIFAR-10 or fix --data-dir")
        return path.read_bytes()


class _TarReader:
    def __init__(self, archive: Path):
        self.archive = archive
        try:
            self.tar = tarfile.open(archive, "r:gz")
            self.members = {Path(m.name).name: m for m in self.tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as e:
            raise UserError(f"{archive}: unreadable archive ({e}); re-download {ARCHIVE}") from None

    def read(self, name: str) -> bytes:
        member = self.members.get(name)
        if member is None:
            raise UserError(f"{self.archive}: no {name} inside; re-download {ARCHIVE}")
        try:
            return self.tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise UserError(f"{self.archive}: {name} is truncated ({e}); re-download {ARCHIVE}") from None


def _reader_for(path: Path):
    """Accept the batches folder, a folder holding it (or the archive), or the archive itself."""
    if path.is_file():
        return _TarReader(path)
    for candidate in (path, path / FOLDER):
        if (candidate / TEST_FILE).exists() or (candidate / META_FILE).exists():
            return _FolderReader(candidate)
    if (path / ARCHIVE).is_file():
        return _TarReader(path / ARCHIVE)
    return None


def _keras_download() -> Path:
    try:
        from keras.utils import get_file
    except ImportError:
        raise UserError(
            "CIFAR-10 not found; pass --data-dir PATH, set EDGECIFAR_DATA, or put it in "
            "~/.keras/datasets/cifar-10-batches-py (install edgecifar[train] to download it)"
        ) from None
    try:
        # Download the archive only; our own reader does the (restricted) unpickling.
        return Path(get_file(fname=ARCHIVE, origin=KERAS_ORIGIN, extract=False))
    except Exception as e:  # network errors come in many types
        raise UserError(
            f"CIFAR-10 not found and download failed ({type(e).__name__}); pass --data-dir PATH, "
            "set EDGECIFAR_DATA, or put it in ~/.keras/datasets/cifar-10-batches-py"
        ) from None


def resolve(data_dir: str | os.PathLike | None = None, download: bool = True):
    """Return (reader, description) following the documented lookup order."""
    explicit = data_dir or os.environ.get(ENV_VAR)
    if explicit:
        path = Path(explicit).expanduser()
        origin = "--data-dir" if data_dir else ENV_VAR
        if not path.exists():
            raise UserError(f"{origin} {path} does not exist; point it at a {FOLDER} folder or {ARCHIVE}")
        reader = _reader_for(path)
        if reader is None:
            raise UserError(f"{origin} {path} holds no {FOLDER} batches or {ARCHIVE}; point it at the right folder")
        return reader, str(path)
    cached = Path("~/.keras/datasets").expanduser()
    for candidate in (cached / FOLDER, cached / ARCHIVE):
        if candidate.exists():
            reader = _reader_for(candidate)
            if reader is not None:
                return reader, str(candidate)
    if not download:
        raise UserError("CIFAR-10 not found; pass --data-dir PATH or set EDGECIFAR_DATA")
    archive = _keras_download()
    return _TarReader(archive), str(archive)


def load(data_dir=None, download: bool = True, splits=("train", "test")) -> Cifar10:
    """Load CIFAR-10 as uint8 NHWC images with int labels, class names and a content fingerprint."""
    reader, source = resolve(data_dir, download)
    try:
        class_names = _parse_meta(reader.read(META_FILE))
    except UserError:
        if isinstance(reader, _FolderReader) and not (reader.folder / META_FILE).exists():
            class_names = list(DEFAULT_CLASS_NAMES)  # meta is optional: the names are fixed
        else:
            raise
    empty = Split(np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0,), np.int64))
    train = test = empty
    if "train" in splits:
        parts = [_parse_batch(reader.read(n), n) for n in TRAIN_FILES]
        for n, p in zip(TRAIN_FILES, parts):
            _check_count(p, n)
        train = Split(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))
        _check_balance(train, "train", 5000)
    if "test" in splits:
        test = _parse_batch(reader.read(TEST_FILE), TEST_FILE)
        _check_count(test, TEST_FILE)
        _check_balance(test, "test", 1000)
    return Cifar10(train, test, class_names, source, fingerprint(train, test))


def _check_count(split: Split, name: str) -> None:
    if len(split) != ROWS_PER_BATCH:
        raise UserError(f"{name}: {len(split)} images, expected {ROWS_PER_BATCH}; the file is truncated, re-download CIFAR-10")


def _check_balance(split: Split, name: str, per_class: int) -> None:
    counts = np.bincount(split.labels, minlength=NUM_CLASSES)
    if not np.all(counts == per_class):
        raise UserError(f"{name} split: class counts {counts.tolist()}, expected {per_class} each; re-download CIFAR-10")


# --- subsets used by training, calibration and checks -------------------------------------


def stratified_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` indices with classes as equal as possible, reproducible for a seed, in ascending order."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = np.full(len(classes), n // len(classes))
    per[: n % len(classes)] += 1
    picks = []
    for c, k in zip(classes, per):
        idx = np.flatnonzero(labels == c)
        picks.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(picks))


def validation_indices(labels: np.ndarray, val_size: int, seed: int = 0) -> np.ndarray:
    """Positions of the validation slice train_val_split holds out (empty for val_size 0): export finds
    a run's held-back images again with it."""
    if val_size <= 0:
        return np.zeros(0, dtype=int)
    return stratified_indices(labels, val_size, seed)


def train_val_split(split: Split, val_size: int, seed: int = 0) -> tuple[Split, Split]:
    """Hold out a stratified validation slice of the *training* set (the test set is never used to tune)."""
    if val_size <= 0:
        return split, Split(split.images[:0], split.labels[:0])
    val_idx = validation_indices(split.labels, val_size, seed)
    mask = np.ones(len(split), bool)
    mask[val_idx] = False
    return Split(split.images[mask], split.labels[mask]), Split(split.images[val_idx], split.labels[val_idx])
