"""Pictures of genotype cells with pydot/graphviz (the reference ``visualize.py`` layout).

CNN cells: inputs ``c_{k-2}`` and ``c_{k-1}``, intermediate nodes ``0 ..
steps-1``, the output ``c_{k}``. Recurrent cells: ``x_{t}`` and ``h_{t-1}``
into node 0, nodes ``1 .. 8``, the output ``h_{t}``. Every edge is labelled
with its op. The picture format
follows the file extension (.png, .svg, .pdf). Without the graphviz ``dot``
program a ``.dot`` file is written instead and a warning is returned.
"""

from __future__ import annotations

import os
import shutil

import pydot

from autonet_tf.io.run_dir import write_bytes, write_text

FORMATS = ("png", "svg", "pdf", "dot")


def _new_graph(name: str) -> pydot.Dot:
    graph = pydot.Dot(name, graph_type="digraph", rankdir="LR")
    graph.set_node_defaults(style="filled", shape="rect", align="center", fontsize="20",
                            height="0.5", width="0.5", penwidth="2", fontname="helvetica")
    graph.set_edge_defaults(fontsize="20", fontname="helvetica")
    return graph


def cell_graph(edges, concat, name: str = "cell") -> pydot.Dot:
    """A left-to-right graph of one cell from (op, input) edges."""
    graph = _new_graph(name)
    graph.add_node(pydot.Node("c_{k-2}", fillcolor="darkseagreen2"))
    graph.add_node(pydot.Node("c_{k-1}", fillcolor="darkseagreen2"))
    steps = len(edges) // 2
    for i in range(steps):
        graph.add_node(pydot.Node(str(i), fillcolor="lightblue"))
    for position, (op, index) in enumerate(edges):
        source = {0: "c_{k-2}", 1: "c_{k-1}"}.get(index, str(index - 2))
        graph.add_edge(pydot.Edge(source, str(position // 2), label=op, fillcolor="gray"))
    graph.add_node(pydot.Node("c_{k}", fillcolor="palegoldenrod"))
    for index in concat:
        source = {0: "c_{k-2}", 1: "c_{k-1}"}.get(index, str(index - 2))
        graph.add_edge(pydot.Edge(source, "c_{k}", fillcolor="gray"))
    return graph


def recurrent_graph(edges, concat, name: str = "recurrent") -> pydot.Dot:
    """The recurrent cell (reference ``rnn/visualize.py``): x_{t}, h_{t-1} -> 0 -> ... -> h_{t}."""
    graph = _new_graph(name)
    graph.add_node(pydot.Node("x_{t}", fillcolor="darkseagreen2"))
    graph.add_node(pydot.Node("h_{t-1}", fillcolor="darkseagreen2"))
    graph.add_node(pydot.Node("0", fillcolor="lightblue"))
    graph.add_edge(pydot.Edge("x_{t}", "0", fillcolor="gray"))
    graph.add_edge(pydot.Edge("h_{t-1}", "0", fillcolor="gray"))
    for i in range(1, len(edges) + 1):
        graph.add_node(pydot.Node(str(i), fillcolor="lightblue"))
    for position, (op, index) in enumerate(edges):
        graph.add_edge(pydot.Edge(str(index), str(position + 1), label=op, fillcolor="gray"))
    graph.add_node(pydot.Node("h_{t}", fillcolor="palegoldenrod"))
    for index in concat:
        graph.add_edge(pydot.Edge(str(index), "h_{t}", fillcolor="gray"))
    return graph


def graphviz_available() -> bool:
    return shutil.which("dot") is not None


def save_graph(graph: pydot.Dot, path: str) -> tuple[str, str | None]:
    """Writes ``graph`` to ``path`` (format from the extension).

    Returns:
      (written path, warning or None). Without graphviz a ``.dot`` file is
      written next to the requested path.
    """
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    if fmt not in FORMATS:
        raise ValueError(f"unsupported picture format {fmt!r}; expected one of {FORMATS}")
    if fmt == "dot":
        write_text(path, graph.to_string())
        return path, None
    if not graphviz_available():
        dot_path = os.path.splitext(path)[0] + ".dot"
        write_text(dot_path, graph.to_string())
        return dot_path, ("graphviz 'dot' not found: wrote " + dot_path +
                          " instead of " + path + " (apt-get install graphviz)")
    write_bytes(path, graph.create(format=fmt))
    return path, None


def plot_genotype(genotype, prefix: str, fmt: str = "png") -> tuple[list[str], list[str]]:
    """Writes ``{prefix}_normal.{fmt}`` and ``{prefix}_reduce.{fmt}`` (CNN genotypes)
    or ``{prefix}_recurrent.{fmt}`` (recurrent genotypes).

    Returns (written paths, warnings).
    """
    written, warnings = [], []
    if hasattr(genotype, "recurrent"):
        graphs = {"recurrent": recurrent_graph(genotype.recurrent, genotype.concat)}
    else:
        graphs = {cell: cell_graph(getattr(genotype, cell), getattr(genotype, cell + "_concat"),
                                   cell) for cell in ("normal", "reduce")}
    for cell, graph in graphs.items():
        path, warning = save_graph(graph, f"{prefix}_{cell}.{fmt}")
        written.append(path)
        if warning and warning not in warnings:
            warnings.append(warning)
    return written, warnings
