"""The six experiments: ONE description each (grids at three scales, settings record, evaluations).

Every experiment has three grids (:data:`SCALES`):

``quick``
    Tests the pipeline in minutes on the embedded ``digits`` data (small nets, a few
    epochs); its verdicts say nothing about the papers.
``medium``
    The papers' architectures (width reduced) on ``digits`` up-sampled from 8 x 8,
    strengths in the first-order regime, at least three seeds and enough epochs that
    the central claims are decided; about an hour on 2 CPU cores (``--jobs 2``) per
    experiment (the per-epoch costs behind that figure are in :data:`MEDIUM_COST`).
``paper``
    The papers' protocol: their grids, and the authors' released code
    (``facebookresearch/AdversarialAndDimensionality``) where the papers are silent.

The paper grid of each experiment is built from its settings record
(:class:`Setting`: the paper's value with its section, the authors' code value with
its file, the pathstats value, and the reason where they differ), and the docs'
settings tables are rendered from the same records and the grids themselves
(:func:`settings_rows`), so the table cannot disagree with what runs.

Strengths of the Simon-Gabriel et al. experiments are in the paper's normalised units
(``normalise: True``: inputs divided by the per-channel standard deviation, sigma ~ .2
on CIFAR-10, so multiply by .2 for 0-1 pixel units); their grids are spaced four per
decade and rounded to two digits as the authors' configurations are (``lam = 0.00018``
in ``configs/config_bcifar.txt`` is 10^-3.75, ``lam = 0.018`` in
``configs/config_cifar_gradregu.txt`` is 10^-1.75).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pathstats.errors import InvalidArgumentError, UnknownExperimentError

from .grid import Grid

__all__ = ["SCALES", "SCALE_PURPOSE", "Setting", "Experiment", "EXPERIMENTS", "MEDIUM_COST", "MEDIUM_NET_COST",
           "get", "grid_value", "setting_cell", "settings_rows", "format_value", "medium_minutes", "UnknownExperimentError",
           "quarter_decades"]


#: The three scales of every experiment: ``quick`` tests the pipeline in minutes, ``medium``
#: decides the central claims in about an hour on 2 CPU cores, ``paper`` is the papers' grid.
SCALES = ("quick", "medium", "paper")

#: What each scale is for (the docs and the reports say it).
SCALE_PURPOSE = {
    "quick": "tests the pipeline in minutes (small nets on 8 x 8 digits, a few epochs); its verdicts say nothing "
             "about the papers",
    "medium": "the papers' architectures, width reduced, on digits up-sampled from 8 x 8; strengths in the "
              "first-order regime, 3 seeds or more, enough epochs to decide the central claims; about an hour on 2 "
              "CPU cores (--jobs 2)",
    "paper": "the papers' protocol (CIFAR-10, full width, the authors' epochs and schedule); GPU cluster scale",
}

# Keys of a Setting that are grid axes rather than training settings.
_AXES = ("archs", "sizes", "methods", "seeds", "evaluations")


@dataclass(frozen=True)
class Setting:
    """One setting of an experiment's protocol: what the paper says, what the authors' code
    does, and what pathstats runs (``key`` names a grid axis or a ``TrainConfig`` field and
    ``value`` is its paper-scale value; ``key=None`` for a fixed property of the code,
    described in ``value``)."""

    label: str
    paper: str
    authors: str
    key: str | None
    value: object
    reason: str = ""


def quarter_decades(low: float, high: float) -> tuple:
    """Strengths four per decade from ``low`` to ``high``, two significant digits, as the
    authors' configurations space them.

    Examples
    --------
    >>> quarter_decades(1e-4, 1e-3)
    (0.0001, 0.00018, 0.00032, 0.00056, 0.001)
    """
    import math

    start, stop = round(4 * math.log10(low)), round(4 * math.log10(high))
    return tuple(float(f"{10 ** (k / 4):.2g}") for k in range(start, stop + 1))


def _train_settings(settings: tuple) -> dict:
    return {s.key: s.value for s in settings if s.key is not None and s.key not in _AXES}


def _grid_from(settings: tuple) -> Grid:
    """The paper grid described by ``settings`` (every axis and training setting from its record)."""
    axes = {s.key: s.value for s in settings if s.key in _AXES}
    missing = [k for k in _AXES[:4] if k not in axes]
    if missing:
        raise InvalidArgumentError(f"settings record lacks the axes {missing}")
    return Grid(axes["archs"], axes["sizes"], axes["methods"], axes["seeds"], _train_settings(settings),
                axes.get("evaluations", ()))


def grid_value(grid: Grid, key: str):
    """The value of setting ``key`` in ``grid`` (an axis, or a shared training setting;
    ``None`` where the grid leaves it to the trainer's default)."""
    if key in _AXES:
        return getattr(grid, key)
    return grid.train.get(key)


def format_value(key: str | None, value) -> str:
    """A setting's value as the docs show it.

    Examples
    --------
    >>> format_value("methods", (("none", (0.0,)), ("pgd", (0.001, 0.01))))
    'none 0; pgd 0.001, 0.01'
    >>> format_value("sizes", (32, 64))
    '32, 64'
    >>> format_value("augment", "crop,flip")
    'crop,flip'
    """
    if key == "methods":
        return "; ".join(f"{m} {', '.join(f'{e:g}' for e in s)}" for m, s in value)
    if key == "evaluations":
        return "; ".join(f"{e['name']} ({', '.join(f'{k} {v}' for k, v in e.items() if k != 'name')})"
                         for e in value) or "per-epoch metrics only"
    if key == "seeds":
        return f"{len(value)} ({value[0]}..{value[-1]})" if len(value) > 3 else ", ".join(map(str, value))
    if key in ("archs", "sizes"):
        return ", ".join("native" if v is None else str(v) for v in value)
    if value is None:
        return "trainer default"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class Experiment:
    """An experiment: its paper source, its settings record, and its grid at each of
    :data:`SCALES` (the paper grid is built from the settings record); its analysis
    (figures and claims) is the function of :mod:`.analysis` named after it."""

    name: str
    title: str
    source: str
    summary: str
    settings: tuple
    quick: Grid
    medium: Grid
    medium_note: str = ""
    paper: Grid = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "paper", _grid_from(self.settings))

    def grid(self, scale: str) -> Grid:
        """The grid at ``scale`` (one of :data:`SCALES`).

        Examples
        --------
        >>> get("fig2").grid("medium").sizes
        (16, 32, 64)
        """
        if scale not in SCALES:
            raise InvalidArgumentError(f"unknown scale {scale!r}; scales: {', '.join(SCALES)}")
        return getattr(self, scale)


