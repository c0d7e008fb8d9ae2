"""How much memory a process may still use, and how many images fit in it.

ONE home for the memory arithmetic of training and evaluation:

* :func:`free_memory` -- bytes this process may still allocate on a device: CUDA's
  ``mem_get_info`` free bytes; on CPU the smallest of the cgroup limit minus the
  cgroup's usage (v2 ``memory.max``/``memory.current``, v1
  ``memory.limit_in_bytes``/``memory.usage_in_bytes``), Slurm's allocation
  (``SLURM_MEM_PER_NODE``, or ``SLURM_MEM_PER_CPU`` x the CPUs, in MB) minus this
  process's resident memory, and ``/proc/meminfo``'s ``MemAvailable``;
* :func:`activation_bytes` -- bytes of every module output of one forward pass of one
  image, found on the meta device (shapes only, no arithmetic, so 256 px costs nothing);
* :func:`measure_peak` -- peak bytes of a callable on a CUDA device (``max_memory_allocated``);
* :func:`fitting_batch` -- the largest batch whose per-image footprint fits a budget.

Everything reads its sources through arguments (``environ``, ``proc``, ``cgroup``), so
tests run it on fake files.

>>> fitting_batch(per_image=100, free=1000, fixed=0, fraction=1.0)
10
>>> slurm_allocation({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "4"})
4194304000
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

import torch

from .errors import InvalidArgumentError, ResourceError

__all__ = ["ResourceError", "free_memory", "cgroup_available", "slurm_allocation", "meminfo_available",
           "resident_bytes", "peak_resident_bytes", "activation_bytes", "measure_peak", "fitting_batch",
           "format_bytes", "SAFETY"]

#: Fraction of the free memory a batch may take (the rest: allocator fragmentation,
#: the optimiser, Python, the other evaluation split's tensors).
SAFETY = 0.7

#: cgroup v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages); anything above this is none.
_UNLIMITED = 1 << 60


def format_bytes(n: float) -> str:
    """``n`` bytes in MiB or GiB, for messages.

    >>> format_bytes(3 * 2**30), format_bytes(5 * 2**20)
    ('3.0 GiB', '5.0 MiB')
    """
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _UNLIMITED else value


def _cgroup_paths(proc: str) -> dict:
    """``{"v2": path}`` and/or ``{"v1": path}`` of this process's memory cgroup (from ``proc/self/cgroup``)."""
    out = {}
    try:
        with open(os.path.join(proc, "self", "cgroup")) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            out["v2"] = path
        elif "memory" in controllers.split(","):
            out["v1"] = path
    return out


def cgroup_available(proc: str = "/proc", cgroup: str = "/sys/fs/cgroup") -> int | None:
    """Bytes left under this process's cgroup memory limits (the tightest of the cgroup and
    its ancestors), or None without a limit.

    A container often mounts its own cgroup as the root of ``cgroup``, so the path in
    ``/proc/self/cgroup`` may not exist there: the root is read as well.
    """
    found = []
    paths = _cgroup_paths(proc)
    for version, rel in paths.items():
        base = cgroup if version == "v2" else os.path.join(cgroup, "memory")
        limit_file, usage_file = (("memory.max", "memory.current") if version == "v2"
                                  else ("memory.limit_in_bytes", "memory.usage_in_bytes"))
        rel = rel.strip("/")
        candidates = []
        while True:  # the cgroup and its ancestors: the tightest limit binds
            candidates.append(os.path.join(base, rel) if rel else base)
            if not rel:
                break
            rel = os.path.dirname(rel)
        for folder in candidates:
            limit = _read_int(os.path.join(folder, limit_file))
            if limit is None:
                continue
            usage = _read_int(os.path.join(folder, usage_file)) or 0
            found.append(max(limit - usage, 0))
    return min(found) if found else None


def resident_bytes(proc: str = "/proc") -> int:
    """This process's resident memory (``VmRSS``), 0 where unknown."""
    return _status_field(proc, "VmRSS")


def peak_resident_bytes(proc: str = "/proc") -> int:
    """This process's peak resident memory (``VmHWM``), 0 where unknown."""
    return _status_field(proc, "VmHWM")


