"""Regularised training with per-epoch robustness metrics, checkpoints and exact resume.

:func:`train` trains a registered architecture on ``digits``, ``cifar10:DIR`` or
``folder:DIR`` with one of the methods of :data:`pathstats.robust.methods.METHODS`
(SGD with momentum, a learning-rate schedule) and writes into its folder:

* ``config.json``: the resolved :class:`TrainConfig`, with provenance;
* ``metrics.jsonl``: one line per epoch, on the test split and on a fixed subset of
  the training split, in eval mode: loss, accuracy, the per-sample gradient norms
  ``E||dL/dx||_1`` and ``E||dL/dx||_2``, vulnerability, loss damage and accuracy
  under an l_inf PGD attack at ``eval_eps``, each with its standard error (fields
  ``*_se``; one sample = one image);
* ``checkpoint.pt``: after every epoch (and when stopped by SIGINT/SIGTERM or
  ``max_steps``, mid-epoch): model, optimiser, scheduler, every RNG state and the
  position in the epoch;
* ``result.json``: the status (``done``, ``interrupted`` or ``diverged``, with the
  reason), the last epoch's metrics and provenance.

Calling :func:`train` again with the same configuration on the same folder
continues from the checkpoint; on CPU the finished run's metrics are identical to
those of an uninterrupted run (every random draw -- shuffling, PGD starts, power
iterations, evaluation attacks -- is seeded from ``(seed, epoch, step)``, not from
a global generator).  A different configuration on the same folder is refused.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathstats import nets
from pathstats._io import atomic_write, check_output_path, write_json
from pathstats.errors import PathstatsError
from pathstats.progress import progress as progress_bar
from pathstats.provenance import provenance

from .attacks import norm_name
from .data import check_data_spec, check_model_input, load_dataset
from .methods import get_method
from .vulnerability import vulnerability

__all__ = [
    "TrainConfig",
    "TrainError",
    "ConfigMismatchError",
    "CheckpointError",
    "train",
    "load_trained_model",
    "evaluate",
    "EVAL_FIELDS",
    "DATA_DEFAULTS",
    "SCHEDULES",
]

CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, RESULT_FILE = "config.json", "metrics.jsonl", "checkpoint.pt", "result.json"
CHECKPOINT_FORMAT = 1

#: Defaults of ``epochs``, ``batch`` and ``lr`` by data set: the authors' CIFAR-10
#: settings (lr 0.01, batch 128), and for ``digits`` settings under which conv6
#: (``--size 32``) passes 95% test accuracy with ``--method none``.
DATA_DEFAULTS = {
    "digits": {"epochs": 3, "batch": 32, "lr": 0.05},
    "other": {"epochs": 200, "batch": 128, "lr": 0.01},
}

#: Learning-rate schedules, stepped once per optimisation step: ``cosine`` (from lr
#: down to 0 over the run), ``step`` (x0.1 at 50% and 75% of the steps), ``constant``.
SCHEDULES = ("cosine", "step", "constant")

#: Fields that may differ between two commands on the same folder.
_NOT_IDENTITY = ("device",)


class TrainError(PathstatsError, ValueError):
    """A training configuration that cannot run."""


class ConfigMismatchError(TrainError):
    """The output folder holds a run with another configuration."""


class CheckpointError(TrainError):
    """The output folder's checkpoint or bookkeeping files are unreadable."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (``None`` fields take data-set defaults).

    Attributes
    ----------
    arch : str
        Registered architecture (``pathstats archs``).
    data : str
        ``digits``, ``cifar10:DIR`` or ``folder:DIR``.
    method : str
        A key of :data:`~pathstats.robust.methods.METHODS`.
    size : int, optional
        Up-sample the images to ``size x size`` by copying pixels.
    eps : float
        The method's strength: the paper's dimension-free ``eps_inf`` for the
        norm-``p`` methods (their loss receives ``eps_p = eps d^(1/p)``), the
        regularisation constant otherwise; 0 for ``none``.
    epochs, batch, lr : optional
        Default: :data:`DATA_DEFAULTS`.
    seed : int
        Seeds the initialisation, the shuffling and every attack's random start.
    device : str
        ``cpu``, ``cuda`` or ``cuda:N``; may change when a run is resumed.
    eval_eps : float
        ``eps_inf`` of the l_inf PGD attack of the per-epoch evaluation (default
        0.005, the paper's Section 4.1).
    fd_h : float
        Finite-difference step of ``fd-l1``/``fd-l2``.
    opnorm_p, opnorm_q : str
        Domain and co-domain norms of ``opnorm`` (``"1"``, ``"2"``, ``"inf"``).
    opnorm_iters : int
        Power-method iterations per step of ``opnorm``.
    momentum, weight_decay : float
        SGD's.
    schedule : str
        One of :data:`SCHEDULES`.
    steps_per_epoch : int, optional
        At most this many optimisation steps per epoch (default: one pass over the
        training split, the last incomplete batch dropped).
    eval_n : int, optional
        Evaluate on the first ``eval_n`` test images (default: all).
    train_eval_n : int
        Size of the fixed training subset evaluated each epoch (the same images for
        every seed and epoch).
    """

    arch: str
    data: str = "digits"
    method: str = "none"
    size: int | None = None
    eps: float = 0.0
    epochs: int | None = None
    batch: int | None = None
    lr: float | None = None
    seed: int = 0
    device: str = "cpu"
    eval_eps: float = 0.005
    fd_h: float = 0.01
    opnorm_p: str = "2"
    opnorm_q: str = "2"
    opnorm_iters: int = 5
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    steps_per_epoch: int | None = None
    eval_n: int | None = None
    train_eval_n: int = 500

    def to_dict(self) -> dict:
        """The configuration as a JSON-ready dict.

        Examples
        --------
        >>> TrainConfig("fc", method="grad-l1", eps=0.01).to_dict()["eps"]
        0.01
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Rebuild a configuration from :meth:`to_dict`'s output (unknown keys refused).

        Examples
        --------
        >>> c = TrainConfig("conv6", size=32, epochs=2)
        >>> TrainConfig.from_dict(c.to_dict()) == c
        True
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainError(f"unknown training configuration keys {unknown}; known: {sorted(names)}")
        return cls(**data)

    def resolved(self) -> "TrainConfig":
        """A copy with the data-set defaults filled in and the norms written canonically.

        Examples
        --------
        >>> c = TrainConfig("conv6", size=32).resolved()
        >>> c.epochs, c.batch, c.lr
        (3, 32, 0.05)
        >>> TrainConfig("conv6", data="cifar10:/data/cifar").resolved().batch
        128
        """
        defaults = DATA_DEFAULTS["digits" if self.data == "digits" else "other"]
        filled = {k: (defaults[k] if getattr(self, k) is None else getattr(self, k)) for k in defaults}
        norms = {k: norm_name(getattr(self, k)) for k in ("opnorm_p", "opnorm_q")}
        return dataclasses.replace(self, **filled, **norms)

    def validate(self) -> None:
        """Refuse, with a message saying what to do, anything that cannot run (no work done).

        Examples
        --------
        >>> TrainConfig("conv6", method="grad-l1", eps=-1).resolved().validate()
        Traceback (most recent call last):
        ...
        pathstats.robust.train.TrainError: --eps must be a finite number >= 0, got -1
        """
        method = get_method(self.method)
        nets.get(self.arch)
        check_data_spec(self.data, self.size)
        _check_number("--eps", self.eps, low=0.0)
        if method.name == "none" and self.eps != 0:
            raise TrainError(f"--method none takes no strength, got --eps {self.eps}; leave --eps out or choose a method")
        _check_number("--eval-eps", self.eval_eps, low=0.0)
        _check_number("--fd-h", self.fd_h, low=0.0, strict=True)
        _check_number("--lr", self.lr, low=0.0, strict=True)
        _check_number("--momentum", self.momentum, low=0.0)
        _check_number("--weight-decay", self.weight_decay, low=0.0)
        for flag, value in (("--epochs", self.epochs), ("--batch", self.batch), ("--opnorm-iters", self.opnorm_iters),
                            ("--train-eval-n", self.train_eval_n), ("--steps-per-epoch", self.steps_per_epoch),
                            ("--eval-n", self.eval_n), ("--size", self.size)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise TrainError(f"{flag} must be a positive integer, got {value!r}")
        if self.batch < 2:
            raise TrainError("--batch must be at least 2 (BatchNorm needs two samples in train mode)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise TrainError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if self.schedule not in SCHEDULES:
            raise TrainError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        norm_name(self.opnorm_p), norm_name(self.opnorm_q)
        _check_device(self.device)

    def units(self) -> dict:
        """The run's strengths in both units: ``eps`` as given (pixel range [0, 1]) and the
        l_p radius ``eps_p = eps d^(1/p)`` its method's loss takes (the regularisation
        constant as it is for methods without a norm); the evaluation's ``eval_eps``.

        Reads no data beyond the spec (``d`` from the images' native size and ``size``;
        3 channels except for ``digits``).

        Examples
        --------
        >>> TrainConfig("fc", method="grad-l2", eps=0.01, size=16).units()["eps_p"] == 0.01 * 256 ** 0.5
        True
        """
        from .data import native_size

        height, width = native_size(self.data)
        d = (1 if self.data == "digits" else 3) * (self.size or height) * (self.size or width)
        method = get_method(self.method)
        return {"eps": self.eps, "eps_unit": "pixel range [0, 1]" if method.norm else "regularisation constant",
                "p": method.norm, "d": d, "eps_p": method.strength(self.eps, d), "eval_eps": self.eval_eps,
                "eval_eps_unit": "pixel range [0, 1]"}


def _check_number(flag: str, value, low: float, strict: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        relation = ">" if strict else ">="
        raise TrainError(f"{flag} must be a finite number {relation} {low:g}, got {value!r}")


def _check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise TrainError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise TrainError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")


def _derived_seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (independent streams per (seed, purpose, epoch, step))."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)


_SHUFFLE, _TRAIN_STEP, _EVAL_TEST, _EVAL_TRAIN = 1, 2, 3, 4


# --------------------------------------------------------------------------- evaluation


#: The per-image quantities of :func:`evaluate`: name -> key of
#: :func:`~pathstats.robust.vulnerability.vulnerability`'s result.
EVAL_FIELDS = {"loss": "loss_clean", "accuracy": "accuracy_clean", "grad_l1": "grad_l1", "grad_l2": "grad_l2",
               "vulnerability": "vulnerability", "loss_damage": "loss_damage", "accuracy_adv": "accuracy_adv",
               "first_order_damage": "first_order_damage"}


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eval_eps: float, *, seed: int,
             bounds=(0.0, 1.0)) -> dict:
    """Loss, accuracy, gradient norms and l_inf PGD robustness of ``model`` on ``(x, y)``, in eval mode.

    One call of :func:`~pathstats.robust.vulnerability.vulnerability` (PGD, l_inf,
    radius ``eval_eps``, 7 steps of ``0.2 eval_eps``, random start, seeded).  Every
    quantity of :data:`EVAL_FIELDS` is a mean over images with its standard error
    ``*_se`` (sample standard deviation over ``sqrt(n)``): ``loss``, ``accuracy``,
    ``grad_l1`` and ``grad_l2`` (per-sample ``||dL/dx||``), ``vulnerability``,
    ``loss_damage``, ``accuracy_adv`` and Lemma 2's ``first_order_damage``
    (``eval_eps E||dL/dx||_1``).

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> r = evaluate(model, torch.rand(20, 1, 2, 2), torch.randint(0, 3, (20,)), 0.01, seed=0)
    >>> r["n"], sorted(k for k in r if k.endswith("_se")) == sorted(k + "_se" for k in EVAL_FIELDS)
    (20, True)
    """
    measured = vulnerability(model, x, y, attack="pgd", norm="inf", eps=eval_eps, bounds=bounds, seed=seed,
                             check=False)
    out: dict[str, Any] = {"n": measured["n"]}
    for name, key in EVAL_FIELDS.items():
        out[name], out[name + "_se"] = measured[key], measured[key + "_stderr"]
    return out


# --------------------------------------------------------------------------- files


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} ({what}) is unreadable: {exc}; delete the folder to start over") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} ({what}) is not a JSON object; delete the folder to start over")
    return data


def _identity(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _NOT_IDENTITY}


def _check_same_run(out_dir: str, config: TrainConfig) -> None:
    path = os.path.join(out_dir, CONFIG_FILE)
    stored = _read_json(path, "the run's configuration").get("config")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path} has no 'config' object; delete the folder to start over")
    old, new = _identity(stored), _identity(config.to_dict())
    diff = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        raise ConfigMismatchError(f"{out_dir} holds a run with another configuration ({'; '.join(diff)}); "
                                  "use another --out, or repeat that run's command to continue it")


