"""Transfer learning: a `keras.applications` backbone under a new softmax head.

Like every image space, the model takes raw [0, 255] pixels of the data's shape, so an exported
model takes raw images. Inside: grey -> RGB, resize, the backbone's own input preprocessing (as
built-in layers, so a saved model loads without importing this module), backbone, head.
Pretrained weights come from a local file only: `weights="imagenet"` would try to download.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
from keras import layers

from harness_core.errors import UserError
from pipelines.base import DataMeta
from search_spaces.base import SearchSpace, make_optimizer, peak_learning_rate

# ImageNet channel means in BGR order, as `preprocess_input(mode="caffe")` subtracts them.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
# Keras's EfficientNet weight files store these standard deviations as the Normalization
# layer's *variance* (tensorflow/tensorflow#49930).
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)
FINE_TUNE_STEPS = list(range(10, 101, 10))


def _scale_to_unit_range() -> list[layers.Layer]:
    """`preprocess_input(mode="tf")`: [0, 255] -> [-1, 1]."""
    return [layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")]


def _caffe() -> list[layers.Layer]:
    """`preprocess_input(mode="caffe")`: RGB -> BGR, then subtract the ImageNet BGR means.

    A frozen 1x1 convolution (channel permutation plus bias) rather than a custom layer, so a
    saved model loads with plain Keras.
    """
    conv = layers.Conv2D(3, 1, trainable=False, name="preprocess")
    conv.build((None, None, None, 3))
    flip = np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3)
    conv.set_weights([flip, -np.asarray(IMAGENET_MEAN_BGR, dtype="float32")])
    return [conv]


def _no_preprocessing() -> list[layers.Layer]:
    """EfficientNet rescales raw [0, 255] pixels inside the backbone."""
    return []


def _fix_efficientnet_variance(backbone: keras.Model) -> None:
    """Squares the standard deviations Keras's EfficientNet files store as variances.

    `keras.applications` compensates with an extra Rescaling only when it downloads the file
    itself; squaring the stored value gives the same (x - mean) / stddev. Other files (ours,
    or trained from scratch) hold real variances and are left alone.
    """
    norm = next(layer for layer in backbone.layers if isinstance(layer, layers.Normalization))
    if np.allclose(keras.ops.convert_to_numpy(norm.adapt_variance), IMAGENET_STDDEV_RGB):
        norm.adapt_variance.assign(np.square(IMAGENET_STDDEV_RGB))
        norm.finalize_state()  # the layer computes with a copy made from the variables


@dataclass(frozen=True)
class Backbone:
    """One supported `keras.applications` backbone.

    Attributes:
        constructor: The application function (called with include_top=False, pooling="avg").
        preprocess_input: Keras's own preprocessing for it, which `preprocess` rebuilds as
            layers (the tests check that they agree).
        preprocess: Makes the layers mapping raw [0, 255] RGB to the backbone's input range.
        min_size: Smallest input side the application accepts.
        default_size: Side its ImageNet weights were made at; suggested for small images.
        has_alpha: Whether it takes the width multiplier `alpha`.
        after_load: Fix-up applied after loading a weights file.
    """

    constructor: Callable[..., keras.Model]
    preprocess_input: Callable[..., Any]
    preprocess: Callable[[], list[layers.Layer]]
    min_size: int
    default_size: int
    has_alpha: bool = False
    after_load: Callable[[keras.Model], None] | None = None


BACKBONES: dict[str, Backbone] = {
    "MobileNetV2": Backbone(
        keras.applications.MobileNetV2,
        keras.applications.mobilenet_v2.preprocess_input,
        _scale_to_unit_range,
        min_size=32,
        default_size=96,  # the smallest side Keras publishes MobileNetV2 weights for
        has_alpha=True,
    ),
    "EfficientNetB0": Backbone(
        keras.applications.EfficientNetB0,
        keras.applications.efficientnet.preprocess_input,
        _no_preprocessing,
        min_size=32,
        default_size=224,
        after_load=_fix_efficientnet_variance,
    ),
    "ResNet50": Backbone(
        keras.applications.ResNet50,
        keras.applications.resnet50.preprocess_input,
        _caffe,
        min_size=32,
        default_size=224,
    ),
    "VGG16": Backbone(
        keras.applications.VGG16,
        keras.applications.vgg16.preprocess_input,
        _caffe,
        min_size=32,
        default_size=224,
    ),
}


class TransferLearning(SearchSpace):
    """A `keras.applications` backbone (pretrained from a local file, or random) under a head.

    Args:
        meta: The data; images of shape (height, width, 1 or 3), grey repeated to RGB.
        backbone: A name in `BACKBONES`.
        image_size: Side the images are resized to inside the model; None keeps the data's size.
        weights: Local `.h5` / `.weights.h5` file of the backbone without its top; None trains
            from scratch.
        alpha: MobileNetV2's width multiplier.

    With `weights`, the backbone is frozen while the head trains, then `fit` optionally
    fine-tunes its top `fine_tune_layers` layers at a lower learning rate. Without `weights`,
    freezing a random backbone would be pointless: the whole network trains from the first
    epoch and the fine-tuning hyperparameters are not declared (pinning them is an error).
    """

    tasks = ("image_classification",)
    metrics = ["accuracy"]

    def __init__(
        self,
        meta: DataMeta,
        backbone: str = "MobileNetV2",
        image_size: int | None = None,
        weights: str | None = None,
        alpha: float = 1.0,
    ):
        super().__init__(
            meta, backbone=backbone, image_size=image_size, weights=weights, alpha=alpha
        )
        self.spec = _known_backbone(backbone)
        _check_channels(meta.input_shape)
        _check_alpha(backbone, self.spec, alpha)
        self.backbone_name = backbone
        self.image_size = _checked_image_size(backbone, self.spec, meta.input_shape, image_size)
        self.weights = _checked_weights(backbone, weights)
        self.alpha = alpha

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        inputs = keras.Input(shape=self.meta.input_shape, name="image")
        backbone = self._backbone()
        # Frozen before compiling: a pretrained backbone first only feeds the new head.
        backbone.trainable = self.weights is None
        x = self._head(hp, backbone(self._to_backbone_input(inputs)))
        outputs = layers.Dense(self.meta.num_classes, activation="softmax", name="probs")(x)
        model = keras.Model(inputs, outputs, name="transfer_learning")
        _compile(model, make_optimizer(hp))
        if self.weights is not None:
            _declare_fine_tuning(hp)
        return model

    def fit(
        self,
        hp: kt.HyperParameters,
        model: keras.Model,
        *args: Any,
        epochs: int = 1,
        initial_epoch: int = 0,
        **kwargs: Any,
    ) -> keras.callbacks.History:
        """Trains the head on the frozen backbone, then fine-tunes the backbone's top layers.

        Takes `keras.Model.fit`'s arguments (`epochs` and `initial_epoch` by keyword). With
        `fine_tune_layers` N > 0, epochs [initial_epoch, ceil(epochs / 2)) train the head only
        and the rest also the top N backbone layers (BatchNormalization stays frozen) at
        `learning_rate * fine_tune_lr_factor`. Epoch numbers run on, so callbacks see one run;
        a resumed run (Hyperband) does the part of each phase from `initial_epoch` on. If a
        callback stops phase 1 early (the head has converged), fine-tuning starts there.

        Returns:
            One `History` over the epochs of both phases.
        """
        tune_layers = hp.get("fine_tune_layers") if self.weights is not None else 0
        if not tune_layers or initial_epoch >= epochs:
            return model.fit(*args, epochs=epochs, initial_epoch=initial_epoch, **kwargs)
        head_only = None
        switch = math.ceil(epochs / 2)
        if initial_epoch < switch:
            head_only = model.fit(*args, epochs=switch, initial_epoch=initial_epoch, **kwargs)
            initial_epoch = head_only.epoch[-1] + 1
            if initial_epoch >= epochs:
                return head_only
        rate = peak_learning_rate(hp) * hp.get("fine_tune_lr_factor")
        _start_fine_tuning(model, tune_layers, rate)
        tuned = model.fit(*args, epochs=epochs, initial_epoch=initial_epoch, **kwargs)
        return _merge(head_only, tuned)

    def _to_backbone_input(self, inputs):
        x = inputs
        if self.meta.input_shape[-1] == 1:
            # Backbones take RGB; equal channels keep pretrained colour filters meaningful.
            x = layers.Concatenate(name="to_rgb")([x, x, x])
        side = self.image_size
        if side is not None and tuple(self.meta.input_shape[:2]) != (side, side):
            x = layers.Resizing(side, side, name="resize")(x)
        for layer in self.spec.preprocess():
            x = layer(x)
        return x

    def _backbone(self) -> keras.Model:
        side = self.image_size
        shape = (side, side, 3) if side is not None else (*self.meta.input_shape[:2], 3)
        options = {"alpha": self.alpha} if self.spec.has_alpha else {}
        # weights=None always: a path would load the same way, but the error would not be ours.
        backbone = self.spec.constructor(
            include_top=False,
            weights=None,
            input_shape=shape,
            pooling="avg",
            name="backbone",
            **options,
        )
        if self.weights is not None:
            self._load_weights(backbone)
        return backbone

    def _load_weights(self, backbone: keras.Model) -> None:
        try:
            backbone.load_weights(self.weights)
        except (ValueError, OSError, KeyError) as e:
            width = f" (alpha {self.alpha})" if self.spec.has_alpha else ""
            raise UserError(
                f"search_space.options.weights: {self.weights} does not fit backbone "
                f"{self.backbone_name}{width} without its top: {_gist(e)}"
            ) from None
        if self.spec.after_load is not None:
            self.spec.after_load(backbone)

    def _head(self, hp: kt.HyperParameters, x):
        units = hp.Choice("dense_units", [0, 128, 256], default=0)
        if units:
            x = layers.Dense(units, activation="relu", name="hidden")(x)
        rate = hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.2)
        return layers.Dropout(rate, name="head_dropout")(x)


def _declare_fine_tuning(hp: kt.HyperParameters) -> None:
    """Declared in `build` so the oracle sees them; read back in `fit`."""
    hp.Int("fine_tune_layers", 0, 100, step=10, default=0)
    with hp.conditional_scope("fine_tune_layers", FINE_TUNE_STEPS):
        hp.Choice("fine_tune_lr_factor", [0.01, 0.1], default=0.1)


def _compile(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def _start_fine_tuning(model: keras.Model, n_layers: int, learning_rate: float) -> None:
    """Unfreezes the backbone's top layers and recompiles at the fine-tuning rate."""
    backbone = model.get_layer("backbone")
    backbone.trainable = True
    first = len(backbone.layers) - n_layers
    for i, layer in enumerate(backbone.layers):
        # Frozen BatchNormalization runs in inference mode, keeping its pretrained statistics
        # (Keras's fine-tuning advice): small batches would wreck them.
        layer.trainable = i >= first and not isinstance(layer, layers.BatchNormalization)
    config = {**model.optimizer.get_config(), "learning_rate": learning_rate}
    # A new optimizer creates variables: under the model's strategy, like the model's own.
    with model.distribute_strategy.scope():
        _compile(model, type(model.optimizer).from_config(config))


