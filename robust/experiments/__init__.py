"""The papers' experiments as one command each (``pathstats experiment NAME``).

Each experiment (:data:`EXPERIMENTS`) is one declarative description: a full grid (the
paper's), a ``--quick`` grid on the embedded digits, the evaluations its figures need,
and its analysis (figures and claims).  :func:`run_experiment` expands the grid into
training runs (:mod:`.grid`), keeps their books in ``DIR/runs/<id>/`` (:mod:`.store`),
executes the missing ones here or on Slurm (:mod:`.executors`) through one function
(:func:`.runner.run_one`), and writes ``results.csv``, the figures, ``claims.json`` and
``report.md``.
"""

from .catalogue import EXPERIMENTS, Experiment, UnknownExperimentError, get
from .driver import analyse, dry_run, plan, reanalyse, run_experiment
from .grid import Grid, Job, expand, run_id

__all__ = ["EXPERIMENTS", "Experiment", "UnknownExperimentError", "get", "plan", "run_experiment", "analyse", "reanalyse",
           "dry_run", "Grid",
           "Job", "expand", "run_id"]
