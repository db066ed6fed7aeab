"""Text pipeline over tiny CSV/JSONL files and a tiny offline IMDB copy: standardization,
train-only vocabulary, the vocabulary cache, shapes, splits and one-line input errors."""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from pydantic import ValidationError

from harness.errors import UserError
from pipelines.text import TextClassificationConfig, TextClassificationPipeline
from pipelines.text_standardize import StandardizeText
from tests.conftest import REAL_DATA_DIR

GOOD = ["great", "wonderful", "loved", "superb", "moving"]
BAD = ["awful", "boring", "hated", "dull", "weak"]
FILLER = ["the", "movie", "plot", "actors", "film", "story"]


def reviews(n: int, marker: str, labels: list) -> list[dict]:
    """Short reviews with HTML and punctuation; row i holds the unique word `{marker}{i}`."""
    rng = np.random.default_rng(len(marker) + n)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        sentiment = GOOD if labels.index(label) % 2 else BAD
        words = [*rng.choice(FILLER, 3), *rng.choice(sentiment, 2)]
        rows.append({"text": f"The {' '.join(words)}!<br /><br />{marker}{i}.", "label": label})
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as f:
        if ".csv" in path.suffixes:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        else:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    train = write(tmp_path / "train.jsonl", reviews(300, "row", ["neg", "pos"]))
    test = write(tmp_path / "test.jsonl", reviews(100, "testrow", ["neg", "pos"]))
    return {"train": str(train), "test": str(test)}


def make(files: dict[str, str], **options) -> TextClassificationPipeline:
    options = {"batch_size": 16, "vocab_size": 1000, "sequence_length": 16, **options}
    return TextClassificationPipeline(TextClassificationConfig(files=files, **options))


@pytest.fixture
def adapt_calls(monkeypatch) -> list[int]:
    """Counts `TextVectorization.adapt` calls (one per vocabulary actually built)."""
    calls: list[int] = []
    original = keras.layers.TextVectorization.adapt

    def spy(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.TextVectorization, "adapt", spy)
    return calls


def test_standardize_strips_html_case_and_punctuation_eagerly_and_in_map():
    raw = ["Great<br />Movie, I LOVED it!", "<i>Dull.</i> Don't watch"]
    want = [["great", "movie", "i", "loved", "it"], ["dull", "dont", "watch"]]
    eager = [t.decode().split() for t in StandardizeText()(tf.constant(raw)).numpy()]
    mapped = tf.data.Dataset.from_tensor_slices(raw).map(StandardizeText())
    assert eager == [t.numpy().decode().split() for t in mapped] == want
    kept = StandardizeText(lowercase=False, strip_html=False)(tf.constant(raw[0]))
    assert kept.numpy().decode().split() == ["Greatbr", "Movie", "I", "LOVED", "it"]


def test_vectorizer_inside_a_saved_keras_model_reloads(files, tmp_path):
    vectorizer = make(files, lowercase=False).vectorizer()
    text = keras.Input(shape=(), dtype="string")
    keras.Model(text, vectorizer(text)).save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    raw = tf.constant(["The GREAT film<br />row3!", "boring"])
    np.testing.assert_array_equal(reloaded(raw), vectorizer(raw))


def test_describe_is_cheap_and_carves_validation_from_train(files):
    pipeline = make(files, validation_split=0.25)
    meta = pipeline.describe()
    assert (meta.num_train, meta.num_validation, meta.num_test) == (225, 75, 100)
    assert meta.class_names == ["neg", "pos"] and meta.input_shape == (16,)
    assert meta.extra == {"vocab_size": 1000, "sequence_length": 16}
    assert not pipeline.vocabulary_path().exists()  # no adapt just to describe


def test_vocabulary_is_fitted_on_the_training_split_only(files):
    pipeline = make(files)
    vocabulary = pipeline.vectorizer().get_vocabulary()
    row_words = [w for w in vocabulary if re.fullmatch(r"row\d+", w)]
    # Each train row has its own word: exactly the 240 training rows' words, none of the 60
    # validation rows' words and no test words.
    assert len(row_words) == pipeline.describe().num_train == 240
    assert not [w for w in vocabulary if w.startswith("testrow")]
    assert vocabulary[:2] == ["", "[UNK]"] and "br" not in vocabulary


