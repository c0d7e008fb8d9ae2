"""Shared output infrastructure: atomic writes with the user's umask and no stray
temporary file, figure formats from the extension, output-path checks before the
work, provenance, and progress lines without ``\\r`` outside a terminal."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from pathstats import PathstatsError
from pathstats._io import atomic_write, check_figure_path, check_output_path, pyplot, save_figure, write_json
from pathstats.errors import OutputPathError
from pathstats.progress import progress
from pathstats.provenance import PROVENANCE_KEYS, provenance


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_mask(mask):
        os.umask(mask)

    yield set_mask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_follows_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    path = tmp_path / "result.json"
    write_json(str(path), {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert json.loads(path.read_text()) == {"a": 1}


def test_failed_write_leaves_no_temporary_file_and_the_old_content(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(str(path), fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), lambda f: (_ for _ in ()).throw(KeyboardInterrupt))
    assert os.listdir(tmp_path) == ["result.json"]
    assert path.read_text() == "old"


def test_write_errors_become_one_output_path_error(tmp_path):
    (tmp_path / "file").write_text("x")
    for target in [tmp_path, tmp_path / "file" / "below.json"]:
        with pytest.raises(OutputPathError, match="cannot write|is a folder"):
            atomic_write(str(target), lambda f: f.write(b"x"))
    assert sorted(os.listdir(tmp_path)) == ["file"]
    assert issubclass(OutputPathError, PathstatsError) and issubclass(OutputPathError, ValueError)


def _figure():
    fig, ax = pyplot().subplots()
    ax.plot([0, 1], [1, 0])
    ax.set_title("t")
    return fig


@pytest.mark.parametrize("name, magic", [("f.png", b"\x89PNG\r\n\x1a\n"), ("f.pdf", b"%PDF-"), ("f.PDF", b"%PDF-"),
                                         ("f.svg", b"<?xml")])
def test_figure_format_follows_the_extension(tmp_path, name, magic):
    save_figure(_figure(), str(tmp_path / name))
    data = (tmp_path / name).read_bytes()
    assert data.startswith(magic)
    if name.endswith("svg"):
        assert b"<svg" in data
    assert os.listdir(tmp_path) == [name]


@pytest.mark.parametrize("name", ["f.jpg", "f", "f.png.txt"])
def test_unknown_figure_format_is_refused_and_nothing_written(tmp_path, name):
    with pytest.raises(OutputPathError, match="end the file name with .png, .pdf, .svg"):
        save_figure(_figure(), str(tmp_path / name))
    with pytest.raises(OutputPathError):
        check_figure_path(str(tmp_path / name))
    assert os.listdir(tmp_path) == []


def test_check_output_path(tmp_path):
    (tmp_path / "file.json").write_text("x")
    (tmp_path / "dir").mkdir()
    # writable: new files (also in folders still to create), existing files, folders
    check_output_path(str(tmp_path / "new.json"))
    check_output_path(str(tmp_path / "a" / "b" / "new.json"))
    check_output_path(str(tmp_path / "file.json"))
    check_output_path(str(tmp_path / "dir"), directory=True)
    check_output_path(str(tmp_path / "new-dir" / "sub"), directory=True)
    refused = [
        (dict(path=str(tmp_path / "dir")), "is a folder"),
        (dict(path=str(tmp_path / "new") + os.sep), "is a folder"),
        (dict(path=str(tmp_path / "file.json"), directory=True), "is a file; give a folder"),
        (dict(path=str(tmp_path / "file.json" / "x.json")), "is a file, not a folder"),
        (dict(path=str(tmp_path / "file.json" / "out"), directory=True), "is a file, not a folder"),
        (dict(path=""), "empty"),
    ]
    for kwargs, message in refused:
        with pytest.raises(OutputPathError, match=message):
            check_output_path(**kwargs)
    assert sorted(os.listdir(tmp_path)) == ["dir", "file.json"]  # checking creates nothing


def test_check_output_path_detects_an_unwritable_folder(tmp_path):
    # os.access says yes to root; a read-only bind is not available in tests, so use
    # /proc, which no user (root included) can create files in
    with pytest.raises(OutputPathError, match="cannot write"):
        check_output_path("/proc/pathstats-test.json")


def test_provenance_keys_and_json():
    p = provenance(seed=3, device="cpu", argv=["predict", "--arch", "fc", "--d", "64", "--save-map", "my map.npy"])
    assert tuple(p) == PROVENANCE_KEYS
    assert p["command"] == "pathstats predict --arch fc --d 64 --save-map 'my map.npy'"
    assert p["seed"] == 3 and p["device"] == "cpu"
    assert p["created"].endswith("Z")
    import pathstats
    import torch

    assert p["pathstats_version"] == pathstats.__version__ and p["torch_version"] == torch.__version__
    assert json.loads(json.dumps(p)) == p


def test_progress_writes_lines_not_carriage_returns_outside_a_terminal():
    log = io.StringIO()
    for _ in progress(range(5), desc="fc 64", unit="init", file=log):
        pass
    with progress(total=2, desc="size 32", unit="layer", file=log) as bar:
        bar.update()
        bar.set_description("size 64")  # the running size: a line at once
        bar.set_postfix(size=64)
        bar.update()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("fc 64: 0/5 init") and lines[1].startswith("fc 64: 5/5 init (100%)")
    assert any(line.startswith("size 64: 1/2 layer") for line in lines)
    assert lines[-1].startswith("size 64: 2/2 layer (100%)") and lines[-1].endswith("size=64")


def test_progress_is_a_tqdm_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    with progress(total=3, desc="run", file=term) as bar:
        bar.update(3)
    assert type(bar).__name__ == "tqdm" and "\r" in term.getvalue() and "3/3" in term.getvalue()
    quiet = io.StringIO()
    with progress(total=3, file=quiet, disable=True) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


def test_progress_with_a_delay_stays_silent_on_short_tasks():
    log = io.StringIO()
    with progress(total=4, desc="quick", file=log, delay=60) as bar:
        bar.update(4)
    assert log.getvalue() == ""
