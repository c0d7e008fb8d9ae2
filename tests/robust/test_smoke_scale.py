"""Issue 17's paper-scale smoke, small: ``pathstats train --arch conv8 --data cifar10:DIR --size S
--limit-train N --limit-test N --channels C --epochs 1`` on a synthetic CIFAR-format folder
finishes an epoch, writes its metrics, and reports a peak memory that the data and the
trainer's own memory plan account for.  (The 256 px run on 50,000 + 10,000 images is in
docs/train.rst; it takes minutes.)"""

import json
import math
import os

import pytest

from pathstats.cli import main
from pathstats.resources import peak_resident_bytes, resident_bytes
from pathstats.robust.synthetic import write_cifar10
from pathstats.robust.train import EVAL_FIELDS, TrainConfig, plan_memory

_CLEAR_REFS = "/proc/self/clear_refs"


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current resident memory (Linux); False where impossible."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return False
    return peak_resident_bytes() > 0


def test_cifar_smoke_finishes_an_epoch_within_the_memory_its_data_and_plan_account_for(tmp_path, capsys):
    folder = write_cifar10(str(tmp_path / "data"), n_train=250, n_test=50)
    data_bytes = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    out = str(tmp_path / "run")
    size, channels, batch, limit_train, limit_test, train_eval_n = 64, 4, 16, 64, 32, 16
    args = ["train", "--arch", "conv8", "--data", f"cifar10:{folder}", "--size", str(size), "--method", "none",
            "--limit-train", str(limit_train), "--limit-test", str(limit_test), "--channels", str(channels),
            "--epochs", "1", "--batch", str(batch), "--train-eval-n", str(train_eval_n), "--eval-steps", "2",
            "--normalise", "--out", out, "--json", "--quiet"]
    # a first, shorter call imports what training imports lazily and warms the allocator:
    # those megabytes stay resident and belong to the process, not to the run measured next
    warm = list(args)
    warm[warm.index("--out") + 1] = str(tmp_path / "warm-up")
    assert main(warm + ["--max-steps", "1"]) == 0
    capsys.readouterr()
    if not _reset_peak():
        pytest.skip("no /proc/self/clear_refs here: the peak of this call cannot be told from earlier tests'")
    baseline = resident_bytes()
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)

    assert result["status"] == "done" and result["epochs_done"] == 1
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["epoch"] for r in rows] == [0, 1]
    last = rows[-1]
    assert last["test_n"] == limit_test and last["train_n"] == train_eval_n
    for name in EVAL_FIELDS:
        assert math.isfinite(last["test_" + name]) and math.isfinite(last["train_" + name]), name

    peak = result["peak_memory"]["resident_bytes"]
    assert math.isfinite(peak) and peak >= baseline
    # What the run may add to the resident memory it started from: reading the data (the
    # pickled files, their decoded arrays and the concatenated split: three copies at most),
    # its training step and its evaluation batches as the trainer plans them (per-image
    # factors rounded up from measurements, plus the weights' copies), the two phases summed
    # because the allocator may keep one's freed memory while the other runs.
    with open(os.path.join(out, "config.json")) as f:
        stored = json.load(f)
    config = TrainConfig.from_dict(stored["config"])
    plan = plan_memory(config, (3, size, size), 10, 32, free=None, source="test")
    fixed = plan["train_bytes"] - batch * plan["train_per_image"]
    evaluated_at_once = min(stored["eval_batch"], max(limit_test, train_eval_n))
    bound = baseline + 3 * data_bytes + plan["train_bytes"] + fixed + evaluated_at_once * plan["eval_per_image"]
    assert peak <= bound, (peak - baseline, bound - baseline)
