"""A small grid of panels with the plot types the papers' figures use, saved as PNG and PDF.

Rules every experiment figure keeps: one colour per method (or input dimension, or
attack) across all panels and figures (:func:`colour`, a fixed map from the name);
measurements as per-strength means with 95% intervals over seeds (no smoothing splines
through noisy points); on a log x axis the ``eps = 0`` runs are drawn at a separate
position left of a dotted break, labelled ``eps = 0`` (never silently dropped).
"""

from __future__ import annotations

import math

import numpy as np

from pathstats import stats
from pathstats._io import atomic_write, figure_format, pyplot, save_figure

__all__ = ["Figure", "colour", "COLOURS"]

#: The fixed colour of each training method (and of the other names the figures group by).
COLOURS = {
    "none": "#000000", "grad-l1": "#1f77b4", "grad-l2": "#ff7f0e", "fgsm": "#2ca02c", "fgm-l2": "#d62728",
    "pgd": "#9467bd", "crosslip": "#8c564b", "fgsm-through": "#e377c2", "fd-l2": "#17becf", "fd-l1": "#bcbd22",
    "opnorm": "#7f7f7f", "pgd-inf": "#9467bd", "pgd-l2": "#c5b0d5", "fgm-l2 attack": "#d62728", "deepfool": "#8c564b",
}
_SPARE = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79", "#637939",
          "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354"]


_ASSIGNED: dict = {}  # other names -> their spare colour, in the order first drawn


def colour(name) -> str:
    """The colour of ``name``: fixed for known methods; any other name (an input size, an
    architecture) gets the next spare colour no other name has, the first time it is drawn,
    and keeps it in every later panel and figure of the program (no two groups share one).

    Examples
    --------
    >>> colour("pgd"), colour("d = 1024") == colour("d = 1024"), colour("d = 256") != colour("d = 4096")
    ('#9467bd', True, True)
    """
    name = str(name)
    if name in COLOURS:
        return COLOURS[name]
    if name not in _ASSIGNED:
        taken = set(_ASSIGNED.values())
        free = [c for c in _SPARE if c not in taken]
        _ASSIGNED[name] = free[0] if free else _SPARE[len(_ASSIGNED) % len(_SPARE)]
    return _ASSIGNED[name]


def _short_label(value: float, _position=None) -> str:
    """A log axis's tick label: plain digits (0.02, 5, 30) at 1, 2 and 5 times a power of ten, none elsewhere."""
    if value <= 0:
        return ""
    mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:g}" if mantissa in (1.0, 2.0, 5.0) else ""


def _compact_log_labels(ax) -> None:
    """On a log axis spanning less than two decades, matplotlib labels every minor tick as
    ``m x 10^k`` and the labels overlap; label 1, 2 and 5 times the powers of ten in plain digits instead."""
    from matplotlib.ticker import FuncFormatter

    for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() == "log" and low > 0 and high / low < 100:
            axis.set_major_formatter(FuncFormatter(_short_label))
            axis.set_minor_formatter(FuncFormatter(_short_label))


def _mean_interval(values, bounds: tuple | None = None) -> tuple:
    """Mean and the (below, above) half-widths of the 95% t interval of replicates (a sequence, or a
    mapping seed -> value), the interval cut to ``bounds`` where the quantity has them (a proportion
    lies in [0, 1]: a t interval over three seeds can reach past them)."""
    est = stats.mean_ci(list(values.values()) if isinstance(values, dict) else values)
    m = est["value"]
    if est["ci_high"] is None:
        return m, (0.0, 0.0)
    low, high = est["ci_low"], est["ci_high"]
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return m, (max(m - low, 0.0), max(high - m, 0.0))  # a mean outside the bounds keeps no bar on that side


def _bars(halves: list) -> list:
    """matplotlib's asymmetric error bars: ``[[below...], [above...]]``."""
    return [[h[0] for h in halves], [h[1] for h in halves]]


