"""Figures a reader understands without the code.

Every figure the commands draw is intercepted before it is saved and checked:
a title naming the architecture and the input shape, labelled axes, labelled
colour bars, legends inside their axes, flat inputs drawn as lines (no image),
and measurements as points with error bars (no bars).
"""

from __future__ import annotations

import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.image import AxesImage

from pathstats import sweep as sweep_module
from pathstats.verify import report as report_module
from pathstats.verify import scaling as scaling_module


@pytest.fixture
def drawn(monkeypatch):
    """The figures passed to ``save_figure`` (not written), closed at the end."""
    import matplotlib.pyplot as plt

    figures = []
    for module in (sweep_module, report_module, scaling_module):
        monkeypatch.setattr(module, "save_figure", lambda fig, path, **options: figures.append(fig))
    yield figures
    for fig in figures:
        plt.close(fig)


def _titles(fig) -> str:
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return " ".join([suptitle] + [ax.get_title() for ax in fig.axes])


def _check_readable(fig, *names: str) -> None:
    """Titles name every string of ``names``; axes, colour bars and legends are labelled and placed."""
    titles = _titles(fig)
    for name in names:
        assert name in titles, f"{name!r} missing from the titles {titles!r}"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        if hasattr(ax, "_colorbar"):
            assert ax.get_ylabel().strip(), "a colour bar without a label"
            continue
        xlabels = [other.get_xlabel().strip() for other in ax.get_shared_x_axes().get_siblings(ax)]  # a shared x: one label
        assert any(xlabels) and ax.get_ylabel().strip(), f"unlabelled axes in {ax.get_title()!r}"
        legend = ax.get_legend()
        if legend is not None:
            inner, outer = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert outer.x0 - 1 <= inner.x0 and inner.x1 <= outer.x1 + 1 and outer.y0 - 1 <= inner.y0 and inner.y1 <= outer.y1 + 1


def _images(fig) -> list:
    return [artist for ax in fig.axes for artist in ax.get_children() if isinstance(artist, AxesImage)]


def test_verify_maps_of_an_image_input(drawn, tmp_path):
    report, result, prediction = report_module.verify("conv6", (3, 32, 32), samples=20, seed=0)
    report_module.save_map_figure(result, prediction, str(tmp_path / "maps.png"), arch="conv6")
    (fig,) = drawn
    _check_readable(fig, "conv6", "3 x 32 x 32", "mean over the 3 channels")
    assert len(_images(fig)) == 3  # predicted, measured, z-scores


def test_verify_maps_of_a_flat_input_are_lines(drawn, tmp_path):
    report, result, prediction = report_module.verify("fc", (16,), samples=20, seed=0)
    report_module.write_outputs(str(tmp_path), report, result, prediction)
    (fig,) = drawn
    _check_readable(fig, "fc", "input 16")
    assert not _images(fig)
    assert any(ax.get_lines() for ax in fig.axes)


@pytest.mark.parametrize("arch, shapes, shape_text", [("conv6", [(3, 32, 32), (3, 48, 48)], "3 x 48 x 48"),
                                                      ("fc", [(16,), (64,)], "input 64")])
def test_sweep_figure(drawn, tmp_path, arch, shapes, shape_text):
    result = sweep_module.run_sweep(arch, shapes, progress=False)
    sweep_module.save_sweep_figure(result, str(tmp_path / "sweep.png"))
    (fig,) = drawn
    _check_readable(fig, arch, shape_text)
    assert bool(_images(fig)) == (len(shapes[0]) == 3)  # a map for images, a line for flat inputs


def test_verify_sweep_plot_has_error_bars(drawn, tmp_path):
    sweep = scaling_module.verify_sweep("fc", [(16,), (64,)], samples=20)
    scaling_module.save_sweep_plot(sweep, str(tmp_path / "sweep.png"))
    (fig,) = drawn
    _check_readable(fig, "fc", "flat inputs", "N = 20")
    assert any(isinstance(c, ErrorbarContainer) for ax in fig.axes for c in ax.containers)