def test_vocabulary_cache_is_reused_and_keyed_by_vocab_size(files, adapt_calls):
    first = make(files, vocab_size=50).vectorizer().get_vocabulary()
    assert len(adapt_calls) == 1 and len(first) == 50
    assert make(files, vocab_size=50).vectorizer().get_vocabulary() == first
    assert len(adapt_calls) == 1  # second pipeline, same options: loaded, not adapted
    make(files, vocab_size=60, sequence_length=8).vectorizer()
    assert len(adapt_calls) == 2
    cached = sorted(p.name for p in (Path(files["train"]).parent / ".harness_cache").rglob("*"))
    assert len([name for name in cached if name.startswith("train-")]) == 2, cached


def test_a_leftover_temp_file_is_never_read(files, adapt_calls):
    pipeline = make(files)
    final = pipeline.vocabulary_path()
    final.parent.mkdir(parents=True)
    (final.parent / f".{final.name}.abc123.tmp").write_text('{"tokens": ["killed", "mid')
    assert "killed" not in pipeline.vectorizer().get_vocabulary()
    assert len(adapt_calls) == 1 and "the" in json.loads(final.read_text())["tokens"]


def test_train_batches_are_int_ids_padded_at_the_end(files):
    data = make(files).train_data(replicas=2)
    ids, labels = next(iter(data.train))
    assert ids.shape == (32, 16) and ids.dtype == tf.int64 and labels.dtype == tf.int64
    assert data.batch_size == 32 and data.steps_per_epoch == 240 // 32
    for row in ids.numpy():
        length = int(np.count_nonzero(row))
        assert 6 <= length < 16 and not row[length:].any()  # 0 = padding, only at the end
    assert sum(int(x.shape[0]) for x, _ in data.validation) == 60


def test_choices_register_hyperparameters_and_change_shapes(files):
    import keras_tuner as kt

    pipeline = make(files, vocab_size_choices=[30, 1000], sequence_length_choices=[8, 16])
    hp = kt.HyperParameters()
    pipeline.declare_hyperparameters(hp)
    assert hp.values == {"vocab_size": 1000, "sequence_length": 16}
    hp.values.update(vocab_size=30, sequence_length=8)
    assert pipeline.describe(hp).input_shape == (8,)
    ids, _ = next(iter(pipeline.train_data(hp).train))
    assert ids.shape == (16, 8) and int(ids.numpy().max()) < 30
    test_ids, _ = next(iter(pipeline.test_data(64, hp=hp)))
    assert test_ids.shape == (64, 8)


def decoded(vectorizer, texts: list[str]) -> list[list[str]]:
    """The tokens each text vectorizes to, padding dropped."""
    vocabulary = vectorizer.get_vocabulary()
    ids = vectorizer(tf.constant(texts)).numpy()
    return [[str(vocabulary[i]) for i in row if i] for row in ids]


def test_bigrams_follow_the_words_and_are_learned_from_train_only(files):
    vectorizer = make(files, ngrams=2).vectorizer()
    assert decoded(vectorizer, ["The movie!", "testrow1 the movie"]) == [
        ["the", "movie", "the movie"],
        ["[UNK]", "the", "movie", "[UNK]", "the movie"],  # test words are unseen, pairs too
    ]
    vocabulary = vectorizer.get_vocabulary()
    assert not [w for w in vocabulary if "testrow" in w]


def test_ngrams_key_the_vocabulary_cache(files, adapt_calls):
    unigrams = make(files, vocab_size=200).vectorizer().get_vocabulary()
    bigrams = make(files, vocab_size=200, ngrams=2).vectorizer().get_vocabulary()
    assert len(adapt_calls) == 2 and not [w for w in unigrams if " " in w]
    assert len([w for w in bigrams if " " in w]) > 50
    assert make(files, vocab_size=200, ngrams=2).vectorizer().get_vocabulary() == bigrams
    assert len(adapt_calls) == 2  # loaded, not adapted again
    paths = {n: make(files, vocab_size=200, ngrams=n).vocabulary_path() for n in (1, 2)}
    assert paths[1] != paths[2]
    # A unigram key is what it was before `ngrams` existed, so older caches still hit.
    assert "ngrams" not in json.loads(paths[1].read_text())["key"]
    assert json.loads(paths[2].read_text())["key"]["ngrams"] == 2


