"""Papercuts a new user hit (issue 19), each fixed and kept fixed."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import networkx as nx
import torch

from pathstats.cli import main
from pathstats.cli.attack import attack_text
from pathstats.robust.vulnerability import vulnerability


def test_dag_names_the_cycle_without_output(tmp_path, capsys):
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps(nx.node_link_data(nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")]), edges="edges")))
    assert main(["dag", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("pathstats dag: error: the graph has a directed cycle ('a' -> 'b' -> 'c' -> 'a'); path sums need a DAG, "
                   "remove one edge of the cycle")
    # a cycle beside two sinks is still the error to report, not the number of sinks
    path.write_text(json.dumps(nx.node_link_data(nx.DiGraph([("x", "o1"), ("x", "o2"), ("a", "b"), ("b", "a")]), edges="edges")))
    assert main(["dag", str(path)]) == 2
    err = capsys.readouterr().err
    assert "directed cycle ('a' -> 'b' -> 'a')" in err and "sinks" not in err


def _misclassified_linear_case() -> tuple:
    """A two-class linear model that predicts class 0 for images labelled 1: DeepFool steps
    towards class 1, so it lowers the loss."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [-1.0, -1.0, 0.0, 0.0]]))
        model[1].bias.zero_()
    x = 0.5 + 0.05 * torch.rand(16, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    return model, x, torch.ones(16, dtype=torch.long)


def test_no_first_order_ratio_against_a_negative_loss_damage():
    model, x, y = _misclassified_linear_case()
    report = vulnerability(model, x, y, attack="deepfool", norm=2, eps=0.05, check=False)
    assert report["loss_damage"] < 0
    assert math.isnan(report["first_order_ratio"]) and math.isnan(report["first_order_ratio_se"])
    assert "not positive" in report["first_order_ratio_note"] and "DeepFool" in report["first_order_ratio_note"]
    report.update(steps=50, eps_inf=0.05, eps_p=0.05 * 2, model={"arch": "linear", "source": "test"},
                  data={"spec": "test", "size": None}, elapsed_s=0.0)
    line = next(line for line in attack_text(report).splitlines() if line.startswith("ratio first-order / measured"))
    assert line.split("measured", 1)[1].split()[0] == "none" and "not positive" in line


def test_sweep_tables_name_the_time_column(capsys):
    assert main(["sweep", "--arch", "fc", "--sizes", "16,32"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("input"))
    assert header.split()[-2:] == ["time", "(s)"]
    from pathstats.verify.scaling import sweep_text
    row = {"input_shape": [16], "d": 16, "elapsed_s": 1.0, **{k: {"estimate": 1.0, "stderr": 0.1, "predicted": 1.0}
                                                             for k in ("loss_grad_l1", "loss_grad_l2")}}
    text = sweep_text({"arch": "fc", "samples": 10, "device": "cpu", "rows": [row], "slopes": {}})
    assert next(line for line in text.splitlines() if line.startswith("input")).split()[-2:] == ["time", "(s)"]


def test_version_is_fast_it_loads_no_engine():
    code = ("import sys\nfrom pathstats.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit as exit_:\n"
            "    print([m for m in ('torch', 'networkx', 'numpy') if m in sys.modules], exit_.code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("pathstats ") and f"torch {torch.__version__}" in lines[0]
    assert lines[-1] == "[] 0"
    out = subprocess.run([sys.executable, "-m", "pathstats", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == lines[0] + "\n"


def test_import_pathstats_loads_the_engines_on_first_use():
    code = ("import sys, pathstats; before = 'torch' in sys.modules; p = pathstats.predict; "
            "print(before, 'torch' in sys.modules, p.__module__, sorted(set(pathstats.__all__) - set(dir(pathstats))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.split() == ["False", "True", "pathstats.prediction", "[]"]
