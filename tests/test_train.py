"""Training: every zoo model trains and leaves a complete run directory; runs resume; seeds repeat."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edgecifar import runs, zoo
from edgecifar.train import train

from .conftest import MOBILENET_035, run_cli

RUN_FILES = ["model.keras", "manifest.json", "history.csv", "curves.png"]
MANIFEST_KEYS = ["model", "params", "recipe", "preprocessing", "class_names", "data", "metrics", "versions", "git_commit"]


def _check_run_dir(run_dir, model_name, epochs):
    for name in RUN_FILES:
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    assert not (run_dir / "checkpoint").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for key in MANIFEST_KEYS:
        assert key in manifest, key
    assert manifest["model"] == model_name
    assert manifest["data"]["fingerprint"]["test_count"] == 10000
    assert 0.0 <= manifest["metrics"]["test_accuracy"] <= 1.0
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    if zoo.model_info(model_name).recipe.val_size != 0:  # a recipe may train on all 50,000 (no hold-out)
        assert all(r["val_accuracy"] for r in rows)  # validated on the held-out slice every epoch
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return manifest


@pytest.mark.parametrize("name", [n for n in zoo.list_models() if n != "seed004_inceptionv3_transfer"])
def test_every_model_trains_one_epoch_on_512_images(name, data_dir, tmp_path):
    kwargs = {"backbone_weights": MOBILENET_035} if zoo.model_info(name).recipe.kind == "features" else {}
    run_dir = train(name, data_dir=data_dir, runs_dir=tmp_path, epochs=1, limit=512, test_limit=500, echo=lambda *_: None,
                    **kwargs)
    manifest = _check_run_dir(run_dir, name, 1)
    assert manifest["data"]["train_images"] + manifest["data"]["val_images"] == 512
    assert manifest["metrics"]["test_images"] == 500


def test_inception_transfer_path_works_with_random_weights(data_dir, tmp_path, monkeypatch):
    """The write-up's InceptionV3 at 299x299, on a few images (real weights are a download away)."""
    monkeypatch.setenv("EDGECIFAR_CACHE", str(tmp_path / "cache"))
    run_dir = train("seed004_inceptionv3_transfer", data_dir=data_dir, runs_dir=tmp_path, epochs=1, limit=40, test_limit=20,
                    backbone_weights="random", echo=lambda *_: None)
    manifest = _check_run_dir(run_dir, "seed004_inceptionv3_transfer", 1)
    assert manifest["params"] == 21_802_784 + 2048 * 10 + 10
    assert list((tmp_path / "cache" / "features").glob("*.npy"))  # features were cached on disk