def setting_cell(key: str, grid: Grid) -> str:
    """A setting's cell for ``grid``: its value, and for ``seeds`` the methods run at other seeds."""
    cell = format_value(key, grid_value(grid, key))
    if key == "seeds":
        cell += "".join(f"; {m}: {format_value(key, seeds)}" for m, seeds in grid.method_seeds)
    return cell


def settings_rows(experiment: Experiment) -> list:
    """The settings table of ``experiment``: one row per setting, ``[label, paper, authors'
    code, pathstats (paper scale), medium, reason]``; the pathstats and medium cells are read
    from the grids themselves, so the table shows what runs."""
    rows = []
    for s in experiment.settings:
        if s.key is None:
            paper_cell, medium_cell = str(s.value), str(s.value)
        else:
            paper_cell, medium_cell = (setting_cell(s.key, experiment.paper), setting_cell(s.key, experiment.medium))
        rows.append([s.label, s.paper, s.authors, paper_cell, medium_cell, s.reason])
    return rows


# ----------------------------------------------------------------------------------- shared records
# Simon-Gabriel et al. 2019 ("SG"), Section 4 and the authors' code, shared by fig1-fig4.
_SG_TEXT = "Simon-Gabriel et al. 2019"


def _sg_common(*, batch: int, batch_paper: str, batch_authors: str, normalise_reason: str = "",
               normalise_authors: str = "data.py: Normalize by the CIFAR-10 std (~.2) unless --raw_inputs",
               eval_eps: float, eval_paper: str, eval_reason: str = "", arch_row: Setting,
               channels_authors: str = "nets.py ConvNet: 64") -> tuple:
    """The training protocol of the authors' main.py, shared by fig1-fig4."""
    return (
        arch_row,
        Setting("width (channels)", "64 output channels per layer", channels_authors, "channels", None,
                "the registered nets' default width is 64"),
        Setting("normalisation", "§4: data normalised (sigma ~ .2); strengths in normalised units",
                normalise_authors, "normalise", True, normalise_reason),
        Setting("augmentation", "not stated",
                "data.py: RandomCrop(32, padding=4), RandomHorizontalFlip, then up-sampling", "augment", "crop,flip"),
        Setting("crop padding", "not stated", "data.py: 4 px at native 32 px", "crop_pad", None,
                "default round(native side / 8) = 4 px on CIFAR-10"),
        Setting("validation split", "not stated", "main.py: valid_size=.1 of 50k (45k/5k), fixed seed 42",
                "val_split", 5000),
        Setting("epochs", "not stated (Figures 8, 12 run to 200)", "utils.py / configs: epochs = 200", "epochs", 200),
        Setting("learning-rate schedule", "not stated",
                "main.py: every 30 epochs reload best-validation checkpoint, lr *= .5", "schedule", "halving"),
        Setting("halving period", "not stated", "main.py: epoch % 30 == 0", "halve_every", 30),
        Setting("learning rate", "not stated", "utils.py: --lr .01", "lr", 0.01),
        Setting("optimiser momentum", "not stated", "main.py: SGD(momentum=0.9)", "momentum", 0.9),
        Setting("weight decay", "not stated", "main.py: SGD without weight_decay (0)", "weight_decay", 0.0),
        Setting("batch size", batch_paper, batch_authors, "batch", batch),
        Setting("attack model mode in training", "not stated",
                "main.py: net.train() during the training epoch; penalties.pgd runs in it", "adv_mode", "train"),
        Setting("training attacks clipped to the box", "not stated",
                "penalties.py: only the perturbation is clamped, not the image", "adv_clip", False),
        Setting("training PGD", "§4.1: 7 steps, step .2 eps_inf, random start",
                "penalties.py / configs: steps = 7, step lam/(.75*7) = .19 lam, uniform random start",
                None, "methods.py pgd: 7 steps of 0.2 eps_p, random start; loss L(x + delta)",
                "authors' loss is (L(x) + L(x + delta))/2 (penalties.py: loss + (advLoss - loss)/2); "
                "pathstats' pgd is Madry et al.'s L(x + delta) (the methods table)"),
        Setting("evaluation threshold eps_inf", eval_paper, "main.py test mode: eps = .004 (inputs' units)",
                "eval_eps", eval_eps, eval_reason),
        Setting("evaluation PGD steps", "not stated", "main.py: steps=10", "eval_steps", 10),
        Setting("evaluation PGD step (fraction of eps)", "not stated", "main.py: step_size = eps/(.75*10)",
                "eval_step_frac", 0.13333333333333333),
        Setting("evaluation PGD random start", "§4: 'PGD-attacks with random start' (Section 4.2)",
                "main.py: random_start=False", "eval_random_start", False,
                "the authors' code, which produced the figures, starts at the image"),
        Setting("evaluated epochs", "§4.2: last 20 epochs", "main.py: test set every epoch", "eval_every", 1),
    )


