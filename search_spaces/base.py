"""The search-space interface: a `keras_tuner.HyperModel` built from the data's description,
and the training levers every space shares (optimizer, learning-rate schedule, weight decay,
label smoothing)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import keras
import keras_tuner as kt

from pipelines.base import DataMeta

# Until the engine says otherwise: the job's default epochs and Keras's default batch size.
# Guessing the batch small over-estimates the steps, so an unplanned cosine schedule ends with
# its learning rate still above zero rather than stuck at zero for the last epochs.
DEFAULT_PLAN_EPOCHS = 10
DEFAULT_PLAN_BATCH = 32

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
ADAPTIVE = ["adam", "adamw", "rmsprop"]  # per-parameter step sizes: one learning-rate range
SCHEDULES = ("constant", "cosine", "one_cycle")
# One-cycle as in PyTorch's OneCycleLR defaults: 30% warm-up from peak / 25, then anneal.
ONE_CYCLE_WARMUP = 0.3
ONE_CYCLE_DIV = 25.0
# Normalisation scales and biases gain nothing from shrinking towards zero (AdamW practice).
NO_WEIGHT_DECAY = ["bias", "gamma", "beta"]
T = TypeVar("T")


@dataclass(frozen=True)
class TrainingPlan:
    """How long a model will train: what a learning-rate schedule is laid out over."""

    epochs: int
    steps_per_epoch: int
    # A run that continues an earlier one's weights (a Hyperband round) starts this far in:
    # its schedule goes on from there instead of warming up again.
    initial_epoch: int = 0
    # A trial continued from an ASHA rung inside an epoch starts that many steps further in.
    initial_step: int = 0
    # Steps (from the plan's start) where a schedule starts over (warm restarts at ASHA's rungs,
    # `tuner.pruning.anneal_at_rungs`): each stretch between them is a whole schedule of its own.
    restarts: tuple[int, ...] = ()

    def __post_init__(self):
        for name in ("epochs", "steps_per_epoch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainingPlan.{name} must be a positive int, got {value!r}")
        if not 0 <= self.initial_epoch < self.epochs:
            raise ValueError(
                f"TrainingPlan.initial_epoch must be in 0..{self.epochs - 1}, "
                f"got {self.initial_epoch!r}"
            )
        if not 0 <= self.initial_step < self.steps_per_epoch:
            raise ValueError(
                f"TrainingPlan.initial_step must be in 0..{self.steps_per_epoch - 1}, "
                f"got {self.initial_step!r}"
            )
        if list(self.restarts) != sorted(set(self.restarts)) or not all(
            0 < r < self.total_steps for r in self.restarts
        ):
            raise ValueError(
                f"TrainingPlan.restarts must be increasing steps in 1..{self.total_steps - 1}, "
                f"got {self.restarts!r}"
            )

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


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
        self.training_plan = TrainingPlan(
            DEFAULT_PLAN_EPOCHS, max(1, meta.num_train // DEFAULT_PLAN_BATCH)
        )

    def set_training_plan(
        self,
        epochs: int,
        steps_per_epoch: int,
        initial_epoch: int = 0,
        initial_step: int = 0,
        restarts: tuple[int, ...] = (),
    ) -> None:
        """Tells the space how long the next `build(hp)`'s model will train.

        The engine calls this before `build` in each trial's worker and before an export
        refit, with the epochs and steps per epoch that `fit` will run; schedules built by
        `make_optimizer` span exactly that, and a run continuing earlier weights from
        `initial_epoch` (a Hyperband round) starts its schedule there, `initial_step` steps
        into that epoch for a trial paused inside it (ASHA's promotion); `restarts` (steps)
        split a schedule into stretches that each warm up and anneal (`TrainingPlan.restarts`).
        Without a call, a default plan (10 epochs of `num_train // 32` steps) lets the driver
        build the space to discover hyperparameters.
        """
        self.training_plan = TrainingPlan(
            epochs, steps_per_epoch, initial_epoch, initial_step, tuple(restarts)
        )

    def extra_callbacks(self, log_dir: str) -> list:
        """Keras callbacks a trial adds to the engine's own, writing into the trial's
        TensorBoard run `log_dir` (e.g. GAN sample grids, generated text). None by default."""
        return []

    def serving(self, model, pipeline, hp):
        """The exported model and its raw-input signature: the pipeline's by default. A space
        whose deployable part is not the trained model (a GAN's generator) overrides this."""
        return model, pipeline.serving(model, hp)


def build_branch(hp: kt.HyperParameters, parent: str, builders: Mapping[Any, Callable[[], T]]) -> T:
    """Runs the builder `hp[parent]` chooses, inside its conditional scope, and returns its result.

    The other branches' scopes are entered too, empty: the driver discovers the space by
    building once, then activating each scope it saw inactive and building again
    (`harness.space.discover`, like Keras Tuner's own tuner), so a branch whose scope is never
    entered would never be searched.
    """
    chosen = hp.get(parent)
    built = None
    for value, builder in builders.items():
        with hp.conditional_scope(parent, [value]):
            if value == chosen:
                built = builder()
    return built


# Keras's default momentum (0.99) averages the batch statistics over ~100 steps: a trial of a
# few hundred steps (a small dataset, or a short pruned trial) is then validated with moving
# statistics still near their initial values, and scores near chance while it trains well
# (12,000 Fashion-MNIST images, 3 epochs: 0.39 validation accuracy at 0.99, 0.83 at 0.9).
BATCH_NORM_MOMENTUM = 0.9


def batch_normalization() -> keras.layers.Layer:
    """Batch normalization for the spaces' searched blocks (see BATCH_NORM_MOMENTUM)."""
    return keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM)


def make_optimizer(
    hp: kt.HyperParameters, default_lr: float = 1e-3, plan: TrainingPlan | None = None
):
    """Optimizer, learning rate, weight decay and (given a plan) schedule as hyperparameters.

    Each optimizer samples its learning rate from its own range, in its own conditional
    scope, so random points stay trainable (no SGD at 1e-4). Without `plan` the learning rate
    is constant and no schedule is declared.
    """
    name = hp.Choice("optimizer", list(OPTIMIZERS), default="adam")
    # Every scope is entered whichever optimizer is chosen: an inactive one declares its
    # hyperparameters (value None), which is how the driver's one build discovers them all.
    with hp.conditional_scope("optimizer", ADAPTIVE):
        adaptive_lr = hp.Float("learning_rate", 1e-4, 3e-3, sampling="log", default=default_lr)
    with hp.conditional_scope("optimizer", ["sgd"]):
        # SGD with momentum takes ~30x larger steps than the adaptive optimizers.
        sgd_lr = hp.Float("sgd_learning_rate", 1e-2, 3e-1, sampling="log", default=5e-2)
    with hp.conditional_scope("optimizer", ["adamw"]):
        weight_decay = hp.Float("weight_decay", 1e-3, 1e-1, sampling="log", default=1e-2)
    learning_rate = _schedule(hp, sgd_lr if name == "sgd" else adaptive_lr, plan)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    if name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
        optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
        return optimizer
    return keras.optimizers.Adam(learning_rate=learning_rate)


def peak_learning_rate(hp: kt.HyperParameters) -> float:
    """The active optimizer's (peak) learning rate, once `make_optimizer` declared it."""
    return hp.get("sgd_learning_rate" if hp.get("optimizer") == "sgd" else "learning_rate")


def _schedule(hp: kt.HyperParameters, peak: float, plan: TrainingPlan | None):
    """`peak` as is ("constant"), or a Keras CosineDecay over the plan's steps: "cosine" after
    a linear warm-up from 0 (`warmup_fraction` of the steps), "one_cycle" after a 30% warm-up
    from peak / 25. Both end at 0 on the plan's last step; with `plan.restarts`, each stretch
    between restarts is such a schedule of its own (warm restarts, Loshchilov & Hutter 2017),
    so the weights have annealed wherever an ASHA rung scores them."""
    if plan is None:
        return peak
    kind = hp.Choice("lr_schedule", list(SCHEDULES), default="constant")
    with hp.conditional_scope("lr_schedule", ["cosine"]):
        cosine_warmup = hp.Choice("warmup_fraction", [0.0, 0.05, 0.1], default=0.05)
    if kind == "constant":
        return peak
    start, fraction = 0.0, cosine_warmup
    if kind == "one_cycle":
        start, fraction = peak / ONE_CYCLE_DIV, ONE_CYCLE_WARMUP

    def cycle(steps: int):
        warmup = round(steps * fraction)
        decay = max(1, steps - warmup)
        if warmup == 0:
            return keras.optimizers.schedules.CosineDecay(peak, decay)
        return keras.optimizers.schedules.CosineDecay(
            start, decay, warmup_target=peak, warmup_steps=warmup
        )

    bounds = [0, *plan.restarts, plan.total_steps]
    if plan.restarts:
        schedule = WarmRestarts(
            [cycle(end - begin) for begin, end in itertools.pairwise(bounds)], list(plan.restarts)
        )
    else:
        schedule = cycle(plan.total_steps)
    offset = plan.initial_epoch * plan.steps_per_epoch + plan.initial_step
    if offset:
        return ResumedSchedule(schedule, offset)
    return schedule


@keras.saving.register_keras_serializable(package="harness")
class WarmRestarts(keras.optimizers.schedules.LearningRateSchedule):
    """`schedules[i]` from step `restarts[i - 1]` (the first from step 0) to the next
    restart, each counting its own steps from 0: a new warm-up and anneal at each restart."""

    def __init__(self, schedules: list, restarts: list[int]):
        self.schedules = schedules
        self.restarts = [int(r) for r in restarts]

    def __call__(self, step):
        from keras import ops

        step = ops.cast(step, "float32")
        starts = [0, *self.restarts]
        index = ops.sum(ops.cast(step >= ops.convert_to_tensor(self.restarts, "float32"), "int32"))
        # Every stretch's rate at this step, counted from its own start (those not begun yet
        # clamped at their step 0); the one the step falls in is taken.
        rates = ops.stack(
            [
                ops.cast(s(ops.maximum(step - begin, 0.0)), "float32")
                for s, begin in zip(self.schedules, starts, strict=True)
            ]
        )
        return ops.take(rates, index)

    def get_config(self) -> dict:
        return {
            "schedules": [keras.optimizers.schedules.serialize(s) for s in self.schedules],
            "restarts": self.restarts,
        }

    @classmethod
    def from_config(cls, config: dict) -> WarmRestarts:
        schedules = [keras.optimizers.schedules.deserialize(s) for s in config["schedules"]]
        return cls(schedules, config["restarts"])


@keras.saving.register_keras_serializable(package="harness")
class ResumedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` from `offset` steps in. A run continuing an earlier trial's weights has a new
    optimizer (its step count starts at 0), so the plain schedule would warm up again and
    never anneal; this one takes the rates the plan has from where the weights left off."""

    def __init__(self, schedule, offset: int):
        self.schedule = schedule
        self.offset = offset

    def __call__(self, step):
        return self.schedule(step + self.offset)

    def get_config(self) -> dict:
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "offset": self.offset,
        }

    @classmethod
    def from_config(cls, config: dict) -> ResumedSchedule:
        return cls(keras.optimizers.schedules.deserialize(config["schedule"]), config["offset"])


def classification_loss(hp: kt.HyperParameters):
    """Cross-entropy on sparse integer labels, with `label_smoothing` as a hyperparameter."""
    smoothing = hp.Choice("label_smoothing", [0.0, 0.05, 0.1, 0.2], default=0.0)
    if smoothing == 0.0:
        return "sparse_categorical_crossentropy"  # the tutorials' loss, exactly
    return SparseCategoricalCrossentropyWithSmoothing(label_smoothing=smoothing)


def compile_classifier(model, hp: kt.HyperParameters, plan: TrainingPlan | None = None) -> None:
    """Compiles a softmax classifier of sparse integer labels with the shared levers.

    The metric stays the string "accuracy": Keras resolves it from the label and output
    shapes (sparse labels -> sparse categorical accuracy) whatever the loss, so the objective
    names `accuracy` / `val_accuracy` do not change with label smoothing.
    """
    model.compile(
        optimizer=make_optimizer(hp, plan=plan),
        loss=classification_loss(hp),
        metrics=["accuracy"],
    )


def softmax_classifier(inputs, x, num_classes: int, name: str, hp, plan: TrainingPlan | None):
    """A classifier's end: the softmax over the classes (output `probs`, which exports and
    summaries read), the model, compiled by `compile_classifier`."""
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name=name)
    compile_classifier(model, hp, plan)
    return model


@keras.saving.register_keras_serializable(package="harness")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Cross-entropy against smoothed one-hot targets, from sparse integer labels.

    Keras 3's sparse cross-entropy has no `label_smoothing`: this one-hot encodes the labels
    and uses the categorical one, so pipelines keep yielding integer labels. Registered, so a
    saved `.keras` model compiles again on load once this module is imported.
    """

    def __init__(
        self, label_smoothing: float = 0.1, name: str = "smoothed_crossentropy", **kwargs: Any
    ):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        from keras import ops

        if len(y_true.shape) == len(y_pred.shape):  # (batch, 1) labels
            y_true = ops.squeeze(y_true, axis=-1)
        targets = ops.one_hot(ops.cast(y_true, "int32"), ops.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(
            targets, y_pred, label_smoothing=self.label_smoothing
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
