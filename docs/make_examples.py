"""Real command-line output for the documentation, produced when the docs build.

Each example is one ``pathstats`` command line.  It runs through the same entry
point as the console script (:func:`pathstats.cli.main`), in a scratch folder so
that the files it writes (``--out``, ``--figure``) land beside the page sources,
and its transcript (the command, what it printed, and its exit status when that is
not 0) is written to ``_generated/cli/NAME.txt`` for ``literalinclude``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex

#: name -> command line, as a user types it.  The CLI page includes each transcript.
EXAMPLES = {
    "help": "pathstats --help",
    "help_predict": "pathstats predict --help",
    "help_sweep": "pathstats sweep --help",
    "help_verify": "pathstats verify --help",
    "help_dag": "pathstats dag --help",
    "help_attack": "pathstats attack --help",
    "help_train": "pathstats train --help",
    "help_experiment": "pathstats experiment --help",
    "archs": "pathstats archs",
    "predict": "pathstats predict --arch conv6 --d 3072",
    "predict_json": "pathstats predict --arch fc --d 64 --json",
    "dag": "pathstats dag --example conv1d-stride2",
    "sweep": "pathstats sweep --arch conv6 --sizes 32,64,128 --figure sweep.png",
    "verify": "pathstats verify --arch conv6 --d 3072 --samples 200 --out results",
    "compare": "pathstats verify --arch conv6-strided,conv6-avgpool,conv6-maxpool --d 3072 --samples 100 --out fig3",
    "error_d": "pathstats predict --arch conv6 --d 3000",
    "error_arch": "pathstats verify --arch conv7 --d 3072",
    "error_usage": "pathstats verify --arch conv6",
}


def run_example(command: str, folder: str) -> str:
    """Run one ``pathstats ...`` command line in ``folder``; return its transcript.

    Standard output is shown in full; standard error (the progress lines of a
    successful run) only when the command fails, followed by its exit status.
    """
    from pathstats.cli import main

    argv = shlex.split(command)[1:]
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.makedirs(folder, exist_ok=True)
    try:
        os.chdir(folder)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = main(argv)
            except SystemExit as exc:  # --help and argparse's usage errors exit from inside main
                status = exc.code or 0
    finally:
        os.chdir(previous)
    lines = [f"$ {command}", stdout.getvalue().rstrip("\n")]
    if status != 0:
        lines += [stderr.getvalue().rstrip("\n"), "$ echo $?", str(status)]
    return "\n".join(line for line in lines if line) + "\n"


def make_examples(directory: str) -> None:
    """Write ``directory/NAME.txt`` for every command of :data:`EXAMPLES`; files the
    commands write go to ``directory`` too (e.g. ``results/maps.png``)."""
    os.makedirs(directory, exist_ok=True)
    for name, command in EXAMPLES.items():
        transcript = run_example(command, directory)
        with open(os.path.join(directory, f"{name}.txt"), "w") as f:
            f.write(transcript)
