"""``report.md``: an experiment's claims table, figures, excluded and failed runs, for a reader to skim.

Tables render: a ``|`` inside a cell (``E||dL/dx||_1``) is escaped.  A report of an
incomplete grid says so at the top and marks every verdict provisional.
"""

from __future__ import annotations

import os

from pathstats._io import atomic_write

__all__ = ["cell", "claims_table", "write_report"]


def cell(text) -> str:
    """Text safe inside a Markdown table cell: ``|`` escaped, line breaks as spaces.

    Examples
    --------
    >>> cell("E||dL/dx||_1 grows")
    'E\\\\|\\\\|dL/dx\\\\|\\\\|_1 grows'
    >>> print(cell("E||dL/dx||_1"))
    E\\|\\|dL/dx\\|\\|_1
    """
    return str(text if text is not None else "").replace("\\|", "|").replace("|", "\\|").replace("\n", " ")


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _member(shown: dict) -> str:
    """``{"x": 0.056}`` -> "at 0.056"; ``{"group": "pgd", "at": "low end", "x": 0.64}`` -> "pgd, low end"."""
    if shown.get("group") is not None:
        return ", ".join(str(shown[k]) for k in ("group", "at") if shown.get(k) is not None)
    x = shown.get("x")
    return f"at {x:g}" if isinstance(x, (int, float)) else str(x)


def claims_table(claims: list) -> str:
    """The tested claims as a Markdown table (claim, source, statistic, value [95% CI], n, expected, verdict).

    Examples
    --------
    >>> print(claims_table([{"claim": "E||dL/dx||_1 ~ sqrt(d)", "source": "p", "statistic": "s", "value": 0.5,
    ...                      "ci_low": 0.4, "ci_high": 0.61, "n": 9, "expected": "in [0.25, 0.75]", "why": "w",
    ...                      "verdict": "holds"}]))
    | claim | source | statistic | value [95% CI] | n | expected (why) | verdict |
    |---|---|---|---|---|---|---|
    | E\\|\\|dL/dx\\|\\|_1 ~ sqrt(d) | p | s | 0.5 [0.4, 0.61] | 9 | in [0.25, 0.75] (w) | **holds** |
    """
    lines = ["| claim | source | statistic | value [95% CI] | n | expected (why) | verdict |", "|---|---|---|---|---|---|---|"]
    for c in claims:
        verdict = f"**{c['verdict']}**" + (" (provisional)" if c.get("provisional") else "")
        expected = c.get("expected", "") + (f" ({c['why']})" if c.get("why") else "")
        value = f"{_number(c.get('value'))} [{_number(c.get('ci_low'))}, {_number(c.get('ci_high'))}]"
        if c.get("shown"):  # a joint claim: the member that decides the verdict
            value += " (" + _member(c["shown"]) + ")"
        lines.append("| " + " | ".join(cell(v) for v in (
            c["claim"], c.get("source", ""), c.get("statistic", ""), value, c.get("n", ""), expected)) + f" | {verdict} |")
    return "\n".join(lines)


def _untested_table(claims: list) -> str:
    lines = ["| claim | source | why untested |", "|---|---|---|"]
    lines += [f"| {cell(c['claim'])} | {cell(c.get('source', ''))} | {cell(c.get('why', ''))} |" for c in claims]
    return "\n".join(lines)


def write_report(path: str, experiment, results: list, analysis: dict, context: dict) -> None:
    """Write the Markdown report of one experiment to ``path`` (atomically).

    ``results`` are the rows of ``results.csv``; ``analysis`` what
    :func:`~.analysis.analyse_tables` returned; ``context`` its context (``scale``,
    ``complete``).
    """
    claims = analysis.get("claims", [])
    tested = [c for c in claims if c["verdict"] != "untested"]
    skipped = [c for c in claims if c["verdict"] == "untested"]
    done = sum(r.get("status") == "done" for r in results)
    failed = [r for r in results if r.get("status") == "failed"]
    pending = len(results) - done - len(failed)
    complete = bool(context.get("complete", True))
    scale = context.get("scale", "paper")
    counts = {v: sum(c["verdict"] == v for c in tested) for v in ("holds", "fails", "inconclusive")}
    lines = [f"# {experiment.name}: {experiment.title}", ""]
    if not complete:
        lines += [f"> **PROVISIONAL: the grid is incomplete** ({done} of {len(results)} runs done, {len(failed)} failed, "
                  f"{pending} not finished). Every verdict below is provisional; rerun the same command to finish the "
                  "grid.", ""]
    if scale == "quick":
        lines += ["> The quick grid tests the pipeline (small nets, few epochs, 8x8 digits): its verdicts are not the "
                  "papers'.", ""]
    lines += [
        f"Source: {experiment.source}. {experiment.summary}", "",
        f"Scale: {scale}; {len(results)} runs: {done} done, {len(failed)} failed, {pending} not finished.", "",
        f"Claims: {len(claims)} in the catalogue; {len(tested)} tested: {counts['holds']} hold, {counts['fails']} fail, "
        f"{counts['inconclusive']} inconclusive; {len(skipped)} untested. A verdict compares the 95% interval with the "
        "region the paper's statement allows: holds if inside, fails if outside, inconclusive if it straddles; claims "
        "over several strengths or groups hold only if every one holds and fail if any one fails, and their row shows "
        "the strength or group that decides the verdict (for one that holds, the one nearest the region's edge; "
        "claims.json keeps every one).", "",
        "## Tested claims", "",
        claims_table(tested) if tested else "No claim could be tested: no run finished.", "",
    ]
    if skipped:
        lines += ["## Untested claims", "", _untested_table(skipped), ""]
    excluded = analysis.get("excluded", [])
    from .analysis import DEGENERATE_RULE

    lines += ["## Degenerate runs", "", f"Rule: {analysis.get('rule') or DEGENERATE_RULE}.", ""]
    if excluded:
        lines += [f"{len(excluded)} run(s) kept out of the statistics:", ""]
        lines += [f"* `{e['id']}` ({e.get('method')}, eps {e.get('eps')}): {e['reason']}" for e in excluded] + [""]
    else:
        lines += ["None.", ""]
    figures = [f for f in analysis.get("figures", []) if f.endswith(".png")]
    if figures:
        lines += ["## Figures", ""]
        for figure in figures:
            rel = os.path.relpath(figure, os.path.dirname(os.path.abspath(path)))
            lines += [f"![{os.path.basename(figure)}]({rel})", ""]
    if failed:
        lines += ["## Failed runs", ""] + [f"* `{r.get('id')}` ({r.get('method')}, eps {r.get('eps')}): {r.get('error')}"
                                           for r in failed] + [""]
    atomic_write(path, lambda f: f.write("\n".join(lines).encode()))
