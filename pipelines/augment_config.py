"""What augmentation a job asks for: the `data.augment` options, validated without TensorFlow.

Kept apart from the ops (`pipelines.augment_ops`) so that validating a job, which reads this
schema, never imports TensorFlow.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from harness_core.schema import NumbersNotBooleans

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Fill = Literal["reflect", "zeros"]


class AugmentConfig(NumbersNotBooleans):
    """Which augmentations to apply and how strongly; every default means "off".

    Attributes:
        flip_horizontal: probability of a left-right flip.
        flip_vertical: probability of an up-down flip.
        rotation: max angle as a fraction of a full turn (Keras `RandomRotation` factor);
            0.5 allows any angle.
        zoom: max zoom fraction; the scale is drawn from [1 - zoom, 1 + zoom], in and out.
        translation: max shift as a fraction of height (rows) and width (columns).
        affine_fill: how rotation/zoom/translation fill pixels from outside the image.
        crop_padding: pixels padded on each side before cropping back to the original size.
        crop_fill: how the crop padding is filled; "reflect" needs padding < height and width.
        brightness: max delta added to every pixel, in pixel units.
        contrast: (lower, upper) range of the contrast factor; None is off.
        cutout: probability of erasing one rectangle.
        cutout_size: side of the rectangle as a fraction of height and width.
        cutout_fill: pixel value of the erased rectangle.
    """

    model_config = ConfigDict(extra="forbid")
    flip_horizontal: Probability = 0.0
    flip_vertical: Probability = 0.0
    rotation: float = Field(0.0, ge=0.0, le=0.5)
    zoom: float = Field(0.0, ge=0.0, le=0.9)
    translation: float = Field(0.0, ge=0.0, le=1.0)
    affine_fill: Fill = "reflect"
    crop_padding: int = Field(0, ge=0)
    crop_fill: Fill = "reflect"
    brightness: float = Field(0.0, ge=0.0, le=255.0)
    contrast: tuple[Annotated[float, Field(ge=0.0)], Annotated[float, Field(ge=0.0)]] | None = None
    cutout: Probability = 0.0
    cutout_size: float = Field(0.25, ge=0.0, le=1.0)
    cutout_fill: float = Field(0.0, ge=0.0, le=255.0)

    @field_validator("contrast")
    @classmethod
    def _lower_not_above_upper(
        cls, value: tuple[float, float] | None
    ) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"lower {value[0]} must not exceed upper {value[1]}")
        return value

    def enabled_ops(self) -> list[tuple[str, dict[str, Any]]]:
        """The ops this config turns on, in application order, with their `BATCH_OPS` arguments."""
        affine = {"rotation": self.rotation, "zoom": self.zoom, "translation": self.translation}
        contrast = self.contrast or (1.0, 1.0)
        candidates = [
            ("flip_horizontal", self.flip_horizontal > 0, {"probability": self.flip_horizontal}),
            ("flip_vertical", self.flip_vertical > 0, {"probability": self.flip_vertical}),
            ("crop", self.crop_padding > 0, {"padding": self.crop_padding, "fill": self.crop_fill}),
            ("affine", any(v > 0 for v in affine.values()), {**affine, "fill": self.affine_fill}),
            ("brightness", self.brightness > 0, {"max_delta": self.brightness}),
            ("contrast", contrast != (1.0, 1.0), {"lower": contrast[0], "upper": contrast[1]}),
            ("cutout", self.cutout > 0 and self.cutout_size > 0, self._cutout_args()),
        ]
        return [(name, args) for name, enabled, args in candidates if enabled]

    def _cutout_args(self) -> dict[str, Any]:
        return dict(probability=self.cutout, size=self.cutout_size, fill_value=self.cutout_fill)

    def is_identity(self) -> bool:
        """True when no op is enabled, so augmentation can be skipped entirely."""
        return not self.enabled_ops()

    def scaled(self, strength: float) -> AugmentConfig:
        """This config with every probability and magnitude multiplied by `strength`.

        Lets a search space tune one "augmentation strength" hyperparameter: 0 turns everything
        off, 1 keeps the config. Values are capped at their field's maximum, `crop_padding` is
        rounded and the contrast range moves towards (or away from) the identity factor 1.
        Fill modes and fill values are kept.
        """
        if strength < 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        values = self.model_dump()
        for name, cap in _SCALED_CAPS.items():
            values[name] = min(values[name] * strength, cap)
        values["crop_padding"] = round(self.crop_padding * strength)
        if self.contrast is not None:
            values["contrast"] = tuple(max(0.0, 1.0 + (f - 1.0) * strength) for f in self.contrast)
        return AugmentConfig(**values)


# Upper bounds of the scaled fields, as in their Field constraints (validation catches drift).
_SCALED_CAPS = {
    "flip_horizontal": 1.0,
    "flip_vertical": 1.0,
    "rotation": 0.5,
    "zoom": 0.9,
    "translation": 1.0,
    "brightness": 255.0,
    "cutout": 1.0,
    "cutout_size": 1.0,
}
