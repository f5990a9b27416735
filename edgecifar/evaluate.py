"""Stage 4 — evaluate: test accuracy, per-class precision/recall/F1, confusion matrix, mistakes."""

from __future__ import annotations


import numpy as np

from . import data as cifar
from . import runs
from .errors import UserError
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


# --- corruption suite (issue 16) ------------------------------------------------------------------

MCA_DEFINITION = ("mCA (mean corruption accuracy) = the mean over corruptions of each corruption's top-1 averaged "
                  "over its severities; every corruption and every severity weighs the same")
CORRUPTION_REPORTS = ("corruptions.json", "corruptions.csv", "corruptions.md", "corruptions.png")


def top1(predict, images: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(predict(images)).argmax(1) == labels).mean())


def mean_corruption_accuracy(accuracy: dict[str, dict]) -> tuple[dict[str, float], float]:
    """({corruption: mean over its severities}, mCA) from {corruption: {severity: top-1}}."""
    means = {name: float(np.mean(list(by_severity.values()))) for name, by_severity in accuracy.items()}
    return means, float(np.mean(list(means.values())))


def family_split(means: dict[str, float]) -> dict:
    """mCA over the corruptions `train --augment camera` trains on, and over those it never sees.

    A camera-robust model is trained on blur, low light, contrast, Gaussian noise and JPEG (with
    other parameters than the suite's); the unseen half (defocus and motion blur, shot noise,
    pixelate, camera round trip) shows whether its robustness carries over. Either figure is None
    when the suite ran on a subset that leaves its half empty.
    """
    from .camera_augment import TRAINED_FAMILIES

    seen = [v for k, v in means.items() if k in TRAINED_FAMILIES]
    unseen = [v for k, v in means.items() if k not in TRAINED_FAMILIES]
    return {"mca_camera_trained_families": float(np.mean(seen)) if seen else None,
            "mca_camera_unseen_families": float(np.mean(unseen)) if unseen else None}


def corruption_accuracy(predict, images: np.ndarray, labels: np.ndarray, names=None, severities=None, seed: int = 0,
                        echo=None) -> dict:
    """Top-1 of `predict` (uint8 RGB NHWC images -> class probabilities) on the clean images and on every
    corruption x severity of edgecifar.corruptions. Any model fits: a Keras model through predict_probs, an
    exported artifact through edgecifar.device.runtime.Classifier(path).predict.

    Generation and prediction are timed apart: the first is the suite's cost, the second the model's.
    """
    return corruption_accuracies({"model": predict}, images, labels, names, severities, seed, echo)["model"]


def corruption_accuracies(predicts: dict, images: np.ndarray, labels: np.ndarray, names=None, severities=None,
                          seed: int = 0, echo=None) -> dict:
    """corruption_accuracy for several models at once ({name: predict} → {name: result}): each corrupted
    set is generated once and every model predicts it (the benchmark's robustness section)."""
    import time

    from . import corruptions

    names, severities = corruptions.check_names(names), corruptions.check_severities(severities)
    accuracy = {m: {name: {} for name in names} for m in predicts}
    clean, predict_s = {}, dict.fromkeys(predicts, 0.0)

    def score(m, x):
        t = time.perf_counter()
        acc = top1(predicts[m], x, labels)
        predict_s[m] += time.perf_counter() - t
        return acc

    for m in predicts:
        clean[m] = score(m, images)
    generate_s = 0.0
    generate_by = dict.fromkeys(names, 0.0)  # per corruption: shows which one to make faster
    sets = corruptions.corrupted_test_sets(images, names, severities, seed)
    while True:
        t = time.perf_counter()
        item = next(sets, None)
        dt = time.perf_counter() - t
        generate_s += dt
        if item is None:
            break
        name, severity, corrupted = item
        generate_by[name] += dt
        for m in predicts:
            accuracy[m][name][str(severity)] = score(m, corrupted)  # str: JSON object keys
        if echo and severity == severities[-1]:
            for m in predicts:
                prefix = f"{m}: " if len(predicts) > 1 else ""
                echo(f"  {prefix}{name:<17} " + "  ".join(f"s{s} {100 * accuracy[m][name][str(s)]:5.1f}%" for s in severities))
    results = {}
    for m in predicts:
        means, mca = mean_corruption_accuracy(accuracy[m])
        results[m] = {
            "clean_accuracy": clean[m],
            "mca": mca,
            "mca_definition": MCA_DEFINITION,
            **family_split(means),
            "corruption_mean": means,
            "accuracy": accuracy[m],
            "samples": int(len(labels)),
            "seed": seed,
            "severities": list(severities),
            "parameters": {name: corruptions.PARAMETERS[name] for name in names},
            "cifar10c_levels": {name: corruptions.CIFAR10C_LEVELS[name] for name in names},
            "seconds": {"generate": generate_s, "predict": predict_s[m], "generate_by_corruption": generate_by},
        }
    return results


