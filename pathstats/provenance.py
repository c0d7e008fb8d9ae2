"""Provenance: what produced a result, recorded under ``"provenance"`` in every JSON result.

A number in a paper needs the toolkit, torch, Python and NumPy versions, the command
line, the seed and the device it came from, and when it was made.
"""

from __future__ import annotations

import datetime
import platform
import shlex
import sys

__all__ = ["provenance", "PROVENANCE_KEYS"]

#: The keys of :func:`provenance`'s dictionary, in order.
PROVENANCE_KEYS = ("pathstats_version", "torch_version", "python_version", "numpy_version", "command", "seed",
                   "device", "created")


def _command(argv: list[str] | None) -> str:
    if argv is None:  # the running process's own command line
        import os

        program = sys.argv[0] if sys.argv else ""
        if os.path.basename(program) == "__main__.py":  # python -m pathstats
            head = ["pathstats"]
        elif program.endswith(".py") or program == "-c":  # a script, or python -c
            head = ["python", program]
        else:  # a console script such as pathstats
            head = [os.path.basename(program) or "python"]
        argv = [*head, *sys.argv[1:]]
    else:
        argv = ["pathstats", *argv]
    return shlex.join(str(a) for a in argv)


def provenance(seed: int | None = None, device: str | None = None, argv: list[str] | None = None) -> dict:
    """Versions, command line, seed, device and time of a result.

    Parameters
    ----------
    seed : int, optional
        The seed the result was computed with (None where nothing is random).
    device : str, optional
        The torch device it was computed on (None where no device is involved).
    argv : list of str, optional
        The command's arguments after ``pathstats`` (as given to
        :func:`pathstats.cli.main`); by default the running process's command line.

    Returns
    -------
    dict
        Keys :data:`PROVENANCE_KEYS`: ``pathstats_version``, ``torch_version``,
        ``python_version``, ``numpy_version``, ``command`` (a shell-quoted string),
        ``seed``, ``device`` and ``created`` (UTC, ISO 8601).  JSON-serialisable.

    Examples
    --------
    >>> p = provenance(seed=0, device="cpu", argv=["verify", "--arch", "fc", "--d", "64"])
    >>> p["command"], p["seed"], p["device"]
    ('pathstats verify --arch fc --d 64', 0, 'cpu')
    >>> tuple(p) == PROVENANCE_KEYS
    True
    """
    import numpy
    import torch

    from . import __version__

    return {
        "pathstats_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "numpy_version": numpy.__version__,
        "command": _command(argv),
        "seed": None if seed is None else int(seed),
        "device": None if device is None else str(device),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
