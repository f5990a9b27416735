"""The export report: one table on the terminal, export_report.json and export_report.md on disk."""

from __future__ import annotations

from pathlib import Path

from .. import defaults
from ..files import write_json, write_text, human_size

SCHEMA = "edgecifar.export_report/1"
COLUMNS = ("format", "file", "size", "top-1", "Δ vs Keras", "agree", "max |Δp|", "ties", "budget", "status")


def rows(report: dict) -> list[tuple[str, ...]]:
    out = []
    for a in report["artifacts"]:
        if "accuracy" in a:
            cells = (f"{100 * a['accuracy']:.2f}%", f"{a['delta_pp']:+.2f} pp", f"{100 * a['agreement']:.2f}%",
                     f"{a['max_abs_prob_delta']:.4f}", str(a.get("top1_ties", "-")))
        else:
            cells = ("-", "-", "-", "-", "-")
        status = a["status"] + (f": {a['reason']}" if a.get("reason") else "")
        out.append((a["format"], Path(a["path"]).name if a.get("path") else "-", human_size(a.get("size_bytes")), *cells,
                    f"{a['budget_pp']:g} pp", status))
    return out


def table(report: dict) -> str:
    body = rows(report)
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in body)) if body else len(COLUMNS[i]) for i in range(len(COLUMNS) - 1)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    lines = [fmt.format(*COLUMNS), fmt.format(*("-" * w for w in widths), "-" * 6)]
    lines += [fmt.format(*r) for r in body]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    chk, cal = report["check"], report.get("calibration")
    lines = [
        f"# Export report — {report['model']}",
        "",
        "Command:",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"Run: `{report['run']}` — source model sha256 `{report['source_model']['sha256'][:16]}…`"
        + (f", test accuracy at training {100 * report['source_model']['keras_test_accuracy']:.2f}%"
           if report["source_model"].get("keras_test_accuracy") is not None else ""),
        "",
        f"Data: `{report['data']['source']}` (test split sha256 `{report['data']['test_sha256'][:16]}…`)."
        if report.get("data") else "",
        "",
        f"Checked on {chk['samples']} CIFAR-10 test images ({chk['selection']}), each artifact in its device runtime "
        f"(edgecifar.device.runtime.Classifier); Keras top-1 on the same images: {100 * chk['keras_accuracy']:.2f}%.",
        "",
        "| " + " | ".join(c.replace("|", "\\|") for c in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows(report)]
    lines += [
        "",
        "Δ vs Keras: artifact top-1 minus Keras top-1 on the same images, in percentage points (1 image = "
        f"{100 / chk['samples']:.3g} pp here). agree: share of images where the artifact's top-1 class equals Keras'. "
        "max |Δp|: largest absolute difference of any class probability. ties: images whose top probability is "
        "shared by two classes (argmax then takes the lower class index). Budgets (largest accepted drop): "
        + ", ".join(f"{k} {v:g} pp" for k, v in report["budgets_pp"].items()) + ".",
        "",
    ]
    if report.get("max_drop") is not None:
        md = report["max_drop"]
        verdict = "exceeded by " + ", ".join(md["exceeded"]) if md["exceeded"] else "respected"
        lines += [f"--max-drop {md['pp']:g} pp for int8 artifacts: {verdict}.", ""]
    if cal:
        lines += [
            "## Calibration",
            "",
            f"{cal['samples']} images from the **{cal['split']}** split ({cal['selection']}), per class "
            f"{cal['per_class_counts']}, indices sha256 `{cal['indices_sha256'][:16]}…`; {cal['preprocessing']}. "
            + (f"Then degraded with the camera augmentation: {cal['augmentation']}. " if cal.get("augmentation") else "")
            + "TFLite and ONNX int8 are calibrated on these same images.",
            "",
        ]
    lines += _bias_correction_lines(report.get("bias_correction"))
    lines += _qat_lines(report.get("qat"))
    lines += _accuracy_aware_lines(report["artifacts"])
    lines += _validation_lines(report)
    lines += ["## Conversion", ""]
    for a in report["artifacts"]:
        if a.get("conversion"):
            settings = "; ".join(f"{k}: {v}" for k, v in a["conversion"].items())
            lines.append(f"- {a['format']}: {settings}")
    lines += ["", "Settings: " + ", ".join(f"{k} {v}" for k, v in report["settings"].items()) + ".", ""]
    if report.get("debug_quant"):
        lines += ["## Quantization debug reports", ""] + [f"- `{p}`" for p in report["debug_quant"]] + [""]
    host = report.get("host") or {}
    if host:
        lines += [f"Checked on: {host['system']} {host['machine']}, {host['cpu_count']} CPUs, int8-relevant CPU features: "
                  f"{', '.join(host['cpu_features']) or 'none detected'}.", ""]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    lines += [f"Tools: {versions}. Export took {report['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def _bias_correction_lines(bc: dict | None) -> list[str]:
    if not bc:
        return []
    skipped = f" Skipped: {', '.join(bc['skipped'])}." if bc["skipped"] else ""
    return [
        "## Bias correction",
        "",
        f"The int8 artifacts were converted from a copy of the model whose biases absorb the mean output shift that int8 "
        f"weight rounding causes ({bc['method']}): {bc['layers_corrected']} layer(s), measured on the "
        f"{bc['images']:,} calibration images, largest per-channel shift {bc['largest_shift']:.4f}, {bc['seconds']:.0f} s."
        f"{skipped} Kernels are unchanged; every artifact above is checked against the original model.",
        "",
    ]


def _qat_lines(qat: dict | None) -> list[str]:
    if not qat:
        return []
    if qat.get("skipped"):
        return ["## Quantization-aware fine-tuning", "",
                f"{', '.join(qat['formats'])} missed the target after the float-layer search; automatic fine-tuning "
                f"with int8 simulated was not possible: {qat['skipped']}.", ""]
    if qat.get("auto"):
        kept = [f for f, k in qat["kept"].items() if k]
        subject = (f"Post-training int8 missed the target for {', '.join(qat['formats'])} after the float-layer search, so "
                   "the exporter fine-tuned the model with int8 simulated and converted those formats again (`--qat auto`, "
                   "the default; `--qat 0` turns it off). It kept the fine-tuned artifact for "
                   f"{', '.join(kept) or 'none'} (the better one: target met, then agreement; table below). They were "
                   "converted from a copy of the model")
    else:
        subject = "The int8 artifacts were converted from a copy of the model"
    return [
        "## Quantization-aware fine-tuning",
        "",
        f"{subject} fine-tuned for {qat['epochs']} epoch(s) on "
        f"{qat['images']:,} training images with int8 simulated ({qat['method']}; {qat['optimizer']}, batch "
        f"{qat['batch_size']}, seed {qat['seed']}, {qat['backend']} backend, {qat['seconds']:.0f} s). Float head: "
        f"`{qat['float_head']}`. Rounded activations: {', '.join(f'`{n}`' for n in qat['quantized_tensors'])}. "
        f"Distillation loss (logit mean squared error) by epoch: {', '.join(f'{v:.4f}' for v in qat['loss'])}. Simulated-int8 agreement with the "
        f"original model on {qat.get('simulated_agreement_on', '2,000 training images')}: "
        f"{100 * qat['simulated_agreement_before']:.2f} % before, "
        f"{100 * qat['simulated_agreement_after']:.2f} % after. Every artifact above is checked against the original "
        "model, not the tuned copy.",
        "",
    ] + _auto_qat_table(qat)


def _auto_qat_table(qat: dict) -> list[str]:
    """Automatic QAT: per format, the post-training artifact and the fine-tuned one, and which was kept."""
    if not qat.get("auto"):
        return []
    return ["| format | post-training Δ | agree | fine-tuned Δ | agree | ties | size | kept |", "|---|---:|---:|---:|---:|---:|---:|---|"] + [
        f"| {fmt} | {_brief(r['post_training'])} | {_brief(r['tuned'])} | {r['tuned'].get('top1_ties', '–')} | "
        f"{human_size(r['tuned']['size_bytes'], 'KiB') if r['tuned'].get('size_bytes') else '–'} | {r['kept']} |"
        for fmt, r in qat.get("results", {}).items()] + [""]


def _brief(row: dict) -> str:
    if row.get("delta_pp") is None:
        return f"failed ({row.get('reason') or '?'}) | –"
    return f"{row['delta_pp']:+.2f} pp | {100 * row['agreement']:.2f} %"


def _accuracy_aware_lines(artifacts: list[dict]) -> list[str]:
    """The "Accuracy-aware int8" section: per int8 artifact, whether it met the target and what each try did."""
    lines = []
    aware = [a for a in artifacts if a.get("accuracy_aware")]
    if aware:
        lines += ["## Accuracy-aware int8", "",
                  "Target: top-1 within {:g} pp of Keras and agreement ≥ {:g} % (export/fallback.py). An artifact that misses "
                  "it keeps its most sensitive layers (quantization debugger ranking) in float.".format(
                      aware[0]["accuracy_aware"].get("target_pp", defaults.INT8_TARGET_PP),
                      100 * aware[0]["accuracy_aware"].get("target_agreement", defaults.INT8_TARGET_AGREEMENT)),
                  ""]
        for a in aware:
            # After automatic QAT the float-layer search belongs to the post-training artifact it started from.
            b = a["accuracy_aware"].get("post_training") or a["accuracy_aware"]
            if b.get("skipped"):
                lines.append(f"- {a['format']}: not searched: {b['skipped']}.")
            elif b.get("error"):
                lines.append(f"- {a['format']}: the search failed ({b['error']}); the best artifact before the failure "
                             f"was kept ({len(b['kept_float'])} float layer(s)).")
            elif not b.get("tries"):
                lines.append(f"- {a['format']}: target met with every layer quantized (no float layer beyond the head).")
            else:
                f = b["first"]
                tries = "; ".join(f"{len(t['kept_float'])} layer(s): Δ {t['delta_pp']:+.2f} pp, agree {100 * t['agreement']:.2f} %, "
                                  f"{human_size(t['size_bytes'], 'KiB')}" + (" (over the size limit)" if t.get("over_size_limit") else
                                                                        f", {t.get('latency_ms', float('nan')):.3f} ms")
                                  for t in b["tries"] if t.get("delta_pp") is not None)
                lines.append(f"- {a['format']}: first Δ {f['delta_pp']:+.2f} pp, agree {100 * f['agreement']:.2f} % "
                             f"({b['miss']}), {b.get('first_latency_ms', float('nan')):.3f} ms; tries: {tries}. Kept in float: "
                             f"{', '.join(f'`{n}`' for n in b['kept_float']) or 'none'}; target {'met' if b['met'] else 'not met'}"
                             + ("" if b["met"] or not b.get("best_try") else
                                f" (the all-int8 artifact is kept; best try: {len(b['best_try']['kept_float'])} layer(s), "
                                f"agree {100 * b['best_try']['agreement']:.2f} %)") + "; "
                             f"cost {human_size(b['size_cost_bytes'], 'KiB', '+.1f')}, "
                             + (f"{b['latency_cost_ms']:+.3f} ms" if b.get("latency_cost_ms") is not None else "? ms")
                             + " per image (batch 1, 1 thread)." + _after_search(a))
        lines.append("")
    return lines


def _after_search(artifact: dict) -> str:
    """What automatic QAT did after the float-layer search, in one sentence (empty when it did not run)."""
    auto = artifact.get("auto_qat")
    if not auto:
        return ""
    if auto["kept"]:
        return (" Automatic quantization-aware fine-tuning followed, and its artifact replaced this one "
                "(Quantization-aware fine-tuning, above).")
    return " Automatic quantization-aware fine-tuning followed and did no better: this artifact stays."


def _validation_lines(report: dict) -> list[str]:
    """The held-back validation section: int8 Δ on images neither trained nor calibrated on, next to test."""
    lines = []
    val = report.get("validation_check")
    if val:
        lines += ["## Int8 on held-back validation images", ""]
        rows_v = [a for a in report["artifacts"] if a.get("validation") and "error" not in a["validation"]]
        if rows_v:
            lines += [f"{val['samples']:,} images: {val['selection']}. Neither trained nor calibrated on, so a Δ close "
                      "to the test Δ says the quantization error belongs to the model, not to the test images.", "",
                      "| format | Δ vs Keras (validation) | agree | ties | Δ vs Keras (test) |", "|---|---:|---:|---:|---:|"]
            lines += [f"| {a['format']} | {a['validation']['delta_pp']:+.2f} pp | {100 * a['validation']['agreement']:.2f}% | "
                      f"{a['validation']['top1_ties']} | {a['delta_pp']:+.2f} pp |" for a in rows_v]
        else:
            lines.append(f"Not measured: {val.get('reason', 'no int8 artifact passed its check')}.")
        lines.append("")
    return lines


def report_paths(out_dir: Path) -> tuple[Path, Path]:
    return Path(out_dir) / "export_report.json", Path(out_dir) / "export_report.md"


def save(report: dict, out_dir: Path) -> tuple[Path, Path]:
    json_path, md_path = report_paths(out_dir)
    write_json(json_path, report)
    write_text(md_path, markdown(report))
    return json_path, md_path