def corruption_csv(result: dict) -> str:
    """One row per (corruption, severity), plus clean, each corruption's mean and the mCA: easy to plot or diff."""
    rows = ["corruption,severity,top1", f"clean,0,{result['clean_accuracy']:.6f}"]
    for name, by_severity in result["accuracy"].items():
        rows += [f"{name},{s},{acc:.6f}" for s, acc in by_severity.items()]
        rows.append(f"{name},mean,{result['corruption_mean'][name]:.6f}")
    rows.append(f"mCA,mean,{result['mca']:.6f}")
    return "\n".join(rows) + "\n"


def corruption_markdown(result: dict, title: str, command: str, notes: list[str] = ()) -> str:
    sev = result["severities"]
    clean = 100 * result["clean_accuracy"]
    lines = [f"# Corruption accuracy: {title}", "", f"Regenerate: `{command}`", "",
             f"**clean top-1 {clean:.2f} %, mCA {100 * result['mca']:.2f} %** on {result['samples']:,} test images "
             f"(corruption seed {result['seed']}). {MCA_DEFINITION}.", "",
             "Corruptions: `edgecifar/corruptions.py` (CIFAR-10-C style, Hendrycks & Dietterich 2019; its docstring "
             "gives every parameter and where it deviates). Severity 1 is the mildest; the CIFAR-10-C column names "
             "the level each severity's parameters come from.", *notes, "",
             "| corruption | CIFAR-10-C levels | " + " | ".join(f"severity {s}" for s in sev) + " | mean | mean − clean (pp) |",
             "|---|---|" + "---:|" * (len(sev) + 2)]
    from .camera_augment import TRAINED_FAMILIES

    for name, by_severity in result["accuracy"].items():
        levels = result["cifar10c_levels"].get(name)
        level_text = ", ".join(map(str, levels)) if levels else "(own)"
        mean = 100 * result["corruption_mean"][name]
        cells = " | ".join(f"{100 * by_severity[str(s)]:.2f}" for s in sev)
        mark = " †" if name in TRAINED_FAMILIES else ""
        lines.append(f"| {name}{mark} | {level_text} | {cells} | {mean:.2f} | {mean - clean:+.2f} |")
    blank = " | " * len(sev)
    lines.append(f"| **mCA** | |{blank}**{100 * result['mca']:.2f}** | {100 * result['mca'] - clean:+.2f} |")
    seen, unseen = result.get("mca_camera_trained_families"), result.get("mca_camera_unseen_families")
    if seen is not None and unseen is not None:
        lines += ["", f"† a family `edgecifar train --augment camera` trains on (other parameters, drawn at random: "
                      f"`edgecifar/camera_augment.py`). Mean over those: **{100 * seen:.2f} %**; over the "
                      f"{len(result['accuracy']) - sum(n in TRAINED_FAMILIES for n in result['accuracy'])} it never "
                      f"sees: **{100 * unseen:.2f} %**. For a model trained without it, both are unseen."]
    seconds = result.get("seconds")
    if seconds:
        lines += ["", f"Time: generating the corrupted sets {seconds['generate']:.1f} s, predicting "
                      f"(clean + {len(result['accuracy']) * len(sev)} sets) {seconds['predict']:.1f} s."]
    return "\n".join(lines) + "\n"


