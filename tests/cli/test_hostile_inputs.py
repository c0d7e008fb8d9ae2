"""Hostile and careless input to every command: refused before the work, in one line.

Each case of the table runs ``pathstats.cli.main`` in-process and asserts exit
status 2, exactly one line on stderr starting ``pathstats``, no traceback, nothing
on stdout, nothing written, and a refusal within :data:`REFUSAL_S` seconds, where
most cases ask for work that would take minutes to hours (e.g. 10**6
initialisations).  A few run the installed command in a subprocess.  Then: a failed
write after a computation keeps the result, interrupted sweeps keep their finished
sizes, provenance is in every JSON result, files follow the umask.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import subprocess
import sys
import time

import pytest
import torch

import pathstats
from pathstats._validate import physical_memory
from pathstats.cli import main
from pathstats.errors import OutputPathError
from pathstats.provenance import PROVENANCE_KEYS

#: Seconds within which every refusal must come (the work refused would take far longer;
#: generous for 2 busy cores).
REFUSAL_S = 5.0

DEEP = "[" * 100_000 + "]" * 100_000
SLOW = ["--samples", "1000000"]  # a Monte Carlo of hours, if it ever started
# conv6 initialisations at 3x256x256 whose gradients fit in memory (N x d x 8 bytes: 8%
# of it) but whose activations, all at once, do not (about 64/3 x d x 4 bytes each)
BATCH = str(math.ceil((physical_memory() or 2**40) / (100 * 3 * 256 * 256)))


def _cases(tmp: str) -> list:
    """(id, argv, stdin text or None, substring of the message); ``tmp`` holds
    ``file.txt`` (a file) and ``dir`` (a folder)."""
    f, d = os.path.join(tmp, "file.txt"), os.path.join(tmp, "dir")
    return [
        # dag
        ("dag-missing-file", ["dag", os.path.join(tmp, "absent.json")], None, "no such file"),
        ("dag-deep-json", ["dag", os.path.join(tmp, "deep.json")], None, "nested too deeply"),
        ("dag-deep-stdin", ["dag", "-"], DEEP, "nested too deeply"),
        ("dag-empty-stdin", ["dag", "-"], "", "standard input: invalid JSON"),
        ("dag-folder", ["dag", d], None, "is a folder"),
        ("dag-negative-rows", ["dag", "--example", "fc", "--max-rows", "-1"], None, "--max-rows must be at least 0"),
        ("dag-unknown-output", ["dag", "--example", "fc", "--output", "nope"], None, "no node named 'nope'"),
        ("dag-no-source", ["dag"], None, "one of the arguments"),
        # predict
        ("predict-classes-0", ["predict", "--arch", "conv6", "--d", "3072", "--classes", "0"], None, "--classes must be at least 2"),
        ("predict-classes-1", ["predict", "--arch", "conv6", "--d", "3072", "--classes", "1"], None, "--classes must be at least 2"),
        ("predict-d-0", ["predict", "--arch", "conv6", "--d", "0"], None, "--d must be at least 1"),
        ("predict-d-not-3s2", ["predict", "--arch", "conv6", "--d", "3000"], None, "try --d 2883"),
        ("predict-shape-text", ["predict", "--arch", "conv6", "--shape", "3,x,3"], None, "comma-separated integers"),
        ("predict-shape-zero", ["predict", "--arch", "conv6", "--shape", "3,0,32"], None, "positive sizes"),
        ("predict-shape-too-small", ["predict", "--arch", "conv6", "--shape", "3,2,2"], None, "cannot read inputs of shape"),
        ("predict-huge-input", ["predict", "--arch", "conv6", "--shape", "3,200000,200000"], None, "more than this machine has"),
        ("predict-huge-fc", ["predict", "--arch", "fc", "--d", str(10**10)], None, "more than this machine has"),
        ("predict-unknown-arch", ["predict", "--arch", "conv7", "--d", "3072"], None, "unknown architecture 'conv7'"),
        ("predict-theory-init", ["predict", "--arch", "conv6", "--d", "3072", "--mode", "theory", "--init", "he"], None,
         "theory mode uses"),
        ("predict-map-folder", ["predict", "--arch", "conv6", "--d", "3072", "--save-map", d], None, "is a folder"),
        ("predict-map-under-file", ["predict", "--arch", "conv6", "--d", "3072", "--save-map", f + "/m.npy"], None,
         "is a file, not a folder"),
        ("predict-map-extension", ["predict", "--arch", "conv6", "--d", "3072", "--save-map", os.path.join(tmp, "m.txt")],
         None, "end the file name with .npy"),
        # sweep
        ("sweep-one-size", ["sweep", "--arch", "conv6", "--sizes", "32"], None, "at least 2 values"),
        ("sweep-repeated-size", ["sweep", "--arch", "conv6", "--sizes", "32,32"], None, "lists 32 more than once"),
        ("sweep-text-size", ["sweep", "--arch", "conv6", "--sizes", "32,abc"], None, "comma-separated integers"),
        ("sweep-negative-size", ["sweep", "--arch", "conv6", "--sizes", "32,-64"], None, "at least 1"),
        ("sweep-too-small-size", ["sweep", "--arch", "conv6", "--sizes", "2,4096"], None, "cannot read inputs"),
        ("sweep-size-fails-deep-layer", ["sweep", "--arch", "conv6-avgpool", "--sizes", "4096,3"], None,
         "cannot read inputs of shape (3, 3, 3)"),
        ("sweep-two-archs", ["sweep", "--arch", "conv6,fc", "--sizes", "32,64"], None, "single --arch"),
        ("sweep-figure-jpg", ["sweep", "--arch", "conv6", "--sizes", "32,4096", "--figure", os.path.join(tmp, "s.jpg")], None,
         "figure format"),
        ("sweep-figure-under-file", ["sweep", "--arch", "conv6", "--sizes", "32,4096", "--figure", f + "/s.png"], None,
         "is a file, not a folder"),
        ("sweep-out-folder", ["sweep", "--arch", "conv6", "--sizes", "32,4096", "--out", d], None, "is a folder"),
        ("sweep-classes-1", ["sweep", "--arch", "conv6", "--sizes", "32,64", "--classes", "1"], None, "--classes must be"),
        # verify
        ("verify-negative-seed", ["verify", "--arch", "conv6", "--d", "3072", "--seed", "-1", *SLOW], None, "--seed must be"),
        ("verify-seed-2-63", ["verify", "--arch", "fc", "--d", "64", "--seed", str(2**63), *SLOW], None, "2**63 - 1"),
        ("verify-map-test-minimum", ["verify", "--arch", "conv6", "--d", "3072", "--samples", "16"], None,
         "--samples must be at least 17"),
        ("verify-one-sample", ["verify", "--arch", "fc", "--d", "64", "--samples", "1"], None, "--samples must be at least"),
        ("verify-one-size", ["verify", "--arch", "fc", "--sizes", "32", *SLOW], None, "at least 2 values"),
        ("verify-unknown-in-list", ["verify", "--arch", "conv6,conv7", "--d", "3072", *SLOW], None, "unknown architecture 'conv7'"),
        ("verify-empty-in-list", ["verify", "--arch", "conv6,,fc", "--d", "3072", *SLOW], None, "empty name"),
        ("verify-out-is-file", ["verify", "--arch", "fc", "--d", "64", "--samples", "100000", "--out", f], None,
         "is a file; give a folder"),
        ("verify-out-under-file", ["verify", "--arch", "fc", "--d", "64", *SLOW, "--out", f + "/run"], None,
         "is a file, not a folder"),
        ("verify-batch-0", ["verify", "--arch", "fc", "--d", "64", *SLOW, "--batch", "0"], None, "--batch must be at least 1"),
        ("verify-classes-0", ["verify", "--arch", "fc", "--d", "64", *SLOW, "--classes", "0"], None, "--classes must be"),
        ("verify-memory", ["verify", "--arch", "fc", "--d", "64", "--samples", str(10**12)], None, "more than this machine has"),
        ("verify-sweep-memory", ["verify", "--arch", "conv6", "--sizes", "32,4096", "--samples", "20000"], None,
         "more than this machine has"),
        ("verify-batch-memory", ["verify", "--arch", "conv6", "--shape", "3,256,256", "--samples", BATCH, "--batch", BATCH],
         None, "do not fit in this machine's memory"),
        ("verify-figure-format", ["verify", "--arch", "fc", "--d", "64", "--figure-format", "jpg"], None, "invalid choice"),
        ("verify-device", ["verify", "--arch", "fc", "--d", "64", "--device", "tpu"], None, "invalid choice"),
        ("verify-resume-without-out", ["verify", "--arch", "fc", "--sizes", "16,32", "--resume", *SLOW], None,
         "--resume continues a sweep"),
        ("verify-resume-deep-json", ["verify", "--arch", "fc", "--sizes", "16,32", *SLOW, "--resume", "--out",
                                     os.path.join(tmp, "old")], None, "cannot continue from"),
        ("verify-resume-other-sweep", ["verify", "--arch", "fc", "--sizes", "16,32", *SLOW, "--resume", "--out",
                                       os.path.join(tmp, "other")], None, "it was run with another samples"),
        # archs, usage
        ("archs-unknown-option", ["archs", "--arch", "conv6"], None, "unrecognized arguments"),
        ("no-command", [], None, "required"),
        ("unknown-command", ["train-everything"], None, "invalid choice"),
    ]


CASE_IDS = [case[0] for case in _cases("/x")]


@pytest.fixture(scope="module", autouse=True)
def warm_torch():
    """Pay torch's one-time cost of a first forward pass (about 3 s, measured, cold:
    the registry builds each net with a shape probe) before any refusal is timed."""
    from pathstats import nets

    nets.build("conv6", (3, 32, 32))


@pytest.fixture
def hostile_dir(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "dir").mkdir()
    (tmp_path / "deep.json").write_text(DEEP)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "sweep.json").write_text(DEEP)
    (tmp_path / "other").mkdir()
    options = {"seed": 0, "batch": None, "reduce": True, "classes": 10}
    (tmp_path / "other" / "sweep.json").write_text(json.dumps({"arch": "fc", "samples": 20, "device": "cpu",
                                                               "options": options, "rows": []}))
    return tmp_path


def _listing(root) -> list:
    return sorted(os.path.relpath(os.path.join(folder, name), root) for folder, _, names in os.walk(root) for name in names)


def _run(argv: list, stdin: str | None, monkeypatch, capsys) -> tuple:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    start = time.perf_counter()
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse usage errors
        status = exc.code
    return status, time.perf_counter() - start, capsys.readouterr()


@pytest.mark.parametrize("case", CASE_IDS)
def test_hostile_input_is_refused_in_one_line_before_the_work(case, hostile_dir, monkeypatch, capsys):
    _, argv, stdin, message = next(c for c in _cases(str(hostile_dir)) if c[0] == case)
    before = _listing(hostile_dir)
    status, elapsed, captured = _run(argv, stdin, monkeypatch, capsys)
    lines = captured.err.splitlines()
    assert status == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("pathstats"), lines
    assert "Traceback" not in captured.err and message in lines[0], lines
    assert captured.out == ""
    assert elapsed < REFUSAL_S, f"refused after {elapsed:.1f} s: not before the work"
    assert _listing(hostile_dir) == before  # nothing written, no stray temporary file


def test_the_battery_covers_every_command():
    commands = {case.split("-")[0] for case in CASE_IDS}
    assert {"dag", "predict", "archs", "sweep", "verify"} <= commands and len(CASE_IDS) >= 30


@pytest.mark.parametrize("argv", [
    ["dag", "DEEP"],
    ["verify", "--arch", "conv6", "--d", "3072", "--seed", "-1", "--samples", "1000000"],
    ["sweep", "--arch", "conv6", "--sizes", "32"],
    ["predict", "--arch", "conv6", "--d", "3072", "--classes", "0"],
])
def test_installed_command_refuses_in_one_line(argv, hostile_dir):
    argv = [str(hostile_dir / "deep.json") if a == "DEEP" else a for a in argv]
    done = subprocess.run([sys.executable, "-m", "pathstats", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


# --- failures after the work keep the result -------------------------------------------


def test_failed_write_after_predict_prints_the_result_then_the_error(tmp_path, monkeypatch, capsys):
    def fail(path, array):
        raise OutputPathError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr("pathstats.prediction.save_array", fail)
    status = main(["predict", "--arch", "fc", "--d", "64", "--json", "--save-map", str(tmp_path / "m.npy")])
    captured = capsys.readouterr()
    assert status == 1
    assert json.loads(captured.out)["arch"] == "fc"  # the result is not lost
    assert captured.err.splitlines() == [f"pathstats predict: error: the result is printed above, but cannot write "
                                         f"{tmp_path / 'm.npy'}: No space left on device"]


def test_unexpected_errors_are_one_line_with_exit_1(monkeypatch, capsys):
    def bug(*args, **kwargs):
        raise TypeError("an internal bug\nwith two lines")

    monkeypatch.setattr("pathstats.dag.analysis.analyze_dag", bug)
    assert main(["dag", "--example", "fc"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "internal error: TypeError: an internal bug with two lines" in err
    assert "Traceback" not in err


def _interrupt_call(monkeypatch, module, name: str, n: int, before=None):
    """Make the ``n``-th call of ``module.name`` raise KeyboardInterrupt (Ctrl-C); call
    ``before()`` first on every call.  Returns the real function."""
    real, calls = getattr(module, name), []

    def interrupting(*args, **kwargs):
        calls.append(args)
        if before is not None:
            before()
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupting)
    return real


def test_interrupted_sweep_keeps_the_finished_sizes(tmp_path, monkeypatch, capsys):
    from pathstats import sweep

    _interrupt_call(monkeypatch, sweep, "predict", 3)
    out = tmp_path / "sweep.json"
    assert main(["sweep", "--arch", "conv6", "--sizes", "32,64,128", "--out", str(out)]) == 130
    captured = capsys.readouterr()
    kept = json.loads(out.read_text())
    assert [r["d"] for r in kept["rows"]] == [3072, 12288] and kept["complete"] is False
    assert kept["pending_shapes"] == [[3, 128, 128]] and set(kept["provenance"]) == set(PROVENANCE_KEYS)
    assert "3x64x64" in captured.out  # the finished sizes are printed too
    assert captured.err.splitlines()[-1] == (f"pathstats sweep: interrupted after 2 of 3 sizes; the 2 finished sizes are "
                                             f"kept: they are in {out}")
    assert sorted(os.listdir(tmp_path)) == ["sweep.json"]


def test_verify_sweep_writes_each_size_as_it_finishes(tmp_path, monkeypatch, capsys):
    from pathstats.verify import scaling

    path, seen = tmp_path / "run" / "sweep.json", []
    _interrupt_call(monkeypatch, scaling, "verify", 2,
                    before=lambda: seen.append(json.loads(path.read_text())["rows"] if path.exists() else []))
    assert main(["verify", "--arch", "fc", "--sizes", "16,32", "--samples", "20", "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err.splitlines()
    assert [len(rows) for rows in seen] == [0, 1]  # size 1 was on disk before size 2 started
    assert err[-1].startswith("pathstats verify: interrupted after 1 of 2 sizes; the 1 finished sizes are kept: they are in")


def test_resumed_sweep_equals_the_uninterrupted_one(tmp_path, monkeypatch, capsys):
    from pathstats.verify import scaling

    argv = ["verify", "--arch", "fc", "--sizes", "16,32", "--samples", "12", "--json"]
    assert main(argv + ["--out", str(tmp_path / "full")]) == 0
    full = json.loads(capsys.readouterr().out)
    real = _interrupt_call(monkeypatch, scaling, "verify", 2)
    assert main(argv + ["--out", str(tmp_path / "cut")]) == 130
    monkeypatch.setattr(scaling, "verify", real)
    capsys.readouterr()
    assert main(argv + ["--out", str(tmp_path / "cut"), "--resume"]) == 0
    captured = capsys.readouterr()
    resumed = json.loads(captured.out)
    assert "resuming: 1 of 2 sizes already finished" in captured.err

    def strip(rows):
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]

    assert strip(resumed["rows"]) == strip(full["rows"]) and resumed["slopes"] == full["slopes"]
    assert resumed["complete"] is True


# --- provenance, formats, umask ----------------------------------------------------------


def _assert_provenance(data: dict, command: list, seed=None, device=None) -> None:
    p = data["provenance"]
    assert tuple(p) == PROVENANCE_KEYS
    assert p["command"] == "pathstats " + " ".join(command)
    assert p["seed"] == seed and p["device"] == device
    assert p["pathstats_version"] == pathstats.__version__ and p["torch_version"] == torch.__version__


def test_every_json_result_records_provenance(tmp_path, capsys):
    for argv, seed, device in [
        (["dag", "--example", "fc", "--json"], None, None),
        (["predict", "--arch", "fc", "--d", "64", "--json"], None, None),
        (["sweep", "--arch", "fc", "--sizes", "16,32", "--json"], None, None),
        (["verify", "--arch", "fc", "--d", "16", "--samples", "12", "--seed", "5", "--json"], 5, "cpu"),
        (["verify", "--arch", "conv6-strided,conv6-avgpool", "--shape", "3,8,8", "--samples", "20", "--json"], 0, "cpu"),
    ]:
        assert main(argv) == 0
        _assert_provenance(json.loads(capsys.readouterr().out), argv, seed, device)
    argv = ["verify", "--arch", "fc", "--sizes", "16,32", "--samples", "12", "--out", str(tmp_path / "s")]
    assert main(argv) == 0
    _assert_provenance(json.loads((tmp_path / "s" / "sweep.json").read_text()), argv, 0, "cpu")
    argv = ["verify", "--arch", "fc", "--d", "16", "--samples", "12", "--out", str(tmp_path / "v"), "--figure-format", "pdf"]
    assert main(argv) == 0
    _assert_provenance(json.loads((tmp_path / "v" / "verify.json").read_text()), argv, 0, "cpu")
    assert (tmp_path / "v" / "maps.pdf").read_bytes().startswith(b"%PDF-")
    capsys.readouterr()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pathstats {pathstats.__version__} (torch {torch.__version__}, Python ")


def test_command_line_files_follow_the_umask_and_the_extension(tmp_path, capsys):
    previous = os.umask(0o027)
    try:
        assert main(["predict", "--arch", "fc", "--d", "16", "--save-map", str(tmp_path / "m.npy")]) == 0
        assert main(["sweep", "--arch", "fc", "--sizes", "16,32", "--figure", str(tmp_path / "s.pdf"),
                     "--out", str(tmp_path / "s.json")]) == 0
    finally:
        os.umask(previous)
    capsys.readouterr()
    for name in ("m.npy", "s.pdf", "s.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    assert (tmp_path / "s.pdf").read_bytes().startswith(b"%PDF-")
    assert (tmp_path / "m.npy").read_bytes().startswith(b"\x93NUMPY")
    assert sorted(os.listdir(tmp_path)) == ["m.npy", "s.json", "s.pdf"]


# --- the smaller things ------------------------------------------------------------------


def test_dag_reads_standard_input(monkeypatch, capsys):
    import networkx as nx

    from pathstats.dag.generators import EXAMPLES

    G, _ = EXAMPLES["fc"][1]()
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(nx.node_link_data(G, edges="links"))))
    assert main(["dag", "-", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lemma7_total"] == "1"


def test_lemma7_totals_compare_with_one():
    from fractions import Fraction

    from pathstats.dag.generators import EXAMPLES

    G, o = EXAMPLES["conv1d-reflect"][1]()
    assert pathstats.lemma7_total(G, o) == 1 and isinstance(pathstats.lemma7_total(G, o), Fraction)
    p = pathstats.predict("conv6", (3, 32, 32))
    assert math.isclose(p.lemma7_total, 1, rel_tol=1e-12)  # a float sum: compare as the docstring says


def test_python_api_refusals():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))
    with pytest.raises(pathstats.PathstatsError, match=r"not the int 3072; for a flat input of 3072 numbers write \(3072,\)"):
        pathstats.predict(model, 3072)
    with pytest.raises(ValueError, match="classes must be at least 1"):
        pathstats.predict("conv6", (3, 32, 32), classes=0)
    with pytest.raises(ValueError, match="theory mode uses"):
        pathstats.predict("conv6", (3, 32, 32), mode="theory", init="he")


def test_single_logit_model_to_dict():
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    data = pathstats.predict(model, (8,)).to_dict()
    assert data["classes"] == 1 and data["loss_grad"] is None
    assert json.loads(json.dumps(data))["grad_sq"]["total"] > 0


def test_gap_line_lists_every_quantity_beyond_4_standard_errors():
    from pathstats.verify.report import verify_text

    def entry(z):
        return {"predicted": 1.0, "estimate": 1.0 + z / 100, "stderr": 0.01, "z": z, "relative_error": z / 100}

    report = {"arch": "fc", "input_shape": [16], "samples": 100, "device": "cpu", "elapsed_s": 1.0, "seed": 0,
              "estimator": "raw samples", "map_fit": {"statistic": 1.0, "dof": [8, 92], "p_value": 0.5, "method": "m"},
              "grad_sq_total": entry(4.5), "logit_grad_l1": entry(-1.0), "logit_grad_l2": entry(-6.0),
              "loss_grad_l1": entry(3.9), "loss_grad_l2": entry(0.0), "softmax_factor": entry(8.8)}
    line = next(line for line in verify_text(report).splitlines() if line.startswith("beyond 4 standard errors"))
    listed = line.split(": ", 1)[1].split(" -- ")[0].split(", ")
    assert listed == ["E||do/dx||_2^2", "E||do/dx||_2", "softmax factor"]
    assert "softmax that is not uniform" in line


def test_estimator_line_says_one_thing(capsys):
    for extra in ([], ["--raw"]):
        assert main(["verify", "--arch", "fc", "--d", "16", "--samples", "12", *extra]) == 0
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("estimator:"))
        if extra:
            assert "raw samples" in line and "integrated" not in line and "reduction switched off" in line
        else:
            assert "integrated analytically" in line and "raw samples of one" not in line


# --- progress ----------------------------------------------------------------------------


def test_sweeps_show_the_running_size_in_plain_lines(capsys):
    assert main(["sweep", "--arch", "fc", "--sizes", "16,32"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "sweep fc, size 1/2: 16" in err and "sweep fc, size 2/2: 32: 2/2 size (100%)" in err
    assert main(["verify", "--arch", "fc", "--sizes", "16,32", "--samples", "12"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "size 2/2: fc 32: 12/12 init (100%)" in err


def test_long_predictions_show_progress_layer_by_layer(monkeypatch):
    from pathstats import prediction

    log, real = io.StringIO(), prediction.progress_bar
    monkeypatch.setattr(prediction, "progress_bar", lambda **kw: real(**{**kw, "delay": 0, "file": log}))
    pathstats.predict("conv6", (3, 32, 32), progress=True)
    lines = log.getvalue().splitlines()
    total = lines[-1].split(": ")[1].split()[0].split("/")[1]
    assert lines[0].startswith(f"predict conv6 3x32x32: 0/{total} layer")
    assert lines[-1].startswith(f"predict conv6 3x32x32: {total}/{total} layer (100%)")
