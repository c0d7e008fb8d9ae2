"""A user's own ``nets.py``, ``verify.py`` or ``robust.py`` cannot shadow the toolkit."""

import subprocess
import sys
import textwrap


def test_user_modules_in_working_folder_do_not_shadow_the_toolkit(tmp_path):
    for name in ("nets", "verify", "robust"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user module {name}.py was imported')\n")
    script = textwrap.dedent(
        """
        import pathstats
        from pathstats import nets, verify, robust
        p = pathstats.predict("conv6", (3, 32, 32))
        assert abs(float(p.lemma7_total) - 1) < 1e-12
        assert nets.__name__ == "pathstats.nets" and verify.__name__ == "pathstats.verify"
        print("ok")
        """
    )
    # sys.path[0] is the working folder for `python -c`, exactly where the user's files are
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_cli_runs_beside_user_modules(tmp_path):
    for name in ("nets", "verify", "robust"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('shadowed')\n")
    done = subprocess.run(
        [sys.executable, "-m", "pathstats", "predict", "--arch", "fc", "--d", "64", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert '"arch": "fc"' in done.stdout