def _read_metrics(out_dir: str, upto_epoch: int) -> list[dict]:
    path = os.path.join(out_dir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    lines = []
    try:
        with open(path) as f:
            for line in f:
                if line.strip():
                    lines.append(json.loads(line))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is unreadable: {exc}; delete the folder to start over") from None
    return [row for row in lines if row.get("epoch", math.inf) <= upto_epoch]


def _write_metrics(out_dir: str, rows: list[dict]) -> None:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    atomic_write(os.path.join(out_dir, METRICS_FILE), lambda f: f.write(text.encode()))


def _rng_states() -> dict:
    np_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def _save_checkpoint(out_dir: str, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    atomic_write(os.path.join(out_dir, CHECKPOINT_FILE), lambda f: (f.write(data), f.flush(), os.fsync(f.fileno())))


def _load_checkpoint(out_dir: str) -> dict:
    path = os.path.join(out_dir, CHECKPOINT_FILE)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on a damaged file
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                              "delete it to restart the run from scratch") from None
    keys = {"format", "config", "model", "optimizer", "scheduler", "rng", "epoch", "step_in_epoch", "global_step",
            "objective_sum", "objective_count", "elapsed_s"}
    if not isinstance(state, dict) or not keys <= set(state) or state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a pathstats training checkpoint (format {CHECKPOINT_FORMAT}); "
                              "delete it to restart the run from scratch")
    return state


