"""The search-space interface: a `keras_tuner.HyperModel` built from the data's description."""

from __future__ import annotations

from typing import Any, ClassVar

import keras_tuner as kt

from pipelines.base import DataMeta


class SearchSpace(kt.HyperModel):
    """A hypermodel for one kind of data.

    Subclasses set `tasks` (the pipeline tasks they model) and `metrics` (compiled metric
    names, which with `loss` and their `val_` forms are the allowed objectives), and implement
    `build(hp)` returning a compiled model. Every `hp.*` call has an explicit default so the
    default point is a sensible model.
    """

    tasks: ClassVar[tuple[str, ...]] = ()
    metrics: ClassVar[list[str]] = ["accuracy"]

    def __init__(self, meta: DataMeta, **options: Any):
        super().__init__(name=type(self).__name__)
        self.meta = meta
        self.options = options

    def serving(self, model, pipeline, hp):
        """The exported model and its raw-input signature: the pipeline's by default. A space
        whose deployable part is not the trained model (a GAN's generator) overrides this."""
        return model, pipeline.serving(model, hp)


def make_optimizer(hp: kt.HyperParameters, default_lr: float = 1e-3):
    """Optimizer and learning rate as hyperparameters (shared by every space)."""
    import keras

    name = hp.Choice("optimizer", ["adam", "sgd", "rmsprop"], default="adam")
    lr = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=default_lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    return keras.optimizers.Adam(learning_rate=lr)