def test_comparison_plot_is_points_with_error_bars(drawn, tmp_path):
    comparison = scaling_module.compare_architectures(["conv6-strided", "conv6-avgpool"], (3, 32, 32), samples=20)
    scaling_module.save_comparison_plot(comparison, str(tmp_path / "comparison.png"))
    (fig,) = drawn
    _check_readable(fig, "3 x 32 x 32", "N = 20")
    containers = [c for ax in fig.axes for c in ax.containers]
    assert not any(isinstance(c, BarContainer) for c in containers)
    assert sum(isinstance(c, ErrorbarContainer) for c in containers) == 2  # totals and ratios
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["conv6-strided", "conv6-avgpool"]


# ----------------------------------------------------------------------------- experiment figures


def _experiment_figures(monkeypatch, name, results, tmp_path):
    from pathstats.robust.experiments.analysis import analyse_tables
    from pathstats.robust.experiments.figures import Figure

    figures = []

    def save(self, base):
        figures.append(self.fig)
        return [f"{base}.png"]

    monkeypatch.setattr(Figure, "save", save)
    analyse_tables(name, results, [], str(tmp_path), {"scale": "medium", "complete": True, "last_epochs": 1})
    return figures


def _fig1_results():
    rows = []
    for method in ("none", "grad-l1", "fgsm", "pgd", "crosslip"):
        for eps in ((0.0,) if method == "none" else (0.01, 0.1, 1.0)):
            for seed in (0, 1):
                g = 30 * 2.0 ** (-eps * 3) * (1 + 0.01 * seed)
                rows.append({"id": f"{method}{eps}{seed}", "status": "done", "method": method, "eps": eps, "seed": seed,
                             "d": 3072, "classes": 10, "degenerate": "", "test_grad_l1": g, "test_grad_l2": g / 5,
                             "vulnerability": g / 100, "test_accuracy": 0.9 - 0.1 * eps})
    return rows


def _handle_colour(handle):
    from matplotlib.colors import to_hex

    if isinstance(handle, ErrorbarContainer):
        return to_hex(handle.lines[0].get_color())
    if hasattr(handle, "get_facecolor") and not hasattr(handle, "get_xdata"):
        return to_hex(handle.get_facecolor()[0])
    return to_hex(handle.get_color())


def test_experiment_figures_keep_one_colour_per_method_across_panels(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    from pathstats.robust.experiments.figures import colour

    (fig,) = _experiment_figures(monkeypatch, "fig1", _fig1_results(), tmp_path)
    try:
        _check_readable(fig, "Figure 1")
        seen = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(label, set()).add(_handle_colour(handle))
        methods = {"none", "grad-l1", "fgsm", "pgd", "crosslip"}
        assert methods <= set(seen)
        for method in methods:
            assert seen[method] == {colour(method)}, (method, seen[method])
        assert len({colour(m) for m in methods}) == len(methods)
    finally:
        plt.close(fig)


def test_eps_zero_is_drawn_on_log_axes(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    (fig,) = _experiment_figures(monkeypatch, "fig1", _fig1_results(), tmp_path)
    try:
        log_panels = [ax for ax in fig.axes if ax.get_xscale() == "log" and "strength" in ax.get_xlabel()]
        assert len(log_panels) == 3
        for ax in log_panels:
            x0 = ax.zero_x
            assert 0 < x0 < 0.01  # left of the smallest positive strength
            at_zero = [line for line in ax.get_lines() if list(line.get_xdata()) == [x0]]
            assert at_zero, "the eps = 0 runs are not drawn"
            assert any("eps = 0" in text.get_text() for text in ax.texts)
    finally:
        plt.close(fig)


def test_experiment_figures_draw_no_smoothing_splines():
    from pathstats.robust.experiments.figures import Figure

    assert not hasattr(Figure, "spline")
