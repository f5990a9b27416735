"""The camera augmentation (`edgecifar train --augment camera`): what a camera does to a picture, at random, while training.

Each training image independently gets each degradation below with its probability, with a
parameter drawn uniformly from its range, in the order a camera applies them: lens blur, then
exposure (dim light, flat contrast), then sensor noise, then JPEG encoding. About 40 % of the
images stay clean, so clean accuracy pays little.

The knobs, (probability, parameter range) each, are the constants right below. A recipe's
`camera_rate` multiplies every probability (0.5: each degradation half as often, about 64 % of
images clean), trading a little robustness for clean accuracy.
"""

from __future__ import annotations

import numpy as np

from . import corruptions

BLUR = (0.20, (0.3, 1.2))  # Gaussian lens blur, sigma in pixels (the suite's gaussian_blur: 0.6 / 0.7 / 1.0)
LOW_LIGHT = (0.15, (0.2, 0.9))  # every pixel times this factor (the suite's low_light: 0.6 / 0.4 / 0.25)
CONTRAST = (0.15, (0.15, 0.9))  # pull towards the image mean by this factor (the suite's contrast: 0.5 / 0.4 / 0.15)
NOISE = (0.20, (2.0, 26.0))  # Gaussian sensor noise, sigma in pixel levels (the suite's gaussian_noise: 10 / 20 / 26)
JPEG = (0.15, (30, 90))  # JPEG quality, 4:2:0 (the suite's jpeg: 80 / 58 / 40)

# The suite's corruptions this augmentation trains on (same family, parameters drawn from a range);
# the others (defocus and motion blur, shot noise, pixelate, the camera round trip) it never sees,
# so their accuracy measures how the robustness carries over. Reports split mCA on this.
TRAINED_FAMILIES = ("gaussian_blur", "low_light", "contrast", "gaussian_noise", "jpeg")


def describe(rate: float = 1.0) -> str:
    """The augmentation in one line, with its probabilities at this rate (the manifest records it)."""
    def p(knob):
        return f"p {knob[0] * rate:.3g}"

    return (f"camera augmentation (edgecifar/camera_augment.py): per image, Gaussian blur sigma {BLUR[1][0]}-{BLUR[1][1]} px "
            f"({p(BLUR)}), low light x{LOW_LIGHT[1][0]}-{LOW_LIGHT[1][1]} ({p(LOW_LIGHT)}), contrast x{CONTRAST[1][0]}-"
            f"{CONTRAST[1][1]} ({p(CONTRAST)}), Gaussian noise sigma {NOISE[1][0]:g}-{NOISE[1][1]:g} levels ({p(NOISE)}), "
            f"JPEG q{JPEG[1][0]}-{JPEG[1][1]} ({p(JPEG)})")


DESCRIPTION = describe()

# Why numpy/OpenCV and not Keras preprocessing layers: in Keras 3.15 RandomGaussianBlur draws one
# sigma per batch, RandomBrightness adds (a dim camera multiplies), GaussianNoise has one fixed sigma,
# and RandomContrast has no apply-probability. This stays backend-free (numpy in the input
# pipeline, as JPEG has to be), so training still runs under JAX, and it shares its operations
# with the corruption suite (edgecifar/corruptions.py), so "blur" means the same in both.


def clean_fraction(rate: float = 1.0) -> float:
    """The expected share of images that get no degradation at all."""
    return float(np.prod([1 - p * rate for p, _ in (BLUR, LOW_LIGHT, CONTRAST, NOISE, JPEG)]))


def camera_augment(images: np.ndarray, rng: np.random.Generator, rate: float = 1.0) -> np.ndarray:
    """A batch of uint8 RGB NHWC images, each degraded at random as above (every probability times
    `rate`); returns a new uint8 array."""
    out = np.array(images, dtype=np.uint8, copy=True)
    n = len(out)

    def chosen(knob):
        p, (lo, hi) = knob
        mask = rng.random(n) < p * rate
        return np.flatnonzero(mask), rng.uniform(lo, hi, size=n)

    idx, sigma = chosen(BLUR)
    for i in idx:
        out[i] = corruptions.blur_image(out[i], sigma[i])
    for knob, op in ((LOW_LIGHT, corruptions.scale_light), (CONTRAST, corruptions.scale_contrast)):
        idx, factor = chosen(knob)
        if len(idx):
            out[idx] = op(out[idx], factor[idx, None, None, None])
    idx, sigma = chosen(NOISE)
    if len(idx):
        out[idx] = corruptions.add_noise(out[idx], sigma[idx, None, None, None], rng)
    idx, quality = chosen(JPEG)
    for i in idx:
        out[i] = corruptions.jpeg_image(out[i], round(quality[i]))
    return out
