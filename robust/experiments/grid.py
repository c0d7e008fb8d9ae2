"""Declarative grids: an experiment's axes expanded into training runs plus evaluations.

A :class:`Grid` names its axes (architectures, input sizes, methods with their
strengths, seeds) and the training settings common to every run; :func:`expand` turns
it into :class:`Job` s, each a training configuration (the keyword arguments of
``TrainConfig``) plus the evaluations the experiment's figures need.  A run's id is a
hash of its canonical configuration (:func:`run_id`), so the same run always lands in
the same folder, whoever expands the grid.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field

__all__ = ["Grid", "Job", "expand", "run_id", "canonical_json", "EXECUTION_KEYS"]

#: Training settings that say where a run executes, not what it computes: left out of the id.
EXECUTION_KEYS = ("device", "amp", "compile")


def canonical_json(config: dict) -> str:
    """Sorted-key, separator-free JSON: equal configurations give equal strings.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1.0, "x"]})
    '{"a":[1.0,"x"],"b":1}'
    """
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_id(config: dict) -> str:
    """The 16-hex-digit id of a training configuration (SHA-256 of its canonical JSON,
    without :data:`EXECUTION_KEYS`).

    Examples
    --------
    >>> run_id({"method": "none", "eps": 0.0}) == run_id({"eps": 0.0, "method": "none", "device": "cuda"})
    True
    >>> run_id({"method": "none", "eps": 0.0})
    '...'
    """
    kept = {k: v for k, v in config.items() if k not in EXECUTION_KEYS}
    return hashlib.sha256(canonical_json(kept).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Job:
    """One training run and the evaluations to run on the trained network."""

    train: dict
    evaluations: tuple = ()

    @property
    def id(self) -> str:
        return run_id(self.train)

    def to_dict(self) -> dict:
        return {"id": self.id, "train": dict(self.train), "evaluations": [dict(e) for e in self.evaluations]}


@dataclass(frozen=True)
class Grid:
    """The axes of an experiment's grid.

    Attributes
    ----------
    archs : tuple of str
        Registered architectures (``pathstats archs``).
    sizes : tuple
        Input sizes (image side after nearest-neighbour up-sampling); ``None`` keeps
        the data's own size.
    methods : tuple of (str, tuple of float)
        Each training method with the strengths ``eps`` it is trained at.
    seeds : tuple of int
        The seeds of every method, unless ``method_seeds`` names the method.
    train : dict
        Settings shared by every run (epochs, batch, lr, eval_eps, ...).
    evaluations : tuple of dict
        What to measure on each trained network (``name`` plus options).
    method_seeds : tuple of (str, tuple of int)
        Methods run at other seeds than ``seeds`` (e.g. the cheap unregularised runs at more
        seeds, where a claim rests on them alone).
    """

    archs: tuple
    sizes: tuple
    methods: tuple
    seeds: tuple
    train: dict = field(default_factory=dict)
    evaluations: tuple = ()
    method_seeds: tuple = ()

    def seeds_of(self, method: str) -> tuple:
        """The seeds ``method`` is run at."""
        return dict(self.method_seeds).get(method, self.seeds)

    @property
    def n_runs(self) -> int:
        return len(self.archs) * len(self.sizes) * sum(len(s) * len(self.seeds_of(m)) for m, s in self.methods)

    def axes(self) -> dict:
        """The axes as plain data (for experiment.json and the docs)."""
        return {"archs": list(self.archs), "sizes": list(self.sizes),
                "methods": {m: list(s) for m, s in self.methods}, "seeds": list(self.seeds),
                "train": dict(self.train), "evaluations": [dict(e) for e in self.evaluations],
                **({"method_seeds": {m: list(s) for m, s in self.method_seeds}} if self.method_seeds else {})}


def expand(grid: Grid, data: str) -> list:
    """Every run of ``grid`` on ``data`` as a :class:`Job`, in a stable order.

    Examples
    --------
    >>> g = Grid(archs=("fc",), sizes=(None,), methods=(("none", (0.0,)), ("pgd", (0.01, 0.02))),
    ...          seeds=(0, 1), train={"epochs": 2})
    >>> jobs = expand(g, "digits")
    >>> len(jobs), g.n_runs, jobs[0].train
    (6, 6, {'arch': 'fc', 'data': 'digits', 'size': None, 'method': 'none', 'eps': 0.0, 'seed': 0, 'epochs': 2})
    >>> len({job.id for job in jobs})
    6
    >>> more = Grid(("fc",), (None,), (("none", (0.0,)), ("pgd", (0.01,))), (0, 1), method_seeds=(("none", (0, 1, 2)),))
    >>> [(j.train["method"], j.train["seed"]) for j in expand(more, "digits")], more.n_runs
    ([('none', 0), ('none', 1), ('none', 2), ('pgd', 0), ('pgd', 1)], 5)
    """
    jobs = []
    triples = [(method, float(eps), seed) for method, strengths in grid.methods for eps in strengths
               for seed in grid.seeds_of(method)]
    for arch, size, (method, eps, seed) in itertools.product(grid.archs, grid.sizes, triples):
        train = {"arch": arch, "data": data, "size": size, "method": method, "eps": eps, "seed": int(seed), **grid.train}
        jobs.append(Job(train, tuple(grid.evaluations)))
    return jobs
