"""Seq2seq: generated addition pairs, teacher-forced examples, the default point (the
tutorials' encoder-decoder LSTM), every branch trains, exact match = greedy decoding."""

from __future__ import annotations

import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from pipelines.seq2seq import END, START, Seq2SeqConfig, Seq2SeqPipeline
from pipelines.seq2seq_decode import greedy_decoder
from search_spaces.seq2seq import Seq2Seq, sequence_accuracy


def addition(**options) -> Seq2SeqPipeline:
    return Seq2SeqPipeline(
        Seq2SeqConfig(
            task="addition", train_examples=400, test_examples=50, batch_size=16, **options
        )
    )


def test_addition_pairs_and_teacher_forcing():
    p = addition(max_digits=2)
    p.check_available()
    meta = p.describe()
    assert set(p.vocabulary) == set("0123456789+")
    assert meta.input_shape == (5,) and meta.extra["target_length"] == 4  # "99+99", "198" + end
    assert not set(p._pairs["test"]) & set(p._pairs["train"])  # test sums never trained on
    (enc, dec), out = next(iter(p.train_data().train))
    enc, dec, out = enc.numpy(), dec.numpy(), out.numpy()
    assert (dec[:, 0] == START).all()
    np.testing.assert_array_equal(dec[:, 1:][out[:, :-1] != END], out[:, :-1][out[:, :-1] != END])
    for row in range(len(out)):  # every target ends with the end id, then padding
        ends = np.flatnonzero(out[row] == END)
        assert len(ends) == 1 and (out[row, ends[0] + 1 :] == 0).all()


def test_pairs_from_files(tmp_path):
    rows = "".join(f"{i},{i * 2}\n" for i in range(30))
    (tmp_path / "train.csv").write_text("\ufeffsrc,dst\n" + rows)  # a spreadsheet's BOM
    # Lines end at "\n" only: a JSON string may hold U+2028 (str.splitlines breaks there).
    lines = ['{"src": "7", "dst": "14"}', '{"src": "7\u2028", "dst": "1"}']
    (tmp_path / "test.jsonl").write_text("\n".join(lines))
    files = {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.jsonl")}
    p = Seq2SeqPipeline(Seq2SeqConfig(files=files, input_field="src", target_field="dst"))
    p.check_available()
    assert p._pairs["test"] == [("7", "14"), ("7\u2028", "1")]
    assert p.describe().num_validation == 3
    (tmp_path / "train.csv").write_text('src,dst\n"1\n2",3\n' + "4,5\n" * 20)  # quoted newline
    p = Seq2SeqPipeline(Seq2SeqConfig(files=files, input_field="src", target_field="dst"))
    assert ("1\n2", "3") in p._pairs["train"] + p._pairs["validation"]


def test_default_point_is_the_encoder_decoder_lstm():
    model = Seq2Seq(addition().describe()).build(kt.HyperParameters())
    by_name = {layer.name: layer for layer in model.layers}
    assert type(by_name["encoder"]).__name__ == "LSTM" and by_name["encoder"].units == 128
    assert type(by_name["decoder"]).__name__ == "LSTM" and by_name["decoder"].units == 128
    assert by_name["source_embedding"].output_dim == 64
    assert by_name["next_char"].units == len(addition().vocabulary) + 4
    assert type(model.optimizer).__name__ == "Adam"


@pytest.mark.parametrize(
    "pinned",
    [{}, {"cell": "gru", "bidirectional": True}, {"bidirectional": True, "dropout": 0.2}],
    ids=["default", "bi-gru", "bi-lstm"],
)
def test_branches_train_and_metrics_agree_with_greedy_decoding(pinned):
    p = addition(max_digits=2)
    space = Seq2Seq(p.describe())
    space.set_training_plan(1, 5)
    hp = kt.HyperParameters()
    for name, value in pinned.items():
        hp.Fixed(name, value)
    model = space.build(hp)
    history = model.fit(p.train_data().train, steps_per_epoch=5, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    # Exact match under teacher forcing == greedy decoding gives the target, pair by pair.
    decode, _ = greedy_decoder(model, p.vocabulary, *p.lengths)
    pairs = p._pairs["test"][:20]
    decoded = [t.decode() for t in decode(tf.constant([a for a, _ in pairs]))["decoded"].numpy()]
    (enc, dec), out = next(iter(p.test_data(batch_size=20)))
    probs = model([enc, dec], training=False)
    forced = sequence_accuracy(out, probs).numpy()
    assert [d == b for d, (_, b) in zip(decoded, pairs, strict=True)] == [bool(v) for v in forced]
    # The first decoded character is the model's first prediction (same conditioning: start).
    first = np.argmax(probs.numpy()[:, 0], axis=-1)
    expected = [p.vocabulary[i - 4] if i >= 4 else "" for i in first]
    assert [d[:1] for d in decoded] == expected
