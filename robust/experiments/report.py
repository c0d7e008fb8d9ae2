"""``report.md``: an experiment's claims table, figures and failures, for a reader to skim."""

from __future__ import annotations

import os

from pathstats._io import atomic_write

__all__ = ["claims_table", "write_report"]


def _number(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}"


def claims_table(claims: list) -> str:
    """The claims as a Markdown table (claim, statistic, value [95% CI], n, expected, verdict).

    Examples
    --------
    >>> print(claims_table([{"claim": "c", "statistic": "s", "value": 0.5, "ci_low": 0.4, "ci_high": 0.61, "n": 9,
    ...                      "expected": "in [0.25, 0.75]", "verdict": "holds"}]))
    | claim | statistic | value [95% CI] | n | expected | verdict |
    |---|---|---|---|---|---|
    | c | s | 0.5 [0.4, 0.61] | 9 | in [0.25, 0.75] | **holds** |
    """
    lines = ["| claim | statistic | value [95% CI] | n | expected | verdict |", "|---|---|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c['claim']} | {c['statistic']} | {_number(c['value'])} [{_number(c['ci_low'])}, "
                     f"{_number(c['ci_high'])}] | {c.get('n', '')} | {c['expected']} | **{c['verdict']}** |")
    return "\n".join(lines)


def write_report(path: str, experiment, records: list, analysis: dict, quick: bool) -> None:
    """Write the Markdown report of one experiment run to ``path`` (atomically)."""
    done = sum(r["status"] == "done" for r in records)
    failed = [r for r in records if r["status"] == "failed"]
    pending = len(records) - done - len(failed)
    verdicts = {v: sum(c["verdict"] == v for c in analysis["claims"]) for v in ("holds", "fails", "inconclusive")}
    lines = [
        f"# {experiment.name}: {experiment.title}",
        "",
        f"Source: {experiment.source}. {experiment.summary}",
        "",
        f"Grid: {'quick' if quick else 'full'}; {len(records)} runs: {done} done, {len(failed)} failed, {pending} not finished.",
        f"Claims: {verdicts['holds']} hold, {verdicts['fails']} fail, {verdicts['inconclusive']} inconclusive "
        "(a verdict compares the 95% interval with the region the paper's statement allows: holds if inside, "
        "fails if outside, inconclusive if it straddles).",
        "",
        claims_table(analysis["claims"]) if analysis["claims"] else "No claims: no run finished.",
        "",
    ]
    if quick:
        lines += ["The quick grid is small (a few epochs of small nets on 8x8 digits): its verdicts test the pipeline "
                  "and show the trends, not the papers' settings.", ""]
    for figure in analysis["figures"]:
        if figure.endswith(".png"):
            lines += [f"![{os.path.basename(figure)}]({os.path.relpath(figure, os.path.dirname(os.path.abspath(path)))})", ""]
    if failed:
        lines += ["## Failed runs", ""] + [f"* `{r['id']}` ({r['train'].get('method')}, eps {r['train'].get('eps')}): "
                                           f"{r['error']}" for r in failed] + [""]
    atomic_write(path, lambda f: f.write("\n".join(lines).encode()))
