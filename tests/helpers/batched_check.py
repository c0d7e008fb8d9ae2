"""The batched Monte Carlo interpreter against the module, one initialisation at a time."""

from __future__ import annotations

import torch
from torch import nn

from pathstats.verify.batched import BatchedInitialisations


def assert_batched_equals_module(model: nn.Module, shape: tuple, runs: int = 3, seed: int = 1) -> None:
    """Draw ``runs`` weight sets and inputs (seeded), run them as one batch, and
    compare each with the module carrying those weights (biases as the module has them)."""
    gen = torch.Generator().manual_seed(seed)
    weights = {name: torch.randn((runs,) + m.weight.shape, generator=gen) for name, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))}
    inputs = torch.randn((runs,) + tuple(shape), generator=gen)
    batched = BatchedInitialisations(model).run_batch(weights, inputs)
    for b in range(runs):
        with torch.no_grad():
            for name, value in weights.items():
                model.get_submodule(name).weight.copy_(value[b])
            expected = model(inputs[b : b + 1])[0]
        # float32 rounding of sums of many terms: absolute error relative to the logits' scale
        torch.testing.assert_close(batched[b], expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))
