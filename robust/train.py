"""Regularised training with per-epoch robustness metrics, checkpoints and exact resume.

:func:`train` trains a registered architecture on ``digits``, ``cifar10:DIR`` or
``folder:DIR`` with one of the methods of :data:`pathstats.robust.methods.METHODS`
(SGD with momentum, a learning-rate schedule) and writes into its folder:

* ``config.json``: the resolved :class:`TrainConfig`, with provenance;
* ``metrics.jsonl``: one line per evaluated epoch (epoch 0 is the initialisation;
  every ``eval_every`` epochs and the last), on the test split, on a fixed subset of
  the training split and (``val_split``) on the validation images, in eval mode: loss, accuracy, the per-sample gradient norms
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

The data stay at their native size as uint8 (:func:`~pathstats.robust.data.load_images`);
each batch is augmented, up-sampled and normalised on the training device
(:class:`~pathstats.robust.data.BatchTransform`), so memory does not grow with ``size``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathstats import nets
from pathstats._io import atomic_write, check_output_path, write_json
from pathstats.errors import CheckpointError, ConfigMismatchError, TrainError
from pathstats.progress import progress as progress_bar
from pathstats.provenance import provenance
from pathstats.signals import SignalCatcher
from pathstats.resources import (SAFETY, ResourceError, activation_bytes, fitting_batch, format_bytes, free_memory,
                                 measure_peak, peak_resident_bytes)

from . import callable_module
from .attacks import PGD_STEP_FRAC, PGD_STEPS, lp_radius, norm_name
from .data import (BatchTransform, DataError, Dataset, channel_stats, check_data_spec, check_model_input, load_images,
                   native_shape, native_size, parse_augment, upsampling_factor)
from .methods import ADV_MODES, METHODS, OPNORM_FORMS, get_method
from .vulnerability import vulnerability

__all__ = [
    "TrainConfig",
    "TrainError",
    "ConfigMismatchError",
    "CheckpointError",
    "train",
    "load_trained_model",
    "load_run_dataset",
    "evaluate",
    "EVAL_FIELDS",
    "DATA_DEFAULTS",
    "SCHEDULES",
    "default_eval_batch",
    "memory_per_image",
    "plan_memory",
    "peak_memory",
    "AMP_MODES",
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
#: down to 0 over the run), ``step`` (x0.1 at 50% and 75% of the steps), ``constant``,
#: ``halving`` (the authors' code: x0.5 every ``halve_every`` epochs, each time
#: restarting from the weights of the best validation accuracy so far).
SCHEDULES = ("cosine", "step", "constant", "halving")

#: Fields that may differ between two commands on the same folder: where and how fast a run
#: executes, not what it computes (``amp`` changes the arithmetic of the training forward
#: passes only; its effect on the measured gradient norms is in docs/train.rst).
_NOT_IDENTITY = ("device", "amp", "compile")

#: ``--amp`` values: None (float32) or ``"bf16"`` (autocast of the training forward passes).
AMP_MODES = ("bf16",)

#: Bytes per image of an evaluation batch (clean pass, input gradient, PGD steps) and of a
#: training step, as multiples of the bytes of one forward pass's module outputs
#: (:func:`pathstats.resources.activation_bytes`).  Measured on CPU (peak RSS growth,
#: conv8 width 8 at 64 px, batch 32): evaluation 2.5, plain and PGD steps 2.3-2.5,
#: double backpropagation (grad-l1) 4.9; rounded up.
EVAL_MEMORY_FACTOR = 3.0
TRAIN_MEMORY_FACTOR = {"plain": 3.0, "double": 6.0}
_DOUBLE_BACKPROP = ("grad-l1", "grad-l2", "fgsm-through", "crosslip", "fd-l1", "fd-l2", "opnorm")


#: The ``pathstats train --help`` groups a field's flag may belong to (the others: the main list).
PROTOCOL, EXECUTION = "the papers' protocols", "execution (not part of a run's identity)"


def _flag(help: str, *, metavar: str | None = None, choices: tuple | None = None, group: str | None = None,
          required: bool = False, default_text: str | None = None) -> dict:
    """A field's command-line description, kept in the field's metadata (never in the run's identity).

    ``pathstats train`` builds each flag ``--<name with dashes>`` from it, its type from the
    field's annotation and its default from the field's default (so neither is written twice);
    ``default_text`` replaces the shown default where the field's is a placeholder (None).
    """
    return {"cli": {"help": help, "metavar": metavar, "choices": choices, "group": group, "required": required,
                    "default_text": default_text}}


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
    normalise : bool
        Normalise each channel by the mean and standard deviation of the training
        images (the paper's "normalised, sigma ~ .2"); the network, the attacks and
        ``eps``/``eval_eps`` then live in normalised units, and the attacks' box is
        the normalised image of ``[0, 1]``.
    augment : str
        ``""``, ``"crop"``, ``"flip"`` or ``"crop,flip"``: random crop of the image
        padded with ``crop_pad`` zero pixels, horizontal flip (the authors' code);
        at the native size, before up-sampling, drawn from ``(seed, epoch, step)``.
    crop_pad : int, optional
        Default ``round(native side / 8)``: 4 px for CIFAR-10, 1 px for digits.
    val_split : int
        Training images held out for validation (a fixed subset, seed 0; the
        authors: 5000 of CIFAR-10's 50000); 0: none.
    halve_every : int
        The ``halving`` schedule's period in epochs (authors: 30).
    channels : int, optional
        Width of the registered net (``nets.build(channels=...)``); default the net's.
    native_side : int, optional
        The image side that ``conv8``'s dilation is relative to (dilation ``size //
        native_side``); default the data's native side.  conv8 halves its maps three
        times before its last blocks, whose reflect padding equals the dilation, so
        its base side must exceed 8: 8-pixel digits need ``native_side`` 16 (up-sampled
        16/32/64 px then get dilation 1/2/4, as CIFAR's 32/64/128 do).
    limit_train, limit_test : int, optional
        Use only the first N training / test images (smoke runs).
    eval_batch : int, optional
        Images per evaluation batch; default ``min(256, max(8, 2**21 // d))``, so
        that an evaluation batch holds at most about 8 MB of input whatever ``size``.
    eval_every : int
        Evaluate every N epochs (epoch 0, the initialisation, and the last epoch always).
    adv_mode : str
        Model mode of the attacks inside the adversarial training losses: ``"eval"``
        (default: the attack is the one :mod:`pathstats.robust.attacks` defines and
        the evaluation measures, independent of the batch) or ``"train"`` (the
        authors' code: BatchNorm uses the batch statistics; the running statistics
        are left alone either way).
    adv_clip : bool
        Clip training attacks to the input box (default True: training examples are
        images, as the evaluation attack's are); the authors' code does not clip.
    eval_steps, eval_step_frac, eval_random_start :
        The per-epoch evaluation PGD: steps, step size as a fraction of
        ``eval_eps``, random start (defaults 7, 0.2, True: the paper's Section 4.1;
        the authors' test attack is 10 steps of ``eps / 7.5``, no random start).
    opnorm_form : str
        ``"eq13"`` (default, the penalty ``||J v||_q`` of Roth et al.'s eq. 13, as
        before) or ``"squared"`` (its square: eq. 7, the squared data-dependent
        spectral norm their experiments penalise).
    amp : str, optional
        ``"bf16"``: the training loss's forward passes under ``torch.autocast`` in
        bfloat16 (the evaluation stays float32).  An execution option: not part of the
        run's identity (a run may be resumed with or without it).
    compile : bool, optional
        Train through ``torch.compile(model)``; if compiling fails, say so in one line
        and train the eager model.  An execution option, as ``amp``.
    """

    arch: str = field(metadata=_flag("registered architecture (see pathstats archs)", required=True))
    data: str = field(default="digits", metadata=_flag(
        "digits (bundled 8x8 digits), cifar10:DIR (python batches) or folder:DIR (DIR/train/<class>/*, "
        "DIR/test/<class>/*)", required=True))
    method: str = field(default="none", metadata=_flag(
        "training method (see the docs' methods table): " + ", ".join(METHODS), metavar="M", required=True))
    size: int | None = field(default=None, metadata=_flag("up-sample images to S x S by copying pixels", metavar="S",
                                                          default_text="the native size"))
    eps: float = field(default=0.0, metadata=_flag(
        "strength: eps_inf (the loss gets eps_p = eps d^(1/p)) for grad-*, fgsm*, fgm-l2 and pgd; the regularisation "
        "constant for crosslip, fd-* and opnorm; needed by every method but none (--eps 0 trains without the "
        "penalty)", metavar="E", default_text="0 with --method none"))
    epochs: int | None = field(default=None, metadata=_flag("training epochs", metavar="N"))
    batch: int | None = field(default=None, metadata=_flag("training batch size", metavar="B"))
    lr: float | None = field(default=None, metadata=_flag("SGD learning rate", metavar="LR"))
    seed: int = field(default=0, metadata=_flag("seed of initialisation, shuffling and attacks", metavar="S"))
    device: str = field(default="cpu", metadata=_flag("cpu, cuda or cuda:N", metavar="D"))
    eval_eps: float = field(default=0.005, metadata=_flag("eps_inf of the per-epoch l_inf PGD evaluation", metavar="E"))
    fd_h: float = field(default=0.01, metadata=_flag("finite-difference step of fd-l1/fd-l2", metavar="H"))
    opnorm_p: str = field(default="2", metadata=_flag("domain norm of opnorm: 1, 2 or inf", metavar="P"))
    opnorm_q: str = field(default="2", metadata=_flag("co-domain norm of opnorm: 1, 2 or inf", metavar="Q"))
    opnorm_iters: int = field(default=5, metadata=_flag("power iterations per step of opnorm", metavar="N"))
    momentum: float = field(default=0.9, metadata=_flag("SGD momentum", metavar="M"))
    weight_decay: float = field(default=0.0, metadata=_flag("SGD weight decay", metavar="W"))
    schedule: str = field(default="cosine", metadata=_flag(
        "learning-rate schedule, per step (cosine: down to 0; halving: the authors', needs --val-split)",
        choices=SCHEDULES))
    steps_per_epoch: int | None = field(default=None, metadata=_flag(
        "at most N optimisation steps per epoch", metavar="N", default_text="one pass over the training split"))
    eval_n: int | None = field(default=None, metadata=_flag("evaluate on the first N test images", metavar="N",
                                                            default_text="all"))
    train_eval_n: int = field(default=500, metadata=_flag(
        "size of the fixed training subset evaluated each epoch", metavar="N"))
    normalise: bool = field(default=False, metadata=_flag(
        "normalise each channel by the training split's mean and standard deviation (the paper's sigma ~ .2); --eps "
        "and --eval-eps are then in normalised units", group=PROTOCOL))
    augment: str = field(default="", metadata=_flag(
        "crop, flip or crop,flip: random crop with zero padding, horizontal flip, at the native size before "
        "up-sampling (the authors' code)", metavar="A", group=PROTOCOL, default_text="none"))
    crop_pad: int | None = field(default=None, metadata=_flag(
        "padding of the random crop", metavar="P", group=PROTOCOL,
        default_text="native side / 8: 4 px on CIFAR-10, 1 px on digits"))
    val_split: int = field(default=0, metadata=_flag(
        "hold N training images out for validation (fixed subset; the authors: 5000 on CIFAR-10)", metavar="N",
        group=PROTOCOL))
    halve_every: int = field(default=30, metadata=_flag(
        "--schedule halving: halve the rate every N epochs from the best-validation weights", metavar="N",
        group=PROTOCOL))
    channels: int | None = field(default=None, metadata=_flag("width of the registered net", metavar="C",
                                                              group=PROTOCOL, default_text="the net's"))
    native_side: int | None = field(default=None, metadata=_flag(
        "the image side conv8's dilation is relative to (dilation size // S; 8-pixel digits need 16)", metavar="S",
        group=PROTOCOL, default_text="the data's native side"))
    limit_train: int | None = field(default=None, metadata=_flag("use only the first N training images", metavar="N",
                                                                 group=PROTOCOL, default_text="all"))
    limit_test: int | None = field(default=None, metadata=_flag("use only the first N test images", metavar="N",
                                                                group=PROTOCOL, default_text="all"))
    eval_batch: int | None = field(default=None, metadata=_flag(
        "images per evaluation batch", metavar="B", group=PROTOCOL, default_text="min(256, max(8, 2^21 / d))"))
    eval_every: int = field(default=1, metadata=_flag(
        "evaluate every N epochs (the initialisation and the last epoch always)", metavar="N", group=PROTOCOL))
    adv_mode: str = field(default="eval", metadata=_flag(
        "model mode of the attacks in adversarial training (the authors: train)", choices=ADV_MODES, group=PROTOCOL))
    adv_clip: bool = field(default=True, metadata=_flag(
        "clip training attacks to the input box (the authors: no)", group=PROTOCOL))
    eval_steps: int = field(default=PGD_STEPS, metadata=_flag("steps of the evaluation PGD", metavar="N",
                                                              group=PROTOCOL))
    eval_step_frac: float = field(default=PGD_STEP_FRAC, metadata=_flag(
        "step of the evaluation PGD as a fraction of --eval-eps", metavar="F", group=PROTOCOL))
    eval_random_start: bool = field(default=True, metadata=_flag(
        "random start of the evaluation PGD (the authors: no)", group=PROTOCOL))
    opnorm_form: str = field(default="eq13", metadata=_flag(
        "opnorm's penalty: eq13 ||J v||_q or squared (Roth et al. eq. 7)", choices=OPNORM_FORMS, group=PROTOCOL))
    amp: str | None = field(default=None, metadata=_flag(
        "autocast the training forward passes in bfloat16 (the evaluation stays float32)", choices=AMP_MODES,
        group=EXECUTION, default_text="off: float32"))
    compile: bool | None = field(default=None, metadata=_flag(
        "train through torch.compile (falls back to the eager model with a one-line message)", group=EXECUTION))

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
        norms = {k: norm_name(getattr(self, k), "--" + k.replace("_", "-")) for k in ("opnorm_p", "opnorm_q")}
        if self.crop_pad is None and isinstance(self.augment, str) and "crop" in self.augment:
            try:
                filled["crop_pad"] = int(round(native_size(self.data)[-1] / 8))
            except DataError:
                pass  # validate() refuses the data spec with its own message
        return dataclasses.replace(self, **filled, **norms)

    def units(self, *, std: list | None = None, d: int | None = None) -> dict:
        """Every strength of the run in normalised and pixel-range units, with its l_p radii.

        With ``normalise`` the strengths are in normalised units; ``sigma`` (the mean of
        the per-channel standard deviations ``std`` of the training pixels, measured
        from the data when not given) converts them: an l_inf radius ``eps`` in
        normalised units is ``eps * std_c`` in pixel-range units on channel ``c``
        (``pixel`` gives ``eps * sigma``, the paper's "multiply by .2").  Radii of the
        norm-``p`` methods and of the evaluation attack come with ``eps_p = eps
        d^(1/p)`` for p = inf, 2, 1; a regularisation constant ``lam`` of a penalty
        homogeneous of degree ``k`` in the input gradient is ``lam sigma^k`` in pixel
        units (``k`` 2 for crosslip, fd-* and squared opnorm, 1 for eq13 opnorm).

        Examples
        --------
        >>> u = TrainConfig("fc", method="pgd", eps=0.01, normalise=True).units(std=[0.2], d=64)
        >>> u["input_units"], u["eps"]["normalised"]["inf"], round(u["eps"]["pixel"]["inf"], 6), u["eps"]["normalised"]["2"]
        ('normalised', 0.01, 0.002, 0.08)
        """
        c = self.resolved()
        method = get_method(c.method)
        if d is None:
            channels, h, w = native_shape(c.data)
            factor = upsampling_factor(c.data, c.size)
            d = channels * h * w * factor**2
        if std is None:
            std = _measured_std(c.data, c.val_split, c.limit_train) if c.normalise else None
        sigma = None if std is None else float(sum(std) / len(std))

        def both(value: float, degree: int) -> dict:
            # value in the run's units -> (normalised, pixel); pixel = normalised * sigma^degree
            if c.normalise:
                norm_value, pixel = value, (None if sigma is None else value * sigma**degree)
            else:
                pixel, norm_value = value, (None if sigma is None else value / sigma**degree)
            return {"normalised": norm_value, "pixel": pixel}

        def radii(value: float) -> dict:
            out = {}
            for unit, v in both(value, 1).items():
                out[unit] = None if v is None else {p: float(lp_radius(v, d, p)) for p in ("inf", "2", "1")}
            if c.normalise and std is not None:
                out["pixel_per_channel_inf"] = [value * s for s in std]
            return out

        if method.norm is not None:
            eps = {"taken_as": f"eps_inf; the loss gets eps_{method.norm} = eps d^(1/{method.norm})", **radii(c.eps)}
        else:
            degree = {"crosslip": 2, "fd-l2": 2, "fd-l1": 2, "opnorm": 2 if c.opnorm_form == "squared" else 1}.get(
                c.method, 0)
            eps = {"taken_as": "regularisation constant", "degree": degree, **both(c.eps, degree)}
        return {"input_units": "normalised" if c.normalise else "pixel", "d": d, "std": std, "sigma": sigma,
                "eps": eps, "eval_eps": {"taken_as": "eps_inf of the evaluation PGD", **radii(c.eval_eps),
                                         "step": c.eval_step_frac * c.eval_eps}}

    def validate(self) -> None:
        """Refuse, with a message saying what to do, anything that cannot run (no work done).

        Examples
        --------
        >>> TrainConfig("conv6", method="grad-l1", eps=-1).resolved().validate()
        Traceback (most recent call last):
        ...
        pathstats.errors.TrainError: --eps must be a finite number >= 0, got -1
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
        norm_name(self.opnorm_p, "--opnorm-p"), norm_name(self.opnorm_q, "--opnorm-q")
        _check_device(self.device)
        for flag, value in (("--normalise", self.normalise), ("--adv-clip", self.adv_clip),
                            ("--eval-random-start", self.eval_random_start)):
            if not isinstance(value, bool):
                raise TrainError(f"{flag} must be true or false, got {value!r}")
        try:
            parse_augment(self.augment)
        except DataError as exc:
            raise TrainError(str(exc)) from None
        for flag, value, low in (("--crop-pad", self.crop_pad, 0), ("--val-split", self.val_split, 0),
                                 ("--halve-every", self.halve_every, 1), ("--channels", self.channels, 1),
                                 ("--native-side", self.native_side, 1),
                                 ("--limit-train", self.limit_train, 1), ("--limit-test", self.limit_test, 1),
                                 ("--eval-batch", self.eval_batch, 1), ("--eval-every", self.eval_every, 1),
                                 ("--eval-steps", self.eval_steps, 0)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise TrainError(f"{flag} must be an integer >= {low}, got {value!r}")
        if self.schedule == "halving" and self.val_split < 1:
            raise TrainError("--schedule halving restarts from the best-validation checkpoint: give --val-split N (N > 0)")
        if self.adv_mode not in ADV_MODES:
            raise TrainError(f"--adv-mode must be one of {', '.join(ADV_MODES)}, got {self.adv_mode!r}")
        if self.opnorm_form not in OPNORM_FORMS:
            raise TrainError(f"--opnorm-form must be one of {', '.join(OPNORM_FORMS)}, got {self.opnorm_form!r}")
        _check_number("--eval-step-frac", self.eval_step_frac, low=0.0, strict=True)
        if self.amp is not None and self.amp not in AMP_MODES:
            raise TrainError(f"--amp must be one of {', '.join(AMP_MODES)} (or absent: float32), got {self.amp!r}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise TrainError(f"--compile must be true or false, got {self.compile!r}")


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


_SHUFFLE, _TRAIN_STEP, _EVAL_TEST, _EVAL_TRAIN, _AUGMENT, _INIT = 1, 2, 3, 4, 5, 6


def _jsonable(bounds) -> list:
    return [b.flatten().tolist() if torch.is_tensor(b) else b for b in bounds]


# --------------------------------------------------------------------------- evaluation


#: The per-image quantities of :func:`evaluate`: name -> key of
#: :func:`~pathstats.robust.vulnerability.vulnerability`'s result.
EVAL_FIELDS = {"loss": "loss_clean", "accuracy": "accuracy_clean", "grad_l1": "grad_l1", "grad_l2": "grad_l2",
               "vulnerability": "vulnerability", "loss_damage": "loss_damage", "accuracy_adv": "accuracy_adv",
               "first_order_damage": "first_order_damage"}


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eval_eps: float, *, seed: int,
             bounds=(0.0, 1.0), steps: int = PGD_STEPS, step_frac: float = PGD_STEP_FRAC, random_start: bool = True,
             batch: int | None = None, transform: BatchTransform | None = None) -> dict:
    """Loss, accuracy, gradient norms and l_inf PGD robustness of ``model`` on ``(x, y)``, in eval mode.

    :func:`~pathstats.robust.vulnerability.vulnerability` (PGD, l_inf, radius
    ``eval_eps``, ``steps`` steps of ``step_frac * eval_eps``, random start if
    ``random_start``, seeded) on batches of ``batch`` images (default all at once);
    with ``transform``, ``x`` holds uint8 images that each batch turns into inputs
    (so no transformed copy of the whole set is ever held).  Every quantity of
    :data:`EVAL_FIELDS` is a mean over images with its standard error ``*_se``
    (sample standard deviation over ``sqrt(n)``, pooled exactly over the batches):
    ``loss``, ``accuracy``, ``grad_l1`` and ``grad_l2`` (per-sample
    ``||dL/dx||``), ``vulnerability``, ``loss_damage``, ``accuracy_adv`` and Lemma
    2's ``first_order_damage`` (``eval_eps E||dL/dx||_1``).

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(20, 1, 2, 2), torch.randint(0, 3, (20,))
    >>> r = evaluate(model, x, y, 0.01, seed=0)
    >>> r["n"], sorted(k for k in r if k.endswith("_se")) == sorted(k + "_se" for k in EVAL_FIELDS)
    (20, True)
    >>> s = evaluate(model, x, y, 0.01, seed=0, random_start=False, batch=7)
    >>> t = evaluate(model, x, y, 0.01, seed=0, random_start=False)
    >>> abs(s["loss"] - t["loss"]) < 1e-6 and abs(s["loss_se"] - t["loss_se"]) < 1e-6
    True
    """
    n = x.shape[0]
    batch = n if batch is None else max(1, int(batch))
    parts = []
    for index, start in enumerate(range(0, n, batch)):
        xb, yb = x[start:start + batch], y[start:start + batch]
        if transform is not None:
            xb = transform(xb)
        measured = vulnerability(model, xb, yb, attack="pgd", norm="inf", eps=eval_eps, bounds=bounds,
                                 seed=seed + index,  # as vulnerability() seeds its own batches
                                 steps=steps, step_size=step_frac * eval_eps,
                                 random_start=random_start, batch_size=batch, check=False)
        parts.append((measured["n"], {key: (measured[key], measured[key + "_se"]) for key in EVAL_FIELDS.values()}))
    out: dict[str, Any] = {"n": n}
    for name, key in EVAL_FIELDS.items():
        out[name], out[name + "_se"] = _pooled([(m, mean_se[key]) for m, mean_se in parts])
    return out


def _pooled(parts: list) -> tuple:
    """Mean and standard error of the union of samples given as ``(n, (mean, se))`` per part."""
    total = sum(n for n, _ in parts)
    mean = sum(n * m for n, (m, _) in parts) / total
    if total < 2:
        return mean, math.nan
    # sum of squares of each part from its mean and sample variance (se^2 n); a part of one sample has none
    squares = sum((n - 1) * (se**2 * n if n > 1 else 0.0) + n * m**2 for n, (m, se) in parts)
    var = max(squares - total * mean**2, 0.0) / (total - 1)
    return mean, math.sqrt(var / total)


@torch.no_grad()
def _clean_evaluate(model: nn.Module, u8: torch.Tensor, y: torch.Tensor, transform: BatchTransform, batch: int) -> dict:
    """Loss and accuracy (means and standard errors) in eval mode: the validation metrics."""
    was_training = model.training
    model.eval()
    losses, correct = [], []
    try:
        for start in range(0, u8.shape[0], batch):
            logits = model(transform(u8[start:start + batch]))
            yb = y[start:start + batch]
            losses.append(F.cross_entropy(logits, yb, reduction="none").double())
            correct.append((logits.argmax(1) == yb).double())
    finally:
        model.train(was_training)
    out = {}
    for name, values in (("loss", torch.cat(losses)), ("accuracy", torch.cat(correct))):
        n = values.numel()
        out[name] = float(values.mean())
        out[name + "_se"] = float(values.std() / math.sqrt(n)) if n > 1 else math.nan
    out["n"] = int(u8.shape[0])
    return out


@functools.lru_cache(maxsize=8)
def _measured_std_cached(data: str, val_split: int, limit_train: int | None) -> tuple:
    images = load_images(data)
    train_idx, _ = images.split_validation(val_split, limit=limit_train)
    return tuple(float(v) for v in channel_stats(images, train_idx)[1])


def _measured_std(data: str, val_split: int, limit_train: int | None) -> list | None:
    """Per-channel standard deviation of the training pixels, or None if the data are unreadable."""
    try:
        return list(_measured_std_cached(data, val_split, limit_train))
    except DataError:
        return None


def default_eval_batch(d: int) -> int:
    """Evaluation batch for inputs of ``d`` numbers: ``min(256, max(8, 2**21 // d))``.

    >>> default_eval_batch(1024), default_eval_batch(3 * 256 * 256)
    (256, 10)
    """
    return min(256, max(8, 2**21 // d))


# --------------------------------------------------------------------------- memory


def memory_per_image(arch: str, input_shape: tuple, classes: int = 10, channels: int | None = None,
                     native_side: int | None = None, method: str = "none") -> dict:
    """Estimated bytes per image of an evaluation batch and of a training step of ``method``
    (:data:`EVAL_MEMORY_FACTOR`, :data:`TRAIN_MEMORY_FACTOR` times the forward pass's module
    outputs, found on the meta device: instant at any size), and the model's parameter bytes.

    >>> m = memory_per_image("conv8", (3, 256, 256), channels=8)
    >>> round(m["activations"] / 2**20, 1), m["eval"] == 3 * m["activations"]
    (16.6, True)
    """
    with torch.device("meta"):
        model = nets.build(arch, tuple(input_shape), classes, channels=channels, native_side=native_side)
    act = activation_bytes(model, tuple(input_shape))
    params = sum(p.numel() * 4 for p in model.parameters())
    kind = "double" if method in _DOUBLE_BACKPROP else "plain"
    return {"activations": act, "eval": EVAL_MEMORY_FACTOR * act, "train": TRAIN_MEMORY_FACTOR[kind] * act,
            "params": params}


def plan_memory(config: TrainConfig, input_shape: tuple, classes: int, native_side: int, *, free: int | None,
                source: str, measured_eval: float | None = None) -> dict:
    """The evaluation batch of run ``config`` and the bytes its steps need, or a
    :class:`~pathstats.errors.ResourceError` saying what would fit.

    ``free`` bytes (from :func:`~pathstats.resources.free_memory`, named by ``source``)
    bound the training step (``batch`` images, all of ``free``) and the evaluation batch
    (:data:`~pathstats.resources.SAFETY` of ``free``).  The evaluation batch is
    ``config.eval_batch`` if given (refused if it does not fit), else
    :func:`default_eval_batch` lowered to what fits.  ``measured_eval`` (bytes per
    image, e.g. CUDA's peak of a small evaluation batch) replaces the estimate.

    >>> c = TrainConfig("conv8", data="cifar10:/x", size=256, channels=8).resolved()
    >>> plan_memory(c, (3, 256, 256), 10, 32, free=64 * 2**30, source="test")["eval_batch"]
    10
    >>> plan_memory(c, (3, 256, 256), 10, 32, free=2 * 2**30, source="test")
    Traceback (most recent call last):
    ...
    pathstats.errors.ResourceError: conv8 at 256 x 256 (width 8), method none: a training step of --batch 128 needs about 6.2 GiB, more than the 2.0 GiB free here (test); what fits: --batch 41, or --size 128 or --channels 2
    """
    d = math.prod(input_shape)
    per = memory_per_image(config.arch, input_shape, classes, config.channels, native_side, config.method)
    eval_per = float(measured_eval) if measured_eval else per["eval"]
    fixed = 4 * per["params"]  # weights, gradients, momentum, a copy in the checkpoint
    need_train = fixed + config.batch * per["train"]
    where = (f"{config.arch} at {input_shape[-2]} x {input_shape[-1]}"
             + (f" (width {config.channels})" if config.channels else "") + f", method {config.method}")
    out = {"eval_per_image": eval_per, "train_per_image": per["train"], "train_bytes": need_train,
           "free": free, "free_source": source}
    if free is not None and need_train > free:
        largest = fitting_batch(per["train"], free, fixed, fraction=1.0)
        raise ResourceError(f"{where}: a training step of --batch {config.batch} needs about "
                            f"{format_bytes(need_train)}, more than the {format_bytes(free)} free here ({source}); "
                            f"what fits: {_what_fits(config, input_shape, classes, native_side, free, largest)}")
    fits = fitting_batch(eval_per, free, fixed)
    if config.eval_batch is not None:
        if fits is not None and config.eval_batch > fits:
            raise ResourceError(f"{where}: --eval-batch {config.eval_batch} needs about "
                                f"{format_bytes(fixed + config.eval_batch * eval_per)}, more than the "
                                f"{format_bytes(free)} free here ({source}) allows; the largest --eval-batch that "
                                f"fits is {max(fits, 1) if fits else 'none: ' + _what_fits(config, input_shape, classes, native_side, free, 0)}")
        out["eval_batch"] = config.eval_batch
    else:
        if fits is not None and fits < 1:
            raise ResourceError(f"{where}: one evaluation image needs about {format_bytes(eval_per)}, more than "
                                f"the {format_bytes(free)} free here ({source}) allows; what fits: "
                                f"{_what_fits(config, input_shape, classes, native_side, free, 0)}")
        out["eval_batch"] = default_eval_batch(d) if fits is None else min(default_eval_batch(d), fits)
    out["eval_bytes"] = fixed + out["eval_batch"] * eval_per
    return out


def _what_fits(config: TrainConfig, input_shape: tuple, classes: int, native_side: int, free: int,
               largest_batch: int) -> str:
    """``--batch B, or --size S or --channels C``: the largest of each that fits ``free`` (the others unchanged)."""
    parts = [f"--batch {largest_batch}"] if largest_batch >= 2 else []

    def fits(shape: tuple, channels: int | None) -> bool:
        try:
            per = memory_per_image(config.arch, shape, classes, channels, native_side, config.method)
        except Exception:  # a net that cannot read that shape
            return False
        return 4 * per["params"] + config.batch * per["train"] <= free and per["eval"] <= SAFETY * free

    side, native = input_shape[-1], native_side
    factor = max(side // max(native, 1), 1)
    sizes = [s * (side // factor) for s in range(factor - 1, 0, -1)]
    size = next((s for s in sizes if fits((input_shape[0], s, s), config.channels)), None)
    if size is not None:
        parts.append(f"--size {size}")
    width = config.channels or _default_width(config.arch, input_shape, classes, native_side)
    if width:
        width_fit = next((w for w in range(width - 1, 0, -1) if fits(input_shape, w)), None)
        if width_fit is not None:
            parts.append(f"--channels {width_fit}")
    if not parts:
        return "nothing at this size and width; use a machine with more memory"
    return parts[0] + (", or " + " or ".join(parts[1:]) if len(parts) > 1 else "")


def _default_width(arch: str, input_shape: tuple, classes: int, native_side: int) -> int | None:
    """The registered net's default width, read from its first layer's output channels (None if it has none)."""
    with torch.device("meta"):
        model = nets.build(arch, tuple(input_shape), classes, native_side=native_side)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
    return None


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
    native = stored.get("native_shape")  # runs before the uint8 pipeline lack it: conv8's default then, as they trained
    model = nets.build(arch, tuple(int(n) for n in stored["input_shape"]), int(stored["classes"]),
                       channels=stored["config"].get("channels"),
                       native_side=stored["config"].get("native_side") or (None if native is None else int(native[-1])))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def load_run_dataset(out_dir: str, device: str = "cpu") -> Dataset:
    """The test split of run folder ``out_dir`` as its network sees it, as a :class:`~pathstats.robust.data.Dataset`.

    Up-sampled, normalised with the run's training statistics (``config.json``) and
    cut to ``limit_test``; ``bounds`` is the run's input box (per-channel tensors when
    normalised), so attacks on the trained network use the run's units.  The
    training split is left empty (``0`` images): evaluation reads the test split.
    """
    with open(os.path.join(out_dir, CONFIG_FILE)) as f:
        stored = json.load(f)
    config = TrainConfig.from_dict(stored["config"])
    images = load_images(config.data, seed=0, device=device)
    info = stored.get("data") or {}
    mean, std = info.get("mean"), info.get("std")
    transform = BatchTransform(images.levels, upsampling_factor(config.data, config.size),
                               None if mean is None else torch.tensor(mean), None if std is None else torch.tensor(std))
    test_x = transform(images.test_u8[:config.limit_test])
    shape = tuple(test_x.shape[1:])
    return Dataset(name=config.data if config.size is None else f"{config.data}@{config.size}",
                   train_x=test_x[:0], train_y=images.train_y[:0], test_x=test_x,
                   test_y=images.test_y[:config.limit_test], classes=images.classes, input_shape=shape,
                   bounds=tuple(b.to(device) if torch.is_tensor(b) else b for b in transform.bounds),
                   class_names=images.class_names, description=images.description)


# --------------------------------------------------------------------------- signals


class _StopRequests(SignalCatcher):
    """SIGINT/SIGTERM set a flag (the loop checkpoints and stops); a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        super().__init__()
        self.signal: str | None = None

    def _handle(self, signum, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name


# --------------------------------------------------------------------------- training


def _compile_failed(exc: BaseException) -> None:
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    print(f"pathstats train: torch.compile failed ({type(exc).__name__}: {first}); training the eager model",
          file=sys.stderr)


def _sized_eval_batch(config: TrainConfig, model: nn.Module, input_shape: tuple, classes: int, native_side: int,
                      device: torch.device, transform: BatchTransform, bounds, resumed_dir: str | None) -> int:
    """The run's evaluation batch (:func:`plan_memory`); a resumed run keeps the one its
    ``config.json`` recorded when that still fits, so its evaluations stay comparable."""
    free, source = free_memory(device)
    measured = None
    if device.type == "cuda":
        # measured, not estimated: the peak of the evaluation of 2 images (random pixels)
        x = torch.rand((2,) + tuple(input_shape), device=device)
        y = torch.zeros(2, dtype=torch.long, device=device)
        measured = measure_peak(lambda: evaluate(model, x, y, config.eval_eps, seed=0, bounds=bounds,
                                                 steps=min(config.eval_steps, 1), batch=2), device) / 2
    stored = None
    if resumed_dir is not None and config.eval_batch is None:
        try:
            with open(os.path.join(resumed_dir, CONFIG_FILE)) as f:
                stored = json.load(f).get("eval_batch")
        except (OSError, ValueError):
            stored = None
    if isinstance(stored, int) and stored >= 1:
        try:
            return plan_memory(dataclasses.replace(config, eval_batch=stored), input_shape, classes, native_side,
                               free=free, source=source, measured_eval=measured)["eval_batch"]
        except ResourceError:
            pass  # memory is tighter than when the run started: size the batch afresh
    return plan_memory(config, input_shape, classes, native_side, free=free, source=source,
                       measured_eval=measured)["eval_batch"]


def _make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, steps_per_epoch: int = 1,
                    halve_every: int = 30):
    if schedule == "halving":
        # x0.5 at the start of epochs halve_every, 2 halve_every, ... (counted in steps, so exact on resume)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 ** ((step // steps_per_epoch) // halve_every))
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    milestones = [] if schedule == "constant" else [total_steps // 2, (3 * total_steps) // 4]
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)


def peak_memory(device: str | torch.device) -> dict:
    """This process's peak memory so far: ``resident_bytes`` (``VmHWM``, what ``/usr/bin/time
    -v`` reports as the maximum resident set size; 0 where unknown) and, on CUDA,
    ``device_bytes`` (``torch.cuda.max_memory_allocated``).  ``result.json`` records it, so
    that a run shows what it needed (a resumed run: its last invocation).

    >>> m = peak_memory("cpu")
    >>> sorted(m), m["resident_bytes"] >= 0
    (['resident_bytes'], True)
    """
    out = {"resident_bytes": peak_resident_bytes()}
    device = torch.device(device)
    if device.type == "cuda":
        out["device_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return out


def _result(config: TrainConfig, out_dir: str, status: str, rows: list[dict], global_step: int, elapsed: float,
            **extra) -> dict:
    epochs_done = extra.pop("epochs_done") if "epochs_done" in extra else (rows[-1]["epoch"] if rows else 0)
    result = {
        "status": status,
        **extra,
        "config": config.to_dict(),
        "epochs_done": epochs_done,
        "steps_done": global_step,
        "elapsed_s": elapsed,
        "metrics": rows[-1] if rows else None,
        "peak_memory": peak_memory(config.device),
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
        ``metrics.jsonl``), ``peak_memory`` (:func:`peak_memory` of this
        invocation's process), ``files``, ``out`` and ``provenance``.  A finished or
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
    images = load_images(config.data, seed=0, device=device)
    factor = upsampling_factor(config.data, config.size)
    train_idx, val_idx = images.split_validation(config.val_split, limit=config.limit_train)
    mean, std = channel_stats(images, train_idx) if config.normalise else (None, None)
    transform = BatchTransform(images.levels, factor, mean, std, parse_augment(config.augment), config.crop_pad or 0)
    native = images.native_shape
    input_shape = (native[0], native[1] * factor, native[2] * factor)
    check_model_input(config.arch, input_shape, native_side=config.native_side or native[-1])
    torch.manual_seed(config.seed)
    model = nets.build(config.arch, input_shape, images.classes, channels=config.channels,
                       native_side=config.native_side or native[-1]).to(device)
    channels_last = device.type == "cuda" and len(input_shape) == 3
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    n_train = int(train_idx.numel())
    steps_per_epoch = n_train // config.batch
    if steps_per_epoch < 1:
        raise TrainError(f"--batch {config.batch} is larger than the {n_train} training images; lower it")
    if config.steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    scheduler = _make_scheduler(optimizer, config.schedule, total_steps, steps_per_epoch, config.halve_every)
    d = math.prod(input_shape)
    strength = method.strength(config.eps, d)
    bounds = tuple(b.to(device) if torch.is_tensor(b) else b for b in transform.bounds)
    eval_batch = _sized_eval_batch(config, model, input_shape, images.classes, config.native_side or native[-1],
                                   device, transform, bounds, out_dir if has_config else None)
    units = config.units(std=None if std is None else [float(v) for v in std], d=d)
    train_model = model
    if config.compile:
        try:
            train_model = torch.compile(model)
        except Exception as exc:  # torch.compile raises many types; a failure only costs speed
            _compile_failed(exc)
    autocast = (functools.partial(torch.autocast, device.type, dtype=torch.bfloat16) if config.amp == "bf16"
                else contextlib.nullcontext)

    subset = train_idx[torch.randperm(n_train, generator=torch.Generator().manual_seed(0))[:config.train_eval_n].to(device)]
    n_test = min(x for x in (config.eval_n, config.limit_test, images.test_u8.shape[0]) if x is not None)
    eval_sets = {
        "test": (images.test_u8[:n_test], images.test_y[:n_test]),
        "train": (images.train_u8[subset], images.train_y[subset]),
    }
    val_set = (images.train_u8[val_idx], images.train_y[val_idx]) if config.val_split else None

    if checkpoint is None:
        # the folder appears only now, once every check has passed: a refused run leaves none behind
        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, CONFIG_FILE), {
            "config": config.to_dict(), "input_shape": list(input_shape), "native_shape": list(native), "d": d,
            "classes": images.classes,
            "method": {"name": method.name, "description": method.description, "source": method.source,
                       "norm": method.norm, "strength": strength},
            "units": units, "data": {"description": images.description, "train": n_train, "validation": config.val_split,
                                     "test": n_test, "mean": None if mean is None else mean.tolist(),
                                     "std": None if std is None else std.tolist(), "bounds": _jsonable(bounds),
                                     "upsampling": factor},
            "steps_per_epoch": steps_per_epoch, "eval_batch": eval_batch,
            "provenance": provenance(seed=config.seed, device=config.device),
        })
        epoch, step_in_epoch, global_step, objective_sum, objective_count, elapsed = 0, 0, 0, 0.0, 0, 0.0
        best = {"accuracy": -1.0, "epoch": None, "model": None}
        rows: list[dict] = []
    else:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        _set_rng_states(checkpoint["rng"])
        epoch, step_in_epoch, global_step = checkpoint["epoch"], checkpoint["step_in_epoch"], checkpoint["global_step"]
        objective_sum, objective_count, elapsed = (checkpoint["objective_sum"], checkpoint["objective_count"],
                                                   checkpoint["elapsed_s"])
        best = checkpoint.get("best") or {"accuracy": -1.0, "epoch": None, "model": None}
        rows = _read_metrics(out_dir, epoch)

    def evaluation_row(completed: int, lr: float, objective) -> dict:
        """The metrics line of ``completed`` epochs (0: the initialisation)."""
        row = {"epoch": completed, "step": global_step, "lr": lr, "objective": objective}
        for split, (xs, ys) in eval_sets.items():
            tag = _EVAL_TEST if split == "test" else _EVAL_TRAIN
            # epoch e >= 1 keeps the seed (seed, tag, e - 1) of earlier versions; the initialisation has its own
            seed = _derived_seed(config.seed, tag, completed - 1) if completed else _derived_seed(config.seed, tag, _INIT)
            stats = evaluate(model, xs, ys, config.eval_eps, seed=seed, bounds=bounds, steps=config.eval_steps,
                             step_frac=config.eval_step_frac, random_start=config.eval_random_start,
                             batch=eval_batch, transform=transform)
            prefix = "test_" if split == "test" else "train_"
            for key, value in stats.items():
                if key.startswith(("vulnerability", "loss_damage", "accuracy_adv")) and split == "test":
                    row[key] = value  # the SPEC's unprefixed names are the test split's
                row[prefix + key] = value
        row["eval_eps"] = config.eval_eps
        return row

    def checkpoint_now() -> None:
        _save_checkpoint(out_dir, {
            "format": CHECKPOINT_FORMAT, "config": config.to_dict(), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_states(),
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "objective_sum": objective_sum, "objective_count": objective_count, "elapsed_s": elapsed,
            "best": best,
        })

    steps_this_call, compile_checked = 0, False
    start = time.perf_counter() - elapsed
    bar = progress_bar(total=total_steps, initial=global_step, desc=f"train {config.arch} {config.method} eps={config.eps:g}",
                       unit="step", disable=not progress)  # a resumed run counts from its steps done
    try:
        with _StopRequests() as stop:
            if epoch == 0 and step_in_epoch == 0 and not any(row.get("epoch") == 0 for row in rows):
                row = evaluation_row(0, scheduler.get_last_lr()[0], None)
                if val_set is not None:
                    row.update({"val_" + k: v for k, v in _clean_evaluate(model, *val_set, transform, eval_batch).items()})
                row["elapsed_s"] = time.perf_counter() - start
                rows = [row]
                _write_metrics(out_dir, rows)
            while epoch < config.epochs:
                order = train_idx[torch.randperm(n_train, generator=torch.Generator().manual_seed(
                    _derived_seed(config.seed, _SHUFFLE, epoch))).to(device)]
                while step_in_epoch < steps_per_epoch:
                    idx = order[step_in_epoch * config.batch:(step_in_epoch + 1) * config.batch]
                    x = transform(images.train_u8[idx],
                                  seed=_derived_seed(config.seed, _AUGMENT, epoch, step_in_epoch) if config.augment else None)
                    y = images.train_y[idx]
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    model.train()
                    optimizer.zero_grad(set_to_none=True)
                    step_seed = _derived_seed(config.seed, _TRAIN_STEP, epoch, step_in_epoch)

                    def step_loss(net: nn.Module) -> torch.Tensor:
                        with autocast():
                            out = method.loss(net, x, y, strength, config, bounds=bounds, seed=step_seed)
                        out.backward()
                        return out

                    if train_model is not model and not compile_checked:
                        # a compiled model fails, if at all, on its first forward or backward: then the eager
                        # model takes this step again from the same weights and BatchNorm statistics
                        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
                        try:
                            loss = step_loss(train_model)
                        except Exception as exc:  # the compiler's errors have many types
                            _compile_failed(exc)
                            model.load_state_dict(saved)
                            optimizer.zero_grad(set_to_none=True)
                            train_model = model
                            loss = step_loss(model)
                        compile_checked = True
                    else:
                        loss = step_loss(train_model)
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        elapsed = time.perf_counter() - start
                        reason = (f"the training loss became {value} at epoch {epoch + 1}, step {step_in_epoch + 1} "
                                  f"(method {config.method}, eps {config.eps:g}, lr {config.lr:g}); "
                                  "lower --eps or --lr, then use another --out")
                        return _result(config, out_dir, "diverged", rows, global_step, elapsed, reason=reason,
                                       epochs_done=epoch)
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
                                       epochs_done=epoch,
                                       reason=f"stopped by {stopped_by} after a checkpoint at epoch {epoch + 1}, "
                                              f"step {step_in_epoch}; repeat the command to continue")
                completed = epoch + 1
                val = None
                if val_set is not None:
                    val = _clean_evaluate(model, *val_set, transform, eval_batch)
                    if val["accuracy"] > best["accuracy"]:  # strictly better, as the authors' code
                        best = {"accuracy": val["accuracy"], "epoch": completed,
                                "model": {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}}
                if completed % config.eval_every == 0 or completed == config.epochs:
                    row = evaluation_row(completed, scheduler.get_last_lr()[0],
                                         objective_sum / max(objective_count, 1))
                    if val is not None:
                        row.update({"val_" + k: v for k, v in val.items()})
                        row["best_val_epoch"] = best["epoch"]
                else:
                    row = None
                if (config.schedule == "halving" and completed % config.halve_every == 0 and completed < config.epochs
                        and best["model"] is not None):
                    # the authors' restart: the next period starts from the best-validation weights (and BatchNorm
                    # statistics), with the halved rate and the optimiser's momentum as it is
                    model.load_state_dict(best["model"])
                    if row is not None:
                        row["restarted_from_epoch"] = best["epoch"]
                epoch, step_in_epoch, objective_sum, objective_count = epoch + 1, 0, 0.0, 0
                elapsed = time.perf_counter() - start
                if row is not None:
                    row["elapsed_s"] = elapsed
                    rows.append(row)
                    _write_metrics(out_dir, rows)
                checkpoint_now()
                stopped_by = stop.signal or ("max_steps" if max_steps is not None and steps_this_call >= max_steps
                                             else None)
                if stopped_by and epoch < config.epochs:
                    return _result(config, out_dir, "interrupted", rows, global_step, elapsed, stopped_by=stopped_by,
                                   epochs_done=epoch,
                                   reason=f"stopped by {stopped_by} after a checkpoint at the end of epoch {epoch}; "
                                          "repeat the command to continue")
    finally:
        bar.close()
    return _result(config, out_dir, "done", rows, global_step, time.perf_counter() - start)


# `from pathstats.robust import train` gives this module (a package attribute named like a
# sub-module is that sub-module); calling it runs train().
callable_module(__name__, train)
