"""The text vocabulary: adapted on the training split only, cached on disk, turned into a
`TextVectorization` layer.

One JSON file per source, training rows, standardization, n-grams and vocab size:

    <cache_dir>/text_vocab/<source>-<vocab_size>-<key>.json   {"key": {...}, "tokens": [...]}

Files are written atomically, so a killed adapt never leaves a half-written vocabulary. Keys and
paths need no TensorFlow; Keras is imported only to adapt or build a layer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness_core.files import atomic_write_json

if TYPE_CHECKING:  # type names only: Keras is imported where a layer is made
    import keras

    from pipelines.text_standardize import StandardizeText

VOCAB_FORMAT = 1  # bump when the cached vocabulary would differ for the same key
RESERVED_TOKENS = 2  # index 0 = padding (mask), 1 = out-of-vocabulary
VECTORIZE_BATCH = 512


class TextSource(Protocol):
    """What the cache needs of a source (`pipelines.text_sources`)."""

    name: str

    def identity(self) -> dict[str, str]: ...

    def raw(self, part: str) -> Any: ...


class VocabularyCache:
    """Vocabularies of one source's training texts under one standardization, by size and
    n-grams: read from `directory`, or adapted and written there on a miss."""

    def __init__(self, source: TextSource, directory: Path, lowercase: bool, strip_html: bool):
        self.source = source
        self.directory = directory
        self.lowercase = lowercase
        self.strip_html = strip_html

    def key(self, vocab_size: int, ngrams: int) -> dict[str, Any]:
        """Everything that changes the adapted tokens."""
        key = {
            "format": VOCAB_FORMAT,
            "source": self.source.identity(),
            "lowercase": self.lowercase,
            "strip_html": self.strip_html,
            "vocab_size": vocab_size,
        }
        # Unigram keys stay as they were before `ngrams` existed, so their caches still hit.
        return key if ngrams == 1 else {**key, "ngrams": ngrams}

    def path(self, vocab_size: int, ngrams: int) -> Path:
        """The cache file of this vocabulary (it may not exist yet)."""
        key = self.key(vocab_size, ngrams)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self.directory / "text_vocab" / f"{self.source.name}-{vocab_size}-{digest}.json"

    def tokens(self, vocab_size: int, ngrams: int) -> list[str]:
        """The vocabulary without the reserved tokens: cached, else adapted and cached."""
        path = self.path(vocab_size, ngrams)
        tokens = read_vocabulary(path)
        if tokens is None:
            tokens = self._adapt(vocab_size, ngrams)
            atomic_write_json(path, {"key": self.key(vocab_size, ngrams), "tokens": tokens})
        return tokens

    def standardize(self) -> StandardizeText:
        """The configured `StandardizeText` (imports Keras, which registers it)."""
        from pipelines.text_standardize import StandardizeText

        return StandardizeText(lowercase=self.lowercase, strip_html=self.strip_html)

    def _adapt(self, vocab_size: int, ngrams: int) -> list[str]:
        import keras

        layer = keras.layers.TextVectorization(
            max_tokens=vocab_size, standardize=self.standardize(), ngrams=ngrams_arg(ngrams)
        )
        # Training split only: validation and test words must be as unseen as a user's new text.
        layer.adapt(self.source.raw("train").map(lambda text, _: text).batch(VECTORIZE_BATCH))
        return [str(token) for token in layer.get_vocabulary(include_special_tokens=False)]

    def vectorizer(
        self, vocab_size: int, sequence_length: int, ngrams: int
    ) -> keras.layers.TextVectorization:
        """A `TextVectorization` layer with this vocabulary: raw strings -> int ids, padded
        with 0 to `sequence_length`."""
        import keras

        return keras.layers.TextVectorization(
            max_tokens=vocab_size,
            standardize=self.standardize(),
            output_mode="int",
            output_sequence_length=sequence_length,
            vocabulary=self.tokens(vocab_size, ngrams),
            ngrams=ngrams_arg(ngrams),
        )


def ngrams_arg(ngrams: int) -> int | None:
    """TextVectorization's `ngrams`: None for words alone, so a unigram vectorizer (and the
    exported models holding it) stays the layer it was before this option."""
    return None if ngrams == 1 else ngrams


def read_vocabulary(path: Path) -> list[str] | None:
    """The cached tokens, or None on a miss. Only the final name is read, never a temp file."""
    try:
        tokens = json.loads(path.read_text(encoding="utf-8"))["tokens"]
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):  # damaged by hand: adapt again and replace it
        return None
    return tokens if isinstance(tokens, list) else None
