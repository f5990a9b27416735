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


@pytest.mark.parametrize("name", zoo.list_models())
def test_registry_cost_matches_the_built_model(name):
    """`edgecifar models` lists params and MACs from the registry without building: they must be exact."""
    info = zoo.model_info(name)
    model = info.factory(weights=None) if info.recipe.kind == "features" else info.factory()
    assert model.count_params() == info.params
    assert zoo.count_macs(model) == info.macs


def test_mac_count_of_known_layers():
    """count_macs by hand on a model whose cost is easy to write down."""
    import keras

    x = keras.Input((32, 32, 3))
    y = keras.layers.Conv2D(8, 3, padding="same")(x)  # 32*32 * 3*3*3 * 8 = 221,184
    y = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(y)  # 16*16 * 3*3 * 8 = 18,432
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(10)(y)  # 8 * 10 = 80
    assert zoo.count_macs(keras.Model(x, y)) == 221_184 + 18_432 + 80


def test_edge_models_meet_their_compute_budget():
    """The edge model targets at most 20 M MACs per image (half of seed003's 40.7 M)."""
    edge, seed003 = zoo.model_info("resnet8_w20").macs, zoo.model_info("seed003_bn_cnn").macs
    assert edge <= 20_000_000 and 2 * edge <= seed003
    assert zoo.model_info("resnet8").params == 78_714  # MLPerf Tiny's ResNet-8


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
    assert all(r["macs"] > 0 for r in rows.values())
    assert all(r["source"] and r["recipe"] for r in rows.values())
    assert sum(r["default"] for r in rows.values()) == 1


def test_models_command_is_instant_and_tensorflow_free():
    """A listing must not import TensorFlow (it took ~19 s when it built every model)."""
    import subprocess
    import sys

    code = ("import sys, time; t = time.perf_counter(); from edgecifar.cli import main\n"
            "try:\n    main(['models'])\nexcept SystemExit:\n    pass\n"
            "print('TF', 'tensorflow' in sys.modules, 'keras', 'keras' in sys.modules, file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "TF False keras False" in res.stderr, res.stderr
    assert "resnet8_w20" in res.stdout and "MACs" in res.stdout


def test_unknown_model_is_one_line_error():
    res = run_cli("train", "resnet9000")
    assert res.returncode == 2 and "unknown model 'resnet9000'" in res.stderr and "Traceback" not in res.stderr
