"""Importing Keras without the extras a process of the harness does not use.

`import keras` also imports scikit-learn (for `keras.wrappers`' estimators) and matplotlib's
pyplot (for `keras.visualization`) whenever they are installed, and `import keras_tuner`
imports scikit-learn for its Bayesian oracle. On a slow 2-core machine they were 1.9 s of a
worker's 6.6-7.0 s of imports (docs/BENCHMARKS.md, session 12), paid by every worker process
before its first trial and by the driver beside the workers' imports.
"""

from __future__ import annotations

import sys

KERAS_EXTRAS = ("sklearn", "matplotlib")


def import_keras_without_extras(keep: tuple[str, ...] = ()) -> None:
    """Imports TensorFlow, Keras and Keras Tuner with the extras above (but those in `keep`)
    refused while they load, so that Keras and Keras Tuner leave them out as when the packages
    are not installed. The packages stay importable: only the imports made while Keras loads
    are refused. A process that has imported Keras already (a test, a user's own script) is
    left as it is.

    The driver keeps scikit-learn for a Bayesian job: Keras Tuner's Bayesian oracle binds it
    when `keras_tuner` is imported."""
    if "keras" in sys.modules:
        return
    refused = [n for n in KERAS_EXTRAS if n not in keep and n not in sys.modules]
    for name in refused:
        sys.modules[name] = None  # `import name` raises ImportError, as when not installed
    try:
        import keras  # noqa: F401
        import keras_tuner  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        for name in refused:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