def load_trained_model(out_dir: str, device: str = "cpu") -> tuple:
    """The network of run folder ``out_dir`` with the weights of its last checkpoint,
    in eval mode on ``device``, and the checkpoint itself (``epoch``, ``config``, ...).

    The checkpoint is validated as when a run resumes (:class:`CheckpointError` with
    what to do); ``config.json`` gives the input shape and the number of classes.
    """
    from pathstats import nets

    state = _load_checkpoint(out_dir)
    with open(os.path.join(out_dir, CONFIG_FILE)) as f:
        stored = json.load(f)
    arch = stored["config"]["arch"]
    model = nets.build(arch, tuple(int(n) for n in stored["input_shape"]), int(stored["classes"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


# --------------------------------------------------------------------------- signals


class _StopRequests:
    """SIGINT/SIGTERM set a flag (the loop checkpoints and stops); a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# --------------------------------------------------------------------------- training


def _make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int):
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    milestones = [] if schedule == "constant" else [total_steps // 2, (3 * total_steps) // 4]
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)


def _result(config: TrainConfig, out_dir: str, status: str, rows: list[dict], global_step: int, elapsed: float,
            **extra) -> dict:
    result = {
        "status": status,
        **extra,
        "config": config.to_dict(),
        "epochs_done": rows[-1]["epoch"] if rows else 0,
        "steps_done": global_step,
        "elapsed_s": elapsed,
        "metrics": rows[-1] if rows else None,
        "files": {"config": CONFIG_FILE, "metrics": METRICS_FILE, "checkpoint": CHECKPOINT_FILE},
        "out": os.path.abspath(out_dir),
        "provenance": provenance(seed=config.seed, device=config.device),
    }
    write_json(os.path.join(out_dir, RESULT_FILE), result)
    return result


def train(config: TrainConfig, out_dir: str, *, progress: bool = True, max_steps: int | None = None) -> dict:
    """Train, evaluate every epoch, checkpoint; resume from ``out_dir`` if it holds this run.

    Parameters
    ----------
    config : TrainConfig
        The run (``None`` fields take :data:`DATA_DEFAULTS`).
    out_dir : str
        Folder of ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and
        ``result.json`` (created if needed).
    progress : bool, default True
        Show the step, the epoch, the running loss and the time left on stderr.
    max_steps : int, optional
        Stop cleanly after this many optimisation steps of this call (checkpoint,
        status ``interrupted``, ``stopped_by: max_steps``); calling again continues.

    Returns
    -------
    dict
        What ``result.json`` holds: ``status`` (``done``, ``interrupted`` or
        ``diverged``), ``reason``/``stopped_by`` where relevant, ``config``,
        ``epochs_done``, ``steps_done``, ``elapsed_s`` (training wall time summed
        over resumptions), ``metrics`` (the last epoch's line of
        ``metrics.jsonl``), ``files``, ``out`` and ``provenance``.  A finished or
        diverged run is returned as it is, without work.

    Raises
    ------
    TrainError
        Bad configuration (checked before any work), another run in ``out_dir``
        (:class:`ConfigMismatchError`), an unreadable checkpoint
        (:class:`CheckpointError`).
    """
    config = config.resolved()
    config.validate()
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise TrainError(f"--max-steps must be a positive integer, got {max_steps!r}")
    check_output_path(out_dir, directory=True)
    os.makedirs(out_dir, exist_ok=True)
    method = get_method(config.method)

    has_config = os.path.exists(os.path.join(out_dir, CONFIG_FILE))
    has_checkpoint = os.path.exists(os.path.join(out_dir, CHECKPOINT_FILE))
    if has_config:
        _check_same_run(out_dir, config)
        result_path = os.path.join(out_dir, RESULT_FILE)
        if os.path.exists(result_path):
            previous = _read_json(result_path, "the run's result")
            if previous.get("status") in ("done", "diverged"):
                return previous
    elif has_checkpoint or os.path.exists(os.path.join(out_dir, METRICS_FILE)):
        raise CheckpointError(f"{out_dir} holds a checkpoint or metrics but no {CONFIG_FILE}; use another --out, "
                              "or delete that folder")
    checkpoint = _load_checkpoint(out_dir) if has_checkpoint else None

    device = torch.device(config.device)
    data = load_dataset(config.data, config.size, seed=0, device=device)
    input_shape = tuple(data.input_shape)
    check_model_input(config.arch, input_shape)
    torch.manual_seed(config.seed)
    model = nets.build(config.arch, input_shape, data.classes).to(device)
    channels_last = device.type == "cuda" and len(input_shape) == 3
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    n_train = data.train_x.shape[0]
    steps_per_epoch = n_train // config.batch
    if steps_per_epoch < 1:
        raise TrainError(f"--batch {config.batch} is larger than the {n_train} training images; lower it")
    if config.steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    scheduler = _make_scheduler(optimizer, config.schedule, total_steps)
    d = math.prod(input_shape)
    strength = method.strength(config.eps, d)

    subset = torch.randperm(n_train, generator=torch.Generator().manual_seed(0))[:config.train_eval_n].to(device)
    eval_sets = {
        "test": (data.test_x[:config.eval_n], data.test_y[:config.eval_n]),
        "train": (data.train_x[subset], data.train_y[subset]),
    }

    if checkpoint is None:
        write_json(os.path.join(out_dir, CONFIG_FILE), {
            "config": config.to_dict(), "input_shape": list(input_shape), "d": d, "classes": data.classes,
            "method": {"name": method.name, "description": method.description, "source": method.source,
                       "norm": method.norm, "strength": strength},
            "steps_per_epoch": steps_per_epoch, "provenance": provenance(seed=config.seed, device=config.device),
        })
        epoch, step_in_epoch, global_step, objective_sum, objective_count, elapsed = 0, 0, 0, 0.0, 0, 0.0
        rows: list[dict] = []
    else:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        _set_rng_states(checkpoint["rng"])
        epoch, step_in_epoch, global_step = checkpoint["epoch"], checkpoint["step_in_epoch"], checkpoint["global_step"]
        objective_sum, objective_count, elapsed = (checkpoint["objective_sum"], checkpoint["objective_count"],
                                                   checkpoint["elapsed_s"])
        rows = _read_metrics(out_dir, epoch)

    def checkpoint_now() -> None:
        _save_checkpoint(out_dir, {
            "format": CHECKPOINT_FORMAT, "config": config.to_dict(), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_states(),
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "objective_sum": objective_sum, "objective_count": objective_count, "elapsed_s": elapsed,
        })

    steps_this_call = 0
    start = time.perf_counter() - elapsed
    bar = progress_bar(total=total_steps - global_step, desc=f"train {config.arch} {config.method} eps={config.eps:g}",
                       unit="step", disable=not progress)
    try:
        with _StopRequests() as stop:
            while epoch < config.epochs:
                order = torch.randperm(n_train, generator=torch.Generator().manual_seed(
                    _derived_seed(config.seed, _SHUFFLE, epoch))).to(device)
                while step_in_epoch < steps_per_epoch:
                    idx = order[step_in_epoch * config.batch:(step_in_epoch + 1) * config.batch]
                    x, y = data.train_x[idx], data.train_y[idx]
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    model.train()
                    optimizer.zero_grad(set_to_none=True)
                    loss = method.loss(model, x, y, strength, config, bounds=tuple(data.bounds),
                                       seed=_derived_seed(config.seed, _TRAIN_STEP, epoch, step_in_epoch))
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        elapsed = time.perf_counter() - start
                        reason = (f"the training loss became {value} at epoch {epoch + 1}, step {step_in_epoch + 1} "
                                  f"(method {config.method}, eps {config.eps:g}, lr {config.lr:g}); "
                                  "lower --eps or --lr, then use another --out")
                        return _result(config, out_dir, "diverged", rows, global_step, elapsed, reason=reason)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    objective_sum, objective_count = objective_sum + value, objective_count + 1
                    step_in_epoch, global_step, steps_this_call = step_in_epoch + 1, global_step + 1, steps_this_call + 1
                    bar.update(1)
                    bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{objective_sum / objective_count:.4g}")
                    stopped_by = stop.signal or ("max_steps" if max_steps is not None and steps_this_call >= max_steps
                                                 else None)
                    if stopped_by and not (step_in_epoch == steps_per_epoch):
                        elapsed = time.perf_counter() - start
                        checkpoint_now()
                        return _result(config, out_dir, "interrupted", rows, global_step, elapsed, stopped_by=stopped_by,
                                       reason=f"stopped by {stopped_by} after a checkpoint at epoch {epoch + 1}, "
                                              f"step {step_in_epoch}; repeat the command to continue")
                row = {"epoch": epoch + 1, "step": global_step, "lr": scheduler.get_last_lr()[0],
                       "objective": objective_sum / max(objective_count, 1)}
                for split, (xs, ys) in eval_sets.items():
                    tag = _EVAL_TEST if split == "test" else _EVAL_TRAIN
                    stats = evaluate(model, xs, ys, config.eval_eps, seed=_derived_seed(config.seed, tag, epoch),
                                     bounds=tuple(data.bounds))
                    prefix = "test_" if split == "test" else "train_"
                    for key, value in stats.items():
                        if key.startswith(("vulnerability", "loss_damage", "accuracy_adv")) and split == "test":
                            row[key] = value  # the SPEC's unprefixed names are the test split's
                        row[prefix + key] = value
                row["eval_eps"] = config.eval_eps
                epoch, step_in_epoch, objective_sum, objective_count = epoch + 1, 0, 0.0, 0
                elapsed = time.perf_counter() - start
                row["elapsed_s"] = elapsed
                rows.append(row)
                _write_metrics(out_dir, rows)
                checkpoint_now()
                stopped_by = stop.signal or ("max_steps" if max_steps is not None and steps_this_call >= max_steps
                                             else None)
                if stopped_by and epoch < config.epochs:
                    return _result(config, out_dir, "interrupted", rows, global_step, elapsed, stopped_by=stopped_by,
                                   reason=f"stopped by {stopped_by} after a checkpoint at the end of epoch {epoch}; "
                                          "repeat the command to continue")
    finally:
        bar.close()
    return _result(config, out_dir, "done", rows, global_step, time.perf_counter() - start)
