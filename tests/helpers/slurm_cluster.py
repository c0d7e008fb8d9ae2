"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd in a temporary folder.

Debian's packages (``apt-get install slurmctld slurmd munge``, Slurm 22.05) run as root
without systemd: a generated munge key, a minimal ``slurm.conf`` (one node ``localhost``
with the machine's CPUs, ``select/cons_tres``, ``proctrack/linuxproc``, ``task/none``),
state and spool folders in the temporary folder and free TCP ports, so nothing on the
machine is touched and several clusters can coexist.  :func:`slurm_cluster` yields the
environment (``SLURM_CONF``) that ``sbatch``/``squeue``/submitit need, and stops every
daemon it started by its own pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

__all__ = ["slurm_available", "slurm_cluster", "SlurmUnavailable"]

DAEMONS = ("munged", "slurmctld", "slurmd")


class SlurmUnavailable(RuntimeError):
    """The Slurm or munge daemons are not installed, or this user cannot run them."""


def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)


def slurm_available() -> str | None:
    """None if a test cluster can be started here, else the reason why not."""
    missing = [name for name in DAEMONS + ("sinfo", "sbatch") if _which(name) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (apt-get install slurmctld slurmd munge)"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root"
    return None


def _free_ports(n: int) -> list:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _write_config(root: str, cpus: int, settings: dict | None = None, cred_expire: int | None = None) -> str:
    ctld_port, slurmd_port = _free_ports(2)
    for sub in ("state", "spool", "log"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    lines = [
        "ClusterName=pathstats-test",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        # cred_expire is also how long a requeued job waits before it may start again (default 120 s)
        f"AuthInfo=socket={root}/munge.socket" + (f",cred_expire={cred_expire}" if cred_expire else ""),
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool/%n",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd.log",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=1",
        "MessageTimeout=10",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "KillWait=2",
        "MinJobAge=300",
        f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN",
        "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
    ]
    if settings:  # replace the defaults of the same keys, add the others before the node and partition lines
        keys = {line.split("=", 1)[0] for line in lines}
        keyed = [(line.split("=", 1)[0], line) for line in lines]
        lines = [f"{key}={settings[key]}" if key in settings else line for key, line in keyed]
        lines[-2:-2] = [f"{k}={v}" for k, v in settings.items() if k not in keys]
    path = os.path.join(root, "slurm.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _wait(predicate, timeout: float, what: str, log: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    tail = ""
    if log and os.path.exists(log):
        with open(log) as f:
            tail = "\n" + "".join(f.readlines()[-15:])
    raise SlurmUnavailable(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


def _die_with_parent() -> None:
    # Between fork and exec of a daemon: SIGTERM when the test process dies, even by SIGKILL
    # (a CI timeout), so that no daemon outlives the test.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def _sigterm_unwinds():
    """SIGTERM (a CI runner's timeout) raises KeyboardInterrupt, so that the finally block stops the daemons."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _node_idle(env: dict) -> bool:
    out = subprocess.run([_which("sinfo"), "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip().startswith("idle")


def _cancel_all(env: dict, timeout: float = 20.0) -> None:
    try:
        ids = subprocess.run([_which("squeue"), "-h", "-o", "%A"], env=env, capture_output=True, text=True,
                             timeout=timeout).stdout.split()
        if ids:
            subprocess.run([_which("scancel"), *sorted(set(ids))], env=env, capture_output=True, timeout=timeout)
            _wait(lambda: not subprocess.run([_which("squeue"), "-h", "-o", "%A"], env=env, capture_output=True,
                                             text=True, timeout=timeout).stdout.split(), timeout, "the jobs to end")
    except (OSError, subprocess.SubprocessError, SlurmUnavailable):
        pass  # the daemons are stopped next anyway


@contextlib.contextmanager
def slurm_cluster(root: str, cpus: int | None = None, timeout: float = 30.0, settings: dict | None = None,
                  cred_expire: int | None = None):
    """Start munged, slurmctld and slurmd under ``root``; yield the environment for clients.

    ``settings`` (``slurm.conf`` key -> value) replace or add configuration lines (e.g.
    ``{"KillWait": "5"}``); ``cred_expire`` (seconds) is munge credentials' lifetime, which
    is also how long a requeued job waits before it may start again (Slurm's default: 120 s).

    Raises
    ------
    SlurmUnavailable
        The daemons are missing, or the node did not come up (the daemon log's tail is in
        the message).
    """
    reason = slurm_available()
    if reason:
        raise SlurmUnavailable(reason)
    cpus = cpus or min(2, os.cpu_count() or 1)
    conf = _write_config(root, cpus, settings, cred_expire)
    env = {**os.environ, "SLURM_CONF": conf}
    key = os.path.join(root, "munge.key")
    with open(key, "wb") as f:
        f.write(os.urandom(1024))
    os.chmod(key, 0o400)
    processes = []
    with _sigterm_unwinds():
        try:
            yield from _run_daemons(root, conf, env, key, timeout, processes)
        finally:
            _stop_daemons(env, processes)


def _run_daemons(root: str, conf: str, env: dict, key: str, timeout: float, processes: list):
    """Start munged, slurmctld and slurmd (appended to ``processes`` as they start); yield ``env``
    once the node is idle."""
    processes.append(subprocess.Popen(
        [_which("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={root}/munge.socket",
         f"--pid-file={root}/munged.pid", f"--log-file={root}/log/munged.log", f"--seed-file={root}/munge.seed"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent))
    _wait(lambda: os.path.exists(f"{root}/munge.socket"), timeout, "munged's socket", f"{root}/log/munged.log")
    processes.append(subprocess.Popen([_which("slurmctld"), "-D", "-i", "-f", conf], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=_die_with_parent))
    processes.append(subprocess.Popen([_which("slurmd"), "-D", "-N", "localhost", "-f", conf], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=_die_with_parent))
    _wait(lambda: _node_idle(env), timeout, "the node to be idle in sinfo", f"{root}/log/slurmctld.log")
    yield env


def _stop_daemons(env: dict, processes: list) -> None:
    """Cancel the jobs left (their steps outlive slurmd), then stop the daemons by their own pids."""
    if len(processes) == 3:
        _cancel_all(env)
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in reversed(processes):
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
