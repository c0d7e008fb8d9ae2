"""The claims catalogue on tables with KNOWN answers (``--reanalyse`` reads nothing else).

Synthetic ``results.csv`` / ``epochs.csv`` rows are built with laws whose verdicts are
known, analysed by :func:`analyse_tables`, and the verdicts checked: curves apart in
opposite directions do not match, equal curves with seed noise do, a sqrt(d) law holds
and a flat one fails, one common curve holds and method-specific ones fail, five
monotone points do not decide a functional relation, degenerate runs stay out, and the
report of an incomplete grid is provisional and renders.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from pathstats.robust.experiments import catalogue
from pathstats.robust.experiments.analysis import ANALYSES, analyse_records, analyse_tables
from pathstats.robust.experiments.report import write_report
from pathstats.robust.experiments.tables import read_tables, records_to_tables, write_tables

CONTEXT = {"scale": "medium", "complete": True, "last_epochs": 3}


@pytest.fixture(autouse=True)
def unsaved_figures(request, monkeypatch):
    """The figures are drawn but not rendered to files (rendering dominates the time; test_figures.py
    and the report test check real ones)."""
    if request.node.name.startswith("test_report_"):
        yield
        return
    import matplotlib.pyplot as plt

    from pathstats.robust.experiments.figures import Figure

    def save(self, base):
        plt.close(self.fig)
        return [f"{base}.png", f"{base}.pdf"]

    monkeypatch.setattr(Figure, "save", save)
    yield
FIG1_STRENGTHS = (0.01, 0.03, 0.1, 0.3)


def _row(method, eps, seed, **metrics):
    row = {"id": f"{method}-{eps:g}-{seed}-{metrics.get('d', 1024)}", "status": "done", "method": method, "eps": eps,
           "seed": seed, "size": 32, "arch": "conv6", "d": 1024, "classes": 10, "degenerate": ""}
    row.update(metrics)
    return row


def _fig1_rows(grad_law, vul_law=None, seeds=3, sd=0.02, methods=("none", "grad-l1", "fgsm", "pgd"), seed=0):
    """One row per method, strength and seed; ``grad_law(method, eps)`` the mean E||dL/dx||_1."""
    rng = np.random.default_rng(seed)
    rows = []
    for method in methods:
        for eps in ((0.0,) if method == "none" else FIG1_STRENGTHS):
            for s in range(seeds):
                g = grad_law(method, eps) * math.exp(sd * rng.standard_normal())
                v = (vul_law or (lambda m, x: 0.02 * x))(method, g) * math.exp(sd * rng.standard_normal())
                rows.append(_row(method, eps, s, test_grad_l1=g, test_grad_l2=g / 5, vulnerability=v,
                                 test_accuracy=0.9 - 0.1 * eps + 0.002 * rng.standard_normal()))
    return rows


def _claims(name, results, epochs=(), tmp_path=None, context=CONTEXT):
    out = analyse_tables(name, results, list(epochs), str(tmp_path), context)
    return {c["claim"]: c for c in out["claims"]}, out


PROP3 = "l1 gradient regularisation matches l_inf adversarial augmentation (Proposition 3): E||dL/dx||_1"


def test_curves_1_65x_apart_in_opposite_directions_do_not_match(tmp_path):
    def law(method, eps):  # fgsm 1.65x above grad-l1 at the weak strengths, 1.65x below at the strong ones
        base = 30 * math.exp(-5 * eps)
        if method == "fgsm":
            return base * (1.65 if eps < 0.05 else 1 / 1.65)
        return base

    claims, _ = _claims("fig1", _fig1_rows(law), tmp_path=tmp_path)
    c = claims[PROP3]
    assert c["verdict"] == "fails"
    assert abs(np.mean([p["value"] for p in c["per_x"]])) < 0.1  # the signed average would have called it a match


def test_equal_curves_with_seed_noise_match(tmp_path):
    claims, _ = _claims("fig1", _fig1_rows(lambda m, e: 30 * math.exp(-5 * e), sd=0.05), tmp_path=tmp_path)
    assert claims[PROP3]["verdict"] == "holds"
    assert claims[PROP3.replace("E||dL/dx||_1", "accuracy")]["verdict"] == "holds"
    assert claims["iterative (PGD) and single-step adversarial augmentation give strikingly similar curves: "
                  "E||dL/dx||_1"]["verdict"] == "holds"


def test_a_seed_effect_shared_by_all_methods_cancels_in_the_paired_match(tmp_path):
    # a seed moves every method's gradients alike (it fixes the initialisation and the data order):
    # the runs of one seed are paired, so a large seed effect does not blur the match
    effect = {0: 0.7, 1: 1.0, 2: 1.45}
    rows = _fig1_rows(lambda m, e: 30 * math.exp(-5 * e), sd=0.02)
    for r in rows:
        r["test_grad_l1"] *= effect[r["seed"]]
    claims, _ = _claims("fig1", rows, tmp_path=tmp_path)
    assert claims[PROP3]["verdict"] == "holds" and "seed-paired" in claims[PROP3]["statistic"]
    # the same runs with the seeds' labels shuffled within each method and strength are no longer paired
    for i, r in enumerate(rows):
        r["seed"] = f"{r['method']}-{i}"
    claims, _ = _claims("fig1", rows, tmp_path=tmp_path)
    assert claims[PROP3]["verdict"] == "inconclusive" and "seed-paired" not in claims[PROP3]["statistic"]


def test_one_seed_cannot_decide_a_match(tmp_path):
    claims, _ = _claims("fig1", _fig1_rows(lambda m, e: 30 * math.exp(-5 * e), seeds=1), tmp_path=tmp_path)
    assert claims[PROP3]["verdict"] == "inconclusive"


def test_vulnerability_as_one_common_curve_across_methods(tmp_path):
    grad = lambda m, e: 30 * math.exp(-8 * e)  # noqa: E731
    common = lambda m, g: 0.001 * g**0.9  # noqa: E731 - the same function of the gradient for every method
    claims, _ = _claims("fig1", _fig1_rows(grad, common), tmp_path=tmp_path)
    key = "vulnerability is a function of E||dL/dx||_1 whatever the training method"
    assert claims[key]["verdict"] == "holds"
    own = lambda m, g: 0.001 * g**0.9 * (2.5 if m == "pgd" else 1.0)  # noqa: E731 - PGD has its own curve
    claims, _ = _claims("fig1", _fig1_rows(grad, own), tmp_path=tmp_path)
    assert claims[key]["verdict"] == "fails" and claims[key]["worst_group"] == "pgd"


def _fig2_rows(exponent, strengths=(0.0, 0.001, 0.003, 0.01), seeds=3, sd=0.03, seed=0):
    """``exponent(eps)``: the log-log slope of E||dL/dx||_1 on d at that strength."""
    rng = np.random.default_rng(seed)
    rows = []
    for eps in strengths:
        for side in (32, 64, 128, 256):
            d = 3 * side * side
            for s in range(seeds):
                g = 5 * (d / 3072) ** exponent(eps) * math.exp(sd * rng.standard_normal())
                rows.append(_row("none" if eps == 0 else "pgd", eps, s, d=d, size=side, test_grad_l1=g,
                                 train_grad_l1=1.0 * math.exp(sd * rng.standard_normal()), vulnerability=0.01 * g,
                                 test_accuracy=0.9 - 5 * eps + 0.003 * rng.standard_normal()))
                rows[-1]["id"] += f"-{side}"
    return rows


def test_sqrt_d_law_holds_and_a_flat_law_fails(tmp_path):
    key = "E||dL/dx||_1 grows like sqrt(d) after usual training"
    claims, _ = _claims("fig2", _fig2_rows(lambda e: 0.5), tmp_path=tmp_path)
    assert claims[key]["verdict"] == "holds" and claims[key]["value"] == pytest.approx(0.5, abs=0.03)
    assert claims["accuracies are dimension independent"]["verdict"] == "holds"
    assert claims["on the training set the gradient norms become dimension independent"]["verdict"] == "holds"
    claims, _ = _claims("fig2", _fig2_rows(lambda e: 0.0), tmp_path=tmp_path)
    assert claims[key]["verdict"] == "fails"


def test_dampening_is_a_trend_over_all_strengths(tmp_path):
    key = "larger PGD regularisation decreases the slope of the dimension dependence"
    falling = {0.0: 0.5, 0.001: 0.35, 0.003: 0.2, 0.01: 0.05}
    claims, _ = _claims("fig2", _fig2_rows(falling.get), tmp_path=tmp_path)
    assert claims[key]["verdict"] == "holds" and len(claims[key]["per_x"]) == 4
    assert claims["with strong enough regularisation the dimension dependence eventually breaks"]["verdict"] == "holds"
    # Figure 2a: the vulnerability (here proportional to the gradient norm) loses its dimension dependence alike
    vulnerability = "larger PGD regularisation decreases the slope of the vulnerability's dimension dependence"
    assert claims[vulnerability]["verdict"] == "holds" and len(claims[vulnerability]["per_x"]) == 4
    # a vulnerability that grows with d alike at every strength is not dampened, whatever the gradient norm does
    rows, rng = _fig2_rows(falling.get), np.random.default_rng(1)
    for r in rows:
        r["vulnerability"] = 0.02 * math.log(r["d"]) - 3 * r["eps"] + 0.002 * rng.standard_normal()
    claims, _ = _claims("fig2", rows, tmp_path=tmp_path)
    assert claims[vulnerability]["verdict"] != "holds" and claims[key]["verdict"] == "holds"
    # only the two extremes differ, the middle strengths go up: a trend over all strengths does not hold
    zigzag = {0.0: 0.5, 0.001: 0.9, 0.003: 0.9, 0.01: 0.45}
    claims, _ = _claims("fig2", _fig2_rows(zigzag.get), tmp_path=tmp_path)
    assert claims[key]["verdict"] != "holds"


def test_five_monotone_networks_do_not_decide_a_functional_relation(tmp_path):
    rows = []
    for i, eps in enumerate((0.001, 0.01, 0.1, 1.0, 10.0)):
        row = _row("grad-l1", eps, 0, test_grad_l1=100.0 / (i + 1), atk_eps=0.005)
        for threshold in ("inf", "2"):
            for attack in ("fgsm", "fgm-l2", "pgd-inf", "pgd-l2", "deepfool"):
                row[f"atk_{threshold}_{attack}_vulnerability"] = 0.5 / (i + 1)
                row[f"atk_{threshold}_{attack}_radius"] = 0.005 * (32 if threshold == "2" and "l2" in attack else 1)
        rows.append(row)
    claims, _ = _claims("fig4", rows, tmp_path=tmp_path)
    c = claims["under every attack, vulnerability is a functional-like (monotone) function of E||dL/dx||_1"]
    assert c["value"] == 1.0 and c["ci_low"] < 0.5 and c["verdict"] == "inconclusive"


def test_roth_alignment_against_the_row_space_null(tmp_path):
    from pathstats import stats

    def rows(c1):
        out = []
        for s in range(4):
            r = _row("none", 0.0, s, align_K=10, align_log_sigma1=1.0, align_rowspace_share=1.0,
                     align_cos1_rowspace=c1 + 0.01 * (s - 1.5))
            r.update({f"align_cos_{k}": 0.3 / k for k in range(1, 11)})
            out.append(r)
        return out

    key = "adversarial perturbations are strongly aligned with the dominant singular vector of the Jacobian"
    claims, _ = _claims("roth", rows(0.9), tmp_path=tmp_path)
    assert claims[key]["verdict"] == "holds"
    assert claims["the alignment decreases with the rank of the singular vector"]["verdict"] == "holds"
    # exactly as aligned as a random direction in the 10-dimensional row space: no alignment shown
    claims, _ = _claims("roth", rows(stats.sphere_abs_cosine_mean(10)), tmp_path=tmp_path)
    assert claims[key]["verdict"] != "holds"


def test_degenerate_runs_are_flagged_and_kept_out(tmp_path):
    rows = _fig1_rows(lambda m, e: 30 * math.exp(-5 * e))
    chance = _row("grad-l1", 1.0, 0, test_grad_l1=1e-4, test_grad_l2=2e-5, vulnerability=1e-6, test_accuracy=0.103)
    from pathstats.robust.experiments.tables import degenerate_reason

    chance["degenerate"] = degenerate_reason(chance)  # what write_tables and read_tables put in the column
    assert chance["degenerate"].startswith("chance accuracy")
    with_chance, out = _claims("fig1", rows + [chance], tmp_path=tmp_path)
    without, _ = _claims("fig1", rows, tmp_path=tmp_path)
    assert [e["id"] for e in out["excluded"]] == [chance["id"]] and "chance" in out["rule"]
    key = "E||dL/dx||_2 is proportional to E||dL/dx||_1 (near-perfect linear relation)"
    assert with_chance[key]["n"] == without[key]["n"]


def _records():
    """Records as store.collect returns them: two methods x two strengths x two seeds, with epochs 0..4."""
    records = []
    for method in ("grad-l1", "fgsm"):
        for eps in (0.01, 0.1):
            for seed in (0, 1):
                rng = np.random.default_rng([seed, int(eps * 100), len(method)])
                metrics = []
                for epoch in range(5):
                    g = 20 * math.exp(-3 * eps) * (1 + 0.02 * rng.standard_normal()) * (1 + 0.1 * epoch)
                    metrics.append({"epoch": epoch, "test_grad_l1": g, "test_grad_l2": g / 5, "train_grad_l1": 3.0 / (1 + epoch),
                                    "vulnerability": g / 100, "test_accuracy": 0.5 + 0.1 * epoch - eps,
                                    "test_loss": 1.0 + 0.01 * epoch * rng.random(), "train_loss": 1.0 / (1 + epoch),
                                    "test_loss_damage": 0.01 * g, "test_first_order_damage": 0.008 * g})
                train = {"arch": "fc", "data": "digits", "method": method, "eps": eps, "seed": seed, "size": None,
                         "epochs": 4}
                records.append({"id": f"{method}{eps}{seed}", "dir": "x", "train": train, "status": "done", "error": None,
                                "attempts": 1, "elapsed_s": 1.5, "result": None, "metrics": metrics,
                                "run_config": {"input_shape": [1, 8, 8], "d": 64, "classes": 10},
                                "evaluations": {}})
    records.append({**records[0], "id": "broken", "status": "failed", "error": "RuntimeError: boom", "metrics": [],
                    "run_config": None})
    return records


def test_round_trip_records_tables_analysis(tmp_path):
    records = _records()
    direct = analyse_records("fig1", records, str(tmp_path / "direct"), CONTEXT)
    write_tables(str(tmp_path), records)
    results, epochs = read_tables(str(tmp_path))
    assert (results, epochs) == records_to_tables(records)
    assert len(results) == len(records) and len(epochs) == 5 * (len(records) - 1)
    assert {"method", "eps", "size", "seed", "test_grad_l1", "vulnerability", "degenerate"} <= set(results[0])
    assert {"id", "epoch", "method", "eps", "test_grad_l1"} <= set(epochs[0])
    assert results[-1]["degenerate"] == "status failed" and results[-1]["error"] == "RuntimeError: boom"
    again = analyse_tables("fig1", results, epochs, str(tmp_path / "again"), CONTEXT)
    assert json.dumps(again["claims"], sort_keys=True) == json.dumps(direct["claims"], sort_keys=True)


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_every_catalogue_entry_is_complete_on_empty_and_on_sparse_tables(tmp_path, name):
    rows = _records()
    results, epochs = records_to_tables(rows)
    for table in (results, []):
        out = analyse_tables(name, table, epochs if table else [], str(tmp_path), CONTEXT)
        assert out["claims"]
        for c in out["claims"]:
            assert {"claim", "source", "statistic", "value", "ci_low", "ci_high", "n", "expected", "verdict"} <= set(c)
            assert c["verdict"] in ("holds", "fails", "inconclusive", "untested")
            if c["verdict"] == "untested":
                assert c["why"], c["claim"]  # an untested claim says why
        json.dumps(out["claims"])  # claims.json is plain JSON


def _table_rows(text: str) -> list:
    return [line for line in text.splitlines() if line.startswith("|")]


def test_report_of_an_incomplete_grid_is_provisional_and_its_tables_render(tmp_path):
    records = _records()
    results, epochs = records_to_tables(records)
    context = {**CONTEXT, "complete": False}
    analysis = analyse_tables("fig1", results, epochs, str(tmp_path), context)
    assert all(c["provisional"] for c in analysis["claims"])
    path = tmp_path / "report.md"
    write_report(str(path), catalogue.get("fig1"), results, analysis, context)
    text = path.read_text()
    assert "PROVISIONAL" in text.split("## Tested claims")[0]
    tested = [c for c in analysis["claims"] if c["verdict"] != "untested"]
    assert text.count("(provisional)") == len(tested)
    for block in text.split("\n\n"):
        rows = _table_rows(block)
        if not rows:
            continue
        cells = [len(re.findall(r"(?<!\\)\|", row)) for row in rows]
        assert len(set(cells)) == 1, block  # every row has the header's number of cells: E||dL/dx||_1 is escaped
    assert "E\\|\\|dL/dx\\|\\|_1" in text and "Rule: a run is kept out" in text
    assert "![fig1.png](fig1.png)" in text and (tmp_path / "fig1.png").stat().st_size > 0


def test_last_epochs_count_epochs_not_evaluation_rows():
    from pathstats.robust.experiments.analysis import Tables

    run = _row("none", 0.0, 0, test_grad_l1=9.0)
    epochs = [{"id": run["id"], "epoch": e, "test_grad_l1": float(e)} for e in range(0, 11, 2)]  # every 2 epochs
    t = Tables([run], epochs, {"last_epochs": 5})
    # the last 5 epochs of a 10-epoch run are 6..10: the rows of epochs 6, 8 and 10, not the last 5 rows (2..10)
    assert list(t.tail(run, "test_grad_l1")) == [6.0, 8.0, 10.0]
    assert t.median(run, "test_grad_l1") == 8.0


def test_every_kept_claim_row_reads_by_the_one_rule():
    """The row of a tested claim shows an interval that gives its verdict by the rule the report states
    (inside the region: holds; wholly outside: fails; straddling: inconclusive); a joint claim shows the
    member that decides it."""
    import glob
    import json
    import os

    from pathstats import stats

    kept = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "experiments")
    checked = 0
    for path in sorted(glob.glob(os.path.join(kept, "*", "claims.json"))):
        with open(path) as f:
            entries = json.load(f)
        for c in entries:
            if c["verdict"] == "untested" or c.get("ci_low") is None or c.get("provisional"):
                continue
            low, high = (-math.inf if c["region"][0] is None else c["region"][0],
                         math.inf if c["region"][1] is None else c["region"][1])
            assert stats.verdict(c, low, high) == c["verdict"], (path, c["claim"])
            checked += 1
    assert checked > 50
