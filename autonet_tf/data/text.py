"""Word-level language-modelling corpora in the Penn Treebank layout.

A corpus is a directory with ``train.txt``, ``valid.txt`` and ``test.txt``
(``ptb.train.txt`` etc. are accepted too): whitespace-separated tokens, one
sentence a line. As in the DARTS/AWD-LSTM reference ``data.py``, ``<eos>`` is
appended to every line and ``<unk>`` is an ordinary word. The vocabulary is
built from the training split in order of first appearance (``<unk>`` is
added if the training text lacks it); words of the valid and test splits
that the vocabulary lacks read as ``<unk>``.

Sources (``--dataset``):

* ``ptb``: the Penn Treebank of Mikolov et al. in ``--data_dir`` (the
  ``data/penn`` folder of the DARTS repository or ``simple-examples/data``
  of Mikolov's tarball, https://www.fit.vutbr.cz/~imikolov/rnnlm/).
* ``synthetic``: a small corpus generated in memory from a seeded sparse
  Markov chain over 200 words (works offline; the quick default).
* any directory in the layout above.

Batches follow the reference ``batchify``/``get_batch``: the token stream is
cut into ``batch_size`` contiguous rows, and training reads windows of
``bptt`` tokens along them, carrying the hidden state from one window to the
next (truncated back-propagation through time).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from autonet_tf.errors import UserInputError

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
SYNTHETIC = "synthetic"


@dataclasses.dataclass
class Corpus:
    """Token-id streams of the three splits and the vocabulary."""

    name: str
    vocab: list[str]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    unknown: dict = dataclasses.field(default_factory=dict)  # split -> OOV tokens read as <unk>

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def split(self, name: str) -> np.ndarray:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]


def _split_path(directory: str, split: str) -> str | None:
    for name in (f"{split}.txt", f"ptb.{split}.txt"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def read_tokens(path: str) -> list[str]:
    """Tokens of a text file, ``<eos>`` after every line; rejects binary or empty files."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserInputError(f"cannot read {path!r}: {e.strerror}") from None
    if b"\x00" in raw:
        raise UserInputError(f"{path!r} is a binary file, expected text (one sentence a line)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserInputError(
            f"{path!r} is not UTF-8 text (byte {e.start}); expected one sentence a line") from None
    tokens = []
    for line in text.splitlines():
        words = line.split()
        if words:
            tokens.extend(words)
            tokens.append(EOS)
    if not tokens:
        raise UserInputError(f"{path!r} has no tokens; expected one sentence a line")
    return tokens


def build_vocab(tokens: list[str]) -> list[str]:
    """Words in order of first appearance; ``<unk>`` appended if absent."""
    index = dict.fromkeys(tokens)
    if UNK not in index:
        index[UNK] = None
    return list(index)


def encode(tokens: list[str], vocab: list[str]) -> tuple[np.ndarray, int]:
    """Ids of ``tokens`` (unknown words -> ``<unk>``) and how many were unknown."""
    ids = {w: i for i, w in enumerate(vocab)}
    unk = ids[UNK]
    out = np.fromiter((ids.get(t, unk) for t in tokens), dtype=np.int32, count=len(tokens))
    unknown = sum(1 for t in tokens if t not in ids)
    return out, unknown


def _directory_paths(directory: str) -> dict:
    if not os.path.isdir(directory):
        raise UserInputError(
            f"--dataset: {directory!r} is not a directory with train.txt, valid.txt and test.txt")
    paths = {}
    for split in SPLITS:
        path = _split_path(directory, split)
        if path is None:
            raise UserInputError(
                f"--dataset: {directory!r} has no {split}.txt (or ptb.{split}.txt); a corpus "
                f"directory needs train.txt, valid.txt and test.txt")
        paths[split] = path
    return paths


def _from_tokens(name: str, tokens: dict) -> Corpus:
    vocab = build_vocab(tokens["train"])
    streams, unknown = {}, {}
    for split in SPLITS:
        streams[split], unknown[split] = encode(tokens[split], vocab)
    return Corpus(name, vocab, streams["train"], streams["valid"], streams["test"], unknown)


def load_directory(directory: str, name: str | None = None) -> Corpus:
    """Reads a PTB-layout directory; one clear error for a missing or bad split."""
    paths = _directory_paths(directory)
    return _from_tokens(name or os.path.basename(os.path.normpath(directory)),
                        {split: read_tokens(paths[split]) for split in SPLITS})


