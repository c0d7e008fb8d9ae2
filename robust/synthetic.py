"""Synthetic data sets in the layouts :mod:`~pathstats.robust.data` reads (tests, smoke runs, benchmarks, plans).

:func:`write_cifar10` writes a CIFAR-10 python-batches folder (``data_batch_1`` ...
``data_batch_5``, ``test_batch``, ``batches.meta``) of seeded random uint8 images, so
that paper-scale commands (``--data cifar10:DIR``) can be started, timed and measured
where the real data set is absent.  The images carry a weak class signal (each class
shifts the mean of one colour channel), so a network can learn something from them.

>>> import tempfile
>>> from pathstats.robust.data import load_images
>>> folder = write_cifar10(tempfile.mkdtemp(), n_train=50, n_test=20)
>>> data = load_images(f"cifar10:{folder}")
>>> tuple(data.train_u8.shape), tuple(data.test_u8.shape), data.classes
((50, 3, 32, 32), (20, 3, 32, 32), 10)
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from pathstats._io import atomic_write

__all__ = ["write_cifar10", "CIFAR_TRAIN", "CIFAR_TEST"]

#: The real CIFAR-10's split sizes (the default of :func:`write_cifar10`).
CIFAR_TRAIN, CIFAR_TEST = 50000, 10000

_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    labels = rng.integers(0, 10, n)
    x = rng.integers(0, 200, (n, 3, 32, 32), dtype=np.uint8)
    # the class signal: +48 on channel (label mod 3) for labels < 9 -- enough to learn, far from separable per pixel
    shift = np.zeros((n, 3, 1, 1), dtype=np.uint8)
    rows = np.flatnonzero(labels < 9)
    shift[rows, labels[rows] % 3] = 48
    return (x + shift).reshape(n, 3072), [int(v) for v in labels]


def write_cifar10(directory: str, n_train: int = CIFAR_TRAIN, n_test: int = CIFAR_TEST, seed: int = 0) -> str:
    """Write a synthetic CIFAR-10 python-batches folder into ``directory/cifar-10-batches-py``
    (``n_train`` images over five training batches, ``n_test`` test images) and return that
    folder.  Each file is written atomically (complete or absent); the same arguments give
    the same bytes.
    """
    folder = os.path.join(directory, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    batches = [(f"data_batch_{i + 1}", n) for i, n in enumerate(sizes)] + [("test_batch", n_test)]
    for name, n in batches:
        data, labels = _images(n, rng)
        payload = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                                b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}, protocol=4)
        atomic_write(os.path.join(folder, name), lambda f, p=payload: f.write(p))
    meta = pickle.dumps({b"label_names": [n.encode() for n in _NAMES], b"num_cases_per_batch": sizes[0],
                         b"num_vis": 3072}, protocol=4)
    atomic_write(os.path.join(folder, "batches.meta"), lambda f: f.write(meta))
    return folder
