"""PNG plots for people: training curves, confusion matrix, misclassified examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on a training box or a Pi
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    pyplot().close(fig)


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [int(r["epoch"]) for r in history]
    for ax, key in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.plot(epochs, [r.get(key) for r in history], "o-", label=f"train {key}")
        if any(r.get(f"val_{key}") is not None for r in history):
            ax.plot(epochs, [r.get(f"val_{key}") for r in history], "s-", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no 2.5 ticks
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    phases = [r.get("phase") for r in history]
    for i in range(1, len(phases)):
        if phases[i] != phases[i - 1]:
            for ax in (ax_acc, ax_loss):
                ax.axvline(epochs[i] - 0.5, color="grey", ls="--", lw=1)
    fig.suptitle(title)
    save_png(fig, path)


def plot_confusion(cm: np.ndarray, class_names: list[str], path: Path, title: str = "") -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color="white" if cm[i, j] > thresh else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    save_png(fig, path)


def plot_misclassified(images, true, pred, conf, class_names, path: Path, max_items: int = 36) -> None:
    plt = pyplot()
    n = min(max_items, len(images))
    cols = 6
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.8, rows * 2.0), squeeze=False)
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k], interpolation="nearest")
            ax.set_title(f"{class_names[pred[k]]} {100 * conf[k]:.0f}%\n(true {class_names[true[k]]})", fontsize=7)
    # suptitle sits just above the grid (the default y=0.98 left an empty band on short grids).
    # Fixed margins in inches, whatever the number of rows: no empty band above the grid, no overlap.
    height = rows * 2.0
    fig.suptitle("misclassified test images: predicted (confidence) / true", y=1 - 0.12 / height)
    fig.subplots_adjust(top=1 - 0.75 / height, hspace=0.55)  # room for the two-line titles between rows
    save_png(fig, path)
