"""``pathstats train``: regularised training with per-epoch robustness metrics (resumable)."""

from __future__ import annotations

import argparse
import json
import sys

from .methods import METHODS
from .train import DATA_DEFAULTS, SCHEDULES, TrainConfig, train

__all__ = ["register", "config_from_args"]

#: Exit status of a run stopped by SIGINT / SIGTERM (after a checkpoint), and of a diverged run.
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
EXIT_DIVERGED = 3


def register(commands) -> None:
    """Add the ``train`` sub-command to the sub-parsers object of ``pathstats``' parser."""
    digits, other = DATA_DEFAULTS["digits"], DATA_DEFAULTS["other"]
    parser = commands.add_parser(
        "train",
        help="train a registered net with a gradient penalty or adversarial training, with robustness metrics",
        description="Train a registered architecture with one of the training methods of Simon-Gabriel et al. "
        "(2019), Finlay & Oberman (2019) and Roth et al. (2020); every epoch, measure loss, accuracy, "
        "E||dL/dx||_1, E||dL/dx||_2 and l_inf PGD vulnerability on the test split and a fixed training subset "
        "(with standard errors), and checkpoint. Re-running the same command continues the run; SIGINT or "
        "SIGTERM stops it cleanly after a checkpoint.",
    )
    parser.add_argument("--arch", required=True, help="registered architecture (see pathstats archs)")
    parser.add_argument("--data", required=True, help="digits (bundled 8x8 digits), cifar10:DIR (python batches) "
                        "or folder:DIR (DIR/train/<class>/*, DIR/test/<class>/*)")
    parser.add_argument("--size", type=int, metavar="S", help="up-sample images to S x S by copying pixels")
    parser.add_argument("--method", required=True, metavar="M",
                        help="training method: " + ", ".join(METHODS) + " (see the docs' methods table)")
    parser.add_argument("--eps", type=float, default=0.0, metavar="E",
                        help="strength: eps_inf (the loss gets eps_p = eps d^(1/p)) for grad-*, fgsm*, fgm-l2 and pgd; "
                        "the regularisation constant for crosslip, fd-* and opnorm (default 0)")
    parser.add_argument("--epochs", type=int, metavar="N",
                        help=f"default {digits['epochs']} on digits, {other['epochs']} otherwise")
    parser.add_argument("--batch", type=int, metavar="B", help=f"default {digits['batch']} on digits, {other['batch']} otherwise")
    parser.add_argument("--lr", type=float, metavar="LR", help=f"SGD learning rate (momentum 0.9): default {digits['lr']} "
                        f"on digits, {other['lr']} otherwise")
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                        help="learning-rate schedule, per step (default cosine, down to 0; halving: the authors', "
                        "needs --val-split)")
    parser.add_argument("--weight-decay", type=float, default=0.0, metavar="W", help="SGD weight decay (default 0)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of initialisation, shuffling and attacks (default 0)")
    parser.add_argument("--device", default="cpu", metavar="D", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--eval-eps", type=float, default=0.005, metavar="E",
                        help="eps_inf of the per-epoch l_inf PGD evaluation (default 0.005)")
    parser.add_argument("--eval-n", type=int, metavar="N", help="evaluate on the first N test images (default all)")
    parser.add_argument("--train-eval-n", type=int, default=500, metavar="N",
                        help="size of the fixed training subset evaluated each epoch (default 500)")
    parser.add_argument("--fd-h", type=float, default=0.01, metavar="H", help="finite-difference step of fd-l1/fd-l2 (default 0.01)")
    parser.add_argument("--opnorm-p", default="2", metavar="P", help="domain norm of opnorm: 1, 2 or inf (default 2)")
    parser.add_argument("--opnorm-q", default="2", metavar="Q", help="co-domain norm of opnorm: 1, 2 or inf (default 2)")
    parser.add_argument("--opnorm-iters", type=int, default=5, metavar="N", help="power iterations per step of opnorm (default 5)")
    parser.add_argument("--steps-per-epoch", type=int, metavar="N", help="at most N optimisation steps per epoch")
    parser.add_argument("--max-steps", type=int, metavar="N",
                        help="stop after N steps of this invocation, with a checkpoint (repeat the command to continue)")
    protocol = parser.add_argument_group("the papers' protocols")
    protocol.add_argument("--normalise", action="store_true",
                          help="normalise each channel by the training split's mean and standard deviation (the paper's "
                          "sigma ~ .2); --eps and --eval-eps are then in normalised units")
    protocol.add_argument("--augment", default="", metavar="A",
                          help="crop, flip or crop,flip: random crop with zero padding, horizontal flip, at the native size "
                          "before up-sampling (the authors' code); default none")
    protocol.add_argument("--crop-pad", type=int, metavar="P", help="padding of the random crop (default native side / 8: "
                          "4 px on CIFAR-10, 1 px on digits)")
    protocol.add_argument("--val-split", type=int, default=0, metavar="N",
                          help="hold N training images out for validation (fixed subset; the authors: 5000 on CIFAR-10)")
    protocol.add_argument("--halve-every", type=int, default=30, metavar="N",
                          help="--schedule halving: halve the rate every N epochs from the best-validation weights (default 30)")
    protocol.add_argument("--channels", type=int, metavar="C", help="width of the registered net (default the net's)")
    protocol.add_argument("--native-side", type=int, metavar="S",
                          help="the image side conv8's dilation is relative to (dilation size // S; default the data's "
                          "native side; 8-pixel digits need 16)")
    protocol.add_argument("--limit-train", type=int, metavar="N", help="use only the first N training images")
    protocol.add_argument("--limit-test", type=int, metavar="N", help="use only the first N test images")
    protocol.add_argument("--eval-batch", type=int, metavar="B",
                          help="images per evaluation batch (default min(256, max(8, 2^21 / d)))")
    protocol.add_argument("--eval-every", type=int, default=1, metavar="N",
                          help="evaluate every N epochs (the initialisation and the last epoch always; default 1)")
    protocol.add_argument("--adv-mode", choices=("eval", "train"), default="eval",
                          help="model mode of the attacks in adversarial training (default eval; the authors: train)")
    protocol.add_argument("--adv-clip", action=argparse.BooleanOptionalAction, default=True,
                          help="clip training attacks to the input box (default yes; the authors: no)")
    protocol.add_argument("--eval-steps", type=int, default=7, metavar="N", help="steps of the evaluation PGD (default 7)")
    protocol.add_argument("--eval-step-frac", type=float, default=0.2, metavar="F",
                          help="step of the evaluation PGD as a fraction of --eval-eps (default 0.2)")
    protocol.add_argument("--eval-random-start", action=argparse.BooleanOptionalAction, default=True,
                          help="random start of the evaluation PGD (default yes; the authors: no)")
    protocol.add_argument("--opnorm-form", choices=("eq13", "squared"), default="eq13",
                          help="opnorm's penalty: eq13 ||J v||_q (default) or squared (Roth et al. eq. 7)")
    speed = parser.add_argument_group("execution (not part of a run's identity)")
    speed.add_argument("--amp", choices=("bf16",), default=None,
                       help="autocast the training forward passes in bfloat16 (default off: float32; the evaluation "
                       "stays float32)")
    speed.add_argument("--compile", action="store_true", default=None,
                       help="train through torch.compile (falls back to the eager model with a one-line message)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder: config.json, metrics.jsonl, "
                        "checkpoint.pt, result.json")
    parser.add_argument("--json", action="store_true", help="print result.json's object")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(handler=_cmd_train)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``pathstats train`` arguments."""
    return TrainConfig(
        arch=args.arch, data=args.data, method=args.method, size=args.size, eps=args.eps, epochs=args.epochs,
        batch=args.batch, lr=args.lr, seed=args.seed, device=args.device, eval_eps=args.eval_eps, fd_h=args.fd_h,
        opnorm_p=args.opnorm_p, opnorm_q=args.opnorm_q, opnorm_iters=args.opnorm_iters, weight_decay=args.weight_decay,
        schedule=args.schedule, steps_per_epoch=args.steps_per_epoch, eval_n=args.eval_n,
        train_eval_n=args.train_eval_n, normalise=args.normalise, augment=args.augment, crop_pad=args.crop_pad,
        val_split=args.val_split, halve_every=args.halve_every, channels=args.channels,
        native_side=args.native_side, limit_train=args.limit_train,
        limit_test=args.limit_test, eval_batch=args.eval_batch, eval_every=args.eval_every, adv_mode=args.adv_mode,
        adv_clip=args.adv_clip, eval_steps=args.eval_steps, eval_step_frac=args.eval_step_frac,
        eval_random_start=args.eval_random_start, opnorm_form=args.opnorm_form, amp=args.amp,
        compile=args.compile,
    )


def _fmt(row: dict, key: str) -> str:
    value, se = row.get(key), row.get(key + "_se")
    if value is None:
        return "-"
    return f"{value:.4g} +- {se:.2g}" if se is not None else f"{value:.4g}"


def _summary(result: dict) -> str:
    config, row = result["config"], result.get("metrics")
    lines = [f"{config['arch']} on {config['data']}, method {config['method']} eps {config['eps']:g}: "
             f"{result['status']} after {result['epochs_done']}/{config['epochs']} epochs, "
             f"{result['steps_done']} steps, {result['elapsed_s']:.1f} s"]
    if row:
        lines.append(f"epoch {row['epoch']} (mean +- standard error over images; PGD l_inf eps {row['eval_eps']:g}):")
        for split, n in (("test", row.get("test_n")), ("train", row.get("train_n"))):
            lines.append(f"  {split:5s} (n={n}): loss {_fmt(row, split + '_loss')}, accuracy {_fmt(row, split + '_accuracy')}, "
                         f"E||dL/dx||_1 {_fmt(row, split + '_grad_l1')}, E||dL/dx||_2 {_fmt(row, split + '_grad_l2')}, "
                         f"vulnerability {_fmt(row, split + '_vulnerability')}, "
                         f"loss damage {_fmt(row, split + '_loss_damage')}")
    if result.get("reason"):
        lines.append(result["reason"])
    peak = result.get("peak_memory") or {}
    if peak.get("resident_bytes"):
        from pathstats.resources import format_bytes
        lines.append(f"peak memory: {format_bytes(peak['resident_bytes'])} resident"
                     + (f", {format_bytes(peak['device_bytes'])} on the device" if "device_bytes" in peak else ""))
    lines.append(f"run folder: {result['out']}")
    return "\n".join(lines)


def _cmd_train(args: argparse.Namespace) -> int:
    result = train(config_from_args(args), args.out, progress=not args.quiet, max_steps=args.max_steps)
    print(json.dumps(result) if args.json else _summary(result))
    if result["status"] == "diverged":
        print(f"pathstats train: error: {result['reason']}", file=sys.stderr)
        return EXIT_DIVERGED
    if result["status"] == "interrupted":
        print(f"pathstats train: {result['reason']}", file=sys.stderr)
        return EXIT_SIGNAL.get(result.get("stopped_by"), 0)
    return 0
