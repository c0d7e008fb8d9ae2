"""Tier 1, exact: the DP against brute-force enumeration and closed forms."""

from __future__ import annotations

import math
from fractions import Fraction

import networkx as nx
import pytest
from hypothesis import given

from pathstats import analyze_dag, lemma7_total, path_counts, path_sums, weighted_path_sums
from pathstats.dag.enumeration import brute_force
from pathstats.dag.generators import EXAMPLES, conv1d_dag, fully_connected_dag
from tests.helpers.strategies import layered_dags


@given(layered_dags())
def test_sums_and_counts_equal_enumeration(graph):
    G, o = graph
    oracle = brute_force(G, o)
    sums, counts = path_sums(G, o), path_counts(G, o)
    assert list(sums) == list(oracle)
    for x, (total, count, _) in oracle.items():
        assert sums[x] == total and type(sums[x]) is Fraction
        assert counts[x] == count and type(counts[x]) is int


@given(layered_dags(max_layers=5, max_width=4))
def test_float_sums_round_the_exact_ones(graph):
    G, o = graph
    exact, approx = path_sums(G, o), path_sums(G, o, exact=False)
    for x in exact:
        assert math.isclose(approx[x], float(exact[x]), rel_tol=1e-12, abs_tol=0.0)


def _edge_path_products(G, x, o, node_factor, edge_factor):
    """Independent oracle: networkx's own edge-path enumeration."""
    if x == o:
        return Fraction(1)
    total = Fraction(0)
    for path in nx.all_simple_edge_paths(G, x, o):
        term = Fraction(1)
        for u, v, key in path:
            term *= edge_factor[(u, v, key)] * node_factor[v]
        total += term
    return total


@given(layered_dags())
def test_weighted_sums_equal_edge_path_enumeration(graph):
    G, o = graph
    node_factor = {v: Fraction(1 + hash(v) % 5, 3) for v in G}
    edge_factor = {(u, v, k): Fraction(2 + k, 1 + len(str(u))) for u, v, k in G.edges(keys=True)}
    nx.set_edge_attributes(G, edge_factor, "var")
    got = weighted_path_sums(G, o, node_factor=node_factor, edge_factor="var", one=Fraction(1))
    for x, value in got.items():
        assert value == _edge_path_products(G, x, o, node_factor, edge_factor)


def test_weighted_sums_reduce_to_path_sums_and_counts():
    G, o = conv1d_dag(9, [dict(kernel=3, padding=1), dict(kernel=2, stride=2)], padding_mode="reflect")
    degree = dict(G.in_degree())
    assert weighted_path_sums(G, o, lambda v: Fraction(1, degree[v]), one=Fraction(1)) == path_sums(G, o)
    assert weighted_path_sums(G, o) == path_counts(G, o)


@pytest.mark.parametrize("widths", [[1], [5], [3, 2], [4, 3, 5], [2, 7, 1, 3]])
@pytest.mark.parametrize("multiplicity", [1, 2])
def test_fully_connected_closed_form(widths, multiplicity):
    """Theorem 4's net: S(x) = 1/d and |P(x, o)| = m^L prod_{k>=1} h_k exactly."""
    G, o = fully_connected_dag(widths, multiplicity)
    n_layers = len(widths) - 1
    expected_count = multiplicity**n_layers * math.prod(widths[1:])
    sums, counts = path_sums(G, o), path_counts(G, o)
    assert set(sums.values()) == {Fraction(1, widths[0])}
    assert set(counts.values()) == {expected_count}


def test_counts_beyond_64_bits_are_exact():
    G, o = fully_connected_dag([2] + [3] * 45)
    count = path_counts(G, o)[(0, 0, 0)]
    assert count == 3**45 > 2**64


def test_zero_padding_drops_border_edges():
    """One conv, kernel 3, zero padding 1, 4 inputs: the output o has in-degree 4,
    conv nodes at the border in-degree 2, inside 3."""
    G, o = conv1d_dag(4, [dict(kernel=3, padding=1)], padding_mode="zeros")
    s = path_sums(G, o)
    expected = [Fraction(1, 4) * (Fraction(1, 2) + Fraction(1, 3)), Fraction(1, 4) * (Fraction(1, 2) + 2 * Fraction(1, 3))]
    assert [s[(0, 0, i)] for i in range(4)] == [expected[0], expected[1], expected[1], expected[0]]


def test_inputs_that_cannot_reach_the_output_get_zero():
    G = nx.DiGraph([("a", "o"), ("b", "h")])
    assert path_sums(G, "o") == {"a": Fraction(1), "b": Fraction(0)}
    assert path_counts(G, "o") == {"a": 1, "b": 0}


def test_output_that_is_a_source_is_its_own_only_input():
    G = nx.DiGraph([("a", "b")])
    G.add_node("o")
    assert path_sums(G, "o") == {"a": 0, "o": 1}
    assert lemma7_total(G, "o") == 1


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_match_enumeration(name):
    G, o = EXAMPLES[name][1]()
    report, oracle = analyze_dag(G, o), brute_force(G, o)
    assert report.lemma7_total == 1
    for item in report.inputs:
        assert (item.path_sum, item.path_count, item.path_degrees) == oracle[item.node]