def _merge(
    first: keras.callbacks.History | None, second: keras.callbacks.History
) -> keras.callbacks.History:
    """`second` extended backwards with `first`'s epochs."""
    if first is None:
        return second
    keys = {**first.history, **second.history}
    second.history = {k: first.history.get(k, []) + second.history.get(k, []) for k in keys}
    second.epoch = first.epoch + second.epoch
    return second


def _gist(error: Exception, limit: int = 300) -> str:
    """One line of a Keras load error, which spans lines and may dump whole tensors."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:2]).split(" Target variable:")[0]
    return text[:limit] or type(error).__name__


def _known_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise UserError(
            f"search_space.options.backbone: unknown backbone {name!r}; "
            f"known: {', '.join(BACKBONES)}"
        )
    return BACKBONES[name]


def _check_channels(shape: Sequence[int]) -> None:
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise UserError(
            f"TransferLearning needs images of shape (height, width, 1 or 3 channels); "
            f"the data has shape {tuple(shape)}"
        )


def _check_alpha(name: str, spec: Backbone, alpha: float) -> None:
    if not isinstance(alpha, (int, float)) or alpha <= 0:
        raise UserError(f"search_space.options.alpha must be a positive number, got {alpha!r}")
    if alpha != 1.0 and not spec.has_alpha:
        allowed = ", ".join(n for n, s in BACKBONES.items() if s.has_alpha)
        raise UserError(
            f"search_space.options.alpha {alpha} applies only to {allowed}, not to backbone {name}"
        )


def _checked_image_size(
    name: str, spec: Backbone, shape: Sequence[int], image_size: int | None
) -> int | None:
    if image_size is None:
        height, width = shape[:2]
        if min(height, width) < spec.min_size:
            raise UserError(
                f"backbone {name} needs at least {spec.min_size}x{spec.min_size} inputs but "
                f"the images are {height}x{width}; set search_space.options.image_size "
                f"(e.g. {spec.default_size})"
            )
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise UserError(f"search_space.options.image_size must be an integer, got {image_size!r}")
    if image_size < spec.min_size:
        raise UserError(
            f"search_space.options.image_size {image_size} is below backbone {name}'s "
            f"minimum of {spec.min_size}"
        )
    return image_size


def _checked_weights(name: str, weights: str | None) -> str | None:
    if weights is None:
        return None
    path = Path(weights).expanduser().resolve()
    if not path.name.endswith(".h5"):
        raise UserError(
            f"search_space.options.weights {weights!r} must be a .h5 or .weights.h5 file of "
            f"backbone {name} without its top"
        )
    if not path.is_file():
        raise UserError(
            f"search_space.options.weights: missing file {path}; pretrained weights cannot be "
            f"downloaded here, so copy {name}'s no-top weights file there (or drop the option "
            "to train from scratch)"
        )
    return str(path)
