"""A small grid of panels with the plot types the papers' figures use, saved as PNG and PDF."""

from __future__ import annotations

import math
import warnings

import numpy as np

from pathstats._io import atomic_write, figure_format, pyplot, save_figure

__all__ = ["Figure"]


class Figure:
    """``rows x cols`` panels under a title; :meth:`save` writes ``BASE.png`` and ``BASE.pdf``.

    Examples
    --------
    >>> import tempfile, os
    >>> fig = Figure(1, 1, "demo")
    >>> ax = fig.panel(0, "a curve", "eps", "accuracy", logx=True)
    >>> fig.curve(ax, {0.01: [0.9, 0.92], 0.1: [0.8, 0.78]}, "grad-l1")
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
    def curve(ax, points: dict, label: str) -> None:
        """Mean over seeds against x, with standard-error bars (``points``: x -> values);
        x = 0 is left out on a log axis."""
        xs = sorted(x for x in points if x > 0 or ax.get_xscale() != "log")
        means = [np.nanmean(points[x]) for x in xs]
        errs = [np.nanstd(points[x], ddof=1) / math.sqrt(len(points[x])) if len(points[x]) > 1 else 0 for x in xs]
        ax.errorbar(xs, means, yerr=errs, marker="o", ms=3, capsize=2, label=label)

    @staticmethod
    def band(ax, xs, series, label: str, positive_x: bool = False) -> None:
        """Median and 10-90% band of the pooled ``series`` (arrays of values over epochs) at each x."""
        pooled = {}
        for x, values in zip(xs, series):
            if positive_x and x <= 0:
                continue
            pooled.setdefault(x, []).extend(v for v in np.asarray(values, float) if np.isfinite(v))
        xs = sorted(x for x in pooled if pooled[x])
        if not xs:
            return
        q = np.array([np.quantile(pooled[x], [0.1, 0.5, 0.9]) for x in xs])
        line, = ax.plot(xs, q[:, 1], "o--", ms=3, label=label)
        ax.fill_between(xs, q[:, 0], q[:, 2], alpha=0.2, color=line.get_color())

    @staticmethod
    def prediction(ax, points: dict) -> None:
        """The initialisation-time prediction of ``pathstats.predict`` (x -> value), as a black line."""
        xs = sorted(x for x in points if np.isfinite(points[x]))
        if xs:
            ax.plot(xs, [points[x] for x in xs], "k-", lw=1.5, label="pathstats.predict at init")

    @staticmethod
    def spline(ax, xs, ys, label: str) -> None:
        """Points and scipy's smoothing spline ``UnivariateSpline`` (the paper's Figure 2d fit)."""
        from scipy.interpolate import UnivariateSpline

        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        keep = np.isfinite(xs) & np.isfinite(ys)
        xs, ys = xs[keep], ys[keep]
        points = ax.scatter(xs, ys, s=5, alpha=0.4)
        ux = np.unique(xs)
        if len(ux) < 4:
            return
        # average duplicate x values (the spline needs increasing x), weights sqrt(count); the
        # smoothing s = m * (residual variance of a straight-line fit), a conservative noise level
        ym = np.array([ys[xs == u].mean() for u in ux])
        w = np.array([np.sqrt((xs == u).sum()) for u in ux])
        noise = float(np.var(ys - np.polyval(np.polyfit(xs, ys, 1), xs)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = UnivariateSpline(ux, ym, w=w, k=min(3, len(ux) - 1), s=len(ux) * max(noise, 1e-12))
        grid = np.linspace(ux.min(), ux.max(), 100)
        ax.plot(grid, fit(grid), color=points.get_facecolor()[0][:3], label=label)

    def save(self, base: str) -> list:
        """Write ``base.png`` and ``base.pdf``; return their paths."""
        for ax in self.axes:
            if not ax.has_data():
                ax.set_visible(False)
        paths = [f"{base}.png", f"{base}.pdf"]
        self.fig.tight_layout()  # once: both files share the layout
        for path in paths[:-1]:
            atomic_write(path, lambda f, p=path: self.fig.savefig(f, format=figure_format(p), dpi=110))
        save_figure(self.fig, paths[-1], tight=False)  # writes the last one and closes the figure
        return paths
