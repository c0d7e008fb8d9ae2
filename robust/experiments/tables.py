"""The two tables an experiment's analysis reads: ``results.csv`` and ``epochs.csv``.

``results.csv`` has one row per run: its id, status and error, its training
configuration (``method, eps, size, seed, arch, ...``, today's column names), the input
dimension ``d`` and number of classes, the last epoch's metrics (``test_grad_l1,
vulnerability, test_accuracy, ...``), ``predicted_grad_l1`` (``pathstats.predict``'s
E||dL/dx||_1 at initialisation for the run's network and input shape), every evaluation
flattened into scalar columns (below), and ``degenerate``: why the run is kept out of
the statistics ("" if it is not; :func:`degenerate_reason`).

``epochs.csv`` has one row per run and epoch (epoch 0 = the initialisation) with the
metrics' names plus ``epoch`` and the run's ``id, method, eps, size, seed, arch, d``.

Flattened evaluations (one scalar per column, so a colleague's tables are enough):

* ``attacks``: ``atk_<threshold>_<attack>_<field>`` for threshold ``inf`` / ``2``, attack
  ``fgsm, fgm-l2, pgd-inf, pgd-l2, deepfool`` and field ``vulnerability,
  vulnerability_se, accuracy_adv, loss_damage, first_order_damage, radius``; plus
  ``atk_eps``, ``atk_n``;
* ``bounds``: ``bounds_n``, ``bounds_fooled``, ``bounds_log_distance`` (mean log l2
  distance DeepFool needed, over fooled images), ``bounds_<kind>_held`` /
  ``bounds_<kind>_total`` (fooled images whose finite ``kind`` bound lies below the
  distance / all fooled images with a finite bound) and ``bounds_<kind>_constant`` for
  ``kind`` ``lipschitz`` / ``curvature``;
* ``alignment``: ``align_n``, ``align_K`` (number of singular vectors), ``align_cos_<r>``
  (mean ``|cos(delta, v_r)|`` for rank ``r``), ``align_rowspace_share`` (mean share of
  ``delta``'s squared norm in the row space of the logit Jacobian), ``align_cos1_rowspace``
  (mean ``|cos|`` with ``v_1`` of ``delta``'s row-space part, the quantity whose null is a
  random direction IN that row space), ``align_cos_random`` (a random direction of
  ``R^d``, for reference), ``align_log_sigma1`` (mean log dominant singular value),
  ``robacc_<eps>`` (accuracy under l_inf PGD at ``eps``).

Every value is written with ``repr`` precision and read back to the same number, so
analysing the tables read from disk gives exactly what analysing the records does
(:func:`records_to_tables`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from functools import lru_cache

import numpy as np

from pathstats._io import atomic_write
from pathstats.errors import TablesError

__all__ = ["RESULTS", "EPOCHS", "CHANCE_MARGIN", "TablesError", "degenerate_reason", "records_to_tables", "write_tables",
           "read_tables", "flatten_evaluations", "current_keys", "SE_SUFFIX"]

RESULTS = "results.csv"
EPOCHS = "epochs.csv"
#: A run is degenerate when its last test accuracy is within this of chance ``1/K``.
CHANCE_MARGIN = 0.05
#: The run's axes repeated on every row of ``epochs.csv``.
AXES = ("id", "method", "eps", "size", "seed", "arch", "d")
#: Final metrics checked for finiteness (a diverged run has NaN or infinite ones).
CHECKED = ("test_accuracy", "test_grad_l1", "vulnerability", "test_loss")


#: A standard error's key is its estimate's with this suffix, in every file pathstats.robust
#: writes (metrics.jsonl, result.json, evaluation files, these tables, ``attack --json``).
SE_SUFFIX = "_se"
#: The suffix that evaluation files and results.csv used before: still read (as ``SE_SUFFIX``).
OLD_SE_SUFFIX = "_stderr"


def current_keys(row: dict) -> dict:
    """``row`` with keys written under the old standard-error naming (``*_stderr``) renamed ``*_se``.

    Examples
    --------
    >>> current_keys({"vulnerability": 0.5, "vulnerability_stderr": 0.1})
    {'vulnerability': 0.5, 'vulnerability_se': 0.1}
    >>> current_keys({"vulnerability_se": 0.1})
    {'vulnerability_se': 0.1}
    """
    return {(key[:-len(OLD_SE_SUFFIX)] + SE_SUFFIX if key.endswith(OLD_SE_SUFFIX) else key): value
            for key, value in row.items()}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


_INT = re.compile(r"^-?\d+$")


def _parse(text: str):
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    if _INT.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _dimension(record: dict):
    info = record.get("run_config") or {}
    if info.get("d"):
        return int(info["d"])
    if info.get("input_shape"):
        return int(np.prod(info["input_shape"]))
    return None


@lru_cache(maxsize=None)
def _predicted(arch: str, shape: tuple, classes: int, channels: int | None, native_side: int | None) -> float:
    """Model mode's E||dL/dx||_1 at initialisation for the network the run trained: its width
    (``channels``) and, for conv8, the side its dilation is relative to, with its declared
    initialisation."""
    from pathstats import nets
    from pathstats.prediction import predict

    model = nets.build(arch, shape, classes, channels=channels, native_side=native_side)
    return float(predict(model, shape, classes=classes).loss_grad["l1"])


def _predicted_l1(record: dict) -> float | None:
    info = record.get("run_config") or {}
    config = info.get("config") or record.get("train") or {}
    native = info.get("native_shape")
    try:
        return _predicted(record["train"]["arch"], tuple(info["input_shape"]), int(info.get("classes", 10)),
                          config.get("channels"), config.get("native_side") or (int(native[-1]) if native else None))
    except Exception:  # noqa: BLE001 - an unsupported layer or a run without config.json: no prediction
        return None


def flatten_evaluations(evaluations: dict) -> dict:
    """The scalar columns of a run's evaluations (see the module's docstring).

    Examples
    --------
    >>> cols = flatten_evaluations({"alignment": {"n": 2, "singular_values": [[3.0, 1.0], [3.0, 1.0]],
    ...     "cos_by_rank": [[0.6, 0.0], [0.0, 0.6]], "cos_random": [0.1, 0.1],
    ...     "robust_accuracy": [{"eps": 0.0, "accuracy_adv": 0.9}]}})
    >>> cols["align_K"], cols["align_cos_1"], cols["align_rowspace_share"], cols["align_cos1_rowspace"], cols["robacc_0"]
    (2, 0.3, 0.36, 0.5, 0.9)
    """
    out: dict = {}
    attacks = (evaluations or {}).get("attacks") or {}
    if attacks.get("thresholds"):
        out["atk_eps"], out["atk_n"] = attacks.get("eps"), attacks.get("n")
        for threshold, rows in attacks["thresholds"].items():
            for attack, res in rows.items():
                res = current_keys(res)
                for field in ("vulnerability", "vulnerability_se", "accuracy_adv", "loss_damage", "first_order_damage",
                              "radius"):
                    out[f"atk_{threshold}_{attack}_{field}"] = res.get(field)
    bounds = (evaluations or {}).get("bounds") or {}
    if bounds.get("distance") is not None:
        dist = np.asarray(bounds["distance"], float)
        fooled = np.asarray(bounds["fooled"], bool)
        out["bounds_n"], out["bounds_fooled"] = int(bounds.get("n", len(dist))), int(fooled.sum())
        out["bounds_log_distance"] = float(np.mean(np.log(dist[fooled]))) if fooled.any() else None
        for kind in ("lipschitz", "curvature"):
            values = bounds.get(f"{kind}_bound")
            if values is None:
                continue
            b = np.asarray([math.nan if v is None else v for v in values], float)
            ok = fooled & np.isfinite(b)
            out[f"bounds_{kind}_held"] = int((b[ok] <= dist[ok]).sum())
            out[f"bounds_{kind}_total"] = int(ok.sum())
            out[f"bounds_{kind}_constant"] = bounds.get(f"{kind}_constant")
    align = (evaluations or {}).get("alignment") or {}
    if align.get("cos_by_rank") is not None:
        cos = np.asarray(align["cos_by_rank"], float)
        sing = np.asarray(align["singular_values"], float)
        out["align_n"], out["align_K"] = int(align.get("n", len(sing))), int(sing.shape[1])
        if cos.size:
            for r in range(cos.shape[1]):
                out[f"align_cos_{r + 1}"] = float(cos[:, r].mean())
            share = (cos**2).sum(1)
            out["align_rowspace_share"] = float(share.mean())
            out["align_cos1_rowspace"] = float(np.mean(cos[:, 0] / np.sqrt(np.maximum(share, 1e-300))))
        out["align_cos_random"] = float(np.mean(align["cos_random"])) if len(align.get("cos_random", [])) else None
        out["align_log_sigma1"] = float(np.mean(np.log(sing[:, 0])))
        for point in align.get("robust_accuracy", []):
            out[f"robacc_{point['eps']:g}"] = point["accuracy_adv"]
    return out


def degenerate_reason(row: dict) -> str:
    """Why a run is kept out of the statistics ("" if it is not): not finished, a non-finite
    final metric (diverged), or a test accuracy within :data:`CHANCE_MARGIN` of chance ``1/K``.

    Examples
    --------
    >>> degenerate_reason({"status": "done", "test_accuracy": 0.103, "classes": 10, "test_grad_l1": 1.0})
    'chance accuracy 0.103 (chance 0.1 + margin 0.05)'
    >>> degenerate_reason({"status": "done", "test_accuracy": 0.9, "classes": 10, "test_grad_l1": float("nan")})
    'non-finite test_grad_l1'
    >>> degenerate_reason({"status": "done", "test_accuracy": 0.9, "classes": 10})
    ''
    """
    if row.get("status") not in (None, "done"):
        return f"status {row.get('status')}"
    for key in CHECKED:
        value = row.get(key)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            return f"non-finite {key}"
    acc, classes = row.get("test_accuracy"), row.get("classes") or 10
    if isinstance(acc, (int, float)) and acc <= 1 / classes + CHANCE_MARGIN:
        return f"chance accuracy {acc:.3g} (chance {1 / classes:.3g} + margin {CHANCE_MARGIN:g})"
    return ""


def _normalise(rows: list) -> list:
    """What reading the written table gives back: every cell through text and back, every column on every row."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [{k: _parse(_cell(row.get(k))) for k in columns} for row in rows]


