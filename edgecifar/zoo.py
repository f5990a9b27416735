"""Stage 2 — zoo: every CNN documented in the seed write-ups, one decorated factory each.

Conventions shared by every model (and relied on by export and the device runner):
    * input: 32x32x3 RGB pixels as float32 in 0..255 (NHWC); the model does its own
      scaling with a leading Rescaling layer (the seeds divided by 255 by hand), so every
      stage feeds raw pixels and a uint8-input int8 model needs no extra arithmetic;
    * output: softmax probabilities over the 10 CIFAR-10 classes.

Models are pure Keras 3 (no ``tf.*``) so training runs under any Keras backend.
Where a write-up left a detail unstated (dropout rates, optimizer, batch size), the
choice is written in the model's ``recipe.notes``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

NUM_CLASSES = 10
INPUT_SHAPE = (32, 32, 3)


@dataclass(frozen=True)
class Phase:
    epochs: int
    augment: bool = False  # width/height shift 0.1 + horizontal flip (seed 003's ImageDataGenerator)


@dataclass(frozen=True)
class Recipe:
    optimizer: str  # "adam" | "rmsprop" | "sgd"
    optimizer_args: dict = field(default_factory=dict)
    batch_size: int = 32
    phases: tuple[Phase, ...] = (Phase(15),)
    # "end_to_end": fit the whole model; "features": cache frozen-backbone features, fit the head.
    kind: str = "end_to_end"
    notes: str = ""
    # Learning-rate schedule: "constant" (the seeds), or "warmup_cosine" (linear warm-up, then cosine to 0).
    schedule: str = "constant"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    # What an augmented phase does (fitting.AUGMENTATIONS): seed 003's shift, or pad-and-crop.
    augmentation: str = "shift10_edge"
    # Validation images held out of the 50,000 (None: defaults.VAL_SIZE; 0: train on all, as a final recipe may).
    val_size: int | None = None
    # The camera augmentation (edgecifar/camera_augment.py) on every training batch, every phase;
    # `edgecifar train --augment camera|plain` switches it for one run (a variant, named in the run).
    camera: bool = False
    camera_rate: float = 1.0  # every camera-augmentation probability times this (camera_augment.py)
    # Training arithmetic: "float32", or "auto": Keras' mixed_bfloat16 where the CPU multiplies bf16
    # natively (AMX or AVX512-BF16), float32 elsewhere. The saved model is float32 either way
    # (precision.py, which also says why no recipe uses it yet).
    precision: str = "float32"

    @property
    def variants(self) -> tuple[str, ...]:
        """The --augment values this recipe takes: the other one is a named variant of the model."""
        return () if self.kind == "features" else ("plain", "camera")

    @property
    def epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.optimizer_args.items())
        opt = f"{self.optimizer}({args})" if args else self.optimizer
        phases = " + ".join(f"{p.epochs}{' aug' if p.augment else ''}" for p in self.phases)
        kind = "head on cached features, " if self.kind == "features" else ""
        extra = ""
        if self.schedule != "constant":
            extra += f", {self.schedule} ({self.warmup_epochs} warm-up epochs)"
        if self.label_smoothing:
            extra += f", label smoothing {self.label_smoothing:g}"
        if any(p.augment for p in self.phases):
            extra += f", augment {self.augmentation}"
        if self.camera:
            extra += ", camera augmentation" + (f" at rate {self.camera_rate:g}" if self.camera_rate != 1 else "")
        if self.precision != "float32":
            extra += f", precision {self.precision}"
        if self.val_size is not None:
            extra += f", {50_000 - self.val_size:,} training images" if self.val_size else ", all 50,000 training images"
        return f"{kind}{opt}, batch {self.batch_size}, epochs {phases}{extra}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["epochs"] = self.epochs
        d["description"] = self.describe()
        return d


@dataclass(frozen=True)
class ModelInfo:
    name: str
    factory: Callable
    source: str  # which seed write-up, and where in it
    recipe: Recipe
    documented_params: int | None = None
    documented_test_accuracy: float | None = None  # percent, as the write-up reports it
    description: str = ""
    # Exact cost of the built model, so `edgecifar models` lists it without importing TensorFlow;
    # tests/test_zoo.py builds every model and checks both numbers.
    params: int = 0
    macs: int = 0  # multiply-accumulates per 32x32 image (count_macs)
    # The int8 target (Δ pp, top-1 agreement) the exporter's accuracy-aware step aims at, when not the product-wide
    # defaults.INT8_TARGET_PP / INT8_TARGET_AGREEMENT (issue 15 gives the depthwise MobileNetV2 0.5 pp, 97.5 %).
    int8_target: tuple[float, float] | None = None


_REGISTRY: dict[str, ModelInfo] = {}
DEFAULT_MODEL = "seed002_m1_cnn"


def register_model(*, source: str, recipe: Recipe, exact_params: int, macs: int, params: int | None = None,
                   accuracy: float | None = None, int8_target: tuple[float, float] | None = None):
    """Decorator: add a model factory to the zoo under its function name.

    params/accuracy: what the write-up documents; exact_params/macs: what the built model has.
    """

    def wrap(fn):
        _REGISTRY[fn.__name__] = ModelInfo(fn.__name__, fn, source, recipe, params, accuracy, (fn.__doc__ or "").strip(),
                                           exact_params, macs, int8_target)
        return fn

    return wrap


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    from .errors import UserError

    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)} (see `edgecifar models`)")
    return _REGISTRY[name]


def int8_target(name: str | None) -> tuple[float, float] | None:
    """The model's own int8 target (Δ pp, top-1 agreement), or None: the product-wide one applies (also to a name the
    zoo does not know, a user's own model). edgecifar.export.fallback.target_for resolves both."""
    info = _REGISTRY.get(name or "")
    return info.int8_target if info is not None else None


