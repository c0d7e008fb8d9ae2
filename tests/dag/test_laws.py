"""Tier 2, laws: Lemma 7, Lemma 8, composition and relabelling on random DAGs."""

from __future__ import annotations

import random
from fractions import Fraction

import networkx as nx
from hypothesis import given
from hypothesis import strategies as st

from pathstats import analyze_dag, is_symmetric, lemma7_total, path_counts, path_sums, symmetry_classes
from pathstats.dag.enumeration import brute_force
from pathstats.dag.generators import conv1d_dag
from tests.helpers.strategies import layered_dags, symmetric_dags


@given(layered_dags(max_layers=5, max_width=4, max_fan_in=4))
def test_lemma7_total_is_exactly_one(graph):
    G, o = graph
    assert lemma7_total(G, o) == 1


@given(symmetric_dags())
def test_lemma8_symmetric_dags_have_path_sum_one_over_d(graph):
    G, o = graph
    sums = path_sums(G, o)
    assert is_symmetric(G, o)
    assert set(sums.values()) == {Fraction(1, len(sums))}


@given(layered_dags())
def test_symmetry_classes_agree_with_enumerated_multisets(graph):
    G, o = graph
    oracle = brute_force(G, o)
    by_multiset: dict = {}
    for x, (_, _, degrees) in oracle.items():
        by_multiset.setdefault(frozenset(degrees.items()), []).append(x)
    assert symmetry_classes(G, o) == list(by_multiset.values())
    assert is_symmetric(G, o) == (len(by_multiset) == 1)


@given(layered_dags())
def test_inputs_in_one_class_share_their_path_sum(graph):
    G, o = graph
    sums = path_sums(G, o)
    for members in symmetry_classes(G, o):
        assert len({sums[x] for x in members}) == 1


def _shuffled_relabelling(G, seed):
    rng = random.Random(seed)
    nodes = list(G)
    labels = [f"n{i}" for i in range(len(nodes))]
    rng.shuffle(labels)
    mapping = dict(zip(nodes, labels))
    edges = [(mapping[u], mapping[v]) for u, v in G.edges()]
    rng.shuffle(edges)
    H = nx.MultiDiGraph()
    H.add_nodes_from(rng.sample(labels, len(labels)))
    H.add_edges_from(edges)
    return H, mapping


@given(layered_dags(), st.integers(0, 2**32 - 1))
def test_results_do_not_depend_on_labels_or_insertion_order(graph, seed):
    G, o = graph
    H, mapping = _shuffled_relabelling(G, seed)
    before, after = analyze_dag(G, o), analyze_dag(H, mapping[o])
    after_by_node = {item.node: item for item in after.inputs}
    assert len(after.inputs) == len(before.inputs)
    for item in before.inputs:
        moved = after_by_node[mapping[item.node]]
        assert (moved.path_sum, moved.path_count, moved.path_degrees) == (item.path_sum, item.path_count, item.path_degrees)
    assert {frozenset(mapping[x] for x in c) for c in before.symmetry_classes} == {frozenset(c) for c in after.symmetry_classes}


@given(layered_dags(), layered_dags(), st.data())
def test_composition_multiplies_path_sums_and_counts(first, second, data):
    """Gluing G1's output onto an input y of G2: S_H(x) = S_G1(x) * S_G2(y)."""
    G1, o1 = first
    G2, o2 = second
    sources = [v for v in G2 if G2.in_degree(v) == 0 and v != o2]
    y = data.draw(st.sampled_from(sources))
    glue = {v: ("second", v) for v in G2}
    glue[y] = ("first", o1)
    H = nx.MultiDiGraph()
    H.add_edges_from((("first", u), ("first", v)) for u, v in G1.edges())
    H.add_nodes_from(("first", v) for v in G1)
    H.add_nodes_from(glue.values())
    H.add_edges_from((glue[u], glue[v]) for u, v in G2.edges())
    s1, s2, sh = path_sums(G1, o1), path_sums(G2, o2), path_sums(H, ("second", o2))
    n1, n2, nh = path_counts(G1, o1), path_counts(G2, o2), path_counts(H, ("second", o2))
    for x in s1:
        assert sh[("first", x)] == s1[x] * s2[y]
        assert nh[("first", x)] == n1[x] * n2[y]


def test_stride_two_kernel_three_breaks_symmetry_whatever_the_padding():
    for mode in ("zeros", "circular", "reflect", "replicate"):
        G, o = conv1d_dag(8, [dict(kernel=3, stride=2, padding=1)], padding_mode=mode)
        assert not is_symmetric(G, o), mode
    # the windows tile the circle, but kernel 5 is no multiple of stride 3
    G, o = conv1d_dag(12, [dict(kernel=5, stride=3, padding=1)], padding_mode="circular")
    assert not is_symmetric(G, o)


def test_circular_padding_with_kernel_a_multiple_of_stride_is_symmetric():
    """Lemma 8 holds when the windows tile the circle: stride divides the length
    and the padding on both sides adds up to kernel - stride."""
    for kernel, stride in [(2, 2), (4, 2), (3, 3), (3, 1), (5, 1), (6, 2)]:
        padding = (kernel - stride) // 2
        G, o = conv1d_dag(12, [dict(kernel=kernel, stride=stride, padding=padding, channels=2)], in_channels=3, padding_mode="circular")
        sums = path_sums(G, o)
        assert is_symmetric(G, o), (kernel, stride)
        assert set(sums.values()) == {Fraction(1, 36)}