def _status_field(proc: str, name: str) -> int:
    try:
        with open(os.path.join(proc, "self", "status")) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def slurm_allocation(environ: Mapping[str, str] | None = None) -> int | None:
    """Bytes of memory Slurm allocated to this job step on this node, or None outside Slurm.

    ``SLURM_MEM_PER_NODE`` (MB), else ``SLURM_MEM_PER_CPU`` (MB) times
    ``SLURM_CPUS_ON_NODE`` (or ``SLURM_CPUS_PER_TASK``, else 1).

    >>> slurm_allocation({"SLURM_MEM_PER_NODE": "2048"}) == 2048 * 2**20
    True
    >>> slurm_allocation({}) is None
    True
    """
    env = os.environ if environ is None else environ

    def number(key: str) -> int | None:
        try:
            value = int(str(env.get(key, "")).strip())
        except ValueError:
            return None
        return value if value > 0 else None

    per_node = number("SLURM_MEM_PER_NODE")
    if per_node is not None:
        return per_node * 2**20
    per_cpu = number("SLURM_MEM_PER_CPU")
    if per_cpu is None:
        return None
    cpus = number("SLURM_CPUS_ON_NODE") or number("SLURM_CPUS_PER_TASK") or 1
    return per_cpu * cpus * 2**20


def meminfo_available(proc: str = "/proc") -> int | None:
    """``MemAvailable`` of ``proc/meminfo`` in bytes, or None where unreadable."""
    try:
        with open(os.path.join(proc, "meminfo")) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def free_memory(device="cpu", *, environ: Mapping[str, str] | None = None, proc: str = "/proc",
                cgroup: str = "/sys/fs/cgroup") -> tuple[int | None, str]:
    """Bytes this process may still allocate on ``device``, and where the figure comes from.

    CUDA: ``torch.cuda.mem_get_info``'s free bytes.  CPU: the smallest of the cgroup's
    headroom, Slurm's allocation minus this process's resident memory, and
    ``MemAvailable``; ``(None, "unknown")`` where none is readable.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free memory of {torch.cuda.get_device_name(device)}"
    bounds = []
    group = cgroup_available(proc, cgroup)
    if group is not None:
        bounds.append((group, "the cgroup memory limit"))
    slurm = slurm_allocation(environ)
    if slurm is not None:
        bounds.append((max(slurm - resident_bytes(proc), 0), "Slurm's memory allocation"))
    available = meminfo_available(proc)
    if available is not None:
        bounds.append((available, "MemAvailable"))
    if not bounds:
        return None, "unknown"
    value, source = min(bounds, key=lambda b: b[0])
    return int(value), source


def activation_bytes(model: torch.nn.Module, input_shape: tuple) -> int:
    """Bytes of the outputs of every leaf module in one forward pass of one image (float32),
    found on the meta device (shapes only); ``model`` must be built on the meta device.

    >>> with torch.device("meta"):
    ...     net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    >>> activation_bytes(net, (3, 32, 32)) == 2 * 8 * 32 * 32 * 4
    True
    """
    from pathstats.nets.base import meta_forward

    total = [0]

    def hook(module, output) -> None:
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        total[0] += sum(o.numel() * 4 for o in outputs if torch.is_tensor(o))

    meta_forward(model, input_shape, copy=False, leaf_hook=hook)
    return total[0]


def measure_peak(fn: Callable[[], object], device) -> int:
    """Peak bytes allocated on CUDA ``device`` while ``fn()`` runs, above what was allocated before."""
    device = torch.device(device)
    if device.type != "cuda":
        raise InvalidArgumentError("measure_peak measures CUDA devices; on CPU use activation_bytes")
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return max(int(torch.cuda.max_memory_allocated(device)) - before, 0)


def fitting_batch(per_image: float, free: float | None, fixed: float = 0.0, fraction: float = SAFETY) -> int | None:
    """The largest batch ``b`` with ``fixed + b per_image <= fraction free``; None when
    ``free`` is unknown (nothing to bound by), 0 when not even one image fits.

    >>> fitting_batch(per_image=2**20, free=2**30)
    716
    >>> fitting_batch(per_image=2**30, free=2**30), fitting_batch(per_image=1, free=None) is None
    (0, True)
    """
    if free is None:
        return None
    budget = fraction * free - fixed
    if per_image <= 0:
        return None
    return max(int(budget // per_image), 0)