def records_to_tables(records: list) -> tuple:
    """``(results, epochs)``: the rows of ``results.csv`` and ``epochs.csv`` for the records of
    :func:`~pathstats.robust.experiments.store.collect`, as :func:`read_tables` reads them back."""
    results, epochs = [], []
    for r in records:
        info = r.get("run_config") or {}
        metrics = r.get("metrics") or []
        last = metrics[-1] if metrics else {}
        row = {"id": r["id"], "status": r.get("status"), "error": r.get("error"), "attempts": r.get("attempts"),
               "wall_s": r.get("elapsed_s")}
        row.update({k: v for k, v in (r.get("train") or {}).items() if k not in row})
        shape = info.get("input_shape")
        row.update(d=_dimension(r), classes=info.get("classes"),
                   input_shape="x".join(map(str, shape)) if shape else None,
                   epochs_done=sum(1 for m in metrics if m.get("epoch", 1) > 0))
        row.update({k: v for k, v in last.items() if k not in row and _scalar(v)})
        row["predicted_grad_l1"] = _predicted_l1(r) if r.get("status") == "done" else None
        row.update(flatten_evaluations(r.get("evaluations") or {}))
        row = {k: (_cell(v) if not _scalar(v) else v) for k, v in row.items()}
        row["degenerate"] = degenerate_reason(row)
        results.append(row)
        axes = {k: row.get(k) for k in AXES}
        for m in metrics:
            epochs.append({**axes, **{k: v for k, v in m.items() if k not in axes and _scalar(v)}})
    return _finish(_normalise(results)), _normalise(epochs)


