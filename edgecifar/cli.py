"""The `edgecifar` command line. Each stage owns its subcommand; this file only wires them.

Subcommands are imported lazily so `edgecifar run` on a Pi never imports TensorFlow,
and `edgecifar --help` is instant.
"""

from __future__ import annotations

import importlib
import importlib.util
import signal
import sys
import threading

import click

from . import __version__, defaults, precision
from .echo import progress_echo
from .errors import UserError

# name -> "module:attribute" of a click command
COMMANDS = {
    "models": "edgecifar.cli:models_cmd",
    "train": "edgecifar.cli:train_cmd",
    "evaluate": "edgecifar.cli:evaluate_cmd",
    "export": "edgecifar.export.cli:export_cmd",
    "run": "edgecifar.device.cli:run_cmd",
    "benchmark": "edgecifar.benchmark:benchmark_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._importable(name)]

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            if isinstance(e, ImportError) and e.name and not e.name.startswith("edgecifar"):
                # A stage whose optional dependencies are missing: say which extra to install.
                extra = "device" if name == "run" else "train"
                raise UserError(f"`edgecifar {name}` needs {e.name}; install it with: pip install 'edgecifar[{extra}]'") from None
            raise

    @staticmethod
    def _importable(name):
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgecifar")
def cli():
    """Train small CIFAR-10 CNNs, export them to int8 TFLite/ONNX, run them on a camera, benchmark them.

    \b
    Typical flow:
      edgecifar train                 # default model, documented recipe
      edgecifar export --int8         # latest run -> int8 TFLite + ONNX, checked on the test set
      edgecifar run runs/<run>/export/<model>_int8.tflite --source 0
      edgecifar benchmark runs/<run>
    """


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_cmd(as_json):
    """List the model zoo: name, exact parameter count, MACs per image, source write-up and default recipe.

    \b
    Examples:
      edgecifar models
      edgecifar models --json | jq '.[] | {name, params, macs}'
    """
    from . import zoo  # the registry only: no model is built and TensorFlow is not imported

    rows = []
    for name in zoo.list_models():
        info = zoo.model_info(name)
        rows.append({
            "name": name,
            "params": info.params,
            "macs": info.macs,
            "documented_params": info.documented_params,
            "documented_test_accuracy": info.documented_test_accuracy,
            "source": info.source,
            "recipe": info.recipe.describe(),
            "augment": "camera" if info.recipe.camera else "plain",
            "variants": [v for v in info.recipe.variants if v != ("camera" if info.recipe.camera else "plain")],
            "default": name == zoo.DEFAULT_MODEL,
        })
    if as_json:
        from .files import dumps

        click.echo(dumps(rows, indent=2))
        return
    for r in rows:
        star = " (default)" if r["default"] else ""
        doc = f", write-up: {r['documented_test_accuracy']}% test" if r["documented_test_accuracy"] else ""
        click.echo(f"{r['name']}{star}\n    params  {r['params']:,}   MACs  {r['macs'] / 1e6:,.1f} M per image\n"
                   f"    source  {r['source']}\n    recipe  {r['recipe']}{doc}")
        for v in r["variants"]:  # e.g. seed003_bn_cnn_camera: the same recipe with(out) the camera augmentation
            click.echo(f"    variant  {r['name']}_{v}: edgecifar train {r['name']} --augment {v}")


@cli.command("train")
@click.argument("model", required=False)
@click.option("--epochs", type=int, help="Override the recipe's epoch count (phases keep their proportions).")
@click.option("--batch-size", type=int, help="Override the recipe's batch size.")
@click.option("--lr", type=float, help="Override the recipe's learning rate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: same seed, same result on the same CPU type (README: Reproducibility).")
@click.option("--limit", type=int, help="Train on the first N training images only (quick runs).")
@click.option("--samples", "--test-limit", "test_limit", type=int, metavar="N",
              help="Evaluate on a stratified subset of N test images (quick runs; --test-limit is the old name).")
@click.option("--val-size", type=int, help=f"Validation images held out of the training split (default: the recipe's, "
              f"else {defaults.VAL_SIZE:,}).")
@click.option("--data-dir", type=click.Path(), help="CIFAR-10 folder or archive (else $EDGECIFAR_DATA, ~/.keras/datasets, download).")
@click.option("--runs-dir", type=click.Path(), help="Where run directories go (default ./runs or $EDGECIFAR_RUNS).")
@click.option("--run-dir", type=click.Path(), help="Exact run directory; an interrupted run there resumes from its last epoch.")
@click.option("--resume", is_flag=True, help="Resume the most recent interrupted run of MODEL.")
@click.option("--backbone-weights", type=click.Path(), help="ImageNet backbone .h5 for transfer models (else Keras download).")
@click.option("--distribute", is_flag=True, help="Data-parallel over all local devices (tf.distribute / keras.distribution).")
@click.option("--precision", "precision_name", type=click.Choice(precision.CHOICES), default=None,
              help="Training arithmetic (default: the recipe's). auto: mixed_bfloat16 where the CPU has AMX or AVX512-BF16, "
                   "else float32. The saved model is float32 either way.")
@click.option("--augment", type=click.Choice(["plain", "camera"]), default=None,
              help="camera: add random blur, low light, low contrast, sensor noise and JPEG to training images "
                   "(a camera-robust variant, run named <model>_camera); plain: without it. Default: the model's recipe.")
@click.option("--camera-rate", type=float, metavar="R",
              help="With the camera augmentation: multiply each degradation's probability by R in (0, 1] (0.5: about "
                   "64 % of images stay clean, against 39 % at 1). Default: the recipe's (1 unless `edgecifar models` says).")
def train_cmd(model, epochs, batch_size, lr, seed, limit, test_limit, val_size, data_dir, runs_dir, run_dir, resume, backbone_weights,
              distribute, precision_name, augment, camera_rate):
    """Train MODEL (default: the default model) with its documented recipe and write a run directory.

    \b
    Examples:
      edgecifar train                                  # the default model, its documented recipe
      edgecifar train resnet8_w20                      # the edge model (see `edgecifar models`)
      edgecifar train seed002_m1_cnn --epochs 3 --limit 5000 --samples 1000   # a quick look
      edgecifar train seed003_bn_cnn --resume          # continue the latest interrupted run
      nohup edgecifar train resnet8_w20 > train.log &  # a log gets a progress line a minute
    """
    from . import quiet, runs, zoo

    zoo.model_info(model or zoo.DEFAULT_MODEL)  # unknown names fail here, before TensorFlow loads
    # A device-only install fails here, in one line naming the train extra, before anything is printed.
    quiet.import_tensorflow()
    if model is None:
        model = zoo.DEFAULT_MODEL
        click.echo(f"no model given: training the default model {model} (see `edgecifar models` for the others)")
    from .train import train, with_augment

    _, label = with_augment(model, zoo.model_info(model).recipe, augment, camera_rate=camera_rate)  # bad values fail here
    if resume and not run_dir:
        run_dir = runs.latest_unfinished(label, runs_dir)
    done = train(model, data_dir=data_dir, runs_dir=runs_dir, run_dir=run_dir, epochs=epochs, batch_size=batch_size, lr=lr,
                 seed=seed, limit=limit, test_limit=test_limit, val_size=val_size, backbone_weights=backbone_weights,
                 distribute=distribute, echo=click.echo, augment=augment, precision_name=precision_name,
                 camera_rate=camera_rate)
    click.echo(f"next: edgecifar evaluate {done}  |  edgecifar export {done} --int8")


@cli.command("evaluate")
@click.argument("run", required=False, type=click.Path())
@click.option("--data-dir", type=click.Path(), help="CIFAR-10 folder or archive.")
@click.option("--corruptions", is_flag=True,
              help="Run the corruption suite instead (blur, noise, JPEG, low light, contrast, pixelate, camera round "
                   "trip; 3 severities each): writes corruptions.json/.csv/.md/.png into RUN.")
@click.option("--samples", type=int, default=None, metavar="N",
              help="With --corruptions: a class-stratified subset of this many test images (default: all 10,000).")
@click.option("--seed", type=int, default=None, metavar="N", help="With --corruptions: seed of the subset and of the noise (default 0).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout (progress goes to stderr).")
def evaluate_cmd(run, data_dir, corruptions, samples, seed, as_json):
    """Test accuracy, per-class precision/recall/F1, confusion.png and misclassified.png for RUN (default: latest).

    With --corruptions: top-1 per corruption and severity, and the mean corruption accuracy (mCA).

    \b
    Examples:
      edgecifar evaluate                                   # the latest run
      edgecifar evaluate runs/resnet8_w20-... --corruptions
      edgecifar evaluate RUN --corruptions --samples 1000 --json | jq .mca
    """
    from . import quiet, runs

    if not corruptions and (samples is not None or seed is not None):
        raise UserError(f"{'--samples' if samples is not None else '--seed'} applies to the corruption suite; add --corruptions")
    if samples is not None and samples < 1:
        raise UserError(f"--samples {samples} is out of range; pass 1 to 10000 (or leave it out for the whole test set)")
    if seed is not None and seed < 0:
        raise UserError(f"--seed {seed} is negative; pass 0 or a positive integer")
    run_dir = runs.resolve_run(run)  # a wrong path fails here, before TensorFlow loads
    quiet.import_tensorflow()
    echo = progress_echo(as_json)
    if corruptions:
        from .evaluate import evaluate_corruptions

        result = evaluate_corruptions(run_dir, data_dir=data_dir, samples=samples, seed=seed or 0, echo=echo)
    else:
        from .evaluate import evaluate

        result = evaluate(run_dir, data_dir=data_dir, echo=echo)
    if as_json:
        from .files import dumps

        click.echo(dumps(result, indent=2))


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a session or service ending) as an interrupt: cleanup code runs as for Ctrl-C (no staged
    export files left behind, a camera released), and the exit status is the shell's 128 + 15."""