def test_ngrams_choices_register_a_hyperparameter(files):
    import keras_tuner as kt

    pipeline = make(files, ngrams_choices=[1, 2], sequence_length=32)
    hp = kt.HyperParameters()
    pipeline.declare_hyperparameters(hp)
    assert hp.values == {"ngrams": 1}
    assert pipeline.config.fingerprint() != make(files, sequence_length=32).config.fingerprint()
    counts = {}
    for ngrams in (1, 2):
        hp.values["ngrams"] = ngrams
        ids, _ = next(iter(pipeline.test_data(8, hp=hp)))
        counts[ngrams] = np.count_nonzero(ids.numpy(), axis=1)
    # Each review is 7 words: with bigrams, 7 words + 6 pairs.
    assert set(counts[1]) == {7} and set(counts[2]) == {13}
    assert pipeline.describe(hp).input_shape == (32,)


def test_a_bigram_vectorizer_inside_a_saved_keras_model_reloads(files, tmp_path):
    vectorizer = make(files, ngrams=2).vectorizer()
    text = keras.Input(shape=(), dtype="string")
    keras.Model(text, vectorizer(text)).save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    raw = tf.constant(["The GREAT film<br />row3!", "boring plot"])
    np.testing.assert_array_equal(reloaded(raw), vectorizer(raw))


def test_stratified_validation_keeps_class_proportions(tmp_path):
    labels = [0] * 6 + [1] * 3 + [2]  # 60% / 30% / 10%
    train = write(tmp_path / "train.csv.gz", reviews(300, "row", labels))
    test = write(tmp_path / "test.csv", reviews(50, "testrow", labels))
    pipeline = make({"train": str(train), "test": str(test)}, stratify=True)
    assert pipeline.describe().class_names == ["0", "1", "2"]
    validation = pipeline.train_data().validation
    counts = Counter(int(y) for _, ys in validation for y in ys.numpy())
    assert counts == {0: 36, 1: 18, 2: 6}


def test_raw_test_data_keeps_the_strings(files):
    texts, labels = next(iter(make(files, test_examples=10).raw_test_data(4)))
    assert texts.dtype == tf.string and b"<br />" in texts.numpy()[0] and labels.shape == (4,)


def _bad_files(tmp_path: Path, case: str) -> tuple[dict[str, str], str]:
    """A train file broken in one way, and the message that must name the problem."""
    good = reviews(40, "row", ["neg", "pos"])
    test = str(write(tmp_path / "test.jsonl", good))
    train = tmp_path / ("train.csv" if case == "csv_column" else "train.jsonl")
    lines = [json.dumps(row) for row in good[:5]]
    if case == "missing":
        return {"train": str(tmp_path / "nope.jsonl"), "test": test}, "nope.jsonl: no such file"
    if case == "bad_json":
        lines[2] = '{"text": "cut off'
        match = "train.jsonl: line 3: not valid JSON"
    elif case == "empty_text":
        lines[1] = json.dumps({"text": "   ", "label": "pos"})
        match = "train.jsonl: line 2: empty text in field 'text'"
    elif case == "no_label":
        lines[3] = json.dumps({"text": "fine"})
        match = "train.jsonl: line 4: no field 'label'"
    elif case == "one_class":
        lines = [json.dumps({"text": f"t {i}", "label": "pos"}) for i in range(5)]
        match = "has 1 class; need at least 2"
    elif case == "csv_column":
        lines = ["review,label", "nice,1", "bad,0"]
        match = "train.csv: line 2: no field 'text'"
    elif case in ("sparse_ids", "test_only_id"):  # integer labels: class ids
        rows = [{"text": f"t {i}", "label": i % 2} for i in range(6)]
        lines = [json.dumps(row) for row in rows]
        extra = {"text": "t", "label": 90210 if case == "sparse_ids" else 2}
        test = str(write(tmp_path / "test.jsonl", [*rows[:3], extra]))
        match = (
            "test.jsonl: the 'label' fields hold 3 distinct class ids up to 90210: a model "
            "would have 90211 classes; renumber them 0..2 or give class names"
            if case == "sparse_ids"
            else "test.jsonl: line 4: label 2 is a class the train file lacks (1 such row)"
        )
    train.write_text("\n".join(lines) + "\n")
    return {"train": str(train), "test": test}, match


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "bad_json",
        "empty_text",
        "no_label",
        "one_class",
        "csv_column",
        "sparse_ids",
        "test_only_id",
    ],
)
def test_bad_files_raise_one_line_user_errors(tmp_path, case):
    files, match = _bad_files(tmp_path, case)
    with pytest.raises(UserError, match=re.escape(match)) as err:
        make(files).check_available()
    assert "\n" not in str(err.value)


