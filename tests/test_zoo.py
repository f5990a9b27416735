"""The model zoo: every seed model, with its exact documented parameter count."""

import json

import pytest

from edgecifar import zoo

from .conftest import run_cli

DOCUMENTED = {
    "seed000_shallow_cnn": 4_200_842,
    "seed002_m1_cnn": 181_162,
    "seed002_m2_cnn": 1_250_858,
    "seed002_m3_cnn": 4_210_090,
    "seed003_bn_cnn": 2_397_226,
}


@pytest.mark.parametrize("name,params", DOCUMENTED.items())
def test_exact_parameter_counts(name, params):
    model = zoo.create_model(name)
    assert model.count_params() == params
    assert zoo.model_info(name).documented_params == params
    assert tuple(model.input_shape[1:]) == zoo.INPUT_SHAPE and model.output_shape[-1] == 10


def test_inception_backbone_matches_write_up():
    """Seed 004 documents 21,802,784 frozen InceptionV3 params at 299x299."""
    model = zoo.create_model("seed004_inceptionv3_transfer", weights=None)
    backbone = model.get_layer("backbone")
    assert backbone.count_params() == 21_802_784 and not backbone.trainable
    assert backbone.input_shape[1:3] == (299, 299)


def test_models_command_lists_every_model():
    res = run_cli("models", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == set(zoo.list_models())
    for name, params in DOCUMENTED.items():
        assert rows[name]["params"] == params
    assert all(r["source"] and r["recipe"] for r in rows.values())
    assert sum(r["default"] for r in rows.values()) == 1


def test_unknown_model_is_one_line_error():
    res = run_cli("train", "resnet9000")
    assert res.returncode == 2 and "unknown model 'resnet9000'" in res.stderr and "Traceback" not in res.stderr
