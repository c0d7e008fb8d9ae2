"""``pathstats experiment NAME --plan``: what a grid costs, measured on this device before any run.

Runs of a grid that share ``(arch, size, method, channels)`` cost the same per step, so
each such *run type* is measured once on the current device: a few training steps (after
one warm-up step) and one evaluation batch, on random inputs of the run's shape.  Each
run's wall time is then projected as

    epochs x steps per epoch x step time + evaluated epochs x images evaluated x evaluation time per image

(the evaluated epochs: the initialisation, every ``eval_every``-th and the last; the
images: the test images used plus the fixed training subset), with the memory its
training step and evaluation batch need (:func:`~pathstats.robust.train.plan_memory`).
On CPU a step is measured on a few images (:func:`cpu_measure_batch`: at most
:data:`CPU_MEASURE_BATCH`, fewer for large inputs) and scaled to the run's batch (time
per image is nearly constant there); on a GPU on the run's batch.  A step that alone takes
:data:`MEASURE_BUDGET_S` or more (fig2's 256 px runs on a CPU) is measured once, by its
warm-up: the one-time costs it includes are small beside it, and repeating it would make
``--plan`` itself take an hour at paper scale.

The measurement is a function argument, so tests plan a grid with a fake one in no time.
"""

from __future__ import annotations

import functools
import math
import platform
import time
from typing import Callable

import torch

from pathstats.resources import ResourceError, format_bytes, free_memory

from . import catalogue
from .grid import expand

__all__ = ["plan_grid", "measure_run_type", "format_plan", "run_type", "cpu_measure_batch", "CPU_MEASURE_BATCH",
           "CPU_MEASURE_VALUES", "MEASURE_BUDGET_S"]

#: Most images per measured training step on CPU (scaled linearly to the run's batch).
CPU_MEASURE_BATCH = 8

#: Input values (images x pixels x channels) of a measured CPU batch: 8 images of 3 x 64 x 64.
#: Beyond that a CPU's time per image no longer falls with the batch (measured on this
#: project's CPU: conv8 at 64 px 0.14 s per image and forward-backward at batch 8, 128 px
#: 0.64 s at batch 2, 256 px 2.7 s at batch 1), so larger inputs are measured on fewer images.
CPU_MEASURE_VALUES = CPU_MEASURE_BATCH * 3 * 64 * 64

#: Seconds of measured steps per run type: timing stops after the first step past it (at
#: least one timed step), and a warm-up step past it is the measurement itself.
MEASURE_BUDGET_S = 10.0


