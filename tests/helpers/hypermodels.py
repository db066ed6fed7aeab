"""Hypermodels used by tests through the `package.module:Class` search-space path."""

import time

import keras

from search_spaces.image_cnn import ImageCNN


class ExplodingCNN(ImageCNN):
    """The image CNN, except that `explode=True` raises while building (a broken trial)."""

    def build(self, hp):
        if hp.Boolean("explode", default=False):
            raise ValueError("boom: this configuration cannot be built")
        return super().build(hp)


class RankedCNN(ImageCNN):
    """The image CNN with a `score` metric equal to its `rank` hyperparameter, whatever it
    learns: a test of the pruning rules on Ray then knows every decision in advance."""

    metrics = ["accuracy", "score"]

    def build(self, hp):
        rank = hp.Choice("rank", [0.9, 0.7, 0.5, 0.1], default=0.9)
        model = super().build(hp)
        model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy", Fixed(rank)])
        return model


class Fixed(keras.metrics.Metric):
    """A metric that always reports `value`."""

    def __init__(self, value: float, name: str = "score", **kwargs):
        super().__init__(name=name, **kwargs)
        self.value = value

    def update_state(self, y_true, y_pred, sample_weight=None):
        pass

    def result(self):
        return keras.ops.convert_to_tensor(self.value, dtype="float32")

    def get_config(self):
        return {**super().get_config(), "value": self.value}


class SlowCNN(ImageCNN):
    """The image CNN whose `fit` sleeps `delays[i]` seconds a step in its i-th call (the last
    value for later calls): a refit's timing then knows how long a step takes."""

    delays: list[float] = [0.02]
    calls = 0

    def fit(self, hp, model, *args, **kwargs):
        delay = self.delays[min(SlowCNN.calls, len(self.delays) - 1)]
        SlowCNN.calls += 1
        sleep = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: time.sleep(delay))
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), sleep]
        return super().fit(hp, model, *args, **kwargs)


class PhasedSlowCNN(SlowCNN):
    """`SlowCNN` trained in two `model.fit` calls, as the transfer space's `fit` does: the
    first half of the epochs, then the rest, even when a callback stopped the first."""

    def fit(self, hp, model, *args, epochs=1, initial_epoch=0, **kwargs):
        switch = (epochs + 1) // 2
        first = super().fit(hp, model, *args, epochs=switch, initial_epoch=initial_epoch, **kwargs)
        start = first.epoch[-1] + 1 if first.epoch else switch
        if start >= epochs:
            return first
        return super().fit(hp, model, *args, epochs=epochs, initial_epoch=start, **kwargs)
