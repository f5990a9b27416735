"""Shared fixtures. Tests use the real CIFAR-10 in ../shared (or $EDGECIFAR_DATA) and small subsets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from edgecifar.cli import command_line as cli_argv  # the tests call it by this name

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# Absolute: many tests run `edgecifar` in another working directory, where a relative path would point nowhere.
DATA = Path(os.environ.get("EDGECIFAR_DATA") or SHARED / "data" / "cifar-10-batches-py").resolve()
WEIGHTS = SHARED / "weights"
MOBILENET_035 = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["EDGECIFAR_DATA"] = str(DATA)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "test_batch").exists():
        pytest.fail(f"CIFAR-10 not found at {DATA}; set EDGECIFAR_DATA")
    return DATA


@pytest.fixture(scope="session")
def cifar(data_dir):
    from edgecifar import data

    return data.load(data_dir)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, data_dir) -> Path:
    """A seed002_m1 run trained for 2 epochs on 1,024 images: small, real, good enough to export."""
    from edgecifar.train import train

    runs_dir = tmp_path_factory.mktemp("runs")
    return train("seed002_m1_cnn", data_dir=data_dir, runs_dir=runs_dir, epochs=2, limit=1024, echo=lambda *_: None)


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module: benchmarks/ is a folder of scripts, not a package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run `edgecifar ARGS` in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cli_argv(*args), capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB filesystem to fill up (needs root and mount; skipped cleanly otherwise)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)