def create_model(name: str, **kwargs):
    return model_info(name).factory(**kwargs)


# --- building blocks ------------------------------------------------------------------


def _keras():
    import keras

    return keras


def _pixels_input(name="pixels"):
    keras = _keras()
    inputs = keras.Input(shape=INPUT_SHAPE, name=name)
    return inputs, keras.layers.Rescaling(1.0 / 255, name="scale_0_1")(inputs)


# --- seed 000/001: the quarantine "Image Classifier" blog post ------------------------------


@register_model(
    source="seeds 000/001: 'Image Classifier' blog post (daniel, 2020-04-13)",
    recipe=Recipe("adam", {"learning_rate": 1e-4}, batch_size=32, phases=(Phase(30),),
                  notes="optimizer unstated in the write-up: Adam at lr 1e-4 (Adam's default 1e-3 overfits: 64.78 %; "
                  "1e-4: 68.86 %, train 90 % as the write-up's 88 %; see benchmarks/results/training_notes.md)"),
    params=4_200_842,
    accuracy=69.39,
    exact_params=4_200_842,
    macs=5_084_160,
)
def seed000_shallow_cnn():
    """Conv32 3x3 → MaxPool → Flatten → Dense512 → Dropout 0.3 → Dense10."""
    keras, L = _keras(), _keras().layers
    inputs, x = _pixels_input()
    x = L.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(512, activation="relu")(x)
    x = L.Dropout(0.3)(x)
    outputs = L.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="seed000_shallow_cnn")


# --- seed 002: Kossowska, "Deep Learning: Image Classification Project" (2021) ---------------

_SEED002 = "seed 002: 'Deep Learning: Image Classification Project' (P. Kossowska, 2021), CNN Model {}"
_DROPOUT_NOTE = "dropout rates unstated: 0.25 after conv blocks, 0.5 after Dense512 (the classic Keras cifar10_cnn example these layers match)"


