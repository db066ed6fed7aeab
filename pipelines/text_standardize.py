"""`StandardizeText`: the text standardization saved inside vectorizers and exported models.

Registered with Keras as `harness>StandardizeText`, so `keras.models.load_model` finds it once
this module is imported (`TextClassificationPipeline.standardize()` imports it). This is the
only text module that imports Keras at import time: the registration needs the class defined.
"""

from __future__ import annotations

import keras

_HTML_TAG = r"<[^>]+>"
_PUNCTUATION = r'[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~\']'  # Keras's own default set


@keras.saving.register_keras_serializable(package="harness")
class StandardizeText:
    """Raw text -> words without HTML tags or punctuation, lowercased (TF string ops).

    A `TextVectorization(standardize=...)` callable. A class rather than a function so its
    options travel with a saved `.keras` model; registered, so `keras.models.load_model` finds
    it once `pipelines.text_standardize` is imported.
    """

    def __init__(self, lowercase: bool = True, strip_html: bool = True):
        self.lowercase = lowercase
        self.strip_html = strip_html

    def __call__(self, text):
        import tensorflow as tf

        if self.strip_html:  # before punctuation, or `<br />` would become the word "br"
            text = tf.strings.regex_replace(text, _HTML_TAG, " ")
        if self.lowercase:
            text = tf.strings.lower(text, encoding="utf-8")
        return tf.strings.regex_replace(text, _PUNCTUATION, "")

    def get_config(self) -> dict[str, bool]:
        return {"lowercase": self.lowercase, "strip_html": self.strip_html}

    @classmethod
    def from_config(cls, config: dict[str, bool]) -> StandardizeText:
        return cls(**config)