def test_truncated_gzip_names_the_file(tmp_path):
    good = write(tmp_path / "train.jsonl.gz", reviews(300, "row", ["neg", "pos"]))
    good.write_bytes(good.read_bytes()[:-40])
    files = {"train": str(good), "test": str(good)}
    with pytest.raises(UserError, match=r"train\.jsonl\.gz: corrupt or truncated after line"):
        make(files).check_available()


@pytest.mark.parametrize(
    "options, match",
    [
        ({"dataset": "imdb_reviews", "files": {"train": "a.csv", "test": "b.csv"}}, "exactly one"),
        ({"dataset": None}, "exactly one"),
        ({"files": {"train": "a.txt", "test": "b.csv"}}, "must end in .csv or .jsonl"),
        ({"vocab_size_choices": [50, 100]}, "vocab_size=10000 is the default choice"),
        ({"vocab_size": 2}, "greater than or equal to 3"),
        ({"ngrams_choices": [2]}, "ngrams=1 is the default choice and must be one of"),
        ({"ngrams": 3}, "Input should be 1 or 2"),
        ({"stratify": True}, "stratify applies to files only"),
    ],
)
def test_config_errors_name_the_problem(options, match):
    with pytest.raises(ValidationError, match=re.escape(match)):
        TextClassificationConfig(**options)


@pytest.mark.parametrize("source", [{}, {"files": {"train": "a.csv", "test": "b.jsonl.gz"}}])
def test_config_survives_the_workers_full_dump(source):
    config = TextClassificationConfig(**source, stratify=bool(source))
    dumped = {**config.model_dump(mode="json"), "data_dir": "/resolved/by/driver"}
    assert TextClassificationConfig.model_validate(dumped).files == config.files


def test_unknown_dataset_and_missing_offline_copy(tmp_path):
    with pytest.raises(UserError, match="'imdb_review' is not a TFDS dataset"):
        TextClassificationPipeline.check_config(TextClassificationConfig(dataset="imdb_review"))
    config = TextClassificationConfig(data_dir=str(tmp_path / "empty"), download=False)
    with pytest.raises(UserError, match="harness data import imdb_reviews"):
        TextClassificationPipeline(config).check_available()


@pytest.fixture(scope="module")
def tiny_imdb(tmp_path_factory) -> Path:
    """A data dir holding 200 train / 40 test synthetic reviews as `imdb_reviews`."""
    from pipelines import IMPORTERS
    from pipelines.offline import import_dataset

    raw = tmp_path_factory.mktemp("raw") / "imdb_reviews.jsonl.gz"
    rows = [
        {"split": split, "id": i, **row}
        for split, n in (("train", 200), ("test", 40))
        for i, row in enumerate(reviews(n, f"{split}row", [0, 1]))
    ]
    with gzip.open(raw, "wt") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    target = tmp_path_factory.mktemp("tfds")
    import_dataset(IMPORTERS.get("imdb_reviews"), raw, target)
    return target


def test_tfds_source_slices_train_and_caches_next_to_the_data(tiny_imdb):
    config = TextClassificationConfig(
        data_dir=str(tiny_imdb), download=False, batch_size=16, sequence_length=12
    )
    pipeline = TextClassificationPipeline(config)
    pipeline.check_available()
    meta = pipeline.describe()
    assert (meta.num_train, meta.num_validation, meta.num_test) == (160, 40, 40)
    assert meta.class_names == ["neg", "pos"]
    ids, labels = next(iter(pipeline.train_data().train))
    assert ids.shape == (16, 12) and set(labels.numpy()) <= {0, 1}
    assert pipeline.vocabulary_path().parent == tiny_imdb / "harness_cache" / "text_vocab"
    vocabulary = pipeline.vectorizer().get_vocabulary()
    assert len([w for w in vocabulary if w.startswith("trainrow")]) == 160
    assert not [w for w in vocabulary if w.startswith("testrow")]


