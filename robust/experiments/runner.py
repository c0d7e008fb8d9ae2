"""The seam between the bookkeeping and the engines: :func:`run_one` trains one run and evaluates it.

``run_one(job, directory)`` is the one function every executor calls (through
:func:`~pathstats.robust.experiments.store.execute`): it trains with
:func:`pathstats.robust.train.train` in ``directory`` (which resumes from the checkpoint
there), then runs each evaluation the experiment's figures need on the trained network,
skipping those already on disk.  The evaluations (:data:`EVALUATIONS`) measure what the
per-epoch metrics do not: several attacks under two thresholds (Figures 4 and 6),
Finlay & Oberman's bounds against DeepFool's distances, and Roth et al.'s alignment.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch

from pathstats._io import write_json

from ..opnorm import logit_jacobian  # re-exported: the one exact Jacobian helper
from .store import evaluation_file

__all__ = ["run_one", "EVALUATIONS", "evaluate_attacks", "evaluate_bounds", "evaluate_alignment",
           "logit_jacobian"]


def _subset(data, n: int):
    return data.test_x[:n], data.test_y[:n]


def _summary(result: dict) -> dict:
    keep = ("vulnerability", "vulnerability_se", "accuracy_adv", "accuracy_clean", "loss_damage", "loss_damage_se",
            "first_order_damage", "first_order_ratio", "eps", "n", "grad_l1", "grad_l2")
    return {k: result[k] for k in keep if k in result}


def evaluate_attacks(model, data, options: dict, seed: int = 0) -> dict:
    """Vulnerability under FGSM, single-step l2, iterative l_inf and l2 (no random start) and DeepFool
    (Simon-Gabriel et al., Appendix F) under two thresholds.

    Each attack runs in its own norm with the radius of the largest ball of that norm
    inside the threshold ball: under the l_inf threshold ``eps`` (Figure 4) l_inf attacks
    get ``eps`` and l2 attacks ``eps`` (the inscribed l2 ball); under the l2 threshold
    ``eps sqrt(d)`` (Figure 6, eq. 3) l2 attacks get ``eps sqrt(d)`` and l_inf attacks
    ``eps`` (the inscribed l_inf ball).  DeepFool's perturbation is projected onto the ball.
    """
    from ..vulnerability import vulnerability

    x, y = _subset(data, options.get("n", 500))
    eps, steps = float(options["eps"]), int(options.get("steps", 10))
    d = int(np.prod(x.shape[1:]))
    radius = {"inf": {"inf": eps, 2: eps}, "2": {"inf": eps, 2: eps * math.sqrt(d)}}
    attacks = {"fgsm": ("fgm", "inf", {}), "fgm-l2": ("fgm", 2, {}),
               "pgd-inf": ("pgd", "inf", {"steps": steps, "random_start": False}),
               "pgd-l2": ("pgd", 2, {"steps": steps, "random_start": False}),
               "deepfool": ("deepfool", 2, {})}
    out = {"eps": eps, "d": d, "n": int(x.shape[0]), "thresholds": {}}
    for threshold, radii in radius.items():
        rows = {}
        for name, (attack, norm, extra) in attacks.items():
            rows[name] = {**_summary(vulnerability(model, x, y, attack=attack, norm=norm, eps=radii[norm], check=False,
                                                   bounds=tuple(data.bounds), **extra)), "radius": radii[norm],
                          "norm": str(norm)}
        out["thresholds"][threshold] = rows
    return out


def evaluate_bounds(model, data, options: dict, seed: int = 0) -> dict:
    """Finlay & Oberman's per-image lower bounds (Proposition 2.1) and the l2 distance DeepFool
    needs to change each correctly classified image's class (an upper bound on the minimal
    adversarial distance, so a valid lower bound must lie below it)."""
    from ..attacks import deepfool
    from ..bounds import robustness_bounds

    x, y = _subset(data, options.get("n", 1000))
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    x, y = x[correct], y[correct]
    bounds = robustness_bounds(model, x, y, norm=options.get("norm", 2))
    x_adv = deepfool(model, x, norm=2, steps=options.get("steps", 50), bounds=tuple(data.bounds))
    with torch.no_grad():
        fooled = (model(x_adv).argmax(1) != y).cpu().numpy()
    distance = (x_adv - x).flatten(1).norm(dim=1).detach().cpu().numpy()
    out = {"n": int(x.shape[0]), "distance": distance.tolist(), "fooled": fooled.astype(bool).tolist(),
           "norm": options.get("norm", 2)}
    for key, value in bounds.items():
        out[key] = value.detach().cpu().tolist() if torch.is_tensor(value) else value
    return out


def evaluate_alignment(model, data, options: dict, seed: int = 0) -> dict:
    """Roth et al.'s Figure 2 and 3: the singular values of each test image's logit Jacobian,
    the cosine of an l2 PGD perturbation (radius ``align_eps sqrt(d)``, 10 steps) with
    the right singular vectors by rank, the same cosine for a random direction, and the
    accuracy under l_inf PGD at each ``eps``."""
    from ..attacks import pgd
    from ..vulnerability import vulnerability

    x, y = _subset(data, options.get("n", 200))
    d = int(np.prod(x.shape[1:]))
    jac = logit_jacobian(model, x)  # detached, in eval mode
    _, sing, vh = torch.linalg.svd(jac, full_matrices=False)  # vh: B x K x d
    radius = float(options.get("align_eps", 0.02)) * math.sqrt(d)
    delta = (pgd(model, x, y, radius, norm=2, steps=10, seed=seed, bounds=tuple(data.bounds)) - x).flatten(1).detach()
    unit = delta / delta.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = torch.einsum("bd,bkd->bk", unit, vh).abs()
    g = torch.Generator().manual_seed(seed)
    random = torch.randn(x.shape[0], d, generator=g).to(x.device)
    random = random / random.norm(dim=1, keepdim=True)
    cos_random = torch.einsum("bd,bd->b", random, vh[:, 0]).abs()
    moved = delta.norm(dim=1) > 0
    curve = []
    for eps in options.get("eps", (0.0,)):
        if eps == 0:
            with torch.no_grad():
                acc = float((model(x).argmax(1) == y).double().mean())
            curve.append({"eps": 0.0, "accuracy_adv": acc, "accuracy_adv_se": math.sqrt(acc * (1 - acc) / len(y))})
        else:
            r = vulnerability(model, x, y, attack="pgd", norm="inf", eps=float(eps), seed=seed, check=False,
                              bounds=tuple(data.bounds))
            curve.append({"eps": float(eps), "accuracy_adv": r["accuracy_adv"], "accuracy_adv_se": r.get("accuracy_adv_se")})
    return {"n": int(x.shape[0]), "d": d, "align_radius": radius, "singular_values": sing.cpu().tolist(),
            "cos_by_rank": cos[moved].cpu().tolist(), "cos_random": cos_random[moved].cpu().tolist(),
            "robust_accuracy": curve}


#: Evaluation name -> function(model, data, options, seed) -> JSON-ready dict.
EVALUATIONS = {"attacks": evaluate_attacks, "bounds": evaluate_bounds, "alignment": evaluate_alignment}


def run_one(job: dict, directory: str) -> dict:
    """Train ``job["train"]`` in ``directory`` (resuming), then run the missing evaluations.

    Returns ``{"status": ..., "metrics": the last epoch's metrics}``; ``status`` is
    ``done`` or ``interrupted`` (the trainer stopped on a signal and checkpointed).

    Raises
    ------
    FloatingPointError
        The training loss diverged (the trainer's reason in the message).
    """
    from ..runfolder import open_trained
    from ..train import TrainConfig, train

    config = TrainConfig.from_dict(job["train"])
    result = train(config, directory, progress=False)
    if result.get("status") == "diverged":
        raise FloatingPointError(result.get("reason", "training diverged"))
    if result.get("status") != "done":
        return {"status": "interrupted", "reason": result.get("reason"), "stopped_by": result.get("stopped_by")}
    pending = [e for e in job.get("evaluations", []) if not os.path.exists(evaluation_file(directory, e))]
    if pending:
        run = open_trained(directory)
        model, _ = run.load_model(config.device)
        data = run.load_data(config.device)
        for evaluation in pending:
            options = {k: v for k, v in evaluation.items() if k != "name"}
            out = EVALUATIONS[evaluation["name"]](model, data, options, seed=config.seed)
            write_json(evaluation_file(directory, evaluation), {"evaluation": evaluation, **out})
    return {"status": "done", "metrics": result.get("metrics")}