def test_transfer_reuses_cached_features(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECIFAR_CACHE", str(tmp_path / "cache"))
    lines = []
    for _ in range(2):
        train("seed004_mobilenetv2_transfer", data_dir=data_dir, runs_dir=tmp_path, epochs=1, limit=256, test_limit=100,
              backbone_weights=MOBILENET_035, echo=lines.append)
    assert any(line.startswith("features: cached train") for line in lines)


def test_transfer_training_honours_lr(data_dir, tmp_path, monkeypatch):
    """--lr reaches the head's optimizer (it used to be a hard-coded Adam() that ignored it)."""
    monkeypatch.setenv("EDGECIFAR_CACHE", str(tmp_path / "cache"))

    def head_kernel(lr):
        run = train("seed004_mobilenetv2_transfer", data_dir=data_dir, runs_dir=tmp_path / str(lr), epochs=1, limit=256,
                    test_limit=100, lr=lr, backbone_weights=MOBILENET_035, echo=lambda *_: None)
        head = runs.load_model(run / "model.keras").get_layer("head")
        return np.concatenate([w.ravel() for w in head.get_weights()])

    import keras

    keras.utils.set_random_seed(0)  # what train() does before building the model with seed 0
    initial = np.concatenate([w.ravel() for w in zoo.create_model(
        "seed004_mobilenetv2_transfer", weights=str(MOBILENET_035)).get_layer("head").get_weights()])
    frozen, moved = head_kernel(1e-12), head_kernel(1e-2)
    assert np.abs(frozen - initial).max() < 1e-6  # a learning rate of 1e-12 leaves the head where it started
    assert np.abs(moved - initial).max() > 1e-3


def test_transfer_training_uses_the_recipes_optimizer(data_dir, tmp_path, monkeypatch):
    """The head is fitted with the recipe's optimizer (both transfer recipes say Adam, so a hard-coded Adam
    would pass the --lr test above): an SGD recipe must fit the head with SGD at its learning rate."""
    import dataclasses

    from edgecifar import transfer

    monkeypatch.setenv("EDGECIFAR_CACHE", str(tmp_path / "cache"))
    made = []

    def spy(recipe, steps, total_epochs):
        made.append(transfer_make(recipe, steps, total_epochs))
        return made[-1]

    transfer_make = transfer.make_optimizer
    monkeypatch.setattr(transfer, "make_optimizer", spy)
    recipe = zoo.model_info("seed004_mobilenetv2_transfer").recipe
    sgd = dataclasses.replace(recipe, optimizer="sgd", optimizer_args={"learning_rate": 0.05, "momentum": 0.5})
    train("seed004_mobilenetv2_transfer", recipe=sgd, data_dir=data_dir, runs_dir=tmp_path, epochs=1, limit=256,
          test_limit=100, backbone_weights=MOBILENET_035, echo=lambda *_: None)
    assert len(made) == 1 and type(made[0]).__name__ == "SGD"
    assert float(made[0].learning_rate) == pytest.approx(0.05) and float(made[0].momentum) == pytest.approx(0.5)


def test_experiments_pass_factory_kwargs_and_a_label_without_patching_the_registry(data_dir, tmp_path):
    """timm-style: train(name, model_kwargs=...) builds zoo.create_model(name, **kwargs) and records it."""
    before = dict(zoo._REGISTRY)
    run = train("seed002_m1_cnn", model_kwargs={"dropout": (0.0, 0.0)}, label="m1_nodrop", data_dir=data_dir,
                runs_dir=tmp_path, epochs=1, limit=256, test_limit=100, echo=lambda *_: None)
    manifest = json.loads((run / "manifest.json").read_text())
    assert run.name.startswith("m1_nodrop-") and manifest["model"] == "m1_nodrop"
    assert manifest["zoo_model"] == "seed002_m1_cnn" and manifest["model_kwargs"] == {"dropout": [0.0, 0.0]}
    rates = [layer.rate for layer in runs.load_model(run / "model.keras").layers if type(layer).__name__ == "Dropout"]
    assert rates == [0.0, 0.0]
    assert zoo._REGISTRY == before


def test_same_seed_same_result(data_dir, tmp_path):
    a = train("seed002_m1_cnn", data_dir=data_dir, runs_dir=tmp_path / "a", epochs=1, limit=512, test_limit=500, seed=3,
              echo=lambda *_: None)
    b = train("seed002_m1_cnn", data_dir=data_dir, runs_dir=tmp_path / "b", epochs=1, limit=512, test_limit=500, seed=3,
              echo=lambda *_: None)
    ma, mb = (json.loads((r / "manifest.json").read_text()) for r in (a, b))
    assert ma["metrics"]["test_accuracy"] == mb["metrics"]["test_accuracy"]
    wa, wb = (runs.load_model(r / "model.keras").get_weights() for r in (a, b))
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_from_last_epoch(data_dir, tmp_path):
    def stop_after_first_epoch(line):
        if line.startswith("epoch 1/"):
            raise _Interrupt

    run_dir = tmp_path / "run"
    with pytest.raises(_Interrupt):
        train("seed003_bn_cnn", data_dir=data_dir, run_dir=run_dir, epochs=2, limit=256, test_limit=100,
              echo=stop_after_first_epoch)
    assert json.loads((run_dir / "checkpoint" / "state.json").read_text()) == {"epoch": 1}
    assert not (run_dir / "manifest.json").exists()
    lines = []
    train("seed003_bn_cnn", data_dir=data_dir, run_dir=run_dir, epochs=2, limit=256, test_limit=100, echo=lines.append)
    assert any("resuming" in line and "after epoch 1/2" in line for line in lines)
    assert not any(line.startswith("epoch 1/") for line in lines)  # epoch 1 was not trained again
    manifest = _check_run_dir(run_dir, "seed003_bn_cnn", 2)
    # seed 003 reports test accuracy after each phase; phase 1's was measured on resume, from its checkpoint
    phases = manifest["metrics"]["phase_test_accuracy"]
    assert set(phases) == {"1", "2"} and phases["1"]["epochs"] == 1 and phases["2"]["epochs"] == 2
    assert phases["2"]["test_accuracy"] == manifest["metrics"]["test_accuracy"]
    assert any(line == f"phase 1 done after epoch 1: test accuracy {100 * phases['1']['test_accuracy']:.2f}% on 100 images"
               for line in lines)


def test_train_cli_default_model_writes_run(data_dir, tmp_path):
    res = run_cli("train", "--limit", "256", "--epochs", "1", "--test-limit", "100", "--runs-dir", tmp_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"default model {zoo.DEFAULT_MODEL}" in res.stdout
    assert "epoch 1/1" in res.stdout and "test accuracy" in res.stdout
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith(zoo.DEFAULT_MODEL)]
    _check_run_dir(run_dir, zoo.DEFAULT_MODEL, 1)


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--limit", "5"], "--limit must be at least 20"),
    (["--backbone-weights", "/nope.h5", "seed004_mobilenetv2_transfer"], "--backbone-weights /nope.h5 does not exist"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--lr", "inf"], "--lr must be a positive number"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--seed", "-1"], "--seed must be 0 or more"),
    (["--val-size", "50000"], "--val-size 50000 leaves 0 of 50000 images"),
    (["--val-size", "-5"], "--val-size must be 0 or more"),
])
def test_train_bad_options_are_one_line_errors(tmp_path, args, message):
    res = run_cli("train", *args, "--runs-dir", tmp_path, cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not [p for p in tmp_path.iterdir()], "a refused run must leave nothing behind"


@pytest.mark.parametrize("damage", ["state.json", "last.keras"])
def test_resume_from_a_damaged_checkpoint_is_one_line(tiny_run, tmp_path, damage):
    """A corrupt state.json or a truncated last.keras: one line naming the fix, no traceback."""
    import shutil

    run = tmp_path / "seed002_m1_cnn-20990101-000000"
    (run / "checkpoint").mkdir(parents=True)
    shutil.copy2(tiny_run / "model.keras", run / "checkpoint" / "last.keras")
    (run / "checkpoint" / "state.json").write_text('{"epoch": 1}')
    target = run / "checkpoint" / damage
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2] if damage == "last.keras" else b"{not json")
    res = run_cli("train", "seed002_m1_cnn", "--epochs", "2", "--limit", "256", "--run-dir", run, cwd=tmp_path)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and "Traceback" not in res.stderr, res.stderr
    assert damage in err[0] and "delete" in err[0]


