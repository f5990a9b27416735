"""Data-parallel training on an existing engine, chosen by the Keras backend.

TensorFlow backend: tf.distribute.MirroredStrategy over every local device, or
MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster. JAX backend:
keras.distribution.DataParallel over every local device (multi-host via
jax.distributed, initialised from the usual JAX environment variables).
This module is the only place training touches an engine API, so models and the
training loop stay pure Keras.
"""

from __future__ import annotations

import contextlib
import json
import os


def distribute_scope(enabled: bool, echo=print):
    if not enabled:
        return contextlib.nullcontext()
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if os.environ.get("TF_CONFIG"):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
            cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
            echo(f"distribute: MultiWorkerMirroredStrategy, {strategy.num_replicas_in_sync} replicas, cluster {cluster}")
        else:
            devices = [d.name for d in tf.config.list_logical_devices() if d.device_type in ("GPU", "TPU")]
            devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
            strategy = tf.distribute.MirroredStrategy(devices)
            echo(f"distribute: MirroredStrategy over {strategy.num_replicas_in_sync} devices {devices}")
        return strategy.scope()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        echo(f"distribute: keras.distribution.DataParallel over {len(devices)} devices")
        return contextlib.nullcontext()
    from .errors import UserError

    raise UserError(f"--distribute supports the tensorflow and jax backends, not {backend}; set KERAS_BACKEND")
