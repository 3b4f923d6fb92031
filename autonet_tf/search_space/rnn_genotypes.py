"""The recurrent search space as data: RNN_PRIMITIVES, RecurrentGenotype, derivation.

A recurrent cell (DARTS ``rnn/genotypes.py``) has an initial state ``s0``
computed from the input and the previous hidden state, then ``steps`` nodes;
node ``i`` (1-based) reads ONE earlier state ``s_j`` (``0 <= j < i``) through
a highway-gated activation, and the cell output is the mean of the states in
``concat`` (nodes 1..8 for DARTS).

JSON form: ``{"type": "rnn", "recurrent": [["sigmoid", 0], ...], "concat":
[1, ..., 8]}``; the reference text ``Genotype(recurrent=[...],
concat=range(1, 9))`` is read as well.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence


from autonet_tf.errors import UserInputError
from autonet_tf.search_space.genotypes import (
    Edge, _as_concat, _parse_reference_text, _softmax, as_pairs, load_spec)

#: Recurrent candidate ops, in the reference order (DARTS ``rnn/genotypes.py``).
RNN_PRIMITIVES: tuple[str, ...] = ("none", "tanh", "relu", "sigmoid", "identity")

#: Nodes of the recurrent cell (reference ``STEPS``) and concatenated nodes (``CONCAT``).
RNN_STEPS = 8


def num_rnn_edges(steps: int = RNN_STEPS) -> int:
    """Edges of the recurrent search cell: node i (1-based) has i inputs (36 for 8)."""
    return steps * (steps + 1) // 2


@dataclasses.dataclass(frozen=True)
class RecurrentGenotype:
    """A discrete recurrent cell.

    Attributes:
      recurrent: one (op, predecessor) pair per node; node ``i`` (1-based)
        reads state ``predecessor`` in ``[0, i)``.
      concat: the states averaged into the cell output.
    """

    recurrent: tuple[Edge, ...]
    concat: tuple[int, ...]

    def __post_init__(self):
        pairs = as_pairs(self.recurrent, "recurrent", "predecessor")
        if not pairs:
            raise UserInputError("genotype: recurrent must be a non-empty list of "
                                 "[op, predecessor] pairs")
        edges = []
        for position, (op, pred) in enumerate(pairs):
            if op not in RNN_PRIMITIVES or op == "none":
                raise UserInputError(
                    f"genotype: recurrent[{position}] has unknown op {op!r}; expected one "
                    f"of {list(RNN_PRIMITIVES[1:])}")
            if not 0 <= pred <= position:
                raise UserInputError(
                    f"genotype: recurrent[{position}] ({op!r}, {pred}) feeds node "
                    f"{position + 1}, whose predecessor must be in [0, {position}]")
            edges.append((op, pred))
        object.__setattr__(self, "recurrent", tuple(edges))
        concat = _as_concat(self.concat, "concat")
        for v in concat:
            if not 0 <= v <= len(edges):
                raise UserInputError(
                    f"genotype: concat value {v} is out of range [0, {len(edges)}] for "
                    f"{len(edges)} nodes")
        object.__setattr__(self, "concat", concat)

    @property
    def steps(self) -> int:
        return len(self.recurrent)

    def to_dict(self) -> dict:
        return {"type": "rnn", "recurrent": [list(e) for e in self.recurrent],
                "concat": list(self.concat)}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> "RecurrentGenotype":
        if not isinstance(data, dict):
            raise UserInputError(f"genotype: expected a JSON object, got {type(data).__name__}")
        kind = data.get("type", "rnn")
        if kind != "rnn":
            raise UserInputError(
                f"genotype: type is {kind!r}, expected 'rnn' (a recurrent cell; CNN genotypes "
                f"go with --model=cnn)")
        missing = [k for k in ("recurrent", "concat") if k not in data]
        if missing:
            raise UserInputError(f"genotype: missing field(s) {missing}")
        extra = sorted(set(data) - {"type", "recurrent", "concat"})
        if extra:
            raise UserInputError(f"genotype: unknown field(s) {extra}")
        return cls(data["recurrent"], data["concat"])

    @classmethod
    def from_string(cls, text: str) -> "RecurrentGenotype":
        """Parses JSON or the reference's ``Genotype(recurrent=..., concat=...)`` text."""
        text = text.strip()
        if text.startswith("Genotype("):
            return cls.from_dict(_parse_reference_text(text))
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserInputError(f"genotype: invalid JSON ({e})") from None
        return cls.from_dict(data)

    def __str__(self) -> str:
        return f"Genotype(recurrent={list(self.recurrent)}, concat={list(self.concat)})"


def derive_recurrent(alphas, steps: int = RNN_STEPS,
                     primitives: Sequence[str] = RNN_PRIMITIVES) -> RecurrentGenotype:
    """Discretises recurrent alphas (reference ``rnn/model_search.py genotype()``).

    Rows are softmaxed; node ``i`` keeps the ONE predecessor whose best
    non-'none' weight is largest, with its argmax op excluding 'none'; the
    output averages nodes 1..steps.

    Args:
      alphas: array of shape (num_rnn_edges(steps), len(primitives)); rows
        ``[i(i+1)/2, (i+1)(i+2)/2)`` are the inputs of node ``i + 1``.
    """
    weights = _softmax(alphas)
    expected = (num_rnn_edges(steps), len(primitives))
    if weights.shape != expected:
        raise UserInputError(f"alphas have shape {weights.shape}, expected {expected}")
    allowed = [k for k, name in enumerate(primitives) if name != "none"]
    gene, start = [], 0
    for i in range(steps):
        rows = weights[start:start + i + 1]
        j = max(range(i + 1), key=lambda r: (max(rows[r][k] for k in allowed), -r))
        k_best = max(allowed, key=lambda k: (rows[j][k], -k))
        gene.append((primitives[k_best], j))
        start += i + 1
    return RecurrentGenotype(tuple(gene), tuple(range(1, steps + 1)))


#: DARTS first order, from the reference ``rnn/genotypes.py``.
DARTS_V1_RNN = RecurrentGenotype(
    [("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3), ("relu", 4), ("identity", 1),
     ("relu", 5), ("relu", 1)], tuple(range(1, 9)))

#: DARTS second order, from the reference ``rnn/genotypes.py``.
DARTS_V2_RNN = RecurrentGenotype(
    [("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2), ("sigmoid", 5),
     ("tanh", 3), ("relu", 5)], tuple(range(1, 9)))

PUBLISHED_RNN = {"DARTS_V1": DARTS_V1_RNN, "DARTS_V2": DARTS_V2_RNN, "DARTS": DARTS_V2_RNN}


def load_recurrent_genotype(spec: str) -> RecurrentGenotype:
    """DARTS_V1, DARTS_V2, a JSON/text file path, or inline JSON / reference text."""
    return load_spec(spec, PUBLISHED_RNN, RecurrentGenotype.from_string, ("{", "Genotype("))
