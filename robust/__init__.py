"""Attacks, first-order vulnerability, regularised training and the papers' experiments.

Imported as ``pathstats.robust``.  The functions the README and the docs document are
importable from here as well as from their modules, loaded on first use (``import
pathstats.robust`` stays cheap: the command line imports it to build its parser):

>>> from pathstats.robust import pgd, fgm, deepfool, grad_norms, load_dataset, operator_norm
>>> pgd.__module__, load_dataset.__module__
('pathstats.robust.attacks', 'pathstats.robust.data')

``train`` and ``vulnerability`` are both a module and the function of that name, so
the package attribute is the module, and calling it calls the function:

>>> from pathstats.robust import train, vulnerability
>>> train.TrainConfig.__name__, callable(train), callable(vulnerability)
('TrainConfig', True, True)
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import Any, Callable

#: public name -> the module (under ``pathstats.robust``) that defines it
_LAZY = {
    # attacks and gradients
    "pgd": "attacks", "fgm": "attacks", "deepfool": "attacks", "lp_radius": "attacks", "dual_exponent": "attacks",
    "parse_norm": "attacks", "DEEPFOOL_NUDGE": "attacks",
    "input_gradients": "gradients", "grad_norms": "gradients", "eval_mode": "gradients", "model_device": "gradients",
    "check_model": "checks",
    # data, operator norms, bounds
    "load_dataset": "data", "check_data_spec": "data", "Dataset": "data", "native_size": "data", "upsample": "data",
    "minimum_size": "data", "check_model_input": "data",
    "operator_norm": "opnorm", "OperatorNormResult": "opnorm", "operator_norm_penalty": "opnorm",
    "logit_pgd": "opnorm", "alignment": "opnorm",
    "robustness_bounds": "bounds", "smooth_relus": "bounds", "top_hessian_eigenvalue": "bounds", "margins": "bounds",
    # training
    "METHODS": "methods", "Method": "methods", "get_method": "methods",
    "TrainConfig": "train", "evaluate": "train", "load_trained_model": "train",
    "open_trained": "runfolder", "TrainedRun": "runfolder",
    # the experiments
    "EXPERIMENTS": "experiments", "run_experiment": "experiments", "reanalyse": "experiments",
    # the errors of this package (defined in pathstats.errors)
    "AttackError": "gradients", "AttackWarning": "checks", "DataError": "data", "OperatorNormError": "opnorm",
    "MethodError": "methods", "TrainError": "train", "RunFolderError": "runfolder",
}
#: names that are a module and its main function at once: the attribute is the (callable) module
_CALLABLE_MODULES = ("train", "vulnerability")

__all__ = sorted(set(_LAZY) | set(_CALLABLE_MODULES))


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_MODULES:
        return import_module(f".{name}", __name__)  # importing sets the attribute: later look-ups are plain
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


class _CallableModule(types.ModuleType):
    """A module that is also its main function (``pathstats.robust.train(config, out)``)."""

    _function: Callable

    def __call__(self, *args, **kwargs):
        return self._function(*args, **kwargs)


def callable_module(name: str, function: Callable) -> None:
    """Make the module ``name`` callable as ``function``: ``from pathstats.robust import train``
    gives the module (Python binds a package's attribute to its sub-module once that is
    imported, so a function of the same name could not stay there), and calling it trains.

    The module keeps every attribute; only calls are added.
    """
    module = sys.modules[name]
    module.__class__ = _CallableModule
    module._function = function
