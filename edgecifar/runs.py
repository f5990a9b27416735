"""Run directories: naming, finding the latest, checkpoints, manifests, provenance."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .errors import UserError
from .files import atomic_path, write_json

RUNS_ENV = "EDGECIFAR_RUNS"
CHECKPOINT = "checkpoint"


def runs_root(runs_dir=None) -> Path:
    return Path(runs_dir or os.environ.get(RUNS_ENV) or "runs")


def new_run_dir(model_name: str, runs_dir=None) -> Path:
    root = runs_root(runs_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{model_name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{model_name}-{stamp}-{n}"
    try:
        path.mkdir(parents=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {path}: {e.strerror}; pass --runs-dir to a writable place") from None
    return path


def use_run_dir(path) -> Path:
    """An explicit --run-dir: created if new, resumed if it holds an interrupted run."""
    path = Path(path)
    if (path / "manifest.json").exists() and not (path / CHECKPOINT).exists():
        raise UserError(f"{path} already holds a finished run; choose another --run-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {path}: {e.strerror}; choose a writable --run-dir") from None
    return path


def latest_run(runs_dir=None) -> Path:
    """The most recently finished run (what `edgecifar export` uses when given no RUN)."""
    root = runs_root(runs_dir)
    done = sorted(root.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not done:
        raise UserError(f"no finished run in {root}/; train one first with `edgecifar train`, or pass the run directory")
    return done[-1].parent


def resolve_run(run=None, runs_dir=None) -> Path:
    if run is None:
        return latest_run(runs_dir)
    path = Path(run)
    if not path.exists():
        raise UserError(f"run directory {path} does not exist; pass a folder written by `edgecifar train`")
    if path.is_file():
        return path  # a bare .keras file is accepted by callers that can use one
    if not (path / "model.keras").is_file():
        raise UserError(f"{path} holds no model.keras; pass a folder written by `edgecifar train`")
    return path


def read_manifest(run_dir: Path) -> dict:
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg}); re-run `edgecifar train`") from None


def write_manifest(run_dir: Path, manifest: dict) -> None:
    write_json(Path(run_dir) / "manifest.json", manifest)


def update_manifest(run_dir: Path, **sections) -> dict:
    manifest = read_manifest(run_dir)
    manifest.update(sections)
    write_manifest(run_dir, manifest)
    return manifest


def save_model(model, path: Path) -> None:
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def load_model(path: Path):
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # keras raises many types for a bad file
        raise UserError(f"{path} is not a loadable Keras model ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


# --- resumable checkpoints -------------------------------------------------------------


def save_checkpoint(run_dir: Path, model, epoch: int) -> None:
    """Model + optimizer state after `epoch`; written atomically, then the epoch counter."""
    ckpt = Path(run_dir) / CHECKPOINT
    ckpt.mkdir(exist_ok=True)
    save_model(model, ckpt / "last.keras")
    write_json(ckpt / "state.json", {"epoch": epoch})


def load_checkpoint(run_dir: Path):
    """(epochs done, compiled model) of an interrupted run, or (0, None)."""
    state = Path(run_dir) / CHECKPOINT / "state.json"
    if not state.is_file():
        return 0, None
    import keras

    ckpt = Path(run_dir) / CHECKPOINT
    fix = f"delete {ckpt} to start that run again, or train into a new run directory"
    try:
        epoch = json.loads(state.read_text())["epoch"]
        if not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"epoch {epoch!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{state} is damaged ({type(e).__name__}); {fix}") from None
    try:
        model = keras.models.load_model(ckpt / "last.keras")  # compiled, optimizer state included
    except Exception as e:  # keras raises many types for a truncated or foreign file
        raise UserError(f"{ckpt / 'last.keras'} is not a loadable checkpoint ({type(e).__name__}); {fix}") from None
    return epoch, model


def finish(run_dir: Path) -> None:
    shutil.rmtree(Path(run_dir) / CHECKPOINT, ignore_errors=True)


def read_history(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]


# --- provenance ------------------------------------------------------------------------


def library_versions() -> dict:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for dist in ("edgecifar", "numpy", "keras", "tensorflow", "tensorflow-cpu", "jax", "tf2onnx", "onnx", "onnxruntime",
                 "ai-edge-litert", "opencv-python-headless"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def latest_unfinished(model_name: str, runs_dir=None) -> Path:
    root = runs_root(runs_dir)
    states = sorted(root.glob(f"{model_name}-*/{CHECKPOINT}/state.json"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not states:
        raise UserError(f"no interrupted {model_name} run in {root}/ to resume; start one with `edgecifar train {model_name}`")
    return states[-1].parent.parent