def _terminate(signum, frame):
    raise Terminated()


def _interrupted(cause) -> None:
    """One line, and the shell's status for the signal: 128 + 15 for SIGTERM, 130 for Ctrl-C."""
    click.echo("edgecifar: interrupted", err=True)
    sys.exit(128 + signal.SIGTERM if isinstance(cause, Terminated) else 130)


def command_line(*args) -> list[str]:
    """The argv that runs `edgecifar ARGS` in a subprocess as a user would: this interpreter, the package's own entry
    point (not a `edgecifar` script that PATH may resolve to another install). Benchmarks and tests build it here."""
    return [sys.executable, "-m", "edgecifar.cli", *map(str, args)]


def main(argv=None):
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = cli.main(args=argv, prog_name="edgecifar", standalone_mode=False)
    except UserError as e:
        click.echo(f"edgecifar: error: {e}", err=True)
        sys.exit(e.exit_code)
    except ImportError as e:  # ModuleNotFoundError, or a module present but unusable
        if not e.name or e.name.split(".")[0] == "edgecifar":
            raise
        # An optional dependency of this command is missing: name the extra that brings it.
        device_side = e.name.split(".")[0] in ("cv2", "onnxruntime", "ai_edge_litert", "tflite_runtime")
        extra = "device" if device_side else "train"
        click.echo(f"edgecifar: error: this command needs {e.name.split('.')[0]}, which is not installed; "
                   f"pip install 'edgecifar[{extra}]'", err=True)
        sys.exit(2)
    except click.exceptions.Abort as e:  # click's form of a KeyboardInterrupt in a command
        _interrupted(e.__cause__)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:
        # An unknown option or a value outside its choices: one line naming it and where the choices are,
        # like every other bad input (click's own three-line usage block is for a terminal, not a log).
        where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        click.echo(f"edgecifar: error: {e.format_message()}{where}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except KeyboardInterrupt as e:
        _interrupted(e)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
