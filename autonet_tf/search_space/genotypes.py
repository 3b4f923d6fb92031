"""The CNN search space as data: PRIMITIVES, Genotype, derivation, published cells.

A :class:`Genotype` is immutable and validated on construction. It reads and
writes JSON (``{"type": "cnn", "normal": [["sep_conv_3x3", 1], ...], ...}``)
and also parses the reference's ``Genotype(normal=[...], ...)`` text, so a
cell copied from a paper or from the reference code loads as it is.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from typing import Iterable, Sequence

import numpy as np

from autonet_tf.errors import UserInputError

#: CNN candidate ops, in the reference order (DARTS ``genotypes.py``).
PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

#: Intermediate nodes per cell (DARTS ``--steps``/``_steps`` = 4).
DEFAULT_STEPS = 4


def num_edges(steps: int = DEFAULT_STEPS) -> int:
    """Edges of a search cell: node i has i + 2 inputs (14 for 4 steps)."""
    return sum(2 + i for i in range(steps))


Edge = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A discrete CNN cell pair.

    Attributes:
      normal: ``2 * steps`` (op, input) pairs; pair ``2i, 2i+1`` feed node
        ``i`` and each input index is in ``[0, i + 2)`` (0 and 1 are the
        two cell inputs, ``k >= 2`` is intermediate node ``k - 2``).
      normal_concat: which states are concatenated into the cell output.
      reduce, reduce_concat: the same for the reduction cell.
    """

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self):
        for field in ("normal", "reduce"):
            edges = _as_edges(getattr(self, field), field)
            object.__setattr__(self, field, edges)
        for field in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, field, _as_concat(getattr(self, field), field))
        if len(self.normal) != len(self.reduce):
            raise UserInputError(
                f"genotype: normal has {len(self.normal)} edges but reduce has "
                f"{len(self.reduce)}; both cells need the same number")
        steps = self.steps
        for field in ("normal", "reduce"):
            for position, (op, index) in enumerate(getattr(self, field)):
                node = position // 2
                if op not in PRIMITIVES or op == "none":
                    raise UserInputError(
                        f"genotype: {field}[{position}] has unknown op {op!r}; "
                        f"expected one of {list(PRIMITIVES[1:])}")
                if not 0 <= index < node + 2:
                    raise UserInputError(
                        f"genotype: {field}[{position}] ({op!r}, {index}) feeds node "
                        f"{node}, whose input index must be in [0, {node + 1}]")
        for field in ("normal_concat", "reduce_concat"):
            for value in getattr(self, field):
                if not 0 <= value < steps + 2:
                    raise UserInputError(
                        f"genotype: {field} value {value} is out of range "
                        f"[0, {steps + 1}] for {steps} intermediate nodes")

    @property
    def steps(self) -> int:
        """Number of intermediate nodes per cell."""
        return len(self.normal) // 2

    def to_dict(self) -> dict:
        return {
            "type": "cnn",
            "normal": [list(e) for e in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(e) for e in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> "Genotype":
        if not isinstance(data, dict):
            raise UserInputError(
                f"genotype: expected a JSON object, got {type(data).__name__}")
        kind = data.get("type", "cnn")
        if kind != "cnn":
            raise UserInputError(f"genotype: type is {kind!r}, expected 'cnn'")
        missing = [k for k in ("normal", "normal_concat", "reduce", "reduce_concat")
                   if k not in data]
        if missing:
            raise UserInputError(f"genotype: missing field(s) {missing}")
        extra = sorted(set(data) - {"type", "normal", "normal_concat", "reduce",
                                    "reduce_concat"})
        if extra:
            raise UserInputError(f"genotype: unknown field(s) {extra}")
        return cls(data["normal"], data["normal_concat"], data["reduce"],
                   data["reduce_concat"])

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserInputError(f"genotype: invalid JSON ({e})") from None
        return cls.from_dict(data)

    @classmethod
    def from_string(cls, text: str) -> "Genotype":
        """Parses JSON or the reference's ``Genotype(normal=..., ...)`` text."""
        text = text.strip()
        if text.startswith("Genotype("):
            return cls.from_dict(_parse_reference_text(text))
        return cls.from_json(text)

    def __str__(self) -> str:
        return (f"Genotype(normal={list(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={list(self.reduce)}, reduce_concat={list(self.reduce_concat)})")


def _parse_reference_text(text: str) -> dict:
    try:
        call = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        raise UserInputError(f"genotype: cannot parse {text[:60]!r}: {e.msg}") from None
    if not isinstance(call, ast.Call) or call.args:
        raise UserInputError("genotype: expected Genotype(normal=..., normal_concat=..., "
                             "reduce=..., reduce_concat=...)")
    out = {}
    for keyword in call.keywords:
        try:
            value = ast.literal_eval(keyword.value)
        except ValueError:
            # The reference writes concat=range(2, 6).
            node = keyword.value
            if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "range"
                    and all(isinstance(a, ast.Constant) for a in node.args)):
                value = list(range(*[a.value for a in node.args]))
            else:
                raise UserInputError(
                    f"genotype: field {keyword.arg!r} is not a literal") from None
        out[keyword.arg] = value
    return out


def as_pairs(value, field: str, index_name: str) -> list[Edge]:
    """``value`` as a list of (op, index) pairs; UserInputError naming the bad item."""
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise UserInputError(f"genotype: {field} must be a list of [op, {index_name}] pairs")
    edges = []
    for position, item in enumerate(value):
        if (not isinstance(item, (list, tuple)) or len(item) != 2
                or not isinstance(item[0], str) or isinstance(item[1], bool)
                or not isinstance(item[1], (int, np.integer))):
            raise UserInputError(
                f"genotype: {field}[{position}] must be an [op, {index_name}] pair, "
                f"got {item!r}")
        edges.append((item[0], int(item[1])))
    return edges


def _as_edges(value, field: str) -> tuple[Edge, ...]:
    edges = as_pairs(value, field, "input_index")
    if not edges or len(edges) % 2:
        raise UserInputError(
            f"genotype: {field} has {len(edges)} edges; expected an even, non-zero "
            f"number (2 per intermediate node, 8 for DARTS)")
    return tuple(edges)


def _as_concat(value, field: str) -> tuple[int, ...]:
    if isinstance(value, range):
        value = list(value)
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                       for v in value)):
        raise UserInputError(f"genotype: {field} must be a non-empty list of ints, got {value!r}")
    if len(set(value)) != len(value):
        raise UserInputError(f"genotype: {field} has repeated values {list(value)}")
    return tuple(int(v) for v in value)


