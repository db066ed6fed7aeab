"""Keras Tuner hypermodels, found by name (or by a user's `package.module:Class` path).

Each entry carries its `SpaceInfo` (tasks, metrics, options schema) so a job validates without
importing the hypermodel, which imports TensorFlow.
"""

from harness_core.registry import Registry
from search_spaces import options

SEARCH_SPACES = Registry("search space")
SEARCH_SPACES.register("image_cnn", "search_spaces.image_cnn:ImageCNN", options.IMAGE_CNN)
SEARCH_SPACES.register("dcgan", "search_spaces.dcgan:DCGAN", options.DCGAN)
SEARCH_SPACES.register("transfer", "search_spaces.transfer:TransferLearning", options.TRANSFER)
SEARCH_SPACES.register("text_rnn", "search_spaces.text_rnn:TextRNN", options.TEXT_RNN)
SEARCH_SPACES.register("forecaster", "search_spaces.forecaster:Forecaster", options.FORECASTER)
SEARCH_SPACES.register("char_lm", "search_spaces.char_lm:CharLM", options.CHAR_LM)
SEARCH_SPACES.register("seq2seq", "search_spaces.seq2seq:Seq2Seq", options.SEQ2SEQ)
SEARCH_SPACES.register(
    "sequence_classifier",
    "search_spaces.sequence_classifier:SequenceClassifier",
    options.SEQUENCE_CLASSIFIER,
)