@register_model(
    source=_SEED002.format(1),
    recipe=Recipe("rmsprop", batch_size=32, phases=(Phase(15),), notes="RMSprop with Keras defaults (lr 1e-3); batch size unstated: "
                  "Keras default 32; dropout rates unstated: 0.2 and 0.2, chosen by experiment (0.25/0.5 underfits: 58.68 %, "
                  "0/0 overfits: 59.56 %, 0.2/0.2: 65.52 % test; see benchmarks/results/training.md)"),
    params=181_162,
    accuracy=63.05,
    exact_params=181_162,
    macs=1_688_576,
)
def seed002_m1_cnn(dropout=(0.2, 0.2)):
    """Conv32 5x5/2 same → Conv32 5x5/2 valid → MaxPool → Dropout → Dense512 → Dropout → Dense10."""
    keras, L = _keras(), _keras().layers
    inputs, x = _pixels_input()
    x = L.Conv2D(32, 5, strides=2, padding="same")(x)
    x = L.Activation("relu")(x)
    x = L.Conv2D(32, 5, strides=2, padding="valid")(x)
    x = L.Activation("relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Dropout(dropout[0])(x)
    x = L.Flatten()(x)
    x = L.Dense(512)(x)
    x = L.Activation("relu")(x)
    x = L.Dropout(dropout[1])(x)
    x = L.Dense(NUM_CLASSES)(x)
    outputs = L.Activation("softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="seed002_m1_cnn")


@register_model(
    source=_SEED002.format(2),
    recipe=Recipe("rmsprop", {"learning_rate": 1e-4}, batch_size=32, phases=(Phase(15),),
                  notes="RMSprop at lr 1e-4, the Keras cifar10_cnn example's (these layers are that example's; Keras' "
                  "default 1e-3 diverges after epoch 9: 51.98 %, 1e-4: 71.23 %); batch size unstated: Keras default 32; " + _DROPOUT_NOTE),
    params=1_250_858,
    accuracy=71.91,
    exact_params=1_250_858,
    macs=20_741_120,
)
def seed002_m2_cnn():
    """(Conv32 same → Conv32 valid → MaxPool → Dropout) → same with 64 → Dense512 → Dropout → Dense10."""
    keras, L = _keras(), _keras().layers
    inputs, x = _pixels_input()
    for filters in (32, 64):
        x = L.Conv2D(filters, 3, padding="same")(x)
        x = L.Activation("relu")(x)
        x = L.Conv2D(filters, 3, padding="valid")(x)
        x = L.Activation("relu")(x)
        x = L.MaxPooling2D(2)(x)
        x = L.Dropout(0.25)(x)
    x = L.Flatten()(x)
    x = L.Dense(512)(x)
    x = L.Activation("relu")(x)
    x = L.Dropout(0.5)(x)
    x = L.Dense(NUM_CLASSES)(x)
    outputs = L.Activation("softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="seed002_m2_cnn")


@register_model(
    source=_SEED002.format(3),
    recipe=Recipe(
        "sgd",
        # decay = lr / epochs is Keras 2's per-step inverse-time decay: lr / (1 + decay * step).
        {"learning_rate": 0.01, "momentum": 0.9, "decay": 0.01 / 15},
        batch_size=32,
        phases=(Phase(15),),
        notes="batch size unstated: Keras default 32; dropout 0.2 after the first conv and 0.5 after Dense512, "
        "max-norm 3 on every kernel, and SGD decay = lr / epochs (the write-up imports maxnorm; these layers and "
        "this optimizer match the well-known tutorial it follows; see benchmarks/results/training_notes.md)",
    ),
    params=4_210_090,
    accuracy=72.04,
    exact_params=4_210_090,
    macs=14_521_344,
)
def seed002_m3_cnn():
    """Conv32 same → Dropout → Conv32 same → MaxPool → Flatten → Dense512 → Dropout → Dense10, max-norm 3."""
    keras, L = _keras(), _keras().layers
    maxnorm = keras.constraints.MaxNorm(3)
    inputs, x = _pixels_input()
    x = L.Conv2D(32, 3, padding="same", activation="relu", kernel_constraint=maxnorm)(x)
    x = L.Dropout(0.2)(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", kernel_constraint=maxnorm)(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(512, activation="relu", kernel_constraint=maxnorm)(x)
    x = L.Dropout(0.5)(x)
    outputs = L.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="seed002_m3_cnn")


# --- seed 003: the BatchNorm CNN notebook --------------------------------------------------


@register_model(
    source="seed 003: CIFAR-10 CNN notebook with BatchNorm (functional API, classification report)",
    recipe=Recipe(
        "adam",
        batch_size=32,
        phases=(Phase(10), Phase(10, augment=True)),
        notes="Adam with Keras defaults; phase 2 augments with width/height shift 0.1 (nearest fill) and horizontal flip",
    ),
    params=2_397_226,
    accuracy=83.99,
    exact_params=2_397_226,
    macs=40_740_864,
)
def seed003_bn_cnn():
    """[Conv→BN]x2 → MaxPool for 32, 64, 128 filters → Flatten → Dropout 0.2 → Dense1024 → Dropout 0.2 → Dense10."""
    keras, L = _keras(), _keras().layers
    inputs, x = _pixels_input()
    for filters in (32, 64, 128):
        for _ in range(2):
            x = L.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = L.BatchNormalization()(x)
        x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dropout(0.2)(x)
    x = L.Dense(1024, activation="relu")(x)
    x = L.Dropout(0.2)(x)
    outputs = L.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="seed003_bn_cnn")


# --- seed 004: MLP and transfer learning ---------------------------------------------------

_SEED004 = "seed 004: 'Image Classification' (MLP, CNN and transfer learning from Inception)"


@register_model(
    source=_SEED004 + ", MLP (layers undocumented: ours)",
    recipe=Recipe("adam", batch_size=64, phases=(Phase(20),), notes="the write-up names an MLP without layers or recipe: "
                  "Flatten → Dense512 → Dropout 0.2 → Dense256 → Dropout 0.2 → Dense10, Adam, batch 64, 20 epochs"),
    exact_params=1_707_274,
    macs=1_706_496,
)
def seed004_mlp():
    """MLP on raw pixels: Dense512 → Dense256 → Dense10 with dropout 0.2 (our design; the write-up gives none)."""
    keras, L = _keras(), _keras().layers
    inputs, x = _pixels_input()
    x = L.Flatten()(x)
    x = L.Dense(512, activation="relu")(x)
    x = L.Dropout(0.2)(x)
    x = L.Dense(256, activation="relu")(x)
    x = L.Dropout(0.2)(x)
    outputs = L.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="seed004_mlp")


def _transfer(backbone_name, backbone, size, scale, offset, head_units, name):
    """Upscale → backbone's own scaling → frozen backbone → small dense head, as one deployable model.

    Returns the assembled model; ``model.backbone`` / ``model.head`` are exposed through the
    layer names "backbone" and "head" so training can cache features and fit the head alone.
    """
    keras, L = _keras(), _keras().layers
    backbone.trainable = False
    inputs = keras.Input(shape=INPUT_SHAPE, name="pixels")
    x = L.Resizing(size, size, interpolation="bilinear", name="upscale")(inputs)
    x = L.Rescaling(scale, offset=offset, name="backbone_scaling")(x)
    feats = backbone(x, training=False)
    head_in = keras.Input(shape=feats.shape[1:], name="features")
    h = L.Dropout(0.2)(head_in)
    if head_units:
        h = L.Dense(head_units, activation="relu")(h)
        h = L.Dropout(0.2)(h)
    head = keras.Model(head_in, L.Dense(NUM_CLASSES, activation="softmax", name="probs")(h), name="head")
    return keras.Model(inputs, head(feats), name=name)


@register_model(
    source=_SEED004 + ", transfer learning; MobileNetV2 alpha 0.35 at 96 px is our edge-sized backbone",
    recipe=Recipe("adam", batch_size=64, phases=(Phase(15),), kind="features",
                  notes="ImageNet MobileNetV2 (alpha 0.35, no top, avg-pool) frozen at 96x96; features of the upscaled images "
                        "cached once; head Dropout 0.2 → Dense256 → Dropout 0.2 → Dense10 fitted with Adam"),
    exact_params=740_714,
    macs=10_984_368,
    int8_target=(0.5, 0.975),
)
def seed004_mobilenetv2_transfer(weights=None, alpha: float = 0.35, size: int = 96):
    """Frozen ImageNet MobileNetV2 (alpha 0.35, 96 px) + dense head: the edge-sized transfer model."""
    keras = _keras()
    backbone = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=alpha, include_top=False, pooling="avg", weights=weights
    )
    backbone.name = "backbone"  # noqa: keras allows renaming before use
    return _transfer("mobilenet_v2", backbone, size, 1 / 127.5, -1.0, 256, "seed004_mobilenetv2_transfer")