_CONV6_ROW = Setting(
    "architecture", "§4.1: 6 strided conv-BN-ReLU, strides 1,2,2,2,2,2, 64 channels, final linear layer",
    "configs/config_cifar_*.txt: n_layers 6, poolings 1-5 subsamp, avgpool out; nets.py: input BatchNorm",
    "archs", ("conv6",))

_FIG1_METHODS = ("grad-l1", "grad-l2", "fgsm", "fgm-l2", "pgd", "crosslip", "fgsm-through")
_FIG1_EPS = quarter_decades(1e-3, 1e-1)

_FIG1 = (
    *_sg_common(
        batch=128, batch_paper="not stated", batch_authors="configs/config_cifar_gradregu.txt, _pgd.txt: bs = 128",
        normalise_authors="configs/config_cifar_*.txt: raw_inputs = True (0-1 pixels; nets.py adds an input "
                          "BatchNorm)",
        normalise_reason="the paper states its strengths in normalised units; conv6's input BatchNorm makes the "
                         "network the same either way, the strengths' units follow the paper",
        eval_eps=0.025, eval_paper="§4: eps_inf = 0.5% of the pixel range (Foolbox PGD) = .025 normalised",
        eval_reason="the paper's threshold for Section 4.1, in normalised units; the authors' test attack is kept "
                    "for its steps",
        arch_row=_CONV6_ROW),
    Setting("input size", "§4.1: CIFAR-10, 32", "configs: img_size = 32", "sizes", (32,)),
    Setting("methods", "§4.1: l1, l2 gradient penalty, l_inf, l2 one-step augmentation, PGD, cross-Lipschitz",
            "penalties.py: grad (q 1, 2), adv (q 1, 2), pgd, crossLip", "methods",
            (("none", (0.0,)),) + tuple((m, _FIG1_EPS) for m in _FIG1_METHODS),
            "fgsm-through (the gradient through delta) added: Proposition 3's other side; strengths four per "
            "decade over 1e-3..1e-1 as the authors' configs (lam .018 grad, .1 pgd)"),
    Setting("seeds", "one network per method and strength (Figure 1: 'each point a trained network')",
            "one run per config", "seeds", (0, 1, 2),
            "three seeds, so that matching per strength has seed-based intervals (SPEC 9)"),
)

