"""Channel concatenation (Inception branches, DenseNet reuse) in model mode, against the Monte Carlo.

Without pooling the paths through a concatenation are independent and model mode agrees
with the Monte Carlo.  Under global average pooling the covariance between positions
meets two limits, both named in the prediction's notes: a gate right after the
concatenation reads channels with different laws, and drops the covariance there; and
the deeper-layer mechanism of pooled ReLU nets (``docs/theory/assumptions.rst``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pathstats import predict
from pathstats.verify.compare import compare
from pathstats.verify.montecarlo import run_monte_carlo

K_SE = 4.0


class Inception(nn.Module):
    def __init__(self, pool: bool = False, act=nn.ReLU):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 4, 5, padding=2)
        self.act, self.pool = act(), pool
        self.mix = nn.Conv2d(20, 8, 3, padding=1)
        self.head = nn.Linear(8 if pool else 8 * 36, 10)

    def forward(self, x):
        h = self.act(torch.cat([self.a(x), self.b(x), self.c(x)], dim=1))
        h = self.act(self.mix(h))
        return self.head(h.mean((2, 3)) if self.pool else h.flatten(1))


class Dense(nn.Module):
    def __init__(self, pool: bool = False):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(19, 8, 3, padding=1)
        self.pool = pool
        self.head = nn.Linear(8 if pool else 8 * 36, 10)

    def forward(self, x):
        h1 = torch.relu(self.c1(x))
        h = torch.cat([x, h1, torch.relu(self.c2(h1))], 1)
        h = torch.relu(self.c3(h))
        return self.head(h.mean((2, 3)) if self.pool else h.flatten(1))


def _total(model, samples=1500):
    torch.manual_seed(0)
    result = run_monte_carlo(model.eval(), (3, 6, 6), samples, init="he", seed=4, batch=500, loss=False)
    prediction = predict(model.eval(), (3, 6, 6), init="he")
    return compare(result, prediction)["grad_sq_total"], prediction


@pytest.mark.parametrize("build", [Inception, lambda: Inception(act=nn.GELU), Dense], ids=["inception", "inception-gelu", "dense"])
def test_concatenated_branches_within_4_standard_errors(build):
    total, _ = _total(build())
    assert abs(total["z"]) < K_SE, total


def test_pooled_concatenation_is_a_recorded_gap_and_noted():
    """Inception block under global pooling: measured +15.4% +- 1.1% (3x6x6, 20 channels, N = 3000; Dense +15.8%),
    the covariance dropped at the gate after the concatenation and the deeper-layer mechanism together."""
    total, prediction = _total(Inception(pool=True), samples=3000)
    assert total["z"] > K_SE and 0.05 < total["relative_error"] < 0.3, total
    assert any("after a concatenation" in note for note in prediction.notes)


def test_a_concatenation_too_large_for_memory_is_refused_in_one_line(monkeypatch):
    # its laws are dense per channel, position and grid value: past the free memory it must stop, not be killed
    from pathstats import resources
    from pathstats.errors import ResourceError

    monkeypatch.setattr(resources, "free_memory", lambda device="cpu", **kw: (10_000, "MemAvailable"))
    with pytest.raises(ResourceError, match=r"concatenation need about .* channels x 36 positions x \d+ values\), more "
                                            r"than 80% of the .* free \(MemAvailable\); use mode='theory'"):
        predict(Inception(), (3, 6, 6), mode="model", init="he")
    assert predict(Inception(), (3, 6, 6), mode="theory").grad_sq_map.size == 3 * 36
