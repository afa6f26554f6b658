"""Padding `jraph.GraphsTuple`s to a few fixed sizes, so that jit compiles once per size bucket.

A jitted function recompiles for every new array shape. Padding each graph (or batch of
graphs) up to the smallest bucket that holds it bounds the compiles by the number of
buckets. Padding is `jraph.pad_with_graphs`: extra nodes and edges belong to padding graphs
and only touch padding nodes, so real outputs never change; masks come from
`jraph.get_node_padding_mask` / `get_edge_padding_mask` / `get_graph_padding_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jraph
import numpy as np


def geometric_buckets(smallest: int, largest: int, count: int) -> tuple[int, ...]:
    """`count` sizes from `smallest` to `largest`, evenly spaced in log scale (rounded up, distinct)."""
    if not 1 <= smallest <= largest or count < 1:
        raise ValueError(f"geometric_buckets({smallest}, {largest}, {count}): expected 1 <= smallest <= largest "
                         "and count >= 1")
    sizes = np.ceil(np.geomspace(smallest, largest, count)).astype(np.int64)
    sizes[-1] = largest
    return tuple(int(s) for s in np.unique(sizes))


def _bucket(needed: int, buckets: Sequence[int], what: str) -> int:
    fitting = [b for b in sorted(buckets) if b >= needed]
    if not fitting:
        raise ValueError(f"pad_to_bucket: the graph needs {needed} {what}; the largest bucket holds "
                         f"{max(buckets)}. Add a larger bucket.")
    return int(fitting[0])


def pad_to_bucket(graph: jraph.GraphsTuple, node_buckets: Sequence[int], edge_buckets: Sequence[int],
                  graph_buckets: Sequence[int] | None = None) -> jraph.GraphsTuple:
    """`graph` padded to the smallest node bucket > its node count and edge bucket >= its edge count.

    graph: a GraphsTuple of NumPy arrays, one graph or a batch (n_node: int[G]).
    node_buckets, edge_buckets: allowed padded sizes. At least one padding node is always added
      (padding edges need a node to point at), hence the strict inequality for nodes.
    graph_buckets: allowed padded graph counts (> G); None pads to G + 1, which is static as long as
      every batch has the same G.
    The result has at most len(node_buckets) * len(edge_buckets) (* len(graph_buckets)) distinct
    shapes, and so causes at most that many compiles of a jitted function.
    """
    num_nodes = int(np.sum(graph.n_node))
    num_edges = int(np.sum(graph.n_edge))
    num_graphs = len(graph.n_node)
    n_graph = num_graphs + 1 if graph_buckets is None else _bucket(num_graphs + 1, graph_buckets, "graphs (with padding)")
    return jraph.pad_with_graphs(graph, n_node=_bucket(num_nodes + 1, node_buckets, "nodes (with padding)"),
                                 n_edge=_bucket(num_edges, edge_buckets, "edges"), n_graph=n_graph)


def graphs_tuple(senders, receivers, nodes, edges=None, globals_=None) -> jraph.GraphsTuple:
    """One graph as a GraphsTuple of NumPy arrays: nodes float[N, F], senders/receivers int[E]."""
    nodes = np.asarray(nodes)
    senders = np.asarray(senders, dtype=np.int32)
    return jraph.GraphsTuple(nodes=nodes, edges=None if edges is None else np.asarray(edges),
                             senders=senders, receivers=np.asarray(receivers, dtype=np.int32),
                             n_node=np.asarray([len(nodes)]), n_edge=np.asarray([len(senders)]), globals=globals_)
