"""Write the first N CIFAR-10 test images as PNGs (the camera-free input of the arm64 check).

PNG is lossless, so both architectures decode exactly the same pixels; any disagreement
downstream comes from the runtimes, not from the images. Runs on the host (x86-64) only.

    python device/arm64/make_images.py OUT_DIR [--count 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from edgecifar import data
from edgecifar.errors import UserError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=200)
    args = ap.parse_args()
    try:
        cifar = data.load(download=False, splits=("test",))
    except UserError as e:
        raise SystemExit(f"make_images: {e}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    n = min(args.count, len(cifar.test))
    for i in range(n):
        name = f"{i:05d}_{cifar.class_names[int(cifar.test.labels[i])]}.png"
        # CIFAR-10 is RGB; OpenCV writes BGR.
        bgr = np.ascontiguousarray(cifar.test.images[i][..., ::-1])
        if not cv2.imwrite(str(args.out / name), bgr):
            raise SystemExit(f"cannot write {args.out / name}")
    print(f"wrote {n} test images to {args.out}")


if __name__ == "__main__":
    main()
