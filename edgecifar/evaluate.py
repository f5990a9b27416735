"""Stage 4 — evaluate: test accuracy, per-class precision/recall/F1, confusion matrix, mistakes."""

from __future__ import annotations


import numpy as np

from . import data as cifar
from . import runs
from .files import write_json


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n: int = 10) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def classification_report(cm: np.ndarray, class_names: list[str]) -> dict:
    """Per-class precision, recall, F1 and support, as sklearn's classification_report gives them."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    rows = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
    }
    rows["macro avg"] = {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean()),
                         "support": int(support.sum())}
    return rows


def format_report(report: dict, accuracy: float) -> str:
    lines = [f"{'':>12} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>8}"]
    for name, r in report.items():
        if name == "macro avg":
            lines.append("")
            lines.append(f"{'accuracy':>12} {'':>9} {'':>9} {accuracy:9.4f} {r['support']:8d}")
        lines.append(f"{name:>12} {r['precision']:9.4f} {r['recall']:9.4f} {r['f1']:9.4f} {r['support']:8d}")
    return "\n".join(lines)


def evaluate(run, data_dir=None, echo=print) -> dict:
    from .plots import plot_confusion, plot_misclassified
    from .predict import predict_probs

    run_dir = runs.resolve_run(run)
    model = runs.load_model(run_dir / "model.keras")
    ds = cifar.load(data_dir, splits=("test",))
    probs = predict_probs(model, ds.test.images)
    preds = probs.argmax(1)
    acc = float((preds == ds.test.labels).mean())
    cm = confusion_matrix(ds.test.labels, preds)
    report = classification_report(cm, ds.class_names)
    echo(f"test accuracy: {100 * acc:.2f}% ({int((preds == ds.test.labels).sum())}/{len(preds)})")
    echo(format_report(report, acc))
    name = runs.read_manifest(run_dir).get("model", run_dir.name)
    plot_confusion(cm, ds.class_names, run_dir / "confusion.png", f"{name} — test accuracy {100 * acc:.2f}%")
    wrong = np.flatnonzero(preds != ds.test.labels)
    # Most confident mistakes first: those are the ones worth looking at.
    wrong = wrong[np.argsort(-probs[wrong, preds[wrong]])]
    plot_misclassified(ds.test.images[wrong], ds.test.labels[wrong], preds[wrong], probs[wrong, preds[wrong]],
                       ds.class_names, run_dir / "misclassified.png")
    result = {"test_accuracy": acc, "confusion_matrix": cm.tolist(), "classification_report": report,
              "data_fingerprint": ds.fingerprint}
    write_json(run_dir / "evaluation.json", result)
    echo(f"wrote {run_dir}/confusion.png, misclassified.png, evaluation.json")
    return result
