"""pathstats.resources on fake /proc and cgroup trees and Slurm variables; train's memory refusals."""

import os

import pytest

from pathstats.resources import (ResourceError, cgroup_available, fitting_batch, free_memory, meminfo_available,
                                 slurm_allocation)
from pathstats.robust.train import TrainConfig, memory_per_image, plan_memory

GiB = 2**30


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _proc(tmp_path, cgroup_lines, available_kb=8 * 2**20, rss_kb=2**20):
    proc = tmp_path / "proc"
    _write(str(proc / "self" / "cgroup"), "\n".join(cgroup_lines) + "\n")
    _write(str(proc / "meminfo"), f"MemTotal: 16000000 kB\nMemFree: 100 kB\nMemAvailable: {available_kb} kB\n")
    _write(str(proc / "self" / "status"), f"Name: python\nVmHWM: {rss_kb} kB\nVmRSS: {rss_kb} kB\n")
    return str(proc)


def test_cgroup_v2_limit_minus_usage_tightest_ancestor(tmp_path):
    proc = _proc(tmp_path, ["0::/job/step"])
    cg = tmp_path / "cg"
    _write(str(cg / "job" / "step" / "memory.max"), "max\n")  # no limit of its own
    _write(str(cg / "job" / "step" / "memory.current"), str(1 * GiB))
    _write(str(cg / "job" / "memory.max"), str(6 * GiB))
    _write(str(cg / "job" / "memory.current"), str(2 * GiB))
    assert cgroup_available(proc, str(cg)) == 4 * GiB
    assert free_memory("cpu", environ={}, proc=proc, cgroup=str(cg)) == (4 * GiB, "the cgroup memory limit")


def test_cgroup_v1_and_its_unlimited_value(tmp_path):
    proc = _proc(tmp_path, ["4:memory:/docker/abc", "3:cpu:/"])
    cg = tmp_path / "cg"
    _write(str(cg / "memory" / "docker" / "abc" / "memory.limit_in_bytes"), str(3 * GiB))
    _write(str(cg / "memory" / "docker" / "abc" / "memory.usage_in_bytes"), str(GiB))
    _write(str(cg / "memory" / "memory.limit_in_bytes"), "9223372036854771712")  # v1's "no limit"
    assert cgroup_available(proc, str(cg)) == 2 * GiB


def test_no_cgroup_files_means_no_cgroup_bound(tmp_path):
    proc = _proc(tmp_path, ["0::/"], available_kb=5 * 2**20)
    assert cgroup_available(proc, str(tmp_path / "none")) is None
    assert free_memory("cpu", environ={}, proc=proc, cgroup=str(tmp_path / "none")) == (5 * GiB, "MemAvailable")


def test_slurm_allocation_forms():
    assert slurm_allocation({"SLURM_MEM_PER_NODE": "4096"}) == 4 * GiB
    assert slurm_allocation({"SLURM_MEM_PER_CPU": "1024", "SLURM_CPUS_PER_TASK": "3"}) == 3 * GiB
    assert slurm_allocation({"SLURM_MEM_PER_NODE": "0", "SLURM_MEM_PER_CPU": "512"}) == GiB // 2
    assert slurm_allocation({"SLURM_MEM_PER_NODE": "lots"}) is None


def test_the_smallest_bound_wins_and_slurm_subtracts_this_process(tmp_path):
    proc = _proc(tmp_path, ["0::/"], available_kb=8 * 2**20, rss_kb=2**20)  # 8 GiB available, 1 GiB resident
    env = {"SLURM_MEM_PER_NODE": "3072"}
    assert free_memory("cpu", environ=env, proc=proc, cgroup=str(tmp_path / "none")) == (2 * GiB,
                                                                                        "Slurm's memory allocation")
    assert meminfo_available(proc) == 8 * GiB
    assert free_memory("cpu", environ={}, proc=str(tmp_path / "nothing"), cgroup=str(tmp_path / "none")) == (
        None, "unknown")


def test_fitting_batch_is_the_largest_that_fits():
    for per, free, fixed in [(3, 100, 10, ), (7, 1000, 0), (1000, 999, 0)]:
        b = fitting_batch(per, free, fixed, fraction=1.0)
        assert fixed + b * per <= free < fixed + (b + 1) * per


def test_footprint_grows_with_size_and_width():
    small = memory_per_image("conv8", (3, 64, 64), channels=8, native_side=32)
    big = memory_per_image("conv8", (3, 128, 128), channels=8, native_side=32)
    wide = memory_per_image("conv8", (3, 64, 64), channels=16, native_side=32)
    head = (8 + 10) * 4  # the global pooling's 8 numbers and the 10 logits do not grow with the area
    assert big["activations"] - head == 4 * (small["activations"] - head)  # every map scales with the area
    assert wide["activations"] > 1.9 * small["activations"]
    assert memory_per_image("conv8", (3, 64, 64), channels=8, native_side=32, method="grad-l1")["train"] == (
        2 * small["train"])


def _config(**kw):
    return TrainConfig("conv8", data="cifar10:/x", size=256, channels=8, **kw).resolved()


def test_eval_batch_is_lowered_to_what_fits_and_default_otherwise():
    per = memory_per_image("conv8", (3, 256, 256), channels=8, native_side=32)
    roomy = plan_memory(_config(), (3, 256, 256), 10, 32, free=100 * GiB, source="t")
    assert roomy["eval_batch"] == 10  # default_eval_batch(3 * 256 * 256)
    # room for the training step but not for 10 evaluation images
    free = int(128 * per["train"] + 4 * per["params"] + 1)
    tight = plan_memory(_config(), (3, 256, 256), 10, 32, free=free, source="t", measured_eval=free / 4)
    assert tight["eval_batch"] == 2  # 0.7 free / (free / 4) = 2.8


def test_refusals_say_what_fits():
    with pytest.raises(ResourceError, match=r"--eval-batch 200 needs about .* the largest --eval-batch that fits is \d+$"):
        plan_memory(_config(eval_batch=200), (3, 256, 256), 10, 32, free=8 * GiB, source="t")
    with pytest.raises(ResourceError, match=r"training step of --batch 128 .* what fits: --batch \d+, or --size \d+ or "
                                            r"--channels \d+$"):
        plan_memory(_config(), (3, 256, 256), 10, 32, free=3 * GiB, source="t")