def cpu_measure_batch(batch: int, d: int) -> int:
    """Images per measured step on CPU for a run of ``batch`` images of ``d`` values: at most
    :data:`CPU_MEASURE_BATCH` and :data:`CPU_MEASURE_VALUES` values, at least 2 (BatchNorm in
    train mode needs two samples), never more than ``batch``.

    >>> cpu_measure_batch(128, 3 * 32 * 32), cpu_measure_batch(32, 3 * 128 * 128), cpu_measure_batch(32, 3 * 256 * 256)
    (8, 2, 2)
    >>> cpu_measure_batch(4, 64)
    4
    """
    return min(batch, max(2, min(CPU_MEASURE_BATCH, CPU_MEASURE_VALUES // max(d, 1))))


def run_type(train: dict) -> tuple:
    """The key of runs that cost the same per step: ``(arch, size, method, channels)``.

    >>> run_type({"arch": "conv8", "size": 64, "method": "pgd", "eps": 0.1, "seed": 2})
    ('conv8', 64, 'pgd', None)
    """
    return (train["arch"], train.get("size"), train["method"], train.get("channels"))


def device_name(device: torch.device) -> str:
    """The device in words (the GPU's name, or the CPU's model and the threads torch uses)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"CPU {model}, {torch.get_num_threads()} torch thread(s)"


@functools.lru_cache(maxsize=8)
def _split_sizes(data: str) -> tuple:
    from ..data import load_images

    images = load_images(data)
    return int(images.train_u8.shape[0]), int(images.test_u8.shape[0]), int(images.classes), tuple(images.native_shape)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_run_type(config, input_shape: tuple, classes: int, native_side: int, device: torch.device,
                     steps: int = 2, budget_s: float = MEASURE_BUDGET_S) -> dict:
    """Seconds per training step (at ``config.batch``) and per evaluated image of run ``config``
    on ``device``, measured on random inputs: one warm-up step, then up to ``steps`` timed
    steps (fewer once ``budget_s`` seconds are spent; none when the warm-up alone took
    ``budget_s``, which then is the measurement), and one evaluation batch (PGD at
    ``eval_steps``).  ``timed_steps`` says how many steps the step time comes from (0: the
    warm-up's)."""
    from pathstats import nets

    from ..methods import get_method
    from ..train import default_eval_batch, evaluate

    torch.manual_seed(0)
    model = nets.build(config.arch, tuple(input_shape), classes, channels=config.channels,
                       native_side=native_side).to(device)
    method = get_method(config.method)
    d = math.prod(input_shape)
    strength = method.strength(config.eps, d)
    batch = config.batch if device.type == "cuda" else cpu_measure_batch(config.batch, d)
    x = torch.rand((batch,) + tuple(input_shape), device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=config.momentum)

    def step(seed: int) -> float:
        _sync(device)
        start = time.perf_counter()
        model.train()
        optimizer.zero_grad(set_to_none=True)
        method.loss(model, x, y, strength, config, seed=seed).backward()
        optimizer.step()
        _sync(device)
        return time.perf_counter() - start

    warm_up = step(0)
    times: list[float] = []
    while warm_up < budget_s and len(times) < steps and (not times or sum(times) < budget_s):
        times.append(step(len(times) + 1))
    step_s = (min(times) if times else warm_up) * config.batch / batch
    n_eval = min(config.eval_batch or default_eval_batch(d), batch if device.type != "cuda" else 10**9)
    xe, ye = x[:n_eval], y[:n_eval]
    _sync(device)
    start = time.perf_counter()
    evaluate(model, xe, ye, config.eval_eps, seed=0, steps=config.eval_steps, step_frac=config.eval_step_frac,
             random_start=config.eval_random_start, batch=n_eval)
    _sync(device)
    return {"step_s": step_s, "eval_image_s": (time.perf_counter() - start) / n_eval, "measured_batch": batch,
            "timed_steps": len(times)}


def plan_grid(name: str, data: str = "digits", scale: str = "paper", device: str = "cpu", *, jobs: int = 1,
              measure: Callable[..., dict] | None = None, steps: int = 2) -> dict:
    """Projected wall time, device-hours and memory of every run of experiment ``name``.

    ``measure(config, input_shape, classes, native_side, device)`` returns ``step_s`` and
    ``eval_image_s`` of a run type (default :func:`measure_run_type`); it is called once
    per distinct :func:`run_type`.  ``jobs`` runs in parallel divide the wall time (not the
    device-hours).
    """
    from ..train import TrainConfig, plan_memory

    dev = torch.device(device)
    measure = measure or functools.partial(measure_run_type, steps=steps)
    n_train_all, n_test_all, classes, native = _split_sizes(data)
    free, source = free_memory(dev)
    types: dict = {}
    runs = []
    measuring = 0.0
    for job in expand(catalogue.get(name).grid(scale), data):
        config = TrainConfig.from_dict({**job.train, "device": device}).resolved()
        factor = 1 if config.size is None else config.size // native[-1]
        input_shape = (native[0], native[1] * factor, native[2] * factor)
        native_side = config.native_side or native[-1]
        key = run_type(job.train)
        if key not in types:
            start = time.perf_counter()
            measured = measure(config, input_shape, classes, native_side, dev)
            measuring += time.perf_counter() - start
            try:
                memory = plan_memory(config, input_shape, classes, native_side, free=free, source=source)
                fits = None
            except ResourceError as exc:
                memory = plan_memory(config, input_shape, classes, native_side, free=None, source=source)
                fits = str(exc)
            types[key] = {"arch": key[0], "size": key[1], "method": key[2], "channels": key[3], "runs": 0,
                          "step_s": measured["step_s"], "eval_image_s": measured["eval_image_s"],
                          "measured_batch": measured.get("measured_batch"), "timed_steps": measured.get("timed_steps"),
                          "train_bytes": memory["train_bytes"], "eval_bytes": memory["eval_bytes"],
                          "eval_batch": memory["eval_batch"], "refused": fits, "hours": 0.0}
        t = types[key]
        n_train = min(n_train_all, config.limit_train or n_train_all) - config.val_split
        steps_per_epoch = n_train // config.batch
        if config.steps_per_epoch is not None:
            steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
        evaluated = 1 + sum(1 for e in range(1, config.epochs + 1) if e % config.eval_every == 0 or e == config.epochs)
        n_test = min(x for x in (config.eval_n, config.limit_test, n_test_all) if x is not None)
        images = n_test + min(config.train_eval_n, n_train)
        seconds = (config.epochs * steps_per_epoch * t["step_s"] + evaluated * images * t["eval_image_s"])
        t["runs"] += 1
        t["hours"] += seconds / 3600
        runs.append({"id": job.id, "arch": key[0], "size": key[1], "method": key[2], "channels": key[3],
                     "eps": config.eps, "seed": config.seed, "epochs": config.epochs, "steps_per_epoch": steps_per_epoch,
                     "evaluated_epochs": evaluated, "images_per_evaluation": images, "hours": seconds / 3600,
                     "train_bytes": t["train_bytes"], "eval_bytes": t["eval_bytes"]})
    device_hours = sum(r["hours"] for r in runs)
    return {"experiment": name, "scale": scale, "data": data, "device": device_name(dev), "jobs": jobs,
            "free_memory": free, "free_memory_source": source, "run_types": list(types.values()), "runs": runs,
            "device_hours": device_hours, "wall_hours": device_hours / max(jobs, 1), "measure_s": measuring}


def _measured_on(t: dict) -> str:
    """``8 img x 2 steps``: the measured batch and the timed steps (``warm-up`` when the warm-up was the measurement)."""
    if t.get("measured_batch") is None:
        return "-"
    steps = t.get("timed_steps")
    return f"{t['measured_batch']} img x " + ("warm-up" if steps == 0 else f"{steps} step" + "s" * (steps != 1))


def format_plan(plan: dict) -> str:
    """The plan as text: per run type, per run, and the totals."""
    from pathstats._format import format_table

    free = "unknown" if plan["free_memory"] is None else format_bytes(plan["free_memory"])
    lines = [f"{plan['experiment']} ({plan['scale']}) on {plan['data']}, projected on {plan['device']} "
             f"(free memory {free}, {plan['free_memory_source']}):", ""]
    lines.append(format_table(
        ["arch", "size", "method", "channels", "runs", "measured on", "step s", "eval s/img", "h per run",
         "train mem", "eval mem"],
        [[t["arch"], t["size"] or "-", t["method"], t["channels"] or "-", t["runs"], _measured_on(t), f"{t['step_s']:.3g}",
          f"{t['eval_image_s']:.3g}", f"{t['hours'] / t['runs']:.3g}", format_bytes(t["train_bytes"]),
          format_bytes(t["eval_bytes"]) + f" (batch {t['eval_batch']})"] for t in plan["run_types"]]))
    for t in plan["run_types"]:
        if t["refused"]:
            lines.append(f"does not fit here: {t['refused']}")
    lines += ["", format_table(["run", "arch", "size", "method", "eps", "seed", "epochs", "hours"],
                               [[r["id"], r["arch"], r["size"] or "-", r["method"], f"{r['eps']:g}", r["seed"],
                                 r["epochs"], f"{r['hours']:.3g}"] for r in plan["runs"]]), ""]
    lines.append(f"total: {len(plan['runs'])} runs, {plan['device_hours']:.3g} device-hours, "
                 f"{plan['wall_hours']:.3g} h wall with {plan['jobs']} parallel job(s)"
                 + (f"; measured in {plan['measure_s']:.0f} s" if "measure_s" in plan else ""))
    return "\n".join(lines)
