"""What a prediction says about itself: its notes, and the measured size of each approximation of model mode.

Kept apart from the rules (:mod:`.rules`), which quote these texts: the texts change
when a benchmark is re-run, the rules when the mathematics does.
"""

from __future__ import annotations

__all__ = ["Note", "MODEL_MODE", "EFFECTS"]


class Note(str):
    """One caveat of a prediction: the layer, the assumption it rests on, and its size where measured.

    A ``str`` (``"layer: assumption (effect)"``) so that notes read and print as
    text, with the three parts kept as attributes for :meth:`to_dict`.

    Examples
    --------
    >>> note = Note("pool1", "window members taken as independent", "measured -3.1% +- 0.5%")
    >>> str(note)
    'pool1: window members taken as independent (measured -3.1% +- 0.5%)'
    >>> note.to_dict()["layer"]
    'pool1'
    """

    def __new__(cls, layer: str | None, assumption: str, effect: str | None = None) -> "Note":
        text = (f"{layer}: " if layer else "") + assumption + (f" ({effect})" if effect else "")
        note = super().__new__(cls, text)
        note.layer, note.assumption, note.effect = layer, assumption, effect
        return note

    def __getnewargs__(self) -> tuple:
        return (self.layer, self.assumption, self.effect)

    def to_dict(self) -> dict:
        """``{"layer", "assumption", "effect"}`` (``effect`` None where not measured)."""
        return {"layer": self.layer, "assumption": self.assumption, "effect": self.effect}


# ---------------------------------------------------------- model mode's accuracy
#: What model mode does with a layer outside the paper's assumptions, and how well it
#: agrees with the Monte Carlo there (measured with ``pathstats verify``; the table and
#: the script that measured it are on the docs page "Where the assumptions fail").
#: Theory-mode refusals and model-mode notes quote these texts.
MODEL_MODE = {
    "maxpool": "routes the gradient to each window's arg-max from the laws of the window's correlated members "
               "(measured against the Monte Carlo: within 1% on 2x2 windows before or after the ReLU, -2% on "
               "overlapping 3x3 windows, +7% on VGG-11)",
    "add": "follows the law of the skip stream through the addition (post-add ReLUs open about 2/3 of the time; "
           "measured against the Monte Carlo: within 3% on post-activation residual nets)",
    "gate": "takes each gate's open probability from the law of its input (exact in the infinite-width limit)",
    "smooth": "takes the activation's squared derivative from the law of its input (exact in the infinite-width "
              "limit; a first layer's small fan-in is not treated exactly, as it is for ReLU gates)",
}
#: Measured size of each approximation that remains, as ``measured / predicted - 1 +- SE``
#: (``benchmarks/model_mode.py``: 3x32x32 inputs, 16-32 channels, 1200-2800 initialisations).
EFFECTS = {
    "maxpool": "measured: +6.6% +- 0.8% on VGG-11 (width 16), -2.2% +- 0.5% on two overlapping 3x3 pools, "
               "-0.7% +- 0.6% on three 2x2 pools; +5.0% +- 0.6% on conv6-maxpool with circular padding, +3.1% with "
               "zero padding, +9.7% with reflect (3x32x32, 64 ch, N = 1600)",
    "maxpool_independent": "measured: -15% +- 0.5% on two 2x2 pools of ReLU outputs, where uncorrelated members "
                           "over-predict the open arg-max",
    "avgpool": "measured with the first layer treated exactly: +16.7% +- 1.3% on conv6-avgpool at 3x32x32 with "
               "reflect padding, +19.9% circular, +21.4% zeros (64 ch, N = 1600; benchmarks/registered_gaps.py; "
               "+21%, +24%, +26% before), +17% to +20% at 3x64x64; behind one convolution it is gone (+0.1% +- 0.6%), behind two it is "
               "+9.3% +- 0.9%, behind three +17% +- 1% (3x16x16, circular, 64 ch, N = 2000-4000): it grows with "
               "depth, comes from the first layer's small fan-in (3 x 3 x 3 = 27), falls to 1-2% with 16-64 input "
               "channels and does not shrink with width; GELU +14.1% +- 1.7% and SiLU +16.5% +- 1.9% behind two "
               "pooled convolutions where ReLU has +10.4% +- 1.5% and tanh (zero mean) +0.7% +- 1.6% (3x8x8, 3 input "
               "channels, width 32, N = 1000; benchmarks/smooth_activations.py)",
    "stream": "measured: +2.7% +- 0.4% on three post-add-ReLU blocks (32 ch)",
    "bias": "measured at init='torch' (biases drawn by reset_parameters) on two 3x3 convolutions, 3x8x8, 16 ch, "
            "N = 1600: ReLU -0.7% +- 0.5% (-0.9% with the biases removed), tanh -2.7% +- 0.3% (-0.7%), GELU +1.8% "
            "+- 0.4% (+0.4%), SiLU +0.8% +- 0.4% (+0.2%); benchmarks/bias_effect.py",
    "silu_depth": "measured: +11.0% +- 2.8% on four hidden layers of width 64 and +3.9% +- 1.3% at width 256 "
                  "(1x8x8 inputs, N = 1000); it shrinks with width, so it is a finite-width effect; tanh, GELU and "
                  "ReLU are within 2.4% on the same nets (benchmarks/smooth_activations.py)",
}
