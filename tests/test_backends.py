"""Training is pure Keras: it runs under JAX too, and data-parallel on two logical CPU devices."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None and not os.environ.get("CI"),
    reason="jax not installed (pip install 'edgecifar[jax]'); CI installs it and runs these",
)


def _train_in_subprocess(tmp_path, prelude: str, env: dict, data_dir):
    script = prelude + textwrap.dedent(f"""
        from edgecifar.train import train
        run = train("seed002_m1_cnn", data_dir={str(data_dir)!r}, runs_dir={str(tmp_path)!r}, epochs=2, limit=768,
                    test_limit=200, distribute={env.pop("_DISTRIBUTE", "False")}, echo=print)
        print("RUN", run)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         env={**os.environ, **env})
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = res.stdout.strip().splitlines()[-1].split("RUN ", 1)[1]
    manifest = json.loads(open(os.path.join(run_dir, "manifest.json")).read())
    return res.stdout, manifest


def _assert_learned(manifest, stdout):
    losses = [float(line.split(" loss ")[1].split()[0]) for line in stdout.splitlines() if line.startswith("epoch ")]
    assert len(losses) == 2 and losses[1] < losses[0]  # it trains: loss goes down
    assert manifest["metrics"]["test_accuracy"] > 0.15  # better than chance (10 %)


def test_tensorflow_mirrored_strategy_on_two_logical_cpus(tmp_path, data_dir):
    prelude = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
    stdout, manifest = _train_in_subprocess(tmp_path, prelude, {"KERAS_BACKEND": "tensorflow", "_DISTRIBUTE": "True"}, data_dir)
    assert "MirroredStrategy over 2 devices" in stdout
    assert manifest["distribute"] is True and manifest["backend"] == "tensorflow"
    _assert_learned(manifest, stdout)


@needs_jax
def test_jax_backend_trains_same_code(tmp_path, data_dir):
    stdout, manifest = _train_in_subprocess(tmp_path, "", {"KERAS_BACKEND": "jax"}, data_dir)
    assert manifest["backend"] == "jax"
    _assert_learned(manifest, stdout)


@needs_jax
def test_jax_data_parallel_on_two_cpu_devices(tmp_path, data_dir):
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "_DISTRIBUTE": "True"}
    stdout, manifest = _train_in_subprocess(tmp_path, "", env, data_dir)
    assert "DataParallel over 2 devices" in stdout
    assert manifest["backend"] == "jax" and manifest["distribute"] is True
    _assert_learned(manifest, stdout)
