"""The layer engine equals the generic engine on the expanded neuron-level DAG."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings

from pathstats import path_counts, path_sums, symmetry_classes, weighted_path_sums
from pathstats.layer_engine.algebra import ExactAlgebra
from pathstats.layer_engine.expand import expand
from pathstats.layer_engine import backward_map, fingerprint_maps, path_count_map
from pathstats.layer_engine.trace import read_model
from tests.helpers.model_strategies import small_nets
from pathstats.nets.base import spatial_after
import torch
from torch import nn

from pathstats.errors import UnsupportedLayerError


def _theory_factor(G):
    degree = dict(G.in_degree())
    return lambda v: Fraction(1, degree[v] ** 2) if G.nodes[v]["category"] == "avgpool" else Fraction(1, degree[v])


def _as_list(array):
    return np.asarray(array).ravel().tolist()


@settings(max_examples=60)
@given(small_nets())
def test_layer_engine_equals_the_generic_engine_on_random_stacks(net):
    _check_against_generic_engine(*net)


@settings(max_examples=60)
@given(small_nets(conv_only=True))
def test_layer_engine_equals_the_generic_engine_on_random_conv_stacks(net):
    _check_against_generic_engine(*net)


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
@pytest.mark.parametrize("stride, dilation, groups, padding", [(1, 1, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2), (3, 2, 1, 2), (2, 1, 2, 0)])
def test_every_conv_option_equals_the_generic_engine(mode, stride, dilation, groups, padding):
    model = nn.Sequential(nn.Conv2d(2, 4, 3, stride, padding, dilation, groups, bias=False, padding_mode=mode),
                          nn.ReLU(), nn.Identity(), nn.Flatten())
    shape = (2, 7, 6)
    out = math.prod(spatial_after(model, shape))
    _check_against_generic_engine(nn.Sequential(model, nn.Linear(out, 3)).eval(), shape)


def test_conv1d_and_same_padding_equal_the_generic_engine():
    model = nn.Sequential(nn.Conv1d(2, 3, 4, padding="same", padding_mode="reflect", bias=False), nn.ReLU(),
                          nn.Conv1d(3, 3, 3, stride=2, padding=1, padding_mode="circular", bias=False),
                          nn.Flatten(), nn.Linear(3 * 4, 2))
    _check_against_generic_engine(model.eval(), (2, 8))


def _check_against_generic_engine(model, shape):
    graph = read_model(model, shape, init="weights")
    G, o, inputs, output_gain = expand(graph)
    # in-degrees of the rules are the DAG's own
    for name, rule in graph.rules.items():
        if rule is not None and rule.kind == "node":
            expected = np.broadcast_to(rule.in_degree(), rule.out_shape).ravel()
            assert [G.in_degree((name, j)) for j in range(expected.size)] == expected.tolist()
    exact = path_sums(G, o)
    assert _as_list(backward_map(graph, "path_sum", ExactAlgebra())) == [exact[x] for x in inputs]
    counts = path_counts(G, o)
    assert _as_list(path_count_map(graph)) == [counts[x] for x in inputs]
    model_generic = weighted_path_sums(G, o, "model_factor", "gain", one=1.0)
    model_layer = backward_map(graph, "model").ravel()
    np.testing.assert_allclose(model_layer, [output_gain * model_generic[x] for x in inputs], rtol=1e-12, atol=0)
    fingerprints = fingerprint_maps(graph).reshape(4, -1)
    by_fingerprint: dict = {}
    for i, x in enumerate(inputs):
        by_fingerprint.setdefault(tuple(fingerprints[:, i]), []).append(x)
    assert sorted(map(sorted, symmetry_classes(G, o))) == sorted(map(sorted, by_fingerprint.values()))


@settings(max_examples=40)
@given(small_nets(theory=True))
def test_theory_mode_equals_the_generic_engine_in_exact_rationals(net):
    model, shape = net
    graph = read_model(model, shape)
    G, o, inputs, _ = expand(graph)
    generic = weighted_path_sums(G, o, _theory_factor(G), one=Fraction(1))
    assert _as_list(backward_map(graph, "theory", ExactAlgebra())) == [generic[x] for x in inputs]


@settings(max_examples=40)
@given(small_nets())
def test_lemma7_total_is_one_on_every_random_net(net):
    model, shape = net
    assert sum(_as_list(backward_map(read_model(model, shape), "path_sum", ExactAlgebra()))) == 1


def test_one_interpreter_walks_every_pass():
    """The graph's two walks: forward in topological order, backward summing over consumers."""
    from torch import nn

    from pathstats.layer_engine.trace import read_model

    class Fork(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.out(self.a(x) + self.b(x))

    graph = read_model(Fork(), (3,), init="he")
    order = graph.forward("x", lambda name, rule, operands: "(" + "+".join(operands) + f")>{name}")
    assert order[graph.output_name].count(graph.input_name) == 2  # both branches read the input
    visits = []

    def step(name, rule, state):
        visits.append(name)
        return [state] * len(rule.operands)

    assert graph.backward(1, step, lambda a, b: a + b) == 2  # two paths from the logits to the input
    assert visits == [n for n in reversed(list(graph.rules)) if graph.rules[n] is not None]


class _Concat(nn.Module):
    """Inception-like branches and a DenseNet-like reuse of the input, joined by torch.cat on channels."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 3, 1, bias=False), nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect", bias=False)
        self.mix = nn.Conv2d(7, 2, 3, stride=2, padding=1, bias=False)
        self.head = nn.Linear(2 * 3 * 3, 3)

    def forward(self, x):
        h = torch.cat([self.a(x), torch.relu(self.b(x)), x], dim=1)
        return self.head(torch.relu(self.mix(h)).flatten(1))


def test_channel_concatenation_equals_the_generic_engine():
    """A concatenation is a relabelling: path sums, counts, model weights and (S) as on the expanded DAG."""
    _check_against_generic_engine(_Concat().eval(), (2, 5, 5))
    graph = read_model(_Concat().eval(), (2, 5, 5))
    G, o, inputs, _ = expand(graph)
    generic = weighted_path_sums(G, o, _theory_factor(G), one=Fraction(1))
    assert _as_list(backward_map(graph, "theory", ExactAlgebra())) == [generic[x] for x in inputs]


def test_concatenation_along_another_axis_is_refused_in_one_line():
    class Rows(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.head = nn.Conv2d(2, 2, 1), nn.Linear(2 * 10 * 5, 3)

        def forward(self, x):
            return self.head(torch.cat([self.a(x), x], dim=2).flatten(1))

    with pytest.raises(UnsupportedLayerError, match=r"^torch.cat \(at .*channel axis \(dim=1\) only, got dim=2$"):
        read_model(Rows().eval(), (2, 5, 5))
