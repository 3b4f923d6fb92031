import json

import numpy as np
import pytest

from autonet_tf.errors import UserInputError
from autonet_tf.search_space import genotypes
from autonet_tf.search_space.genotypes import (DARTS_V1, DARTS_V2, PRIMITIVES, Genotype,
                                               derive, load_genotype, num_edges)


def _alphas(choices, steps=4, noise=0.0, seed=0):
    """Alphas where choices[(node, input)] = op gets a large logit."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, noise, size=(num_edges(steps), len(PRIMITIVES))) if noise else np.zeros(
        (num_edges(steps), len(PRIMITIVES)))
    offset = 0
    rows = {}
    for node in range(steps):
        for j in range(node + 2):
            rows[(node, j)] = offset + j
        offset += node + 2
    for (node, j), (op, strength) in choices.items():
        a[rows[(node, j)], PRIMITIVES.index(op)] = strength
    return a


def test_derive_picks_top2_edges_and_ignores_none():
    choices = {
        (0, 0): ("sep_conv_3x3", 3.0), (0, 1): ("max_pool_3x3", 2.0),
        (1, 2): ("dil_conv_5x5", 4.0), (1, 0): ("skip_connect", 1.0),
        # 'none' dominates edge (2, 3) but must never be chosen nor count.
        (2, 3): ("none", 9.0), (2, 1): ("avg_pool_3x3", 2.5), (2, 0): ("sep_conv_5x5", 2.0),
        (3, 4): ("dil_conv_3x3", 5.0), (3, 2): ("sep_conv_3x3", 3.0),
    }
    a = _alphas(choices)
    g = derive(a, a)
    assert g.normal == (("sep_conv_3x3", 0), ("max_pool_3x3", 1),
                        ("dil_conv_5x5", 2), ("skip_connect", 0),
                        ("avg_pool_3x3", 1), ("sep_conv_5x5", 0),
                        ("dil_conv_3x3", 4), ("sep_conv_3x3", 2))
    assert g.normal_concat == (2, 3, 4, 5)
    assert g.reduce == g.normal


def test_derive_uses_softmax_weights_not_logits():
    # Edge A: logits [none=5, sep3=4] -> after softmax sep3 weight is moderate;
    # edge B: [max_pool=3] alone -> higher softmax weight than A's sep3.
    a = np.zeros((num_edges(), len(PRIMITIVES)))
    a[0, PRIMITIVES.index("none")] = 5.0
    a[0, PRIMITIVES.index("sep_conv_3x3")] = 4.0
    a[1, PRIMITIVES.index("max_pool_3x3")] = 3.0
    a[1, PRIMITIVES.index("skip_connect")] = -3.0
    g = derive(a, a, steps=4)
    # node 0 keeps both its only edges; order is by strength: edge 1 first.
    w0 = np.exp(a[0]) / np.exp(a[0]).sum()
    w1 = np.exp(a[1]) / np.exp(a[1]).sum()
    assert w1[PRIMITIVES.index("max_pool_3x3")] > w0[PRIMITIVES.index("sep_conv_3x3")]
    assert g.normal[:2] == (("max_pool_3x3", 1), ("sep_conv_3x3", 0))


def test_json_round_trip_and_reference_text():
    for g in (DARTS_V1, DARTS_V2):
        assert Genotype.from_json(g.to_json()) == g
        assert Genotype.from_string(str(g)) == g
    text = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
            "reduce_concat=range(2, 6))")
    assert Genotype.from_string(text) == DARTS_V2


def test_published_genotypes_match_the_paper():
    assert DARTS_V2.normal[7] == ("dil_conv_3x3", 2)
    assert [op for op, _ in DARTS_V1.reduce].count("max_pool_3x3") == 4
    assert DARTS_V1.reduce[7] == ("avg_pool_3x3", 0)
    assert load_genotype("DARTS_V2") is DARTS_V2
    assert load_genotype("DARTS_V1") is DARTS_V1
    for g in (DARTS_V1, DARTS_V2):
        assert len(g.normal) == len(g.reduce) == 8
        assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)


def _bad(**changes):
    data = DARTS_V2.to_dict()
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (_bad(normal=[["conv_9x9", 0]] + DARTS_V2.to_dict()["normal"][1:]), "normal[0] has unknown op 'conv_9x9'"),
    (_bad(normal=[["none", 0]] + DARTS_V2.to_dict()["normal"][1:]), "unknown op 'none'"),
    (_bad(reduce=DARTS_V2.to_dict()["reduce"][:6] + [["skip_connect", 5], ["max_pool_3x3", 1]]),
     "reduce[6] ('skip_connect', 5) feeds node 3, whose input index must be in [0, 4]"),
    (_bad(normal=DARTS_V2.to_dict()["normal"][:7]), "normal has 7 edges"),
    (_bad(normal=DARTS_V2.to_dict()["normal"][:6]), "normal has 6 edges but reduce has 8"),
    (_bad(normal_concat=[2, 2, 3]), "normal_concat has repeated values"),
    (_bad(reduce_concat=[2, 9]), "reduce_concat value 9 is out of range"),
    (_bad(normal=[["sep_conv_3x3", "0"]] + DARTS_V2.to_dict()["normal"][1:]), "normal[0] must be an [op, input_index] pair"),
    (json.dumps({"normal": []}), "missing field"),
    (_bad(extra=1), "unknown field(s) ['extra']"),
])
def test_malformed_genotypes_are_rejected_precisely(text, fragment):
    with pytest.raises(UserInputError) as e:
        Genotype.from_string(text)
    assert fragment in str(e.value)


def test_load_genotype_from_file_names_the_file(tmp_path):
    good = tmp_path / "g.json"
    good.write_text(DARTS_V1.to_json())
    assert load_genotype(str(good)) == DARTS_V1
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UserInputError, match="bad.json: genotype: invalid JSON"):
        load_genotype(str(bad))
    with pytest.raises(UserInputError, match="neither a file"):
        load_genotype(str(tmp_path / "missing.json"))


def test_genotype_is_immutable():
    with pytest.raises(Exception):
        DARTS_V2.normal = ()
    assert isinstance(hash(DARTS_V2), int)
    assert genotypes.num_edges(4) == 14


def test_max_skip_rules_out_the_weakest_skip_connections_until_the_cap_holds():
    from autonet_tf.search_space.genotypes import PRIMITIVES, derive, num_edges

    rng = np.random.default_rng(0)
    skip, sep = PRIMITIVES.index("skip_connect"), PRIMITIVES.index("sep_conv_3x3")
    normal = rng.normal(0, 0.01, (num_edges(4), len(PRIMITIVES)))
    normal[:, skip] += np.linspace(1.0, 2.0, num_edges(4))  # skips dominate every edge
    normal[:, sep] += 0.5  # the runner-up everywhere
    reduce = rng.normal(0, 0.01, (num_edges(4), len(PRIMITIVES)))
    plain = derive(normal, reduce)
    assert sum(op == "skip_connect" for op, _ in plain.normal) == 8  # collapsed
    capped = derive(normal, reduce, max_skip=2)
    kept = [(op, j) for op, j in capped.normal if op == "skip_connect"]
    assert len(kept) == 2
    # The two kept are the strongest skips: the last node's edges (largest rows).
    assert capped.normal[-2:] == plain.normal[-2:] and set(capped.normal[-2:]) == set(kept)
    assert all(op == "sep_conv_3x3" for op, _ in capped.normal[:-2])
    assert capped.reduce == plain.reduce  # the reduction cell is not capped
    assert derive(normal, reduce, max_skip=8) == plain


def test_random_genotypes_are_valid_cells_drawn_uniformly():
    import numpy as np

    from autonet_tf.search_space.genotypes import PRIMITIVES, random_genotype

    rng = np.random.default_rng(0)
    cells = [random_genotype(rng) for _ in range(200)]
    seen = set()
    for g in cells:
        for gene in (g.normal, g.reduce):
            assert len(gene) == 8
            for i in range(4):
                (op_a, a), (op_b, b) = gene[2 * i:2 * i + 2]
                assert a != b and 0 <= a < 2 + i and 0 <= b < 2 + i
                seen.update((op_a, op_b))
    assert seen == set(PRIMITIVES) - {"none"}
    assert random_genotype(np.random.default_rng(5)) == random_genotype(np.random.default_rng(5))
    assert len({g.normal for g in cells}) > 190


def test_pc_darts_edge_normalisation_picks_edges_by_op_weight_times_edge_weight():
    import numpy as np

    from autonet_tf.search_space.genotypes import PRIMITIVES, derive, edge_weights

    steps = 2  # node 0: edges 0, 1; node 1: edges 2, 3, 4
    sep, skip = PRIMITIVES.index("sep_conv_3x3"), PRIMITIVES.index("skip_connect")
    alphas = np.zeros((5, 8))
    # Op weights alone: node 1 prefers edges 2 and 3 (strong sep_conv), edge 4 is weaker.
    alphas[0, sep] = alphas[1, sep] = 1.0
    alphas[2, sep] = alphas[3, sep] = 3.0
    alphas[4, skip] = 2.0
    plain = derive(alphas, alphas, steps, 2)
    assert plain.normal[2:] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))
    # Betas that put node 1's weight on edge 4 (input 2) and on edge 2 (input 0).
    betas = np.array([0.0, 0.0, 2.0, -3.0, 3.0])
    w = edge_weights(betas, steps)
    np.testing.assert_allclose([w[:2].sum(), w[2:].sum()], [1.0, 1.0])
    np.testing.assert_allclose(w[2:], np.exp([2.0, -3.0, 3.0]) / np.exp([2.0, -3.0, 3.0]).sum())
    pc = derive(alphas, alphas, steps, 2, betas_normal=betas, betas_reduce=np.zeros(5))
    # Score of an input: its best op weight times its edge weight.
    scores = {j: (np.exp(alphas[2 + j]) / np.exp(alphas[2 + j]).sum()).max() * w[2 + j]
              for j in range(3)}
    best = sorted(scores, key=lambda j: -scores[j])[:2]
    assert [j for _, j in pc.normal[2:]] == best == [2, 0]
    assert pc.normal[2:] == (("skip_connect", 2), ("sep_conv_3x3", 0))
    assert pc.reduce == plain.reduce  # equal betas: the plain rule
