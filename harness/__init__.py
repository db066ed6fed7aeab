"""harness: tune TensorFlow/Keras models with Keras Tuner oracles, trials fanned out on Ray."""

__version__ = "0.1.0"
