"""One exception tree: every exception class of the toolkit is defined in
``pathstats.errors`` (the modules that raise it re-export it), and every error derives
from :class:`~pathstats.errors.PathstatsError` and from the built-in a caller expects."""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest
from tests.docs.test_docstrings import MODULES  # every module of the toolkit, imported by package name

from pathstats import errors

#: The built-in exceptions a pathstats error may mix in (what ``except`` a Python caller would write).
BUILTIN_MIXINS = (ValueError, LookupError, MemoryError, RuntimeError, OSError)

# Modules still allowed an exception class of their own (strict: once moved, the mark must go).
PENDING: dict = {}
# Modules that still raise the bare base class or a plain ValueError (strict: once fixed, the mark must go).
PENDING_RAISES: dict = {}
#: What a module must not raise directly: the base class says nothing, a built-in is no PathstatsError.
VAGUE = ("PathstatsError", "ValueError", "LookupError", "KeyError")


def _defined_exceptions(module) -> list:
    return [value for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__]


def _errors_classes() -> list:
    return _defined_exceptions(errors)


@pytest.mark.parametrize("name", [pytest.param(m, marks=pytest.mark.xfail(reason=PENDING[m], strict=True))
                                  if m in PENDING else m for m in MODULES if m != "pathstats.errors"])
def test_no_exception_class_is_defined_outside_errors(name):
    module = importlib.import_module(name)
    strays = [cls.__name__ for cls in _defined_exceptions(module)]
    assert not strays, f"{name} defines {strays}: define them in pathstats/errors.py and re-export them from {name}"


def _vague_raises(module) -> list:
    tree = ast.parse(inspect.getsource(module))
    return [f"line {node.lineno}: raise {node.exc.func.id}(...)" for node in ast.walk(tree)
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name)
            and node.exc.func.id in VAGUE]


@pytest.mark.parametrize("name", [pytest.param(m, marks=pytest.mark.xfail(reason=PENDING_RAISES[m], strict=True))
                                  if m in PENDING_RAISES else m for m in MODULES if m != "pathstats.errors"])
def test_errors_are_raised_as_their_specific_class(name):
    """A flag or argument error raises the class that says what went wrong (InvalidArgumentError,
    UnsupportedLayerError, DataError...), which is a PathstatsError and a ValueError at once."""
    vague = _vague_raises(importlib.import_module(name))
    assert not vague, f"{name} raises {vague}: raise the specific class of pathstats.errors"


def test_errors_exports_exactly_its_classes_and_exit_statuses():
    assert "pathstats.errors" in MODULES and "pathstats.robust.train" in MODULES
    classes = {cls.__name__ for cls in _errors_classes()}
    assert {"TrainError", "UnsupportedLayerError", "GridInterrupted", "AttackWarning"} <= classes
    assert set(errors.__all__) == classes | {name for name in vars(errors) if name.startswith("EXIT_")}


@pytest.mark.parametrize("cls", _errors_classes(), ids=lambda c: c.__name__)
def test_every_error_is_a_pathstats_error_with_a_builtin_mixin(cls):
    if issubclass(cls, Warning):
        assert issubclass(cls, errors.PathstatsWarning)
    elif issubclass(cls, KeyboardInterrupt):
        # a stop request (GridInterrupted): deliberately not an Exception, so that no
        # ``except Exception`` records a stopped run as failed
        assert not issubclass(cls, Exception)
    else:
        assert issubclass(cls, errors.PathstatsError)
        if cls is not errors.PathstatsError:
            assert issubclass(cls, BUILTIN_MIXINS), f"{cls.__name__} mixes in none of {BUILTIN_MIXINS}"
    assert cls.__name__ in errors.__all__
    assert cls.__doc__


def test_every_public_exception_name_is_the_one_of_errors():
    """A module that exports an exception exports pathstats.errors' class, not a copy."""
    stray = []
    for name in MODULES:
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", ()):
            value = getattr(module, public, None)
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ not in PENDING:
                if getattr(errors, public, None) is not value:
                    stray.append(f"{name}.{public}")
    assert not stray


def test_lookup_errors_print_their_message_unquoted():
    for cls in (errors.UnknownNodeError, errors.UnknownArchitectureError, errors.UnknownExperimentError):
        assert str(cls("no such thing 'x'")) == "no such thing 'x'"
        assert isinstance(cls("x"), LookupError)


def test_exit_statuses_have_one_home():
    """No module defines an exit status of its own: each EXIT_* name is errors' (and the
    grid's stop signals are errors' signal statuses)."""
    from pathstats.robust.experiments.executors import STOP_SIGNALS

    assert STOP_SIGNALS is errors.EXIT_SIGNAL
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if attr.startswith("EXIT_") and name != "pathstats.errors":
                assert value is getattr(errors, attr, None), f"{name}.{attr} is not pathstats.errors.{attr}"
    assert errors.EXIT_INTERRUPTED == errors.EXIT_SIGNAL["SIGINT"] == 130
