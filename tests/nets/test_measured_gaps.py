"""The stored measurements of model mode on the registered nets (``nets/measured_gaps.json``,
written by ``benchmarks/registered_gaps.py``) stay tied to model mode and reach the notes."""

import math

import pytest

import pathstats
from pathstats import nets

from pathstats.nets.registry import _measured_gaps

ENTRIES = _measured_gaps()


def test_only_nets_outside_the_target_keep_a_stored_measurement():
    """A net whose model mode is within 3% or 4 standard errors of the Monte Carlo needs no fallback
    (benchmarks/registered_gaps.py --write-measured retires it); the others keep theirs."""
    assert set(ENTRIES) <= set(nets.ARCHITECTURES)
    for entry in ENTRIES.values():
        assert abs(entry["measured"] / entry["predicted"] - 1) > 0.03 and abs(entry["z"]) > 4, entry["arch"]


@pytest.mark.parametrize("arch", sorted(ENTRIES))
def test_stored_prediction_is_model_modes_and_far_gaps_are_noted(arch):
    entry = ENTRIES[arch]
    shape = tuple(entry["input_shape"])
    prediction = pathstats.predict(arch, shape)
    total = float(prediction.grad_sq_map.sum())
    # a change of model mode must come with a new measurement: re-run the script
    assert math.isclose(entry["predicted"], total, rel_tol=1e-6), "re-run benchmarks/registered_gaps.py"
    assert entry["z"] == pytest.approx((entry["measured"] - entry["predicted"]) / entry["stderr"], rel=1e-9)
    assert entry["samples"] >= 300 and "provenance" in entry
    noted = [note for note in prediction.notes if "the Monte Carlo measured" in note]
    assert len(noted) == (1 if abs(entry["z"]) > 4 else 0)
    if noted:
        assert f"z = {entry['z']:+.1f}" in noted[0]


def test_no_measured_note_for_other_shapes_inits_or_modes():
    for prediction in (pathstats.predict("conv6-avgpool", (3, 16, 16)),
                       pathstats.predict("conv6-avgpool", (3, 32, 32), init="he"),
                       pathstats.predict("conv6-avgpool", (3, 32, 32), mode="theory")):
        assert not [note for note in prediction.notes if "the Monte Carlo measured" in note]
