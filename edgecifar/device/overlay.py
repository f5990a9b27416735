"""Annotate a frame with the prediction: top-k labels with confidence, FPS, and the square the model sees."""

from __future__ import annotations

import numpy as np

from .preprocess import center_crop


def annotate(frame_bgr: np.ndarray, top: list[tuple[str, float]], fps: float | None = None,
             note: str | None = None) -> np.ndarray:
    """A copy of the frame with the predictions drawn on it (the input frame is left untouched)."""
    import cv2

    out = frame_bgr.copy()
    h, w = out.shape[:2]
    # Text size follows the frame, so a 320x240 lores frame and a 1080p frame both stay readable.
    scale = max(0.4, min(w, h) / 600)
    thick = max(1, int(round(scale * 2)))
    line_h = int(28 * scale) + 4

    # The center square is what the model classifies: outline it so users aim the camera.
    side = center_crop(out).shape[0]
    top_y, left_x = (h - side) // 2, (w - side) // 2
    cv2.rectangle(out, (left_x, top_y), (left_x + side - 1, top_y + side - 1), (255, 255, 255), 1, cv2.LINE_AA)

    lines = [f"{label} {100 * conf:.0f}%" for label, conf in top]
    if fps is not None:
        lines.append(f"{fps:.1f} FPS")
    if note:
        lines.append(note)
    box_w = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for t in lines) + 12
    box_h = line_h * len(lines) + 8
    # Translucent backing box: text stays legible on any background.
    roi = out[0 : min(box_h, h), 0 : min(box_w, w)]
    roi[:] = (roi * 0.45).astype(np.uint8)
    for i, text in enumerate(lines):
        y = line_h * (i + 1)
        color = (80, 255, 80) if i == 0 and top else (255, 255, 255)
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)
    return out