def node_slices(steps: int = DEFAULT_STEPS) -> list[slice]:
    """The rows of each intermediate node's incoming edges (node ``i`` has ``2 + i``)."""
    slices, start = [], 0
    for i in range(steps):
        slices.append(slice(start, start + i + 2))
        start += i + 2
    return slices


def edge_weights(betas, steps: int = DEFAULT_STEPS) -> np.ndarray:
    """PC-DARTS edge normalisation: ``betas`` softmaxed over each node's incoming edges.

    Returns one weight per edge (shape ``(num_edges(steps),)``); the edges
    of node ``i`` (``2 + i`` of them) sum to 1.
    """
    betas = np.asarray(betas, dtype=np.float64)
    if betas.shape != (num_edges(steps),):
        raise UserInputError(f"betas have shape {betas.shape}, expected ({num_edges(steps)},)")
    return np.concatenate([_softmax(betas[rows]) for rows in node_slices(steps)])


def derive(alphas_normal, alphas_reduce, steps: int = DEFAULT_STEPS,
           multiplier: int = 4, primitives: Sequence[str] = PRIMITIVES,
           max_skip: int | None = None, betas_normal=None, betas_reduce=None) -> Genotype:
    """Discretises architecture weights into a genotype (reference ``genotype()``).

    Each alpha row is softmaxed; for every intermediate node the 2 incoming
    edges with the largest best-non-'none' weight are kept, each with its
    argmax op excluding 'none'. The last ``multiplier`` states are concatenated.

    Args:
      alphas_normal, alphas_reduce: arrays of shape (num_edges(steps), len(primitives)).
      max_skip: at most this many skip connections in the normal cell (P-DARTS):
        while there are more, the kept skip connection with the smallest
        weight is ruled out and the cell derived again. None: no cap (the
        reference).
      betas_normal, betas_reduce: PC-DARTS edge-normalisation weights (shape
        ``(num_edges(steps),)``), or None. Each edge's op weights are then
        multiplied by its :func:`edge_weights` before the 2 strongest incoming
        edges of a node are picked (the PC-DARTS rule); the op of an edge is
        unchanged.
    """
    def weights(alphas, betas):
        w = _softmax(alphas)
        return w if betas is None else w * edge_weights(betas, steps)[:, None]

    normal_weights = weights(alphas_normal, betas_normal)
    normal = _parse(normal_weights, steps, primitives)
    if max_skip is not None and "skip_connect" in primitives:
        skip = list(primitives).index("skip_connect")
        while sum(op == "skip_connect" for op, _ in normal) > max_skip:
            rows = _edge_rows(normal, steps)
            weakest = min((r for r, (op, _) in zip(rows, normal) if op == "skip_connect"),
                          key=lambda r: normal_weights[r, skip])
            normal_weights[weakest, skip] = 0.0
            normal = _parse(normal_weights, steps, primitives)
    return Genotype(
        normal=normal,
        normal_concat=tuple(range(2 + steps - multiplier, steps + 2)),
        reduce=_parse(weights(alphas_reduce, betas_reduce), steps, primitives),
        reduce_concat=tuple(range(2 + steps - multiplier, steps + 2)),
    )


