"""Keras Tuner hypermodels, found by name (or by a user's `package.module:Class` path)."""

from harness.registry import Registry

SEARCH_SPACES = Registry("search space")
SEARCH_SPACES.register("image_cnn", "search_spaces.image_cnn:ImageCNN")