def plot_corruptions(result: dict, path, title: str) -> None:
    """Grouped bars: top-1 per corruption and severity on a 0-100 % axis, clean and mCA as lines."""
    from .plots import pyplot, save_png

    plt = pyplot()
    names, sev = list(result["accuracy"]), result["severities"]
    x = np.arange(len(names))
    width = 0.8 / len(sev)
    fig, ax = plt.subplots(figsize=(11, 4.8))
    colors = plt.cm.viridis(np.linspace(0.15, 0.85, len(sev)))
    for k, (s, color) in enumerate(zip(sev, colors)):
        heights = [100 * result["accuracy"][n][str(s)] for n in names]
        label = f"severity {s}" + (" (mildest)" if k == 0 else " (worst)" if k == len(sev) - 1 else "")
        ax.bar(x + (k - (len(sev) - 1) / 2) * width, heights, width, label=label, color=color)
    ax.axhline(100 * result["clean_accuracy"], color="black", ls="--", lw=1.2,
               label=f"clean {100 * result['clean_accuracy']:.1f} %")
    ax.axhline(100 * result["mca"], color="tab:red", ls=":", lw=1.5, label=f"mCA {100 * result['mca']:.1f} %")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"top-1 accuracy (%) on {result['samples']:,} test images")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=len(sev) + 2)  # off the bars
    ax.set_title(title)
    save_png(fig, path)


def write_corruption_reports(result: dict, out_dir, title: str, command: str, stem: str = "corruptions",
                             notes: list[str] = ()) -> list:
    """STEM.json, STEM.csv, STEM.md and STEM.png in out_dir; returns their paths."""
    from pathlib import Path

    from .files import write_text

    out_dir = Path(out_dir)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("json", "csv", "md", "png")]
    write_json(paths[0], {"title": title, "command": command, **result})
    write_text(paths[1], corruption_csv(result))
    write_text(paths[2], corruption_markdown(result, title, command, notes))
    plot_corruptions(result, paths[3], f"{title}: top-1 under corruptions")
    return paths


def predictor(path, threads: int | None = None):
    """(predict, description) for an exported artifact (the device's Classifier) or a run / .keras file
    (Keras through predict_probs): what the corruption suite scores, from a script or the benchmark."""
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() in (".tflite", ".onnx"):
        from .device.runtime import Classifier

        clf = Classifier(path, threads=threads)
        return (lambda x: clf.predict(x, batch_size=500)), clf.describe()
    from . import quiet

    quiet.import_tensorflow()
    from .predict import predict_probs

    resolved = runs.resolve_run(path)
    model = runs.load_model(resolved if resolved.is_file() else resolved / "model.keras")
    return (lambda x: predict_probs(model, x)), f"{relative(resolved)}: Keras, model.predict at batch 256"


def relative(path) -> str:
    """A path as written in reports and commands: relative to the working directory, never machine-absolute."""
    import os

    return os.path.relpath(path)


def corruption_subset(split, samples: int | None, seed: int):
    """The test images and labels the suite runs on: all of them, or a class-stratified subset."""
    if samples is None:
        return split.images, split.labels
    if not 1 <= samples <= len(split):
        raise UserError(f"--samples {samples} is out of range; pass 1 to {len(split)} (or leave it out for the whole test set)")
    idx = cifar.stratified_indices(split.labels, samples, seed)
    return split.images[idx], split.labels[idx]


def evaluate_corruptions(run, data_dir=None, samples: int | None = None, seed: int = 0, names=None, echo=print) -> dict:
    """The corruption suite on RUN's Keras model; writes corruptions.{json,csv,md,png} into the run directory."""
    from pathlib import Path

    from .predict import predict_probs

    path = Path(runs.resolve_run(run))
    model_path, run_dir = (path, path.parent) if path.is_file() else (path / "model.keras", path)
    ds = cifar.load(data_dir, splits=("test",))
    images, labels = corruption_subset(ds.test, samples, seed)
    model = runs.load_model(model_path)
    name = runs.read_manifest(run_dir).get("model", run_dir.name)
    echo(f"corruption suite on {name} (Keras), {len(labels):,} test images:")
    result = corruption_accuracy(lambda x: predict_probs(model, x), images, labels, names=names, seed=seed, echo=echo)
    result["data_fingerprint"] = ds.fingerprint
    echo(f"clean {100 * result['clean_accuracy']:.2f}%  mCA {100 * result['mca']:.2f}%  "
         f"({result['seconds']['generate']:.0f} s generating, {result['seconds']['predict']:.0f} s predicting)")
    command = f"edgecifar evaluate {relative(path)} --corruptions"
    command += f" --samples {samples}" if samples is not None else ""
    command += f" --seed {seed}" if seed else ""
    write_corruption_reports(result, run_dir, f"{name} (Keras)", command)
    echo(f"wrote {relative(run_dir)}/" + ", ".join(CORRUPTION_REPORTS))
    return result
