"""Writing results atomically, so that an interrupted run never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, BinaryIO, Callable

__all__ = ["atomic_write", "write_json", "pyplot", "save_figure"]


def atomic_write(path: str, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=directory, suffix=".tmp", delete=False) as f:
        try:
            write(f)
        except BaseException:
            f.close()
            os.unlink(f.name)
            raise
    os.replace(f.name, path)


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=1).encode()))


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, dpi: int = 110, tight: bool = True) -> None:
    """Lay out ``fig`` (``tight_layout`` unless ``tight`` is False), write it to ``path``
    as PNG atomically, and close it."""
    if tight:
        fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    pyplot().close(fig)
