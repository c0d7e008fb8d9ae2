"""Images per second of one training epoch: pathstats' pipeline against a plain PyTorch DataLoader loop.

Both train the same network (``conv8``/``conv6``, plain cross-entropy, SGD) on the same
synthetic CIFAR-format folder (:func:`pathstats.robust.synthetic.write_cifar10`):

* **pathstats**: the images stay uint8 at 32 px on the training device
  (:func:`~pathstats.robust.data.load_images`); each batch is indexed there and
  up-sampled by :class:`~pathstats.robust.data.BatchTransform` on the device
  (channels-last on CUDA), as ``pathstats train`` does;
* **DataLoader**: a ``Dataset`` whose items are float32 images up-sampled on the CPU
  (nearest neighbour, as torchvision transforms would), a ``DataLoader`` (shuffle,
  ``num_workers=0``), each batch copied to the device.

Rounds alternate the two (so a shared machine's load hits both alike); the table gives
the median images/s over the rounds and the median per-round ratio.  Single thread on CPU.
The JSON records the machine's load averages (1, 5, 15 min) before and after.

Usage: ``python benchmarks/epoch_throughput.py [--sizes 32 64] [--archs conv8 conv6]
[--n-train 256] [--rounds 3] [--device cpu]``; writes ``benchmarks/epoch_throughput.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from pathstats import nets
from pathstats._io import write_json
from pathstats.provenance import provenance
from pathstats.robust.data import BatchTransform, load_images
from pathstats.robust.synthetic import write_cifar10

HERE = os.path.dirname(os.path.abspath(__file__))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model, optimizer, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def epoch_pathstats(model, optimizer, images, factor: int, batch: int, device: torch.device, seed: int) -> float:
    """Seconds of one epoch the way ``pathstats train`` feeds it."""
    transform = BatchTransform(images.levels, factor)
    n = images.train_u8.shape[0]
    _sync(device)
    start = time.perf_counter()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    for i in range(n // batch):
        idx = order[i * batch:(i + 1) * batch]
        x = transform(images.train_u8[idx])
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        _step(model, optimizer, x, images.train_y[idx])
    _sync(device)
    return time.perf_counter() - start


class _Upsampled(torch.utils.data.Dataset):
    """Float32 images up-sampled on the CPU item by item (a torchvision-style transform)."""

    def __init__(self, u8: torch.Tensor, y: torch.Tensor, size: int) -> None:
        self.u8, self.y, self.size = u8, y, size

    def __len__(self) -> int:
        return self.u8.shape[0]

    def __getitem__(self, i: int):
        x = self.u8[i].to(torch.float32) / 255.0
        return F.interpolate(x[None], size=(self.size, self.size), mode="nearest")[0], self.y[i]


def epoch_dataloader(model, optimizer, images, size: int, batch: int, device: torch.device, seed: int) -> float:
    """Seconds of one epoch through a plain DataLoader that up-samples on the CPU."""
    loader = torch.utils.data.DataLoader(_Upsampled(images.train_u8, images.train_y, size), batch_size=batch,
                                         shuffle=True, drop_last=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(seed))
    _sync(device)
    start = time.perf_counter()
    for x, y in loader:
        _step(model, optimizer, x.to(device, non_blocking=True), y.to(device, non_blocking=True))
    _sync(device)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["conv8", "conv6"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--n-train", type=int, default=256, help="training images per epoch (default 256)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=None, help="width of the nets (default theirs)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=os.path.join(HERE, "epoch_throughput.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    load_before = os.getloadavg()  # a shared machine's load moves both loops' speeds (not their ratio much)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_cifar10(tmp, n_train=args.n_train, n_test=10)
        host = load_images(f"cifar10:{folder}")
        resident = load_images(f"cifar10:{folder}", device=device)
    rows = []
    for arch in args.archs:
        for size in args.sizes:
            shape = (3, size, size)
            torch.manual_seed(0)
            model = nets.build(arch, shape, 10, channels=args.channels).to(device)
            if device.type == "cuda":
                model = model.to(memory_format=torch.channels_last)
            model.train()
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            _step(model, optimizer, torch.rand((args.batch,) + shape, device=device),
                  torch.zeros(args.batch, dtype=torch.long, device=device))  # warm-up
            ours, theirs = [], []
            for r in range(args.rounds):
                pair = [("pathstats", lambda: epoch_pathstats(model, optimizer, resident, size // 32, args.batch,
                                                              device, r)),
                        ("dataloader", lambda: epoch_dataloader(model, optimizer, host, size, args.batch, device, r))]
                for name, fn in (pair if r % 2 == 0 else pair[::-1]):
                    (ours if name == "pathstats" else theirs).append(fn())
            images = (args.n_train // args.batch) * args.batch
            row = {"arch": arch, "size": size, "images": images, "rounds": args.rounds,
                   "pathstats_images_per_s": statistics.median(images / t for t in ours),
                   "dataloader_images_per_s": statistics.median(images / t for t in theirs),
                   "ratio": statistics.median(t2 / t1 for t1, t2 in zip(ours, theirs))}
            rows.append(row)
            print(f"{arch:6s} {size:4d} px: pathstats {row['pathstats_images_per_s']:8.1f} img/s, DataLoader "
                  f"{row['dataloader_images_per_s']:8.1f} img/s, ratio {row['ratio']:.3f}", flush=True)
    write_json(args.out, {"rows": rows, "batch": args.batch, "channels": args.channels,
                          "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu, 1 thread",
                          "load_average": {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()},
                          "provenance": provenance(seed=0, device=str(device))})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
