"""The one reader of a run folder (``pathstats train --out DIR``, or an experiment's ``DIR/runs/<id>/``).

The trainer (:mod:`pathstats.robust.train`) writes ``config.json`` (the resolved
configuration, the input shape, the number of classes), ``metrics.jsonl`` (one line per
epoch), ``checkpoint.pt`` and ``result.json``.  Everything that reads such a folder goes
through here:

* :func:`read_run` is tolerant (for bookkeeping: the experiments' collector): a missing
  or half-written file reads as ``None`` (no rows for ``metrics.jsonl``; a torn last
  line of an interrupted run is dropped);
* :func:`open_trained` is strict (for a command that needs the trained network:
  ``pathstats attack --run``, the experiments' evaluations): a folder that is not a
  trained run is refused in one line (:class:`RunFolderError`), and
  :meth:`TrainedRun.load_model` rebuilds the network from its last checkpoint through
  :func:`pathstats.robust.train.load_trained_model`, which validates the checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from pathstats.errors import RunFolderError

__all__ = ["RunFolderError", "TrainedRun", "read_json", "read_metrics", "read_run", "open_trained"]


def _files():
    from . import train

    return train.CONFIG_FILE, train.METRICS_FILE, train.CHECKPOINT_FILE, train.RESULT_FILE


def read_json(path: str, default=None):
    """The JSON in ``path``, or ``default`` if it is missing or unreadable (half-written by a crash).

    Examples
    --------
    >>> read_json("/nonexistent/result.json", {"status": "new"})
    {'status': 'new'}
    """
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def read_metrics(directory: str) -> list:
    """The rows of ``metrics.jsonl`` up to the first unreadable line (none if the file is missing)."""
    rows = []
    try:
        with open(os.path.join(directory, _files()[1])) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:  # a torn last line of an interrupted run
                        break
    except OSError:
        pass
    return rows


def read_run(directory: str) -> dict:
    """What a run folder holds, tolerantly: ``config`` (``config.json``'s object or None),
    ``result`` (``result.json``'s or None), ``metrics`` (rows) and ``checkpoint`` (whether
    ``checkpoint.pt`` exists).

    Examples
    --------
    >>> read_run("/nonexistent")
    {'config': None, 'result': None, 'metrics': [], 'checkpoint': False}
    """
    config_file, _, checkpoint_file, result_file = _files()
    return {"config": read_json(os.path.join(directory, config_file)),
            "result": read_json(os.path.join(directory, result_file)),
            "metrics": read_metrics(directory),
            "checkpoint": os.path.isfile(os.path.join(directory, checkpoint_file))}


@dataclass(frozen=True)
class TrainedRun:
    """A run folder with a configuration and a checkpoint (:func:`open_trained`).

    Attributes
    ----------
    path : str
    config : TrainConfig
        The resolved configuration the run was trained with.
    input_shape : tuple of int
    classes : int
    status : str
        ``result.json``'s status (``done``, ``interrupted``, ``diverged``) or
        ``unfinished`` when the run has checkpointed but written no result yet.
    """

    path: str
    config: object
    input_shape: tuple
    classes: int
    status: str

    def load_model(self, device: str = "cpu") -> tuple:
        """The network with the weights of the last checkpoint, in eval mode on ``device``, and
        the checkpoint (``epoch``, ``config``, ...); an unreadable checkpoint is refused in one line."""
        from .train import load_trained_model

        return load_trained_model(self.path, device)

    def load_data(self, device: str = "cpu"):
        """The run's data set in the run's own units (normalised if it was, with its box), on ``device``."""
        from .train import load_run_dataset

        return load_run_dataset(self.path, device)


def open_trained(directory: str, label: str | None = None) -> TrainedRun:
    """The trained run in ``directory``, or :class:`RunFolderError` in one line saying what is wrong.

    ``label`` names the folder in the messages (default: the path), e.g. ``--run DIR``.

    Examples
    --------
    >>> open_trained("/nonexistent", "--run /nonexistent")
    Traceback (most recent call last):
    ...
    pathstats.errors.RunFolderError: --run /nonexistent: no such folder; give the --out folder of a pathstats train run
    """
    from .train import TrainConfig

    label = label or directory
    config_file, _, checkpoint_file, result_file = _files()
    if not os.path.isdir(directory):
        raise RunFolderError(f"{label}: no such folder; give the --out folder of a pathstats train run")
    if not os.path.isfile(os.path.join(directory, config_file)):
        raise RunFolderError(f"{label}: no {config_file} there, so it is not the folder of a pathstats train run")
    if not os.path.isfile(os.path.join(directory, checkpoint_file)):
        raise RunFolderError(f"{label}: no {checkpoint_file} yet (the run has not finished an epoch); train it first")
    try:
        with open(os.path.join(directory, config_file)) as f:
            stored = json.load(f)
        config = TrainConfig.from_dict(stored["config"])
        shape, classes = tuple(int(n) for n in stored["input_shape"]), int(stored["classes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunFolderError(f"{label}: {config_file} is unreadable ({exc}); was it written by pathstats train?") from None
    result = read_json(os.path.join(directory, result_file))
    status = result.get("status", "unfinished") if isinstance(result, dict) else "unfinished"
    return TrainedRun(directory, config, shape, classes, status)
