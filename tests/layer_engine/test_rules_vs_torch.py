"""Each rule's DAG fragment is torch's own: Jacobians of layers with unit weights."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from pathstats.layer_engine.trace import read_model


def _jacobian(layer: nn.Module, shape: tuple) -> np.ndarray:
    x = torch.randn((1,) + shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: layer(t).flatten(), x)
    return jac.reshape(jac.shape[0], -1).numpy()


def _rule(layer: nn.Module, shape: tuple):
    graph = read_model(nn.Sequential(copy.deepcopy(layer).float(), nn.Flatten()), shape)
    return next(r for r in graph.rules.values() if r is not None and r.kind == "node")


def _weighted_edges(rule, weight) -> np.ndarray:
    """Dense matrix out x in of the rule's edges, each edge weighted by ``weight(out_index)``."""
    matrix = np.zeros((int(np.prod(rule.out_shape)), int(np.prod(rule.in_shapes[0]))))
    for _, i, j, multiplicity in rule.edges():
        matrix[j, i] += multiplicity * weight(j)
    return matrix


CONV_CASES = list(itertools.product(["zeros", "circular", "reflect", "replicate"], [1, 2], [1, 2], [0, 1, 2], [1, 2]))


@pytest.mark.parametrize("mode, stride, dilation, padding, groups", CONV_CASES)
def test_conv_edges_are_the_jacobian_of_a_unit_weight_conv(mode, stride, dilation, padding, groups):
    layer = nn.Conv2d(2, 2, 3, stride, padding, dilation, groups, bias=False, padding_mode=mode).double()
    nn.init.ones_(layer.weight)
    shape = (2, 7, 5)
    rule = _rule(layer, shape)
    np.testing.assert_array_equal(_weighted_edges(rule, lambda j: 1.0), _jacobian(layer, shape))


@pytest.mark.parametrize("kernel, stride, padding, ceil_mode, include_pad", [(2, 2, 0, False, True), (3, 2, 1, True, True), (3, 1, 1, False, False), (2, 3, 1, True, False)])
def test_avgpool_edges_over_divisor_are_the_jacobian(kernel, stride, padding, ceil_mode, include_pad):
    layer = nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=include_pad)
    shape = (1, 7, 6)
    rule = _rule(layer, shape)
    divisor = np.broadcast_to(rule.divisor, rule.out_shape[1:]).ravel()
    np.testing.assert_allclose(_weighted_edges(rule, lambda j: 1.0 / divisor[j]), _jacobian(layer, shape), rtol=1e-12)


@pytest.mark.parametrize("layer", [nn.AdaptiveAvgPool2d((3, 4)), nn.AdaptiveAvgPool2d(1)])
def test_adaptive_avgpool_edges_are_the_jacobian(layer):
    shape = (1, 7, 6)
    rule = _rule(layer, shape)
    divisor = np.broadcast_to(rule.divisor, rule.out_shape[1:]).ravel()
    np.testing.assert_allclose(_weighted_edges(rule, lambda j: 1.0 / divisor[j]), _jacobian(layer, shape), rtol=1e-12)


@pytest.mark.parametrize("layer", [nn.Upsample(scale_factor=2), nn.Upsample(size=(7, 9)), nn.UpsamplingNearest2d(scale_factor=3)])
def test_upsample_edges_are_the_jacobian(layer):
    shape = (2, 3, 4)
    rule = _rule(layer, shape)
    np.testing.assert_array_equal(_weighted_edges(rule, lambda j: 1.0), _jacobian(layer, shape))


@pytest.mark.parametrize("kernel, stride, padding, ceil_mode", [(2, 2, 0, False), (3, 2, 1, True), (3, 1, 1, False)])
def test_maxpool_edges_are_its_windows(kernel, stride, padding, ceil_mode):
    """The arg-max picks one edge per window: each Jacobian row's support lies in the rule's window."""
    layer = nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
    shape = (1, 7, 6)
    rule = _rule(layer, shape)
    windows = _weighted_edges(rule, lambda j: 1.0) > 0
    jac = _jacobian(layer, shape)
    assert ((jac != 0) <= windows).all() and (jac.sum(axis=1) == 1).all()