_FIG2 = (
    *_sg_common(
        batch=32, batch_paper="not stated", batch_authors="configs/config_bcifar.txt: bs = 32",
        eval_eps=0.004, eval_paper="§4: eps_inf = 0.08% of the pixel range = .004 normalised",
        arch_row=Setting(
            "architecture", "App. G.1: 8 conv-BN-ReLU, 64 channels, 2x2 max-pool after 2, 4, 6, 8, global max-pool",
            "configs/config_bcifar.txt: n_layers 8, poolings 1 3 5 7 maxpool, last_layers maxpool; nets.py: no input "
            "BatchNorm (inputs normalised)", "archs",
            ("conv8",))),
    Setting("input sizes", "§4.2: 32, 64, 128, 256 (nearest-neighbour copies)",
            "data.py: Resize(size, NEAREST) after the augmentation", "sizes", (32, 64, 128, 256)),
    Setting("dilation", "App. G.1: 1, 2, 4, 8 at 32, 64, 128, 256", "utils.py: img_size / 32", None,
            "conv8: input side / native side (1, 2, 4, 8 on CIFAR-10; the medium grid takes a native side of 16 on "
            "digits, so 1, 2, 4 at 16, 32, 64, as CIFAR-10's 32, 64, 128 get)"),
    Setting("methods", "§4.2: PGD at several strengths; Figure 2c knee at eps ~ .0005",
            "configs/config_bcifar.txt: penalty pgd, steps 7, lam .00018", "methods",
            (("none", (0.0,)), ("pgd", quarter_decades(1e-5, 1e-3))),
            "four per decade over 1e-5..1e-3, the knee (.0005) inside, in normalised units"),
    Setting("seeds", "one network per size and strength; bands over the last 20 epochs", "one run per config",
            "seeds", (0,)),
)

_FIG3 = (
    *_sg_common(
        batch=128, batch_paper="not stated", batch_authors="utils.py: --bs 128",
        eval_eps=0.004, eval_paper="not stated for Figure 3",
        eval_reason="the authors' test attack (main.py) on normalised inputs",
        arch_row=Setting(
            "architecture", "App. B: 6 conv-BN-ReLU, 64 channels, 2x2 pooling after every second, average out",
            "nets.py ConvNet with pooltype avgpool / subsamp / maxpool; no input BatchNorm (inputs normalised)", "archs",
            ("conv6-avgpool", "conv6-strided", "conv6-maxpool"))),
    Setting("input size", "CIFAR-10, 32", "configs: img_size 32", "sizes", (32,)),
    Setting("methods", "usual training", "no penalty", "methods", (("none", (0.0,)),)),
    Setting("seeds", "App. B: 20 networks per architecture", "-", "seeds", tuple(range(20))),
)

_FIG4 = (
    *_sg_common(
        batch=128, batch_paper="not stated", batch_authors="configs/config_cifar_gradregu.txt: bs = 128",
        normalise_authors="configs/config_cifar_*.txt: raw_inputs = True (input BatchNorm)",
        normalise_reason="as fig1: strengths in the paper's normalised units",
        eval_eps=0.025, eval_paper="App. F: the thresholds of Section 4.1 (0.5% of the pixel range)",
        arch_row=_CONV6_ROW),
    Setting("input size", "CIFAR-10, 32", "configs: img_size = 32", "sizes", (32,)),
    Setting("methods", "App. F: the l1-gradient-regularised networks of Section 4.1",
            "configs/config_cifar_gradregu.txt: penalty grad", "methods",
            (("grad-l1", (0.0,) + _FIG1_EPS),), "fig1's grad-l1 strengths plus the undefended network"),
    Setting("seeds", "one network per strength", "one run per config", "seeds", (0,)),
    Setting("attacks", "App. F: FGSM, single-step l2, PGD without random start, iterative l2, DeepFool",
            "vulnerability.py", "evaluations",
            ({"name": "attacks", "n": 1000, "eps": 0.025},), "1000 test images per network"),
)

_FINLAY = (
    Setting("architecture", "§4: ResNeXt on CIFAR-10", "no code released", "archs", ("resnet",),
            "the registered ResNet stands in for ResNeXt"),
    Setting("input size", "CIFAR-10, 32", "-", "sizes", (32,)),
    Setting("normalisation", "not stated; strengths in 0-1 pixel units (2/255, 8/255)", "-", "normalise", False,
            "strengths are pixel units in this paper"),
    Setting("augmentation", "§4: 'standard data augmentation'", "-", "augment", "crop,flip"),
    Setting("epochs", "'standard learning rate schedules'", "-", "epochs", 200),
    Setting("learning-rate schedule", "'standard learning rate schedules'", "-", "schedule", "cosine"),
    Setting("learning rate", "not stated", "-", "lr", 0.1),
    Setting("optimiser momentum", "not stated", "-", "momentum", 0.9),
    Setting("weight decay", "not stated", "-", "weight_decay", 0.0005, "the usual CIFAR ResNet value"),
    Setting("batch size", "not stated", "-", "batch", 128),
    Setting("methods", "§4: undefended; squared l2 and l1 penalties, lambda 0.1 and 1; 7-step PGD at 8/255",
            "-", "methods",
            (("none", (0.0,)), ("fd-l2", (0.1, 1.0)), ("fd-l1", (0.1, 1.0)), ("pgd", (0.0314,)))),
    Setting("finite-difference step h", "§4: h = 0.01", "-", "fd_h", 0.01),
    Setting("training PGD", "§4: Madry et al.: 7 steps of 2/255, radius 8/255", "-", None,
            "methods.py pgd: 7 steps of 0.2 eps (= 1.6/255)", "pathstats' one PGD step rule"),
    Setting("attack model mode in training", "not stated", "-", "adv_mode", "train"),
    Setting("training attacks clipped to the box", "not stated", "-", "adv_clip", True,
            "pixel-unit data: attacks stay images"),
    Setting("seeds", "one network each", "-", "seeds", (0, 1, 2), "three seeds for intervals"),
    Setting("evaluations", "§4: 1000 random test images, best distance over a suite of attacks", "-",
            "evaluations", ({"name": "bounds", "n": 1000, "norm": 2},)),
)

