"""Does ``opnorm`` shrink what it penalises, and how does that relate to E||dL/dx||_1? (digits, conv6)

Trains conv6 on digits up-sampled to 1 x 24 x 24 exactly as ``train_digits.py``
(same :class:`~pathstats.robust.train.TrainConfig`, one seed), one epoch at a time
(``max_steps`` = one epoch, then resume), and after every epoch measures on the
test split (n = 359), each as mean +- standard error over the test images:

* ``opnorm``: ``||J_f(x)||_{2,2}``, the logit Jacobian's spectral norm (exact: SVD
  of the formed Jacobian, eval mode) -- what ``--method opnorm`` penalises;
* ``penalty``: the training penalty's value ``||J_f(x) v||_2`` (5 power steps,
  eval mode: a lower bound of ``opnorm``);
* ``grad_l1``, ``grad_l2``: ``||dL/dx||_1``, ``||dL/dx||_2`` of the cross-entropy;
* ``residual``: ``||softmax(f(x)) - e_y||_2``, so that ``dL/dx = J^T (softmax - e_y)``
  gives ``grad_l2 <= opnorm * residual`` per image;
* ``loss``, ``one_minus_py`` (``1 - p_y``), ``logit_l2`` (``||f(x)||_2``) and ``accuracy``.

Usage: ``python benchmarks/opnorm_check.py [--methods none,opnorm] [--eps 0.2] [--out DIR] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

from pathstats import nets
from pathstats._io import write_json
from pathstats.provenance import provenance
from pathstats.robust.data import load_dataset
from pathstats.robust.gradients import eval_mode, grad_norms
from pathstats.robust.opnorm import operator_norm
from pathstats.robust.train import TrainConfig, _load_checkpoint, train

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_digits import STRENGTHS  # noqa: E402  (one table of strengths)


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.double().flatten()
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


def measure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> dict:
    """The quantities of the module docstring, ``{name: (mean, se)}`` plus ``n``."""
    exact = operator_norm(model, x, 2, 2)
    power = operator_norm(model, x, 2, 2, iters=5, seed=seed, method="power")
    grads = grad_norms(model, x, y)
    with eval_mode(model), torch.no_grad():
        logits = model(x)
        probs = logits.softmax(dim=1)
        residual = (probs - F.one_hot(y, logits.shape[1]).to(probs)).norm(dim=1)
        loss = F.cross_entropy(logits, y, reduction="none")
        columns = {"opnorm": exact.norms, "penalty": power.norms, "grad_l1": grads["l1"], "grad_l2": grads["l2"],
                   "residual": residual, "loss": loss, "one_minus_py": 1 - probs.gather(1, y[:, None])[:, 0],
                   "logit_l2": logits.norm(dim=1), "accuracy": (logits.argmax(dim=1) == y).double()}
    bound_ok = bool((grads["l2"] <= exact.norms * residual * (1 + 1e-4) + 1e-6).all())
    return {**{k: _mean_se(v) for k, v in columns.items()}, "n": len(y), "bound_holds": bound_ok}


def run(method: str, eps: float, out: str, epochs: int = 3, seed: int = 0) -> list[dict]:
    """Train one epoch at a time; the measurements after epochs 0 (init) .. ``epochs``."""
    config = TrainConfig(arch="conv6", data="digits", size=24, method=method, eps=eps, epochs=epochs,
                         train_eval_n=200, eval_eps=0.03, seed=seed)
    data = load_dataset("digits", 24, seed=0)
    x, y = data.test_x, data.test_y
    torch.manual_seed(seed)  # as train() builds it
    model = nets.build("conv6", tuple(data.input_shape), data.classes)
    rows = [{"epoch": 0, **measure(model, x, y)}]
    steps = len(data.train_x) // config.resolved().batch
    for epoch in range(1, epochs + 1):
        result = train(config, out, progress=False, max_steps=steps)
        model.load_state_dict(_load_checkpoint(out)["model"])
        rows.append({"epoch": epoch, "objective": result["metrics"]["objective"], **measure(model, x, y)})
        print(f"{method} eps {eps:g} epoch {epoch}: " + "  ".join(
            f"{k} {rows[-1][k][0]:.4g}+-{rows[-1][k][1]:.2g}" for k in ("opnorm", "penalty", "grad_l1", "residual",
                                                                          "loss", "logit_l2", "accuracy")), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="none,opnorm")
    parser.add_argument("--eps", type=float, default=None, help="opnorm's constant (default: train_digits.py's)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "_runs", "opnorm_check"))
    parser.add_argument("--json", default=os.path.join(HERE, "opnorm_check.json"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for method in args.methods.split(","):
        eps = STRENGTHS[method] if args.eps is None or method == "none" else args.eps
        rows = run(method, eps, os.path.join(args.out, f"{method}-{eps:g}"), args.epochs)
        results.append({"method": method, "eps": eps, "epochs": rows})
    write_json(args.json, {"description": __doc__.split("\n\n")[0], "test_n": results[0]["epochs"][0]["n"],
                           "results": results, "provenance": provenance(seed=0, device="cpu")})
    print(json.dumps({"json": args.json}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
