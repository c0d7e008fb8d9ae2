"""``pathstats experiment NAME --plan``: projections from a fake measurement, and the real one on a tiny grid."""

import json

import pytest

from pathstats.robust.experiments import catalogue
from pathstats.robust.experiments.planning import format_plan, measure_run_type, plan_grid, run_type


def _fake(calls):
    def measure(config, input_shape, classes, native_side, device):
        calls.append(run_type({"arch": config.arch, "size": config.size, "method": config.method,
                               "channels": config.channels}))
        return {"step_s": 0.5, "eval_image_s": 0.01}
    return measure


def test_plan_projects_every_run_from_one_measurement_per_run_type():
    calls = []
    plan = plan_grid("fig2", scale="quick", measure=_fake(calls), jobs=2)
    grid = catalogue.get("fig2").grid("quick")
    assert len(plan["runs"]) == grid.n_runs
    assert len(calls) == len(set(calls)) == len(plan["run_types"])  # each distinct type measured once
    assert sum(t["runs"] for t in plan["run_types"]) == grid.n_runs
    for run in plan["runs"]:
        expected = (run["epochs"] * run["steps_per_epoch"] * 0.5
                    + run["evaluated_epochs"] * run["images_per_evaluation"] * 0.01) / 3600
        assert run["hours"] == pytest.approx(expected, rel=1e-12)
    assert plan["device_hours"] == pytest.approx(sum(r["hours"] for r in plan["runs"]), rel=1e-12)
    assert plan["wall_hours"] == pytest.approx(plan["device_hours"] / 2, rel=1e-12)
    text = format_plan(plan)
    assert "device-hours" in text and plan["device"] in text and plan["runs"][0]["id"] in text
    json.dumps(plan)


def test_measurement_runs_on_a_real_tiny_run_type():
    import torch

    from pathstats.robust.train import TrainConfig

    config = TrainConfig("fc", batch=4, eval_steps=1).resolved()
    m = measure_run_type(config, (1, 8, 8), 10, 8, torch.device("cpu"), steps=1)
    assert m["step_s"] > 0 and m["eval_image_s"] > 0 and m["measured_batch"] == 4


def test_plan_flag_prints_json(capsys, monkeypatch):
    from pathstats.robust.experiments import planning as plan_module
    from pathstats.cli import main

    monkeypatch.setattr(plan_module, "measure_run_type", lambda *a, **k: {"step_s": 1.0, "eval_image_s": 0.1})
    assert main(["experiment", "fig1", "--scale", "quick", "--plan", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["experiment"] == "fig1" and len(out["runs"]) == catalogue.get("fig1").grid("quick").n_runs


def test_measurement_stops_at_its_budget():
    import torch

    from pathstats.robust.train import TrainConfig

    config = TrainConfig("fc", batch=4, eval_steps=1).resolved()
    # a warm-up past the budget is the measurement: no timed step
    assert measure_run_type(config, (1, 8, 8), 10, 8, torch.device("cpu"), steps=3, budget_s=0.0)["timed_steps"] == 0
    # within the budget every requested step is timed
    assert measure_run_type(config, (1, 8, 8), 10, 8, torch.device("cpu"), steps=3, budget_s=1e9)["timed_steps"] == 3


def test_large_inputs_are_measured_on_fewer_images_on_cpu():
    import torch

    from pathstats.robust.experiments.planning import CPU_MEASURE_BATCH, CPU_MEASURE_VALUES
    from pathstats.robust.train import TrainConfig

    config = TrainConfig("fc", batch=64, eval_steps=1).resolved()
    small = measure_run_type(config, (1, 8, 8), 10, 8, torch.device("cpu"), steps=1)
    large = measure_run_type(config, (1, 128, 128), 10, 8, torch.device("cpu"), steps=1)
    assert small["measured_batch"] == CPU_MEASURE_BATCH
    assert large["measured_batch"] == max(2, CPU_MEASURE_VALUES // (128 * 128)) < CPU_MEASURE_BATCH
