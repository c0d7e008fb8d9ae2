"""The exceptions of pathstats, all in one place, and the commands' exit statuses.

Every error a user can cause derives from :class:`PathstatsError`, so the command
line can turn it into one line on stderr; each also derives from the built-in
exception a Python caller would expect (``ValueError``, ``LookupError``,
``MemoryError``, ``RuntimeError``).  The modules that raise them re-export them
(``pathstats.robust.train.TrainError`` is this module's :class:`TrainError`), so
either import works.

Two kinds of class are deliberately not errors: :class:`GridInterrupted` is a stop
request (a ``KeyboardInterrupt``, so that no ``except Exception`` mistakes it for a
failure), and :class:`AttackWarning` is a warning (:class:`PathstatsWarning`).

>>> from pathstats.robust.train import TrainError
>>> TrainError is globals()["TrainError"], issubclass(TrainError, (PathstatsError, ValueError))
(True, True)
>>> str(UnknownArchitectureError("no architecture 'x'"))  # not quoted like a dict key
"no architecture 'x'"
"""

from __future__ import annotations

__all__ = [
    # the base classes
    "PathstatsError",
    "PathstatsLookupError",
    "PathstatsWarning",
    # graphs, arguments, output files, memory
    "NotADAGError",
    "UnknownNodeError",
    "GraphFormatError",
    "OutputPathError",
    "InvalidArgumentError",
    "ResourceError",
    # the layer engine
    "UnsupportedLayerError",
    "TracingError",
    "AssumptionError",
    "UnknownArchitectureError",
    # attacks, data, norms, training
    "AttackError",
    "AttackWarning",
    "DataError",
    "OperatorNormError",
    "MethodError",
    "TrainError",
    "ConfigMismatchError",
    "CheckpointError",
    "RunFolderError",
    # experiments
    "UnknownExperimentError",
    "ExperimentFolderError",
    "TablesError",
    "ExecutorError",
    "SlurmError",
    "RunInterrupted",
    "GridInterrupted",
    # exit statuses
    "EXIT_OK",
    "EXIT_WRITE",
    "EXIT_USAGE",
    "EXIT_DIVERGED",
    "EXIT_SOME_FAILED",
    "EXIT_ALL_FAILED",
    "EXIT_SIGNAL",
    "EXIT_INTERRUPTED",
]

# ------------------------------------------------------------------ exit statuses
# Every command's statuses, in one table (the docs' "exit status" tables list them).

#: Done.
EXIT_OK = 0
#: The result was printed but a file could not be written, or an internal error (a bug).
EXIT_WRITE = 1
#: A bad input, refused before the work (every :class:`PathstatsError` that reaches a command).
EXIT_USAGE = 2
#: ``train``: the run diverged (a non-finite loss).
EXIT_DIVERGED = 3
#: ``experiment``: some runs failed (the others were analysed).
EXIT_SOME_FAILED = 3
#: ``experiment``: every run failed.
EXIT_ALL_FAILED = 4
#: A command stopped by a signal: 128 + the signal's number.
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
#: Interrupted with Ctrl-C.
EXIT_INTERRUPTED = EXIT_SIGNAL["SIGINT"]


# ------------------------------------------------------------------- base classes
class PathstatsError(Exception):
    """Base class of the errors that pathstats raises on bad input."""


class PathstatsLookupError(PathstatsError, LookupError):
    """A name (a node, an architecture, an experiment) that is not there."""

    def __str__(self) -> str:  # LookupError (KeyError) would quote the message like a key
        return str(self.args[0]) if self.args else ""


class PathstatsWarning(UserWarning):
    """Base class of the warnings that pathstats emits."""


# ------------------------------------------------ graphs, arguments, files, memory
class NotADAGError(PathstatsError, ValueError):
    """The graph has a directed cycle, so path sums are not defined."""


class UnknownNodeError(PathstatsLookupError):
    """A node named by the caller is not in the graph."""


class GraphFormatError(PathstatsError, ValueError):
    """A graph or graph file is unreadable, malformed or not directed."""


class OutputPathError(PathstatsError, ValueError):
    """An output path cannot be written (missing or unwritable folder, a folder where a
    file is wanted or a file where a folder is wanted, an unknown file format)."""


class InvalidArgumentError(PathstatsError, ValueError):
    """An argument is out of range or malformed (a seed, a count, a list of sizes...)."""


class ResourceError(PathstatsError, MemoryError):
    """The work asked for does not fit in the memory available; the message says what would."""


# -------------------------------------------------------------- the layer engine
class UnsupportedLayerError(PathstatsError, ValueError):
    """A layer has no rule, so the engine cannot read the network."""


class TracingError(UnsupportedLayerError):
    """torch.fx cannot trace the model symbolically."""


class AssumptionError(PathstatsError, ValueError):
    """Theory mode met a layer outside the paper's assumptions (H)/(H')."""


class UnknownArchitectureError(PathstatsLookupError):
    """No architecture is registered under that name."""


# ------------------------------------------------- attacks, data, norms, training
class AttackError(PathstatsError, ValueError):
    """An attack or gradient measurement was asked something it cannot do."""


class AttackWarning(PathstatsWarning):
    """An attack's result may not mean what it seems to (see :mod:`pathstats.robust.checks`)."""


class DataError(PathstatsError, ValueError):
    """A data spec, data folder or ``--size`` that cannot be read as asked."""


class OperatorNormError(PathstatsError, ValueError):
    """An exponent or method that :func:`~pathstats.robust.opnorm.operator_norm` cannot use."""


class MethodError(PathstatsError, ValueError):
    """An unknown method name or an option a method cannot use."""


class TrainError(PathstatsError, ValueError):
    """A training configuration that cannot run."""


class ConfigMismatchError(TrainError):
    """The output folder holds a run with another configuration."""


class CheckpointError(TrainError):
    """The output folder's checkpoint or bookkeeping files are unreadable."""


class RunFolderError(PathstatsError, ValueError):
    """The folder is not (yet) the folder of a trained run, or its files are unreadable."""


# ------------------------------------------------------------------- experiments
class UnknownExperimentError(PathstatsLookupError):
    """No experiment has that name."""


class ExperimentFolderError(PathstatsError, ValueError):
    """The output folder holds another experiment, scale, data set or grid, or the tables are missing."""


class TablesError(PathstatsError, ValueError):
    """results.csv or epochs.csv is missing or unreadable."""


class ExecutorError(PathstatsError, ValueError):
    """An executor option is invalid, or the executor is not usable here."""


class SlurmError(ExecutorError):
    """Slurm refused a submission, or a grid's Slurm record is missing or unusable."""


class RunInterrupted(PathstatsError, RuntimeError):
    """A run stopped on a signal that did not come through
    :meth:`~pathstats.robust.experiments.slurm.RunBatch.checkpoint`."""


class GridInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the grid (the running runs checkpointed first).

    A stop request, not an error: a :class:`KeyboardInterrupt`, so that
    :func:`~pathstats.robust.experiments.store.execute` records the run as
    ``interrupted`` and no ``except Exception`` on the way mistakes it for a failure.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal = signal_name