def _finish(results: list) -> list:
    """``degenerate`` is a string on every row: recomputed where a colleague's table lacks it."""
    for row in results:
        if "degenerate" not in row:
            row["degenerate"] = degenerate_reason(row)
        elif row["degenerate"] is None:
            row["degenerate"] = ""
    return results


def _csv_text(rows: list) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buffer.getvalue()


def write_tables(out_dir: str, records: list) -> dict:
    """Write ``results.csv`` and ``epochs.csv`` into ``out_dir`` (atomically); return their paths."""
    results, epochs = records_to_tables(records)
    paths = {"results": os.path.join(out_dir, RESULTS), "epochs": os.path.join(out_dir, EPOCHS)}
    for key, rows in (("results", results), ("epochs", epochs)):
        text = _csv_text(rows)
        atomic_write(paths[key], lambda f, t=text: f.write(t.encode()))
    return paths


def _read(path: str) -> list:
    try:
        with open(path, newline="") as f:
            return [current_keys({k: _parse(v if v is not None else "") for k, v in row.items()})
                    for row in csv.DictReader(f)]
    except OSError as exc:
        raise TablesError(f"cannot read {path}: {exc.strerror or exc}") from None
    except csv.Error as exc:
        raise TablesError(f"{path} is not a readable CSV table: {exc}") from None
    except UnicodeDecodeError:
        raise TablesError(f"{path} is not a readable CSV table: not UTF-8 text") from None