@register_model(
    source=_SEED004 + ", transfer learning from InceptionV3 at 299x299 (21,802,784 frozen params)",
    recipe=Recipe("adam", batch_size=64, phases=(Phase(10),), kind="features",
                  notes="as documented: frozen InceptionV3 (no top, avg-pool, 2048-d) at 299x299, features cached, "
                        "a Dense10 classification head; very slow on CPU"),
    exact_params=21_823_274,
    macs=5_711_188_576,
)
def seed004_inceptionv3_transfer(weights=None, size: int = 299):
    """Frozen ImageNet InceptionV3 at 299 px + Dense10 head, as the write-up documents (not edge-sized)."""
    keras = _keras()
    backbone = keras.applications.InceptionV3(input_shape=(size, size, 3), include_top=False, pooling="avg", weights=weights)
    backbone.name = "backbone"
    return _transfer("inception_v3", backbone, size, 1 / 127.5, -1.0, 0, "seed004_inceptionv3_transfer")


# --- edgecifar's own edge models -------------------------------------------------------------

_EDGE_RECIPE = dict(
    batch_size=128,
    schedule="warmup_cosine",
    warmup_epochs=3,
    label_smoothing=0.1,
    augmentation="crop4_reflect",
)
_EDGE_NOTES = ("plain ResNet recipe: SGD Nesterov 0.9, 3 warm-up epochs then cosine from 0.1, batch 128, L2 5e-4 on kernels, "
               "label smoothing 0.1, reflect-pad-4 random crop + horizontal flip (a GPU probe of this recipe: issue 17)")


