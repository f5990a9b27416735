"""`edgecifar run`: classify camera, video, stream or image frames live with an exported model.

Imports only numpy, OpenCV and a runtime (LiteRT / tflite-runtime / onnxruntime): never TensorFlow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import UserError
from ..machine import usable_cores
from .runtime import BACKENDS, KERNELS


@click.command("run")
@click.argument("model_file", type=click.Path(dir_okay=False), required=False)
@click.option("--source", "-s", "source_spec", default="0", show_default=True, metavar="SRC",
              help="Camera index (0), /dev/videoN, picamera2[:lores][:WxH], a video, an image, a folder or glob of "
                   "images, an rtsp:// or http:// URL, or a GStreamer pipeline ending in appsink.")
@click.option("--backend", type=click.Choice(BACKENDS), help="Force a runtime (default: litert, else tflite_runtime, "
              "else tensorflow for .tflite; onnxruntime for .onnx).")
@click.option("--threads", type=click.IntRange(min=1), help="Inference threads (default: the runtime's choice).")
@click.option("--kernels", type=click.Choice(KERNELS), default="xnnpack", show_default=True,
              help="TFLite kernels: xnnpack is fastest; reference (slowest) gives the same int8 outputs on x86 and ARM, "
                   "where xnnpack and builtin may differ by a quantization step.")
@click.option("--classes", metavar="NAMES", help="Comma-separated class names, for a model without edgecifar metadata "
              "(e.g. a .tflite from elsewhere); one per output.")
@click.option("--output-kind", type=click.Choice(["probabilities", "logits"]), help="What a model without edgecifar "
              "metadata outputs: probabilities, or logits (the softmax is then applied here).")
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=3, show_default=True, help="Labels reported per frame.")
@click.option("--smooth", type=click.FloatRange(0.0, 1.0, max_open=True), metavar="ALPHA",
              help="Temporal smoothing: EMA of probabilities, ALPHA = weight of the past (e.g. 0.6). For cameras and videos.")
@click.option("--json", "json_lines", is_flag=True, help="One JSON line per frame on stdout (messages go to stderr).")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="Write the annotated video (.mp4, .avi, .mkv, .mov).")
@click.option("--show", is_flag=True, help="Show an annotated window (needs a display and non-headless OpenCV); q quits.")
@click.option("--serve", "serve", metavar="[HOST:]PORT", help="Live annotated view in a browser (MJPEG); HOST defaults to 127.0.0.1, use 0.0.0.0:PORT (with --token) to reach it from another machine.")
@click.option("--token", envvar="EDGECIFAR_TOKEN", show_envvar=True, help="Access token for --serve (clients add ?token=...); required when HOST is not loopback, "
              "e.g. --token \"$(openssl rand -hex 16)\".")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after N classified frames.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", help="Stop after this many seconds.")
def run_cmd(model_file, source_spec, backend, threads, kernels, classes, output_kind, top_k, smooth, json_lines, save, show, serve, token, max_frames, duration):
    """Classify frames from SRC with MODEL_FILE (.tflite or .onnx from `edgecifar export`) and print the top-k.

    Without MODEL_FILE, the default model bundled with edgecifar is used (an int8 TFLite, see `edgecifar run --help`).

    \b
    Examples:
      edgecifar run model_int8.tflite --source 0                  # USB webcam
      edgecifar run model_int8.tflite --source picamera2:lores    # Pi CSI camera, ISP-downscaled stream
      edgecifar run model_int8.onnx --source clip.mp4 --json > predictions.jsonl
      edgecifar run model_int8.tflite --source photos/ --top-k 5
      edgecifar run model_int8.tflite --source 0 --smooth 0.6 --save out.mp4 --serve 8080

    Ctrl-C (or SIGTERM) stops cleanly and prints the per-stage latency summary.
    """
    try:
        import cv2  # noqa: F401  (every source and the preprocessing need it; fail here with the fix, not mid-run)
    except ImportError:
        raise UserError("`edgecifar run` needs OpenCV; pip install 'edgecifar[device]' (or opencv-python-headless)") from None
    from .frame_loop import RunOptions, check_display, import_serve, run
    from .runtime import Classifier
    from .sources import open_source

    from_command_line = click.get_current_context().get_parameter_source("token") == click.core.ParameterSource.COMMANDLINE
    if token is not None and not serve and from_command_line:  # $EDGECIFAR_TOKEN alone is just unused
        raise UserError("--token only applies to --serve; add --serve PORT")
    serve_at = None
    if serve:
        # Before the model or the source is opened: a refused exposure should be instant and start nothing.
        serve_mod = import_serve()
        serve_at = serve_mod.parse_address(serve)
        serve_mod.check_access(*serve_at, token)
    if show:
        check_display()  # before loading anything: a refusal should be instant
    info = sys.stderr if json_lines else sys.stdout

    if model_file is None:
        model_file = default_model()
        click.echo(f"no model given: using the bundled default model {model_file.name}", file=info)
    names = [c.strip() for c in classes.split(",")] if classes else None
    if names is not None and not all(names):
        raise UserError(f"--classes {classes!r}: an empty name; give comma-separated names, e.g. --classes cat,dog")
    # Classifier enforces the artifact contract (class count, input size, channels, layout, color order, dtypes,
    # quantization vs the model's tensors).
    clf = Classifier(model_file, backend=backend, threads=threads, kernels=kernels, class_names=names, output_kind=output_kind)
    meta = clf.meta
    what = f"{meta.get('model', '?')} {meta.get('format', '')}".strip() if meta else "no edgecifar metadata: class indices as labels"
    click.echo(f"model: {clf.describe()} ({what})", file=info)
    if clf.caveat:
        click.echo(f"warning: {clf.caveat}", file=info)
    if threads is None:
        click.echo(f"threads: runtime default ({usable_cores()} CPU cores usable here); set --threads to pin", file=info)

    source = open_source(source_spec)
    if smooth and source.kind == "images":
        click.echo("warning: --smooth averages over consecutive images of a folder, which are unrelated", file=info)
    fps = f", {source.fps:g} FPS" if source.fps else ""
    click.echo(f"source: {source.description}{fps}", file=info)
    h, w = clf.input_size
    click.echo(f"preprocess: center-crop to square, INTER_AREA resize to {w}x{h}, "
               + ("BGR (the model's color order)" if clf.color_order == "BGR" else "BGR→RGB")
               + (", quantize with the model's input scale/zero point" if clf.input_quant else ""), file=info)
    opts = RunOptions(top_k=top_k, smooth=smooth, max_frames=max_frames, duration=duration, json_lines=json_lines,
                      save=save, show=show, serve=serve_at, token=token)
    try:
        run(clf, source, opts)
    finally:
        source.close()


DEFAULT_MODEL = "default_int8.tflite"


def default_model() -> Path:
    """The int8 TFLite shipped inside the package (with its sidecar), so `edgecifar run` works before any training."""
    path = Path(__file__).resolve().parent.parent / "assets" / DEFAULT_MODEL
    if not path.is_file():
        raise UserError(f"the bundled default model is missing from {path.parent}; reinstall edgecifar or pass MODEL_FILE")
    return path