class Figure:
    """``rows x cols`` panels under a title; :meth:`save` writes ``BASE.png`` and ``BASE.pdf``.

    Examples
    --------
    >>> import tempfile, os
    >>> fig = Figure(1, 1, "demo")
    >>> ax = fig.panel(0, "a curve", "eps", "accuracy", logx=True)
    >>> fig.curve(ax, {0.0: [0.95, 0.96], 0.01: [0.9, 0.92], 0.1: [0.8, 0.78]}, "grad-l1")
    >>> ax.zero_x < 0.01
    True
    >>> [os.path.basename(p) for p in fig.save(os.path.join(tempfile.mkdtemp(), "demo"))]
    ['demo.png', 'demo.pdf']
    """

    def __init__(self, rows: int, cols: int, title: str):
        plt = pyplot()
        self.fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 7.0), 3.4 * rows + 0.4), squeeze=False)
        self.axes = axes.ravel()
        self.fig.suptitle(title, fontsize=10)

    def panel(self, index: int, title: str, xlabel: str, ylabel: str, logx: bool = False, logy: bool = False):
        """The ``index``-th panel, titled and labelled."""
        ax = self.axes[index]
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        return ax

    @staticmethod
    def zero_position(ax, xs) -> float | None:
        """Where ``x = 0`` is drawn on the log x axis ``ax``: half a decade left of the smallest positive
        x of ``xs``, behind a dotted break labelled ``eps = 0``; set once per panel (``ax.zero_x``)."""
        if ax.get_xscale() != "log":
            return 0.0
        if getattr(ax, "zero_x", None) is not None:
            return ax.zero_x
        positive = [x for x in xs if x > 0]
        if not positive:
            return None
        x0 = min(positive) / 10**0.75
        ax.zero_x = x0
        ax.axvline(x0 * 10**0.4, color="0.6", ls=(0, (1, 2)), lw=0.8)
        ax.axvline(x0 / 10**0.35, alpha=0.0)  # invisible: widens the x limits so the label fits
        ax.text(x0 / 10**0.15, 0.02, "eps = 0", transform=ax.get_xaxis_transform(), ha="left", va="bottom", fontsize=6,
                color="0.3")
        return x0

    @classmethod
    def curve(cls, ax, points: dict, label: str, name: str | None = None, bounds: tuple | None = None, **style) -> None:
        """Mean over seeds against x with 95% t intervals (``points``: x -> values or seed -> value; the
        intervals cut to ``bounds``, e.g. ``(0, 1)`` for a proportion); on a log x axis x = 0 is drawn
        at :meth:`zero_position` with an open marker, never dropped."""
        c = colour(name or label)
        xs = sorted(points)
        pos = [x for x in xs if x > 0 or ax.get_xscale() != "log"]
        if pos:
            mi = [_mean_interval(points[x], bounds) for x in pos]
            ax.errorbar(pos, [m for m, _ in mi], yerr=_bars([h for _, h in mi]), marker="o", ms=3, capsize=2, color=c,
                        label=label, **style)
        if ax.get_xscale() == "log" and 0 in points:
            x0 = cls.zero_position(ax, xs)
            if x0 is not None:
                m, h = _mean_interval(points[0], bounds)
                ax.errorbar([x0], [m], yerr=_bars([h]), marker="s", mfc="none", ms=4, capsize=2, color=c,
                            label=None if pos else label)

    @staticmethod
    def points(ax, xs, ys, label: str, name: str | None = None, marker: str = "o") -> None:
        """One point per run."""
        ax.scatter(xs, ys, s=12, alpha=0.75, color=colour(name or label), marker=marker, label=label)

    @staticmethod
    def band(ax, xs, series, label: str, name: str | None = None) -> None:
        """Median and 10-90% band of the pooled ``series`` (arrays of values over the last epochs) at each x,
        as the paper's Figure 2 summarises its last 20 epochs."""
        pooled = {}
        for x, values in zip(xs, series):
            pooled.setdefault(x, []).extend(v for v in np.asarray(values, float) if np.isfinite(v))
        xs = sorted(x for x in pooled if pooled[x])
        if not xs:
            return
        q = np.array([np.quantile(pooled[x], [0.1, 0.5, 0.9]) for x in xs])
        ax.errorbar(xs, q[:, 1], yerr=[q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]], fmt="o--", ms=3, capsize=2,
                    color=colour(name or label), label=label)

    @staticmethod
    def trade_off(ax, cells: list, label: str, name: str | None = None, xbounds: tuple | None = None,
                  ybounds: tuple | None = None) -> None:
        """A curve through per-strength means (``cells``: ``(x values, y values)`` per strength, in the
        order of the strengths) with 95% intervals in both directions (cut to ``xbounds`` /
        ``ybounds``): the summary the paper's smoothing splines stood for, without inventing wiggles
        between noisy points."""
        mx, my, ex, ey = [], [], [], []
        for xv, yv in cells:
            (a, ha), (b, hb) = _mean_interval(xv, xbounds), _mean_interval(yv, ybounds)
            if a is None or b is None:
                continue
            mx.append(a), my.append(b), ex.append(ha), ey.append(hb)
        if mx:
            ax.errorbar(mx, my, xerr=_bars(ex), yerr=_bars(ey), fmt="o-", ms=3, capsize=2, color=colour(name or label),
                        label=label)

    @staticmethod
    def prediction(ax, points: dict, label: str = "pathstats.predict at init") -> None:
        """The initialisation-time prediction of ``pathstats.predict`` (x -> value), as a black line."""
        xs = sorted(x for x in points if points[x] is not None and math.isfinite(points[x]))
        if xs:
            ax.plot(xs, [points[x] for x in xs], "k-", lw=1.5, label=label)

    def save(self, base: str) -> list:
        """Write ``base.png`` and ``base.pdf``; return their paths."""
        for ax in self.axes:
            if not ax.has_data():
                ax.set_visible(False)
                continue
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6)
            _compact_log_labels(ax)
        paths = [f"{base}.png", f"{base}.pdf"]
        self.fig.tight_layout()  # once: both files share the layout
        for path in paths[:-1]:
            atomic_write(path, lambda f, p=path: self.fig.savefig(f, format=figure_format(p), dpi=110))
        save_figure(self.fig, paths[-1], tight=False)  # writes the last one and closes the figure
        return paths