def _resnet(name, widths, blocks, l2=5e-4):
    """Plain CIFAR ResNet: 3x3 stem, basic blocks (conv-BN-ReLU x2 + shortcut), stride 2 at stages 2 and 3.

    Int8-friendly on purpose: only Conv2D, BatchNorm (folded at export), ReLU, Add, global
    average pooling and one Dense, all of which LiteRT/XNNPACK and onnxruntime run as fast kernels.
    """
    keras, L = _keras(), _keras().layers
    reg = keras.regularizers.L2(l2)

    def conv_bn(x, filters, stride=1, relu=True, kernel=3, tag=""):
        x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, kernel_regularizer=reg,
                     kernel_initializer="he_normal", name=f"{tag}_conv")(x)
        x = L.BatchNormalization(name=f"{tag}_bn")(x)
        return L.ReLU(name=f"{tag}_relu")(x) if relu else x

    inputs, x = _pixels_input()
    x = conv_bn(x, widths[0], tag="stem")
    for stage, (filters, n) in enumerate(zip(widths, blocks), 1):
        for block in range(n):
            stride = 2 if stage > 1 and block == 0 else 1
            tag = f"s{stage}b{block + 1}"
            shortcut = x
            if stride != 1 or x.shape[-1] != filters:
                shortcut = conv_bn(x, filters, stride, relu=False, kernel=1, tag=f"{tag}_proj")
            y = conv_bn(x, filters, stride, tag=f"{tag}a")
            y = conv_bn(y, filters, relu=False, tag=f"{tag}b")
            x = L.ReLU(name=f"{tag}_out")(L.Add(name=f"{tag}_add")([shortcut, y]))
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dense(NUM_CLASSES, kernel_regularizer=reg, name="logits")(x)
    # float32 softmax even when training under mixed_bfloat16 (precision.py): the loss needs its resolution.
    outputs = L.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model(
    source="edgecifar: MLPerf Tiny's ResNet-8 (16/32/64 x 1 block) for CIFAR-10, our recipe",
    recipe=Recipe("sgd", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, phases=(Phase(40, augment=True),),
                  notes=_EDGE_NOTES, **_EDGE_RECIPE),
    exact_params=78_714,
    macs=12_501_632,
)
def resnet8(widths=(16, 32, 64), blocks=(1, 1, 1)):
    """MLPerf Tiny ResNet-8: stem + 3 stages of one basic block, 16/32/64 filters, ~12.5 M MACs."""
    return _resnet("resnet8", widths, blocks)


