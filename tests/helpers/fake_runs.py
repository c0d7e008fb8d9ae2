"""A test double of the trainer for the experiments' bookkeeping tests (never used outside tests).

``fake_run(job, directory)`` writes what the real run function writes (``config.json``,
``metrics.jsonl`` one epoch at a time, ``result.json``, the evaluations) with synthetic
metrics of KNOWN laws, so the claims computed from them have known answers:

* test ``E||dL/dx||_1 = 2 sqrt(d) exp(-20 eps)`` times seed noise ``1 + 0.01 z``
  (log-log slope 1/2 on d at eps = 0; the same curve for every method);
* training-set norm ``3`` whatever ``d`` (slope 0), below the test norm;
* ``vulnerability = grad_l1 / (4 sqrt(d_max))``, a function of the gradient norm;
* ``accuracy = 0.95 - eps`` (no dependence on ``d``), ``test_grad_l2 = grad_l1 / 5``.

Methods ``crash`` raise, ``nan`` return a non-finite metric, ``die`` ends its process at
once (a worker killed).  ``FAKE_CRASH=m1,m2`` (or ``all``) makes those methods crash too.
``FAKE_STOP_AFTER=N`` stops after ``N`` new epochs (status ``interrupted``);
``FAKE_EPOCH_SLEEP=S`` sleeps ``S`` seconds before each epoch (a slow run, for the
signal tests).  Every computed epoch is appended to ``directory/calls.log`` so tests can
check what was (re)computed.

Slow runs, for the Slurm time-limit test: the runs whose ids are in ``FAKE_SLOW_IDS``
(comma-separated) take ``FAKE_EPOCH_S`` seconds per epoch, in 10 steps.  Like the
trainer, SIGTERM makes such a run write a checkpoint (``fake_checkpoint.json``: epoch and
step) after the current step and return ``interrupted``; called again, it resumes from
that step, so its result is that of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time

import numpy as np

from pathstats._io import write_json

D_MAX = 32 * 32


def _laws(train: dict, epoch: int) -> dict:
    side = train.get("size") or 8
    d = side * side
    eps = float(train.get("eps", 0.0))
    z = np.random.default_rng([int(train.get("seed", 0)), epoch, d]).standard_normal(3)
    grad = 2 * math.sqrt(d) * math.exp(-20 * eps) * (1 + 0.01 * z[0])
    return {"epoch": epoch, "test_grad_l1": grad, "test_grad_l2": grad / 5, "train_grad_l1": 3 * (1 + 0.01 * z[1]),
            "vulnerability": grad / (4 * math.sqrt(D_MAX)), "test_accuracy": 0.95 - eps + 0.001 * z[2],
            "loss_damage": 0.01, "accuracy_adv": 0.5, "elapsed_s": 0.0}


def _slow_epoch(directory: str, epoch: int, seconds: float, stopped: list, steps: int = 10) -> bool:
    """Sleep through epoch ``epoch`` (0-based) step by step from its checkpoint; False if a stop was
    requested (``stopped`` not empty) before its last step, after writing the checkpoint."""
    path = os.path.join(directory, "fake_checkpoint.json")
    saved = {"epoch": epoch, "step": 0}
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
    step = saved["step"] if saved["epoch"] == epoch else 0
    while step < steps:
        if stopped:
            write_json(path, {"epoch": epoch, "step": step})
            return False
        time.sleep(seconds / steps)
        step += 1
    return True


def fake_run(job: dict, directory: str) -> dict:
    train = job["train"]
    crash = os.environ.get("FAKE_CRASH", "").split(",")
    if train["method"] == "crash" or train["method"] in crash or "all" in crash:
        raise RuntimeError("simulated crash")
    if train["method"] == "die":
        os._exit(3)
    side = train.get("size") or 8
    write_json(os.path.join(directory, "config.json"),
               {"config": train, "input_shape": [1, side, side], "d": side * side, "classes": 10})
    path = os.path.join(directory, "metrics.jsonl")
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    stop = int(os.environ.get("FAKE_STOP_AFTER", "0"))
    slow = job.get("id") in os.environ.get("FAKE_SLOW_IDS", "").split(",")
    stopped: list = []
    if slow and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))  # the process runs this one run (Slurm child)
    new = 0
    while len(rows) < int(train.get("epochs", 3)):
        if stop and new == stop:
            return {"status": "interrupted", "reason": "FAKE_STOP_AFTER"}
        if slow and not _slow_epoch(directory, len(rows), float(os.environ.get("FAKE_EPOCH_S", "1")), stopped):
            return {"status": "interrupted", "reason": "stopped by SIGTERM after a checkpoint"}
        time.sleep(float(os.environ.get("FAKE_EPOCH_SLEEP", "0")))
        rows.append(_laws(train, len(rows) + 1))
        new += 1
        with open(path, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        with open(os.path.join(directory, "calls.log"), "a") as f:
            f.write(f"{rows[-1]['epoch']}\n")
    result = {"status": "done", "metrics": rows[-1]}
    if train["method"] == "nan":
        result["metrics"] = {**rows[-1], "test_grad_l1": float("nan")}
    write_json(os.path.join(directory, "result.json"), result)
    from pathstats.robust.experiments.store import evaluation_file

    for evaluation in job.get("evaluations", []):
        write_json(evaluation_file(directory, evaluation), {"evaluation": evaluation, "fake": True})
    return result