def _real_imdb_imported() -> bool:
    return bool(REAL_DATA_DIR) and os.path.isdir(os.path.join(REAL_DATA_DIR, "imdb_reviews"))


@pytest.mark.real_data
@pytest.mark.skipif(
    not _real_imdb_imported(), reason="import the real imdb_reviews into HARNESS_DATA_DIR"
)
def test_real_imdb_reviews(tmp_path):
    config = TextClassificationConfig(
        data_dir=REAL_DATA_DIR,
        download=False,
        cache_dir=str(tmp_path),  # never write into the shared data dir from a test
        train_examples=2000,
        test_examples=64,
        vocab_size=2000,
        sequence_length=128,
        batch_size=32,
    )
    pipeline = TextClassificationPipeline(config)
    pipeline.check_available()
    texts, _ = next(iter(pipeline.raw_test_data(64)))
    with_br = next(t for t in texts.numpy() if b"<br />" in t)
    assert "br" not in pipeline.standardize()(with_br).numpy().decode().split()
    assert pipeline.vectorizer().vocabulary_size() == 2000
    ids, labels = next(iter(pipeline.train_data().train))
    assert ids.shape == (32, 128) and labels.shape == (32,)


def test_evaluation_data_has_its_length_so_keras_evaluates_without_warning(files):
    """Keras warns "Your input ran out of data" after evaluating a dataset of unknown length
    (which vectorizing in batches then unbatching makes): the console showed it at export."""
    import warnings

    import keras

    pipeline = make(files, test_examples=10)
    data = pipeline.train_data()
    meta = pipeline.describe()
    assert int(data.validation.cardinality()) == -(
        -meta.num_validation // pipeline.config.batch_size
    )
    test = pipeline.test_data(4)
    assert int(test.cardinality()) == 3 and sum(len(y) for _, y in test) == 10
    model = keras.Sequential(
        [
            keras.Input(meta.input_shape),
            keras.layers.Embedding(50, 2),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2),
        ]
    )
    model.compile(loss="sparse_categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*ran out of data.*")
        model.evaluate(test, verbose=0)
        model.evaluate(data.validation, verbose=0)


def test_labels_as_pandas_and_spreadsheets_write_them_are_one_class_each(tmp_path):
    """`1.0` (pandas' int column that held a NaN), `0 ` (a trailing space), a JSON 1.0 and a
    header written `text, label`: two classes, 0 and 1 (were four: "0", "0 ", "1", "1.0")."""
    train = tmp_path / "train.csv"
    rows = [f"review {i},{['0 ', '1.0', '0', '1'][i % 4]}" for i in range(40)]
    train.write_text("text, label\n" + "\n".join(rows) + "\n")
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "a", "label": 1.0}\n{"text": "b", "label": 0}\n')
    p = make({"train": str(train), "test": str(test)})
    p.check_available()
    assert p.describe().class_names == ["0", "1"]
    test.write_text('{"text": 7, "label": 1}\n')
    with pytest.raises(UserError, match=r"test.jsonl: line 1: field 'text' holds 7, not text"):
        make({"train": str(train), "test": str(test)}).check_available()


def test_data_in_a_folder_this_user_cannot_write_caches_in_the_user_s_cache(
    files, monkeypatch, tmp_path
):
    """Every trial failed with PermissionError on a read-only data folder (`chattr +i` in the
    probe; `os.access` stands in here): the vocabulary goes to $XDG_CACHE_HOME/harness."""
    import pipelines.base

    data = Path(files["train"]).parent
    real_access = pipelines.base.os.access
    monkeypatch.setattr(
        pipelines.base.os,
        "access",
        lambda path, mode: not str(path).startswith(str(data)) and real_access(path, mode),
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user_cache"))
    path = make(files).vocabulary_path()
    assert path.is_relative_to(tmp_path / "user_cache" / "harness")
    make(files).vectorizer()
    assert path.is_file() and not (data / ".harness_cache").exists()
