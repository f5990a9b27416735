"""`edgecifar export`: the command-line face of edgecifar.export.export_run."""

from __future__ import annotations

import shlex
import sys

import click

from ..echo import progress_echo
from .. import defaults
from . import FORMATS


class QatEpochs(click.ParamType):
    """--qat: a number of epochs (0 = never) or "auto"."""

    name = "epochs"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        try:
            epochs = int(text)
        except ValueError:
            epochs = -1
        if epochs < 0:
            self.fail(f"{value!r} is neither a number of epochs (0 or more) nor auto", param, ctx)
        return epochs


@click.command("export")
@click.argument("run", required=False, type=click.Path())
@click.option("--int8", "int8", is_flag=True, help="The int8 artifacts: TFLite int8 (float head) and ONNX QDQ int8 (tflite_int8_full by --formats).")
@click.option("--fp16", is_flag=True, help="Float16 TFLite only.")
@click.option("--formats", metavar="LIST",
              help=f"Comma-separated formats, any of: {', '.join(FORMATS)} (default: all; adds to --int8/--fp16).")
@click.option("--calib-samples", type=int, default=defaults.CALIB_SAMPLES, show_default=True,
              help="Calibration images, stratified from the training split (never test).")
@click.option("--samples", "--check-samples", "check_samples", type=int, metavar="N",
              help="Check on a class-stratified subset of N test images (default: all 10,000; --check-samples is the old name).")
@click.option("--json", "as_json", is_flag=True, help="Print export_report.json on stdout (progress goes to stderr).")
@click.option("--io", "io_dtype", type=click.Choice(["uint8", "int8"]), default="uint8", show_default=True,
              help="Input/output dtype of the int8 TFLite model.")
@click.option("--per-channel/--per-tensor", default=True, show_default=True, help="Weight quantization granularity.")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True,
              help="ONNX calibration method (the TFLite converter uses min/max).")
@click.option("--opset", type=int, default=defaults.ONNX_OPSET, show_default=True, help="ONNX opset.")
@click.option("--max-drop", type=float, metavar="PP",
              help="Exit with status 1 when an int8 artifact's top-1 is more than PP points below Keras (or it failed).")
@click.option("--debug-quant", is_flag=True, help="Also write per-layer quantization error reports for the int8 artifacts.")
@click.option("--accuracy-aware/--plain-int8", default=True, show_default=True,
              help=f"When an int8 artifact misses the target (within {defaults.INT8_TARGET_PP:g} pp of Keras, "
                   f"{100 * defaults.INT8_TARGET_AGREEMENT:g} % agreement), keep its most sensitive layers in float until "
                   f"it meets it (up to {defaults.FALLBACK_MAX_LAYERS}; the report says which and what they cost).")
@click.option("--qat", "qat_epochs", type=QatEpochs(), default="auto", metavar="EPOCHS|auto", show_default=True,
              help="Before the int8 conversions, fine-tune the model EPOCHS epochs with int8 simulated, to agree with "
                   "itself (edgecifar/qat.py; pure Keras). Artifacts are still checked against the original model. "
                   f"auto: only for an int8 artifact that still misses the target after the float-layer search, "
                   f"{defaults.QAT_AUTO_EPOCHS} epochs, keeping the better artifact. 0: never.")
@click.option("--bias-correction", is_flag=True,
              help="Before the int8 conversions, put back the per-channel mean output shift that int8 weight rounding "
                   "causes, measured on the calibration images (edgecifar/export/bias_correction.py). Helps "
                   "depthwise nets (MobileNetV2) most.")
@click.option("--calib-augment", type=click.Choice(["auto", "camera", "none"]), default="auto", show_default=True,
              help="Degrade the calibration images with the camera augmentation: auto = as the run was trained "
                   "(`train --augment camera` runs, at their rate), camera = always, none = never.")
@click.option("--data-dir", type=click.Path(), help="CIFAR-10 folder or archive (else $EDGECIFAR_DATA).")
@click.option("--runs-dir", type=click.Path(), help="Where to look for the latest run when RUN is left out.")
@click.option("--out", "out_dir", type=click.Path(), help="Output folder (default RUN/export).")
def export_cmd(run, int8, fp16, formats, calib_samples, check_samples, as_json, io_dtype, per_channel, calib_method, opset,
               max_drop, debug_quant, accuracy_aware, qat_epochs, bias_correction, calib_augment, data_dir, runs_dir,
               out_dir):
    """Export RUN (default: the latest finished run) to TFLite and ONNX, calibrated and checked.

    \b
    Writes RUN/export/<model>_<format>.tflite|.onnx (+ .json metadata sidecars for TFLite)
    and export_report.json/.md: top-1 on the test set in the device runtime, vs Keras.
    \b
    Examples:
      edgecifar export --int8                       # latest run, int8 TFLite + ONNX
      edgecifar export runs/seed002_m1_cnn-... --fp16
      edgecifar export RUN --formats tflite_int8_full --io int8 --samples 2000
      edgecifar export RUN --json > report.json
    """
    from ..quiet import import_tensorflow
    from . import export_run, select_formats

    import_tensorflow()

    fmts = select_formats(formats, int8=int8, fp16=fp16)
    # Recorded at the top of the report so anyone can reproduce it exactly.
    command = "edgecifar " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["export"] else None
    report = export_run(run, formats=fmts, calib_samples=calib_samples, check_samples=check_samples, data_dir=data_dir,
                        io_dtype=io_dtype, opset=opset, per_channel=per_channel, calib_method=calib_method,
                        max_drop=max_drop, debug_quant=debug_quant, runs_dir=runs_dir, out_dir=out_dir, command=command,
                        accuracy_aware=accuracy_aware, qat_epochs=qat_epochs, calib_augment=calib_augment,
                        bias_correction=bias_correction,
                        echo=progress_echo(as_json))
    if as_json:
        from ..files import dumps

        click.echo(dumps(report, indent=2))
    failed = [a["format"] for a in report["artifacts"] if a["status"] == "failed"]
    if failed:
        click.echo(f"edgecifar: error: {len(failed)} format(s) failed: {', '.join(failed)} (reasons in the report; "
                   "earlier artifacts of those formats were kept)", err=True)
    if failed or (report["max_drop"] and report["max_drop"]["exceeded"]):
        # SystemExit, not click's Exit: edgecifar.cli.main runs click non-standalone, where Exit codes are swallowed.
        sys.exit(1)

