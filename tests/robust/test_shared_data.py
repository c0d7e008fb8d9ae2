"""Local --jobs workers share one memory-mapped copy of the uint8 data; channel statistics in chunks."""

import os

import torch

from pathstats.robust.data import DATA_CACHE_ENV, channel_stats, load_images
from pathstats.robust.synthetic import write_cifar10

def test_cache_gives_the_same_arrays_memory_mapped(tmp_path, monkeypatch):
    folder = write_cifar10(str(tmp_path / "c"), n_train=60, n_test=20)
    plain = load_images(f"cifar10:{folder}")
    monkeypatch.setenv(DATA_CACHE_ENV, str(tmp_path / "cache"))
    first = load_images(f"cifar10:{folder}")  # writes the cache
    second = load_images(f"cifar10:{folder}")  # maps it
    for a in (first, second):
        assert torch.equal(a.train_u8, plain.train_u8) and torch.equal(a.test_y, plain.test_y)
        assert a.class_names == plain.class_names and a.description == plain.description
    entries = [e for e in os.listdir(tmp_path / "cache")]
    assert len(entries) == 1 and not entries[0].startswith(".partial")


def test_chunked_channel_stats_match_the_float64_pass():
    torch.manual_seed(0)
    from pathstats.robust.data import ImageData

    u8 = torch.randint(0, 256, (12000, 3, 32, 32), dtype=torch.uint8)  # above the one-pass threshold
    data = ImageData("x", u8, torch.zeros(12000, dtype=torch.long), u8[:1], torch.zeros(1, dtype=torch.long), 10, 255)
    mean, std = channel_stats(data)
    x = u8.to(torch.float64) / 255
    assert torch.allclose(mean.double(), x.mean(dim=(0, 2, 3)), rtol=1e-6, atol=0)
    assert torch.allclose(std.double(), x.std(dim=(0, 2, 3), unbiased=False), rtol=1e-6, atol=0)