#: The columns every analysis reads from ``results.csv``: the method, its strength, the seed that pairs
#: runs, and the input dimension (the x axis of fig2 and of every eq. 3 unit conversion).
REQUIRED = ("method", "eps", "seed", "d")


def _check_results(path: str, results: list) -> None:
    """Refuse a ``results.csv`` the analysis would silently misread: no runs, a required column missing,
    or a value that is not what the column holds (the first bad cell is named)."""
    if not results:
        raise TablesError(f"{path} holds no runs (a header at most)")
    missing = [c for c in REQUIRED if c not in results[0]]
    if missing:
        raise TablesError(f"{path} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                          f"(every results.csv has {', '.join(REQUIRED)})")
    for line, row in enumerate(results, start=2):
        if row.get("status", "done") not in ("done", None):
            continue  # a failed or unfinished run has no metrics to check
        if not isinstance(row.get("method"), str) or not row["method"]:
            raise TablesError(f"{path}, line {line}: method is empty")
        for key, positive in (("eps", False), ("d", True)):
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
                    (value <= 0 if positive else value < 0):
                raise TablesError(f"{path}, line {line}: {key} = {value!r} is not a "
                                  f"{'positive' if positive else 'non-negative'} number")


def read_tables(out_dir: str) -> tuple:
    """``(results, epochs)`` read from ``out_dir/results.csv`` and ``out_dir/epochs.csv`` (numbers parsed;
    an empty cell is ``None``).  ``epochs.csv`` may be absent (then no per-epoch claim is tested);
    ``degenerate`` is recomputed where a colleague's table lacks it.

    Raises
    ------
    TablesError
        ``results.csv`` is missing, unreadable or empty, lacks a column of :data:`REQUIRED`, or holds a
        strength or dimension that is not a number.
    """
    results = _read(os.path.join(out_dir, RESULTS))
    _check_results(os.path.join(out_dir, RESULTS), results)
    path = os.path.join(out_dir, EPOCHS)
    epochs = _read(path) if os.path.exists(path) else []
    return _finish(results), epochs
