"""The six experiments: ONE description each (grids, evaluations, figures, claims).

The papers' grids where they state them: Simon-Gabriel et al. (ICML 2019) Section 4.1
(Figure 1: six training methods and the FGSM variant at several strengths, the 6-layer
CNN), Section 4.2 (Figure 2: PGD strengths x input sizes 32, 64, 128, 256 with the
8-layer CNN), Appendix B (Figure 3: 20 networks per pooling type), Appendix F (Figures 4
and 6: ten l1-gradient-regularised networks under five attacks); Finlay & Oberman (2019)
Section 4 (undefended, squared-norm penalties with lambda = 0.1 and 1, finite
differences h = 0.01, 7-step adversarial training); Roth et al. (2020) Section 5
(standard, adversarial and data-dependent operator-norm training).  The papers do not
list every strength they trained at; where they do not, the strengths below are
log-spaced over the range their figures span.  Every ``--quick`` grid runs on the
embedded digits data with the small fully connected net (or the small pooled CNNs for
Figure 3), a few epochs, so that it finishes on two CPU cores in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathstats.errors import PathstatsError

from .grid import Grid

__all__ = ["SCALES", "Experiment", "EXPERIMENTS", "get", "UnknownExperimentError"]


class UnknownExperimentError(PathstatsError, LookupError):
    """No experiment has that name."""

    def __str__(self) -> str:
        return str(self.args[0])


#: The three scales of every experiment: ``quick`` tests the pipeline in minutes, ``medium``
#: decides the central claims in about an hour on two CPU cores, ``paper`` is the papers' grid.
SCALES = ("quick", "medium", "paper")


@dataclass(frozen=True)
class Experiment:
    """An experiment: its paper source and its grid at each of :data:`SCALES`; its analysis
    (figures and claims) is the function of :mod:`.analysis` named after it."""

    name: str
    title: str
    source: str
    summary: str
    paper: Grid
    quick: Grid
    medium: Grid | None = None

    def grid(self, scale: str) -> Grid:
        """The grid at ``scale`` (one of :data:`SCALES`)."""
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; scales: {', '.join(SCALES)}")
        grid = getattr(self, scale)
        if grid is None:
            raise ValueError(f"experiment {self.name!r} has no {scale} grid yet")
        return grid


# Training settings shared by every quick run on digits (8x8, d = 64): the trainer's
# digits settings for a few epochs, the evaluation attack at a threshold that moves
# digits' coarse pixels, a 500-image training subset for the train-set metrics.
_QUICK = {"epochs": 8, "batch": 32, "lr": 0.05, "eval_eps": 0.05, "train_eval_n": 500}
# The paper's settings (Section 4.1: eps_inf = 0.5% of the pixel range for evaluation).
_FULL = {"epochs": 100, "batch": 128, "lr": 0.01, "eval_eps": 0.005}

_ATTACK_SUITE = {"name": "attacks", "n": 500, "eps": 0.005}
_BOUNDS = {"name": "bounds", "n": 1000, "norm": 2}
_ALIGNMENT = {"name": "alignment", "n": 200, "align_eps": 0.005, "eps": (0.0, 0.002, 0.005, 0.01, 0.02, 0.05)}

EXPERIMENTS = {
    e.name: e
    for e in [
        Experiment(
            "fig1", "Training methods x strengths (Figures 1 and 5)",
            "Simon-Gabriel et al. 2019, Section 4.1, Figures 1 and 5",
            "Gradient penalties, one-step and iterative adversarial augmentation and cross-Lipschitz "
            "regularisation at several strengths; gradient norms, vulnerability and accuracy against eps d^(1/p).",
            paper=Grid(("conv6",), (32,),
                      (("none", (0.0,)),) + tuple((m, (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05))
                                                  for m in ("grad-l1", "grad-l2", "fgsm", "fgm-l2", "pgd", "crosslip", "fgsm-through")),
                      (0,), _FULL),
            quick=Grid(("fc",), (None,),
                       (("none", (0.0,)),) + tuple((m, (0.01, 0.05, 0.25)) for m in ("grad-l1", "grad-l2", "fgsm", "fgm-l2", "pgd")),
                       (0, 1), _QUICK),
        ),
        Experiment(
            "fig2", "Input dimension x PGD strength (Figures 2, 7 and 12)",
            "Simon-Gabriel et al. 2019, Section 4.2, Figures 2, 7 and 12",
            "PGD-trained networks on nearest-neighbour up-sampled data; gradient norms and vulnerability against "
            "sqrt(d) with 10-90% bands over the last epochs, the initialisation-time prediction, train vs test "
            "gradient norms over epochs.",
            paper=Grid(("conv8",), (32, 64, 128, 256),
                      (("none", (0.0,)), ("pgd", (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005))),
                      (0,), {**_FULL, "eval_eps": 0.0008}),
            quick=Grid(("fc",), (8, 16, 32), (("none", (0.0,)), ("pgd", (0.02, 0.1))), (0, 1), _QUICK),
        ),
        Experiment(
            "fig3", "Average vs strided vs max pooling (Figure 3)",
            "Simon-Gabriel et al. 2019, Appendix B, Figure 3",
            "Six conv blocks with 2x2 average pooling, stride-2 convolutions or 2x2 max pooling after every second "
            "block; vulnerability, accuracy and gradient norms after training against Theorem 11's prediction.",
            paper=Grid(("conv6-avgpool", "conv6-strided", "conv6-maxpool"), (32,), (("none", (0.0,)),),
                      tuple(range(20)), _FULL),
            quick=Grid(("conv6-avgpool", "conv6-strided", "conv6-maxpool"), (None,), (("none", (0.0,)),),
                       (0, 1, 2), {**_QUICK, "epochs": 3}),
        ),
        Experiment(
            "fig4", "Vulnerability under five attacks (Figures 4 and 6)",
            "Simon-Gabriel et al. 2019, Appendix F, Figures 4 and 6",
            "Networks trained with the l1 gradient penalty, attacked by FGSM, single-step l2, iterative l_inf and "
            "l2 (no random start) and DeepFool, under an l_inf threshold (Figure 4) and an l2 threshold (Figure 6).",
            paper=Grid(("conv6",), (32,),
                      (("grad-l1", (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)),),
                      (0,), _FULL, (_ATTACK_SUITE,)),
            quick=Grid(("fc",), (None,), (("grad-l1", (0.0, 0.01, 0.05, 0.25, 1.0)),), (0,), _QUICK,
                       ({**_ATTACK_SUITE, "n": 150, "eps": 0.05},)),
        ),
        Experiment(
            "finlay", "Robustness bounds vs measured minimal distances (Finlay & Oberman)",
            "Finlay & Oberman 2019, Proposition 2.1, Section 4, Table 2",
            "Undefended, finite-difference squared-norm penalties (lambda 0.1 and 1, h = 0.01) and 7-step PGD "
            "training; the Lipschitz and curvature lower bounds against the l2 distances DeepFool needs.",
            paper=Grid(("resnet",), (32,),
                      (("none", (0.0,)), ("fd-l2", (0.1, 1.0)), ("fd-l1", (0.1, 1.0)), ("pgd", (0.0314,))),
                      (0, 1, 2), _FULL, (_BOUNDS,)),
            # the finite-difference penalty diverges at lr 0.05 on digits (lambda 0.3 and 1): lr 0.01
            quick=Grid(("fc",), (None,), (("none", (0.0,)), ("fd-l2", (0.1, 1.0)), ("pgd", (0.05,))), (0, 1, 2),
                       {**_QUICK, "lr": 0.01},
                       ({**_BOUNDS, "n": 200},)),
        ),
        Experiment(
            "roth", "Alignment with the dominant singular vector (Roth et al.)",
            "Roth et al. 2020, Section 5, Figures 2 and 3",
            "Standard, PGD and data-dependent operator-norm training; the cosine of l2 PGD perturbations with the "
            "singular vectors of the logit Jacobian by rank, the singular-value spectrum, accuracy under attack.",
            paper=Grid(("conv6",), (32,), (("none", (0.0,)), ("pgd", (0.0314,)), ("opnorm", (0.01, 0.03, 0.1))),
                      (0, 1, 2), _FULL, (_ALIGNMENT,)),
            quick=Grid(("fc",), (None,), (("none", (0.0,)), ("pgd", (0.05,)), ("opnorm", (0.1,))), (0, 1), _QUICK,
                       ({**_ALIGNMENT, "n": 100, "align_eps": 0.02, "eps": (0.0, 0.02, 0.05, 0.1, 0.2)},)),
        ),
    ]
}


def get(name: str) -> Experiment:
    """The experiment called ``name``.

    Examples
    --------
    >>> get("fig2").paper.sizes
    (32, 64, 128, 256)
    >>> get("fig9")
    Traceback (most recent call last):
    ...
    pathstats.robust.experiments.catalogue.UnknownExperimentError: unknown experiment 'fig9'; experiments: fig1, fig2, fig3, fig4, finlay, roth
    """
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownExperimentError(f"unknown experiment {name!r}; experiments: {', '.join(EXPERIMENTS)}") from None
