"""Keras Tuner hypermodels, found by name (or by a user's `package.module:Class` path)."""

from harness.registry import Registry

SEARCH_SPACES = Registry("search space")
SEARCH_SPACES.register("image_cnn", "search_spaces.image_cnn:ImageCNN")
SEARCH_SPACES.register("dcgan", "search_spaces.dcgan:DCGAN")
SEARCH_SPACES.register("transfer", "search_spaces.transfer:TransferLearning")
SEARCH_SPACES.register("text_rnn", "search_spaces.text_rnn:TextRNN")
SEARCH_SPACES.register("forecaster", "search_spaces.forecaster:Forecaster")