_ROTH = (
    Setting("architecture", "§5: 7-layer CNN with batch normalisation (WRN-28-10 for robustness)", "not used",
            "archs", ("conv6",), "the registered 6-layer CNN stands in for the 7-layer one"),
    Setting("input size", "CIFAR-10, 32", "-", "sizes", (32,)),
    Setting("normalisation", "not stated; strengths in pixel units", "-", "normalise", False),
    Setting("augmentation", "not stated (Appendix 7.10 not in the shared text)", "-", "augment", "crop,flip"),
    Setting("epochs", "not stated", "-", "epochs", 200),
    Setting("learning-rate schedule", "not stated", "-", "schedule", "cosine"),
    Setting("learning rate", "not stated", "-", "lr", 0.01),
    Setting("batch size", "not stated", "-", "batch", 128),
    Setting("methods", "§5: standard, l2/l_inf PGA adversarial training, data-dependent spectral norm", "-",
            "methods", (("none", (0.0,)), ("pgd", (0.0314,)), ("opnorm", (0.01, 0.03, 0.1))),
            "regularisation constants not listed in the text; three over a decade"),
    Setting("operator-norm form", "eq. 7: squared data-dependent spectral norm", "-", "opnorm_form", "squared"),
    Setting("power-method iterations", "one per step suffices [50]", "-", "opnorm_iters", 5, "closer to the norm"),
    Setting("attack model mode in training", "not stated", "-", "adv_mode", "train"),
    Setting("training attacks clipped to the box", "not stated", "-", "adv_clip", True,
            "pixel-unit data: attacks stay images"),
    Setting("seeds", "not stated", "-", "seeds", (0, 1, 2)),
    Setting("evaluations", "§5: 10-iteration PGA; alignment with singular vectors by rank", "-", "evaluations",
            ({"name": "alignment", "n": 200, "align_eps": 0.005, "eps": (0.0, 0.002, 0.005, 0.01, 0.02, 0.05)},)),
)

# ----------------------------------------------------------------------------------- quick grids
# Settings shared by every quick run on digits (8x8, d = 64): a few epochs, the evaluation attack
# at a threshold that moves digits' coarse pixels, a 500-image training subset for the train-set metrics.
_QUICK = {"epochs": 8, "batch": 32, "lr": 0.05, "eval_eps": 0.05, "train_eval_n": 500}
_ATTACK_SUITE = {"name": "attacks", "n": 500, "eps": 0.005}
_BOUNDS = {"name": "bounds", "n": 1000, "norm": 2}
_ALIGNMENT = {"name": "alignment", "n": 200, "align_eps": 0.005, "eps": (0.0, 0.002, 0.005, 0.01, 0.02, 0.05)}

# ----------------------------------------------------------------------------------- medium grids
# Shared by every medium run: digits (1438 training, 359 test images at 8 x 8) up-sampled per
# batch; normalised like the paper; crop with 1 px padding at native size and no flip (digits
# are not mirror-symmetric); batch 32 and lr 0.05 (conv6 passes 95% test accuracy in 3 epochs
# under them); cosine to 0 since the runs are shorter than one halving period; the authors'
# evaluation PGD (10 steps of eps/7.5, no random start) at eps_inf 0.05 normalised (~ 0.019 of
# the pixel range; digits' sigma is .376).  A pilot (conv6, 8 channels, 32 px, 3 epochs, the
# normalised strengths converted to pixels) chose the strengths: at 0.1 the undefended net's
# measured loss damage was 1.43 times its first-order prediction (vulnerability .52), too far
# from Lemma 2's regime; PGD at 0.032 lowered E||dL/dx||_1 2.7 times (23.1 -> 8.6) at no
# accuracy cost (.86 -> .90), grad-l1 at 0.1 lowered it 3.4 times but cost 10 points of
# accuracy.  Evaluation at epoch 0, every eval_every epochs and the last.
_MEDIUM = {"normalise": True, "augment": "crop", "batch": 32, "lr": 0.05, "schedule": "cosine",
           "momentum": 0.9, "weight_decay": 0.0, "adv_mode": "train", "adv_clip": False,
           "eval_eps": 0.05, "eval_steps": 10, "eval_step_frac": 0.13333333333333333, "eval_random_start": False,
           "train_eval_n": 300}

