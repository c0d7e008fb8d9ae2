"""Writing results: atomically, with the user's umask, to paths checked before the work.

An interrupted or failed write never leaves half a file nor a temporary file behind,
and every path a command will write is checked (:func:`check_output_path`) before
any long computation, so that a typo does not cost a Monte Carlo run.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, BinaryIO, Callable

from .errors import OutputPathError

__all__ = [
    "atomic_write",
    "write_json",
    "pyplot",
    "save_figure",
    "FIGURE_FORMATS",
    "figure_format",
    "check_output_path",
    "check_figure_path",
]

#: File extensions :func:`save_figure` writes, and the matplotlib format of each.
FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no read-only query elsewhere: set and restore at once
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``.

    Missing parent folders are created.  The file gets the permissions any new file
    gets (``0o666`` less the umask), not the ``0o600`` of a temporary file.  On any
    failure, including an interruption, the temporary file is removed and ``path``
    is left as it was.

    Parameters
    ----------
    path : str
        The file to (re)write.
    write : callable
        Called with the binary file object open for writing.

    Raises
    ------
    OutputPathError
        If the folder cannot be created, the file cannot be written (disk full,
        permissions) or ``path`` is a folder.  Errors raised by ``write`` other than
        ``OSError`` propagate unchanged.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> atomic_write(os.path.join(folder, "a.txt"), lambda f: f.write(b"done"))
    >>> os.listdir(folder)
    ['a.txt']
    """
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise OutputPathError(f"{path} is a folder; give a file name")
    directory = os.path.dirname(target)
    temporary = None
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
        temporary = None
    except OSError as exc:
        raise OutputPathError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=1).encode() + b"\n"))


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_format(path: str) -> str:
    """The figure format that ``path``'s extension names.

    Raises
    ------
    OutputPathError
        If the extension is not one of :data:`FIGURE_FORMATS`.

    Examples
    --------
    >>> figure_format("results/maps.PDF")
    'pdf'
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in FIGURE_FORMATS:
        raise OutputPathError(
            f"cannot tell the figure format of {path!r}: end the file name with "
            + ", ".join(FIGURE_FORMATS)
        )
    return FIGURE_FORMATS[extension]


def save_figure(fig, path: str, dpi: int = 110, tight: bool = True) -> None:
    """Lay out ``fig`` (``tight_layout`` unless ``tight`` is False), write it to ``path``
    atomically in the format its extension names (PNG, PDF or SVG), and close it.

    Raises
    ------
    OutputPathError
        If the extension is not ``.png``, ``.pdf`` or ``.svg`` (nothing is written),
        or the file cannot be written.
    """
    try:
        fmt = figure_format(path)
        if tight:
            fig.tight_layout()
        atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
    finally:
        pyplot().close(fig)


def _nearest_existing(path: str) -> str:
    """``path`` or its nearest existing ancestor."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _check_folder_writable(folder: str, wanted: str) -> None:
    """Raise unless files can be created in the existing or creatable ``folder``."""
    existing = _nearest_existing(folder)
    if not os.path.isdir(existing):
        raise OutputPathError(f"cannot write {wanted}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {wanted}: no permission to write in {existing}")
    if existing == folder:
        try:  # catches read-only file systems and ACLs that os.access misses
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise OutputPathError(f"cannot write {wanted}: {exc.strerror or exc} in {folder}") from None


def check_output_path(path: str, *, directory: bool = False) -> None:
    """Check, without writing anything, that ``path`` can be written later.

    A missing parent folder is fine if it can be created.

    Parameters
    ----------
    path : str
        The file (or, with ``directory=True``, the folder) a command will write.
    directory : bool, default False
        ``path`` is a folder to write files into, not a file.

    Raises
    ------
    OutputPathError
        If ``path`` is empty, a folder where a file is wanted (or a file where a
        folder is wanted), or inside a folder that cannot be written or created.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> check_output_path(folder + "/new/result.json")
    >>> check_output_path(folder)
    Traceback (most recent call last):
    ...
    pathstats.errors.OutputPathError: ... is a folder; give a file name inside it, e.g. .../result.json
    """
    if not isinstance(path, str) or not path.strip():
        raise OutputPathError("the output path is empty; give a file or folder name")
    target = os.path.abspath(path)
    if directory:
        if os.path.exists(target) and not os.path.isdir(target):
            raise OutputPathError(f"{path} is a file; give a folder (it is created if missing)")
        _check_folder_writable(target, path)
        return
    if path.endswith(("/", os.sep)) or os.path.isdir(target):
        raise OutputPathError(f"{path} is a folder; give a file name inside it, e.g. {os.path.join(path, 'result.json')}")
    _check_folder_writable(os.path.dirname(target), path)


def check_figure_path(path: str) -> None:
    """:func:`check_output_path` for a figure, whose extension must name its format.

    Examples
    --------
    >>> check_figure_path("maps.jpg")
    Traceback (most recent call last):
    ...
    pathstats.errors.OutputPathError: cannot tell the figure format of 'maps.jpg': end the file name with .png, .pdf, .svg
    """
    figure_format(path)
    check_output_path(path)
