"""tf.data input pipelines, found by name.

Each pipeline is a `pipelines.base.Pipeline` subclass with its own `Config` (the job's `data:`
section). Heavy modules are imported only when a pipeline is used.
"""

from harness_core.registry import Registry

PIPELINES = Registry("pipeline")
PIPELINES.register("image_classification", "pipelines.image:ImageClassificationPipeline")
PIPELINES.register("text_classification", "pipelines.text:TextClassificationPipeline")
PIPELINES.register("time_series", "pipelines.timeseries:TimeSeriesPipeline")
PIPELINES.register("char_lm", "pipelines.char_lm:CharLMPipeline")
PIPELINES.register("seq2seq", "pipelines.seq2seq:Seq2SeqPipeline")
PIPELINES.register("sequence_classification", "pipelines.sequence:SequenceClassificationPipeline")

# Offline importers: a local copy of a dataset -> the TFDS layout under the data directory.
IMPORTERS = Registry("offline importer")
IMPORTERS.register("fashion_mnist", "pipelines.offline:FASHION_MNIST")
IMPORTERS.register("mnist", "pipelines.offline:MNIST")
IMPORTERS.register("cifar10", "pipelines.offline:CIFAR10")
IMPORTERS.register("imdb_reviews", "pipelines.offline:IMDB_REVIEWS")