#: Measured seconds of one optimisation step (batch 32) of each method for conv6 with 16 channels
#: at 32 px on digits, and of one evaluated epoch plus the run's setup (``"eval"``: the 359 test
#: images and a 200-image training subset under a 7-step PGD), with today's trainer under
#: ``torch.set_num_threads(1)``: runs of 5 and 25 steps per epoch (``steps_per_epoch``), their
#: difference / 20 a step, the rest evaluation and setup.  Measured on a shared 2-core machine with
#: a load average of 1-2.5 from other work: upper figures.  ``fd-l2`` and ``opnorm`` were not
#: measured (the machine's load rose to 9 before their turn): their passes per step match ``fgsm``
#: (two forward-backward passes) and ``pgd`` (ten passes: five power iterations) respectively.
MEDIUM_COST = {"none": 0.0324, "grad-l1": 0.0806, "fgsm": 0.0807, "pgd": 0.4318, "crosslip": 0.405,
               "fd-l2": 0.0807, "opnorm": 0.4318, "eval": 3.8}

#: Forward-backward cost (batch 32, training mode, one thread) of each medium network relative to
#: conv6 with 16 channels at 32 px, keyed by (arch, size, channels): the best of three repeats of
#: three passes, all nets measured in one process so that the machine's load cancels in the ratio
#: (conv8 dilated by size / 8, zero padding).
MEDIUM_NET_COST = {("conv6", 32, 16): 1.0, ("conv6", 32, 8): 0.78, ("conv8", 16, 8): 0.59, ("conv8", 32, 8): 1.72,
                   ("conv8", 64, 8): 6.43, ("conv6-avgpool", 32, 16): 1.22, ("conv6-strided", 32, 16): 0.69,
                   ("conv6-maxpool", 32, 16): 1.26}

# Methods whose step costs what a measured one does (the same passes): the l2 variants and fd-l1.
_COST_ALIAS = {"grad-l2": "grad-l1", "fgm-l2": "fgsm", "fd-l1": "fd-l2"}
_COST_STEPS, _COST_IMAGES = 7, 359 + 200  # the evaluation behind MEDIUM_COST["eval"]
_TRAIN_IMAGES, _TEST_IMAGES = 1438, 359  # digits' splits


def medium_minutes(grid: Grid) -> float:
    """Projected single-core minutes of a medium grid: every run's epochs x steps per epoch x
    the method's step cost, plus its evaluated epochs (epoch 0, every ``eval_every``-th and the
    last) x the evaluation cost scaled to the grid's attack steps and images, all scaled by the
    network's relative cost (:data:`MEDIUM_COST`, :data:`MEDIUM_NET_COST`).  Evaluations after
    training (``grid.evaluations``) are not included."""
    train = grid.train
    steps = _TRAIN_IMAGES // train.get("batch", 32)
    epochs, every = train["epochs"], train.get("eval_every", 1)
    evaluated = len(set(range(0, epochs + 1, every)) | {0, epochs})
    images = min(train.get("eval_n") or _TEST_IMAGES, _TEST_IMAGES) + train.get("train_eval_n", 500)
    evaluation = MEDIUM_COST["eval"] * (train.get("eval_steps", 7) + 1) / (_COST_STEPS + 1) * images / _COST_IMAGES
    total = 0.0
    for arch in grid.archs:
        for size in grid.sizes:
            net = MEDIUM_NET_COST[(arch, size, train.get("channels"))]
            for method, strengths in grid.methods:
                step = MEDIUM_COST[_COST_ALIAS.get(method, method)]
                total += len(strengths) * len(grid.seeds_of(method)) * net * (epochs * steps * step + evaluated * evaluation)
    return total / 60


EXPERIMENTS: dict = {}


def _register(*experiments: Experiment) -> None:
    EXPERIMENTS.update({e.name: e for e in experiments})


