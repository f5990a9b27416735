"""Camera frame → model input, the same transform training and export assume.

Training saw CIFAR-10's 32x32 RGB pixels. A camera gives a large BGR frame (OpenCV), so:
center-crop to a square (keeps the aspect ratio the network learned), downscale with
INTER_AREA (averages pixels, the right filter for big reductions), BGR→RGB. The pixel
values stay 0..255; scaling is inside the model, and integer models take them through
their own input quantization (see runtime.Classifier.quantize_input).
"""

from __future__ import annotations

import numpy as np


def center_crop(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return frame[top : top + side, left : left + side]


def frame_to_rgb(frame: np.ndarray, size: tuple[int, int], color_order: str = "BGR") -> np.ndarray:
    """A uint8 HxWx3 frame (BGR from OpenCV unless said otherwise) → size[0]xsize[1]x3 RGB uint8."""
    import cv2

    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR if color_order == "BGR" else cv2.COLOR_RGBA2RGB)
    square = center_crop(frame)
    h, w = size
    if square.shape[:2] != (h, w):
        square = cv2.resize(square, (w, h), interpolation=cv2.INTER_AREA)
    if color_order == "BGR":
        square = cv2.cvtColor(square, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(square, dtype=np.uint8)
