"""What each registered search space accepts, declared without importing TensorFlow.

Validating a job must not import Keras (seconds of start-up, and C++ log lines), so the facts
validation needs about a space live here, next to its registry entry: the data tasks it models,
its compiled metrics and a schema of its `search_space.options` (the constructor's keyword
arguments). `tests/harness/test_job.py` checks every declaration against its class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt

from harness_core.schema import NumbersNotBooleans


@dataclass(frozen=True)
class SpaceInfo:
    """A search space as validation sees it.

    Attributes:
        tasks: Pipeline tasks the space models (the class's `tasks`).
        metrics: Compiled metric names (the class's `metrics`); with `loss` and their `val_`
            forms, the allowed objectives.
        options: Schema of `search_space.options`.
    """

    tasks: tuple[str, ...]
    metrics: tuple[str, ...]
    options: type[BaseModel]


class NoOptions(NumbersNotBooleans):
    """A space without constructor options; the base of the others."""

    # Strict: YAML gives real types, and the constructor receives the values as written.
    model_config = ConfigDict(extra="forbid", strict=True)


class TransferOptions(NoOptions):
    backbone: Literal["MobileNetV2", "EfficientNetB0", "ResNet50", "VGG16"] = "MobileNetV2"
    image_size: PositiveInt | None = None
    weights: str | None = None
    alpha: PositiveFloat = 1.0


class DCGANOptions(NoOptions):
    quality_classifier: str | None = None
    sample_every: PositiveInt = 1


class TextRNNOptions(NoOptions):
    max_rnn_layers: PositiveInt = 3


IMAGE_CNN = SpaceInfo(("image_classification",), ("accuracy",), NoOptions)
TRANSFER = SpaceInfo(("image_classification",), ("accuracy",), TransferOptions)
DCGAN = SpaceInfo(("image_classification",), ("quality",), DCGANOptions)
TEXT_RNN = SpaceInfo(("text_classification",), ("accuracy",), TextRNNOptions)
FORECASTER = SpaceInfo(("time_series_forecast",), ("mae",), NoOptions)
CHAR_LM = SpaceInfo(("char_lm",), ("bits_per_char",), NoOptions)
SEQUENCE_CLASSIFIER = SpaceInfo(("sequence_classification",), ("accuracy",), NoOptions)
SEQ2SEQ = SpaceInfo(("seq2seq",), ("sequence_accuracy", "token_accuracy"), NoOptions)
