"""A max pool right after a max pool is one max pool over the union of its windows (conv8's global max pooling).

The maxima of disjoint windows are independent given the common factor of the
units below, so model mode must predict the same for ``max(2x2) -> global max``
as for one global max over the same units; taking them as independent (their
correlation is not that of the units below) predicted conv8 34% above its Monte
Carlo.
"""

from __future__ import annotations

import pytest
from torch import nn

from pathstats import predict


def _net(inner_pool: bool, padding_mode: str) -> nn.Module:
    layers = [nn.Conv2d(3, 8, 3, padding=1, padding_mode=padding_mode, bias=False), nn.ReLU()]
    for _ in range(3):  # deep enough that the units of a channel are strongly correlated (rho about 0.9)
        layers += [nn.Conv2d(8, 8, 3, padding=1, padding_mode=padding_mode, bias=False), nn.ReLU()]
    layers += ([nn.MaxPool2d(2)] if inner_pool else []) + [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 4, bias=False)]
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("padding_mode", ["circular", "reflect"])
def test_max_of_maxima_is_the_max_over_the_union(padding_mode):
    two = predict(_net(True, padding_mode), (3, 8, 8), init="he")
    one = predict(_net(False, padding_mode), (3, 8, 8), init="he")
    # the same function of the input; the two routes differ only by the grid of the inner maximum's law
    assert float(two.grad_sq_map.sum()) == pytest.approx(float(one.grad_sq_map.sum()), rel=1e-3)
    assert not [n for n in two.notes if "taken as independent (their correlation" in n]
