"""Training arithmetic: float32, or Keras' mixed_bfloat16 where the CPU multiplies bf16 natively.

Why it exists: on a CPU with AMX (Intel Sapphire Rapids and later) oneDNN has bf16 convolution
kernels, which can make training steps faster. In real training on this project's 2-core Xeon the
gain did not hold (README: Precision, with the commands), so no recipe uses it. On AVX2 CPUs (AMD here) bf16 has no fast path, so "auto" stays
float32 there. Mixed precision keeps the variables in float32, so the
trained weights copy into a float32 model unchanged, and that float32 model is what a run saves:
export, evaluation and the device never see bf16. Pure Keras: no `tf.*`.
"""

from __future__ import annotations

from contextlib import contextmanager

from . import machine
from .errors import UserError

CHOICES = ("auto", "float32", "mixed_bfloat16")
BF16_CPU_FLAGS = {"amx_bf16", "avx512_bf16"}  # /proc/cpuinfo names of a native bf16 multiply


def resolve(precision: str) -> str:
    """The Keras dtype policy a recipe's precision means on this machine."""
    if precision not in CHOICES:
        raise UserError(f"precision {precision!r} is not one of {', '.join(CHOICES)}")
    if precision == "auto":
        return "mixed_bfloat16" if BF16_CPU_FLAGS & machine.cpu_flags() else "float32"
    return precision


@contextmanager
def dtype_policy(policy: str):
    """Keras' global dtype policy set to `policy` inside the block, restored after (tests train in-process)."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def to_float32(model, build):
    """A float32 model with `model`'s weights; `build()` makes the same architecture (called under float32).

    The model is returned as is when it already computes in float32."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    with dtype_policy("float32"):
        plain = build()
    plain.set_weights(model.get_weights())  # mixed policies keep float32 variables: an exact copy
    return plain