@register_model(
    source="edgecifar: ResNet-8 at 1.25x width (20/40/80 x 1 block), the edge model sized to 20 M MACs",
    recipe=Recipe("sgd", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, phases=(Phase(60, augment=True),),
                  notes=_EDGE_NOTES + "; 60 epochs on all 50,000 training images (50 epochs on 45,000: 88.36 %, "
                  "benchmarks/results/training_edge.md)", val_size=0, **_EDGE_RECIPE),
    exact_params=122_230,
    macs=19_395_360,
)
def resnet8_w20(widths=(20, 40, 80), blocks=(1, 1, 1)):
    """ResNet-8 widened to 20/40/80 filters: ~19.4 M MACs, ~122 k parameters."""
    return _resnet("resnet8_w20", widths, blocks)


@register_model(
    source="edgecifar: the deployed edge model — ResNet-8 at 20/40/80 x 1 block (resnet8_w20's network), "
           "trained longer with the camera augmentation at quarter rate",
    recipe=Recipe("sgd", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, phases=(Phase(75, augment=True),),
                  notes=_EDGE_NOTES + "; camera augmentation at rate 0.25 (rate 0.5: 88.56 %, mCA 81.74 %); "
                  "75 epochs on all 50,000 training images",
                  val_size=0, camera=True, camera_rate=0.25, **_EDGE_RECIPE),
    exact_params=122_230,
    macs=19_395_360,
)
def resnet8_edge(widths=(20, 40, 80), blocks=(1, 1, 1)):
    """resnet8_w20's network under its own deployment recipe: clean accuracy and camera robustness together."""
    return _resnet("resnet8_edge", widths, blocks)


# --- compute cost ------------------------------------------------------------------------------


def count_macs(model) -> int:
    """Multiply-accumulates per image of a built Keras model: Conv2D, DepthwiseConv2D and Dense.

    BatchNorm folds into the convolution at export; pooling, activations and adds are not counted
    (the MLPerf Tiny convention). Nested models (a transfer backbone) are walked.
    """
    import math

    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if hasattr(layer, "layers"):  # a nested Model
            total += count_macs(layer)
        elif kind in ("Conv2D", "DepthwiseConv2D"):
            out_h, out_w = layer.output.shape[1:3]
            kh, kw = layer.kernel_size
            in_c = layer.input.shape[-1]
            per_pixel = kh * kw * in_c * (layer.depth_multiplier if kind == "DepthwiseConv2D" else layer.filters // layer.groups)
            total += out_h * out_w * per_pixel
        elif kind == "Dense":
            total += math.prod(layer.input.shape[1:]) * layer.units
    return int(total)
