"""Exporting a trained recurrent language model: SavedModel + vocabulary.

Layout of an export directory::

    export/
      saved_model/                 three endpoints (export.save_endpoints)
        assets.extra/autonet_tf.json   the metadata (marks the export as ours)
      vocab.txt                    the vocabulary, one word a line, id = line number
      metadata.json                genotype, sizes, perplexities, special tokens

Endpoints (inference mode, no dropout):

* ``serve(tokens)``: int32 ids (batch, time) -> float32 next-token
  log-probabilities (batch, time, vocab), starting from a zero hidden state;
  ``log_probs[b, t, w]`` is log P(word w follows tokens[b, :t + 1]).
* ``serve_with_state(tokens, hidden)``: the same from a given state
  (batch, nhid); returns ``{"log_probs", "hidden"}`` to score a long text in
  windows.
* ``score_words(words)``: strings (batch, time) -> ``{"token_ids",
  "log_probs"}``; words missing from the vocabulary read as ``<unk>``, as
  during training and evaluation.

The export is written to a temporary sibling folder and renamed into place.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from autonet_tf import export
from autonet_tf.data import text
from autonet_tf.data.text import UNK
from autonet_tf.io import run_dir
from autonet_tf.io.saved_models import LANGUAGE_MODEL

FORMAT = LANGUAGE_MODEL
VOCAB_NAME = "vocab.txt"


class _Vocabulary(keras.layers.Layer):
    """Word -> id with ``<unk>`` for unknown words (a tracked lookup table)."""

    def __init__(self, vocab, **kwargs):
        super().__init__(**kwargs)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(vocab)), tf.range(len(vocab), dtype=tf.int32)),
            default_value=list(vocab).index(UNK))
        self.built = True

    def call(self, words):
        return self.table.lookup(words)


def export_language_model(model: keras.Model, export_dir: str, *, vocab, metadata: dict) -> dict:
    """Writes ``export_dir`` (see the module docstring); returns the metadata written."""
    nhid = model.nhid
    lookup = _Vocabulary(vocab, name="vocabulary")

    def serve(tokens):
        hidden = tf.zeros((tf.shape(tokens)[0], nhid), model.compute_dtype)
        log_probs, _, _ = model((tokens, hidden, None), training=False)
        return log_probs

    def serve_with_state(tokens, hidden):
        log_probs, last, _ = model((tokens, hidden, None), training=False)
        return {"log_probs": log_probs, "hidden": tf.cast(last, tf.float32)}

    def score_words(words):
        ids = lookup(words)
        return {"token_ids": ids, "log_probs": serve(ids)}

    tokens_spec = tf.TensorSpec([None, None], tf.int32, name="tokens")
    meta = {
        **export.export_header(FORMAT),
        "endpoints": {
            "serve": "tokens int32 (batch, time) -> log_probs float32 (batch, time, vocab)",
            "serve_with_state": "tokens, hidden (batch, nhid) -> {log_probs, hidden}",
            "score_words": "words string (batch, time) -> {token_ids, log_probs}"},
        "vocab_size": len(vocab), "vocab_file": VOCAB_NAME, "unk": UNK,
        "nhid": nhid, **metadata,
    }

    def write(tmp):
        hidden_spec = tf.TensorSpec([None, nhid], tf.float32, name="hidden")
        export.save_endpoints(
            os.path.join(tmp, "saved_model"),
            {"serve": (serve, [tokens_spec]),
             "serve_with_state": (serve_with_state, [tokens_spec, hidden_spec]),
             "score_words": (score_words, [tf.TensorSpec([None, None], tf.string, name="words")])},
            resources=[lookup.table])
        with open(os.path.join(tmp, VOCAB_NAME), "w", encoding="utf-8") as f:
            f.write("".join(w + "\n" for w in vocab))

    export.write_export(export_dir, write, meta)
    return meta


class LoadedLanguageModel:
    """An exported language model loaded with ``tf.saved_model.load``."""

    def __init__(self, saved_model_dir: str):
        self.path = saved_model_dir
        self.metadata = export.read_metadata(saved_model_dir, (FORMAT,))
        self.module = export.load_saved_model(saved_model_dir)
        folder = os.path.dirname(saved_model_dir.rstrip("/"))
        if not run_dir.is_remote(saved_model_dir):
            folder = os.path.dirname(os.path.abspath(saved_model_dir))
        vocab_path = os.path.join(folder, VOCAB_NAME)
        self.vocab = None
        if run_dir.exists(vocab_path):
            self.vocab = run_dir.read_text(vocab_path).split("\n")
            if self.vocab and self.vocab[-1] == "":
                self.vocab.pop()
        self.nhid = int(self.metadata["nhid"])

    def perplexity(self, rows: np.ndarray, bptt: int = 35) -> dict:
        """Mean NLL and perplexity of (batch, n) token rows read in ``bptt`` windows."""
        hidden = tf.zeros((rows.shape[0], self.nhid), tf.float32)
        total, count = 0.0, 0
        for start, seq_len in text.eval_windows(rows.shape[1], bptt):
            window = rows[:, start:start + seq_len + 1]
            out = self.module.serve_with_state(tf.constant(window[:, :-1], tf.int32), hidden)
            hidden = out["hidden"]
            lp = out["log_probs"].numpy()
            total -= float(np.take_along_axis(lp, window[:, 1:, None], axis=-1).sum())
            count += window[:, 1:].size
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": float(np.exp(min(loss, 700.0)))}