def test_disk_full_while_training_is_one_line_and_leaves_no_partial_file(data_dir, small_tmpfs):
    """Issue 14: a full disk at the first checkpoint (seed002_m1 is ~2 MiB with its optimizer; the disk 256 KiB)
    was a traceback and exit 1. Now: exit 2, one line naming the fix, no half-written checkpoint or temp file."""
    res = run_cli("train", "seed002_m1_cnn", "--epochs", "1", "--limit", "256", "--samples", "100", "--runs-dir", small_tmpfs)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "No space left on device" in err[0] and "free some disk space" in err[0]
    files = [p for p in small_tmpfs.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".") or p.suffix in (".tmp", ".keras")], files


def test_reporting_commands_print_json_on_stdout(tiny_run, tmp_path):
    """--json: the report itself on stdout (parseable), progress on stderr, for evaluate and export."""
    ev = run_cli("evaluate", tiny_run, "--json")
    assert ev.returncode == 0, ev.stderr
    report = json.loads(ev.stdout)
    assert report["test_accuracy"] == pytest.approx(json.loads((tiny_run / "evaluation.json").read_text())["test_accuracy"])
    out = tmp_path / "exp"
    ex = run_cli("export", tiny_run, "--formats", "tflite_float32", "--samples", "100", "--out", out, "--json")
    assert ex.returncode == 0, ex.stderr
    assert json.loads(ex.stdout)["artifacts"][0]["format"] == "tflite_float32" and "checking" in ex.stderr


def test_evaluate_writes_report_and_plots(tiny_run):
    res = run_cli("evaluate", tiny_run)
    assert res.returncode == 0, res.stderr
    assert "precision" in res.stdout and "airplane" in res.stdout and "macro avg" in res.stdout
    report = json.loads((tiny_run / "evaluation.json").read_text())
    cm = np.array(report["confusion_matrix"])
    assert cm.sum() == 10000 and cm.sum(1).tolist() == [1000] * 10
    assert report["test_accuracy"] == pytest.approx(np.trace(cm) / 10000)
    for png in ("confusion.png", "misclassified.png"):
        assert (tiny_run / png).read_bytes()[:4] == b"\x89PNG"