_register(
    Experiment(
        "fig1", "Training methods x strengths (Figures 1 and 5)",
        "Simon-Gabriel et al. 2019, Section 4.1, Figures 1 and 5",
        "Gradient penalties, one-step and iterative adversarial augmentation and cross-Lipschitz "
        "regularisation at several strengths; gradient norms, vulnerability and accuracy against eps d^(1/p).",
        _FIG1,
        quick=Grid(("fc",), (None,),
                   (("none", (0.0,)),) + tuple((m, (0.01, 0.05, 0.25)) for m in ("grad-l1", "grad-l2", "fgsm", "fgm-l2", "pgd")),
                   (0, 1), _QUICK),
        medium=Grid(("conv6",), (32,),
                    (("none", (0.0,)),) + tuple((m, (0.0056, 0.018, 0.056))
                                                for m in ("grad-l1", "grad-l2", "fgsm", "fgm-l2", "pgd", "crosslip")),
                    tuple(range(12)), {**_MEDIUM, "channels": 8, "epochs": 8, "eval_every": 4},
                    method_seeds=(("none", tuple(range(15))), ("grad-l2", tuple(range(30))), ("pgd", tuple(range(20))))),
        medium_note="fgsm-through is left out of the medium grid: its gradient through the attack is zero "
                    "almost everywhere (the sign's derivative), so it trains as fgsm does (Appendix E) at the "
                    "cost of a PGD run; twelve seeds (fifteen for the cheap unregularised nets): a first medium run "
                    "with three left every Proposition 3 match inconclusive (seed spread of log E||dL/dx||_1 about "
                    "0.25), a second with five decided Proposition 3 but left the functional relation "
                    "inconclusive, and its 13 deviations' standard errors projected 11 seeds for the widest method "
                    "and 14 for the unregularised nets, whose points only partly overlap the others' range; with "
                    "twelve, grad-l2's high-end deviation alone stayed inconclusive (-0.215, standard error 0.093), "
                    "so grad-l2 runs at 30 seeds (its cost is that of grad-l1); its runs then widened the common "
                    "curve's range, and PGD's low-end deviation (0.197, standard error 0.091) asked for 20 PGD seeds; "
                    "every stage's seeds were set from the previous stage's standard errors, the margins never "
                    "changed; a seed fixes the initialisation, data order and augmentation of every method, so the "
                    "matches pair the runs of one seed",
    ),
    Experiment(
        "fig2", "Input dimension x PGD strength (Figures 2, 7 and 12)",
        "Simon-Gabriel et al. 2019, Section 4.2, Figures 2, 7 and 12",
        "PGD-trained networks on nearest-neighbour up-sampled data; gradient norms and vulnerability against "
        "sqrt(d) with 10-90% bands over the last epochs, the initialisation-time prediction, train vs test "
        "gradient norms over epochs.",
        _FIG2,
        quick=Grid(("fc",), (8, 16, 32), (("none", (0.0,)), ("pgd", (0.02, 0.1))), (0, 1), _QUICK),
        medium=Grid(("conv8",), (16, 32, 64), (("none", (0.0,)), ("pgd", (0.001, 0.003, 0.01))), (0, 1, 2),
                    {**_MEDIUM, "channels": 8, "native_side": 16, "epochs": 10, "eval_every": 2, "eval_n": 200,
                     "train_eval_n": 100}, method_seeds=(("none", tuple(range(15))),)),
        medium_note="the unregularised runs at 15 seeds: 'sqrt(d) after usual training' rests on them alone, they "
                    "cost 2 minutes per seed at all three sizes, and with three seeds the exponent's interval "
                    "(+-0.22) straddled the 0.25 that separates sqrt(d) from a dimension-independent norm; "
                    "three PGD strengths (the dampening claim is a trend over strengths), 10 epochs and 200 test "
                    "/ 100 training images per evaluation: a PGD step of "
                    "conv8 at 64 px costs 25 times one of conv6 at 32 px on a CPU, so that the grid stays near an hour "
                    "on one core; a first medium run (4 epochs, PGD 0.032) left the networks under-trained (test "
                    "accuracy 0.56-0.85 without PGD, 0.17-0.43 with it at 32 and 64 px), so the strengths stop at 0.01 "
                    "and the runs are 10 epochs; conv8's dilation is relative to a 16-pixel side (1, 2, 4 at 16, 32, 64 px, as "
                    "CIFAR's 32, 64, 128 get): relative to digits' own 8 pixels its last maps would be narrower than "
                    "their reflect padding",
    ),
    Experiment(
        "fig3", "Average vs strided vs max pooling (Figure 3)",
        "Simon-Gabriel et al. 2019, Appendix B, Figure 3",
        "Six conv blocks with 2x2 average pooling, stride-2 convolutions or 2x2 max pooling after every second "
        "block; vulnerability, accuracy and gradient norms after training against Theorem 11's prediction.",
        _FIG3,
        quick=Grid(("conv6-avgpool", "conv6-strided", "conv6-maxpool"), (None,), (("none", (0.0,)),),
                   (0, 1, 2), {**_QUICK, "epochs": 3}),
        medium=Grid(("conv6-avgpool", "conv6-strided", "conv6-maxpool"), (32,), (("none", (0.0,)),),
                    tuple(range(12)), {**_MEDIUM, "channels": 16, "epochs": 15, "eval_every": 15}),
    ),
    Experiment(
        "fig4", "Vulnerability under five attacks (Figures 4 and 6)",
        "Simon-Gabriel et al. 2019, Appendix F, Figures 4 and 6",
        "Networks trained with the l1 gradient penalty, attacked by FGSM, single-step l2, iterative l_inf and "
        "l2 (no random start) and DeepFool, under an l_inf threshold (Figure 4) and an l2 threshold (Figure 6).",
        _FIG4,
        quick=Grid(("fc",), (None,), (("grad-l1", (0.0, 0.01, 0.05, 0.25, 1.0)),), (0,), _QUICK,
                   ({**_ATTACK_SUITE, "n": 150, "eps": 0.05},)),
        medium=Grid(("conv6",), (32,), (("grad-l1", (0.0, 0.0032, 0.01, 0.032, 0.1)),), (0, 1, 2),
                    {**_MEDIUM, "channels": 8, "epochs": 8, "eval_every": 8},
                    ({"name": "attacks", "n": 300, "eps": 0.05},)),
    ),
    Experiment(
        "finlay", "Robustness bounds vs measured minimal distances (Finlay & Oberman)",
        "Finlay & Oberman 2019, Proposition 2.1, Section 4, Table 2",
        "Undefended, finite-difference squared-norm penalties (lambda 0.1 and 1, h = 0.01) and 7-step PGD "
        "training; the Lipschitz and curvature lower bounds against the l2 distances DeepFool needs.",
        _FINLAY,
        # the finite-difference penalty diverges at lr 0.05 on digits (lambda 0.3 and 1): lr 0.01
        quick=Grid(("fc",), (None,), (("none", (0.0,)), ("fd-l2", (0.1, 1.0)), ("pgd", (0.05,))), (0, 1, 2),
                   {**_QUICK, "lr": 0.01}, ({**_BOUNDS, "n": 200},)),
        medium=Grid(("conv6",), (32,), (("none", (0.0,)), ("fd-l2", (0.1, 1.0)), ("fd-l1", (0.1, 1.0)), ("pgd", (0.0314,))),
                    (0, 1, 2), {**_MEDIUM, "normalise": False, "adv_clip": True, "lr": 0.01, "channels": 8,
                                "epochs": 8, "eval_every": 8, "eval_eps": 0.05},
                    ({**_BOUNDS, "n": 300},)),
        medium_note="conv6 stands in for the ResNeXt on digits (the registered resnet costs several times more "
                    "per step); pixel units as the paper; lr 0.01 as the quick grid (the finite-difference "
                    "penalty diverges at 0.05)",
    ),
    Experiment(
        "roth", "Alignment with the dominant singular vector (Roth et al.)",
        "Roth et al. 2020, Section 5, Figures 2 and 3",
        "Standard, PGD and data-dependent operator-norm training; the cosine of l2 PGD perturbations with the "
        "singular vectors of the logit Jacobian by rank, the singular-value spectrum, accuracy under attack.",
        _ROTH,
        quick=Grid(("fc",), (None,), (("none", (0.0,)), ("pgd", (0.05,)), ("opnorm", (0.1,))), (0, 1), _QUICK,
                   ({**_ALIGNMENT, "n": 100, "align_eps": 0.02, "eps": (0.0, 0.02, 0.05, 0.1, 0.2)},)),
        medium=Grid(("conv6",), (32,), (("none", (0.0,)), ("pgd", (0.0314,)), ("opnorm", (0.03, 0.1))), (0, 1, 2),
                    {**_MEDIUM, "normalise": False, "adv_clip": True, "opnorm_form": "squared", "channels": 8,
                     "epochs": 8, "eval_every": 8, "eval_eps": 0.05},
                    ({**_ALIGNMENT, "n": 150, "align_eps": 0.02, "eps": (0.0, 0.02, 0.05, 0.1, 0.2)},)),
    ),
)


def get(name: str) -> Experiment:
    """The experiment called ``name``.

    Examples
    --------
    >>> get("fig2").paper.sizes
    (32, 64, 128, 256)
    >>> get("fig9")
    Traceback (most recent call last):
    ...
    pathstats.errors.UnknownExperimentError: unknown experiment 'fig9'; experiments: fig1, fig2, fig3, fig4, finlay, roth
    """
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownExperimentError(f"unknown experiment {name!r}; experiments: {', '.join(EXPERIMENTS)}") from None