def random_genotype(rng: np.random.Generator, steps: int = DEFAULT_STEPS,
                    multiplier: int = 4, primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """A uniformly sampled cell pair (the random baseline of a search).

    Every intermediate node takes 2 distinct inputs among its predecessors,
    each with an op drawn uniformly from ``primitives`` without 'none',
    the same shape of cell the derivation produces.
    """
    ops = [p for p in primitives if p != "none"]

    def cell():
        gene = []
        for i in range(steps):
            for j in sorted(rng.choice(2 + i, size=2, replace=False)):
                gene.append((ops[int(rng.integers(len(ops)))], int(j)))
        return tuple(gene)

    concat = tuple(range(2 + steps - multiplier, steps + 2))
    return Genotype(normal=cell(), normal_concat=concat, reduce=cell(), reduce_concat=concat)


def _edge_rows(gene, steps: int) -> list[int]:
    """The alpha row of each kept edge of a parsed cell (two per node, in order)."""
    rows, start = [], 0
    for i in range(steps):
        rows += [start + j for _, j in gene[2 * i:2 * i + 2]]
        start += i + 2
    return rows


def _softmax(alphas) -> np.ndarray:
    a = np.asarray(alphas, dtype=np.float64)
    a = a - a.max(axis=-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=-1, keepdims=True)


def _parse(weights: np.ndarray, steps: int, primitives: Sequence[str]) -> tuple[Edge, ...]:
    expected = (num_edges(steps), len(primitives))
    if weights.shape != expected:
        raise UserInputError(f"alphas have shape {weights.shape}, expected {expected}")
    none = primitives.index("none") if "none" in primitives else None
    allowed = [k for k in range(len(primitives)) if k != none]
    gene = []
    start = 0
    for i in range(steps):
        rows = weights[start:start + i + 2]
        strongest = sorted(range(i + 2), key=lambda j: -max(rows[j][k] for k in allowed))[:2]
        for j in strongest:
            k_best = max(allowed, key=lambda k: rows[j][k])
            gene.append((primitives[k_best], j))
        start += i + 2
    return tuple(gene)


def _published(normal, reduce) -> Genotype:
    return Genotype(normal, (2, 3, 4, 5), reduce, (2, 3, 4, 5))


#: DARTS (first order), from the reference ``genotypes.py``.
DARTS_V1 = _published(
    [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
     ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
     ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
)

#: DARTS (second order), from the reference ``genotypes.py``.
DARTS_V2 = _published(
    [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
     ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
     ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
)

PUBLISHED = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2, "DARTS": DARTS_V2}


def load_genotype(spec: str) -> Genotype:
    """A published name (DARTS_V1, DARTS_V2), a JSON/text file path, or inline text."""
    return load_spec(spec, PUBLISHED, Genotype.from_string, ("{", "Genotype("))


def _is_file(spec: str) -> bool:
    """Whether ``spec`` names a file on any TensorFlow filesystem (local ones without it)."""
    from autonet_tf.io import run_dir

    return run_dir.exists(spec) and not run_dir.isdir(spec)


def load_spec(spec: str, published: dict, parse, inline_prefixes: tuple[str, ...]):
    """A published name, a file holding genotype text, or inline genotype text.

    Local files are read without TensorFlow (the programs check --genotype
    before it starts).
    """
    if spec in published:
        return published[spec]
    if _is_file(spec):
        from autonet_tf.io import run_dir

        try:
            text = run_dir.read_text(spec)
        except (OSError, UnicodeDecodeError) as e:
            raise UserInputError(f"--genotype: cannot read {spec!r}: {e}") from None
        try:
            return parse(text)
        except UserInputError as e:
            raise UserInputError(f"{spec}: {e}") from None
    stripped = spec.strip()
    if stripped.startswith(inline_prefixes):
        return parse(stripped)
    raise UserInputError(
        f"--genotype: {spec!r} is neither a file, a published name "
        f"({', '.join(sorted(published))}) nor genotype JSON")