def synthetic_sentences(count: int, seed: int, vocab_size: int = 200,
                        successors: int = 4) -> list[str]:
    """Sentences from a seeded sparse Markov chain (learnable: few likely successors).

    Each word has ``successors`` likely next words; sentences end with
    probability 0.1 per word. The same (count, seed) always gives the same text.
    """
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab_size)]
    table = rng.integers(0, vocab_size, size=(vocab_size, successors))
    probs = rng.dirichlet(np.ones(successors), size=vocab_size)
    lines = []
    for _ in range(count):
        current = int(rng.integers(vocab_size))
        sentence = [words[current]]
        while rng.random() > 0.1 and len(sentence) < 40:
            current = int(table[current][rng.choice(successors, p=probs[current])])
            sentence.append(words[current])
        lines.append(" ".join(sentence))
    return lines


def write_synthetic_corpus(directory: str, sentences: tuple[int, int, int] = (2000, 200, 200),
                           seed: int = 0) -> str:
    """Writes a PTB-layout synthetic corpus (train/valid/test.txt) into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    lines = synthetic_sentences(sum(sentences), seed)
    start = 0
    for split, count in zip(SPLITS, sentences):
        with open(os.path.join(directory, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f" {line} \n" for line in lines[start:start + count]))
        start += count
    return directory


def _synthetic_tokens(seed: int = 0) -> dict:
    lines = synthetic_sentences(2400, seed)
    parts = {"train": lines[:2000], "valid": lines[2000:2200], "test": lines[2200:]}
    return {k: [t for line in v for t in line.split() + [EOS]] for k, v in parts.items()}


def synthetic_corpus(seed: int = 0) -> Corpus:
    """The in-memory ``synthetic`` corpus (2,000 / 200 / 200 sentences, about 24k tokens)."""
    return _from_tokens(SYNTHETIC, _synthetic_tokens(seed))


def _resolve(dataset: str, data_dir: str | None) -> str | None:
    """The corpus directory of ``--dataset`` (None for 'synthetic')."""
    if dataset == SYNTHETIC:
        return None
    if dataset == "ptb":
        if not data_dir:
            raise UserInputError(
                "--dataset=ptb needs --data_dir=DIR holding train.txt, valid.txt and test.txt "
                "(the data/penn folder of the DARTS repository, or simple-examples/data of "
                "https://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz)")
        return os.path.expanduser(data_dir)
    if os.path.isdir(os.path.expanduser(dataset)):
        return os.path.expanduser(dataset)
    raise UserInputError(
        f"--dataset={dataset!r} is not 'ptb', 'synthetic' or a directory with train.txt, "
        f"valid.txt and test.txt")


def load(dataset: str, data_dir: str | None = None) -> Corpus:
    """The corpus named by ``--dataset`` (``ptb``, ``synthetic`` or a directory)."""
    directory = _resolve(dataset, data_dir)
    if directory is None:
        return synthetic_corpus()
    return load_directory(directory, "ptb" if dataset == "ptb" else None)


def load_split(dataset: str, data_dir: str | None, split: str,
               vocab: list[str]) -> tuple[np.ndarray, int]:
    """One split encoded with a given vocabulary (an export's): (ids, unknown-word count)."""
    directory = _resolve(dataset, data_dir)
    if directory is None:
        tokens = _synthetic_tokens()[split]
    else:
        tokens = read_tokens(_directory_paths(directory)[split])
    return encode(tokens, vocab)


def batchify(stream: np.ndarray, batch_size: int, what: str = "split") -> np.ndarray:
    """(batch_size, n) rows of contiguous tokens (reference ``batchify``, row-major)."""
    n = len(stream) // batch_size
    if n < 2:
        raise UserInputError(
            f"the {what} has {len(stream)} tokens, too few for a batch size of {batch_size} "
            f"(each of the {batch_size} rows needs at least 2 tokens)")
    return np.ascontiguousarray(stream[:n * batch_size].reshape(batch_size, n))


def eval_windows(length: int, bptt: int):
    """(start, seq_len) of consecutive ``bptt`` windows covering rows of ``length`` tokens."""
    for start in range(0, length - 1, bptt):
        yield start, min(bptt, length - 1 - start)


def window_schedule(length: int, bptt: int, steps: int, seed: int, epoch: int,
                    variable: bool = True, max_delta: int = 20) -> list[tuple[int, int]]:
    """(start, seq_len) of every training window of one epoch.

    With ``variable`` (the reference): ``bptt`` is halved with probability
    0.05, the length is drawn from N(bptt, 5), at least 5 and at most
    ``bptt + max_delta``. Windows are consecutive; one that would run past the
    end of the rows starts again at the beginning. Deterministic in (seed, epoch),
    so a resumed epoch replays the same windows.
    """
    rng = np.random.default_rng([seed, epoch, 7])
    windows, start = [], 0
    for _ in range(steps):
        seq_len = bptt
        if variable:
            base = bptt if rng.random() < 0.95 else bptt / 2.0
            seq_len = min(max(5, int(rng.normal(base, 5))), bptt + max_delta)
        seq_len = max(1, min(seq_len, length - 1))
        if start + seq_len > length - 1:
            start = 0
        windows.append((start, seq_len))
        start += seq_len
    return windows
