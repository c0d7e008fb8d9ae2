"""The data sets every robustness command reads: ``digits``, ``cifar10:DIR``, ``folder:DIR``.

A data set is named by a short spec string:

``digits``
    scikit-learn's bundled 8 x 8 handwritten digits (1797 grayscale images, 10
    classes, shipped with scikit-learn: nothing is downloaded).  Pixels (0..16)
    are divided by 16.  The train/test split is fixed: per class, a seeded
    permutation (seed 0) sends ``round(0.2 n_class)`` images to the test split
    (359 test, 1438 train images).
``cifar10:DIR``
    CIFAR-10 in the standard python-batches layout (``data_batch_1`` ...
    ``data_batch_5``, ``test_batch``, ``batches.meta``: pickled dicts with
    ``b"data"``, uint8 N x 3072, and ``b"labels"``); ``DIR`` is the folder
    ``cifar-10-batches-py`` or its parent.  Never downloaded.  The pickles are
    read by a restricted unpickler that builds only NumPy arrays, lists, dicts,
    numbers and strings, so a crafted file cannot run code.
``folder:DIR``
    ``DIR/train/<class>/*.png`` and ``DIR/test/<class>/*.png`` (also ``.jpg``,
    ``.jpeg``, ``.bmp``), all of one size, 8-bit grayscale or colour; class
    names sorted alphabetically give the labels 0, 1, ...  If any image has
    colour, every image is read as RGB; otherwise the data have one channel.

Pixels are float32 in ``[0, 1]``, labels int64.  ``size`` up-samples by copying
each pixel into a ``k x k`` block (nearest neighbour, ``k = size / native``,
an integer), as the paper's Section 4.2 does; networks adapt their input
channels to the data (:func:`check_model_input` says which image sizes a
registered network reads).

Examples
--------
>>> data = load_dataset("digits")
>>> data.train_x.shape, data.test_x.shape, data.classes, data.input_shape
(torch.Size([1438, 1, 8, 8]), torch.Size([359, 1, 8, 8]), 10, (1, 8, 8))
>>> load_dataset("digits", size=32).input_shape
(1, 32, 32)
"""

from __future__ import annotations

import functools
import io
import math
import os
import pickle
from dataclasses import dataclass, field

import numpy as np
import torch

from pathstats.errors import DataError, PathstatsError

__all__ = [
    "DataError",
    "Dataset",
    "SPEC_FORMS",
    "check_data_spec",
    "check_data_files",
    "load_dataset",
    "load_images",
    "ImageData",
    "BatchTransform",
    "AUGMENTATIONS",
    "parse_augment",
    "channel_stats",
    "upsampling_factor",
    "native_size",
    "native_shape",
    "upsample",
    "minimum_size",
    "check_model_input",
]

SPEC_FORMS = "digits, cifar10:DIR (the python-batches layout) or folder:DIR (DIR/train/<class>/*.png and DIR/test/<class>/*.png)"

DIGITS_TEST_FRACTION = 0.2
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
CIFAR_LAYOUT = "the python-batches layout: cifar-10-batches-py/ with data_batch_1 ... data_batch_5, test_batch and batches.meta"
FOLDER_LAYOUT = "DIR/train/<class>/*.png and DIR/test/<class>/*.png, the same class folders in both"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
_GRAY_MODES = ("1", "L", "LA")
_COLOUR_MODES = ("P", "RGB", "RGBA", "PA")


@dataclass
class Dataset:
    """A classification data set with a train and a test split, on one device.

    ``train_x``/``test_x`` are float32 ``N x C x H x W`` in ``bounds``;
    ``train_y``/``test_y`` int64 labels in ``0 .. classes - 1``.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int
    input_shape: tuple
    bounds: tuple = (0.0, 1.0)
    class_names: tuple = field(default_factory=tuple)
    description: str = ""

    def to(self, device) -> "Dataset":
        """The same data set with its tensors on ``device``."""
        moved = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")}
        return Dataset(**{**self.__dict__, **moved})


# ----------------------------------------------------------------------------- specs


def _parse(spec: str) -> tuple[str, str | None]:
    if not isinstance(spec, str) or not spec:
        raise DataError(f"--data: a data spec must be a string: {SPEC_FORMS}")
    kind, sep, path = spec.partition(":")
    if kind == "digits" and not sep:
        return kind, None
    if kind in ("cifar10", "folder") and sep:
        if not path:
            raise DataError(f"--data {kind}: needs a folder after the colon, e.g. {kind}:/data/{'cifar-10-batches-py' if kind == 'cifar10' else 'images'}")
        return kind, os.path.expanduser(path)
    raise DataError(f"--data: unknown data spec {spec!r}: use {SPEC_FORMS}")


def _cifar_dir(path: str) -> str:
    """The folder holding the CIFAR-10 batches (``path`` or ``path/cifar-10-batches-py``)."""
    for candidate in (path, os.path.join(path, "cifar-10-batches-py")):
        if all(os.path.isfile(os.path.join(candidate, f)) for f in CIFAR_FILES):
            return candidate
    if not os.path.isdir(path):
        raise DataError(f"cifar10: no folder {path!r}; expected {CIFAR_LAYOUT} (it is never downloaded)")
    inner = os.path.join(path, "cifar-10-batches-py")
    where = inner if os.path.isdir(inner) else path
    missing = [f for f in CIFAR_FILES if not os.path.isfile(os.path.join(where, f))]
    raise DataError(f"cifar10: {where!r} lacks {', '.join(missing)}; expected {CIFAR_LAYOUT} (it is never downloaded)")


def _image_files(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f)))


def _folder_classes(path: str) -> list[str]:
    """Sorted class names of an image folder, after checking its layout."""
    if not os.path.isdir(path):
        raise DataError(f"folder: no folder {path!r}; expected {FOLDER_LAYOUT}")
    found = {}
    for split in ("train", "test"):
        root = os.path.join(path, split)
        if not os.path.isdir(root):
            raise DataError(f"folder: {path!r} has no {split}/ sub-folder; expected {FOLDER_LAYOUT}")
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if not classes:
            raise DataError(f"folder: {root!r} has no class sub-folders; expected {FOLDER_LAYOUT}")
        for c in classes:
            if not _image_files(os.path.join(root, c)):
                raise DataError(f"folder: {os.path.join(root, c)!r} holds no image ({', '.join(IMAGE_EXTENSIONS)}); expected {FOLDER_LAYOUT}")
        found[split] = classes
    if found["train"] != found["test"]:
        only_train = sorted(set(found["train"]) - set(found["test"]))
        only_test = sorted(set(found["test"]) - set(found["train"]))
        raise DataError(f"folder: train/ and test/ have different classes (only in train: {only_train}, only in test: {only_test}); expected {FOLDER_LAYOUT}")
    return found["train"]


def native_size(spec: str) -> tuple[int, int]:
    """Height and width of the images of ``spec`` before any up-sampling.

    >>> native_size("digits")
    (8, 8)
    """
    kind, path = _parse(spec)
    if kind == "digits":
        return (8, 8)
    if kind == "cifar10":
        _cifar_dir(path)
        return (32, 32)
    from PIL import Image

    c = _folder_classes(path)[0]
    folder = os.path.join(path, "train", c)
    with Image.open(os.path.join(folder, _image_files(folder)[0])) as image:
        return (image.height, image.width)


def native_shape(spec: str) -> tuple[int, int, int]:
    """Channels, height and width of the images of ``spec`` before up-sampling (a folder's
    channels judged from its first training image).

    >>> native_shape("digits")
    (1, 8, 8)
    """
    kind, path = _parse(spec)
    h, w = native_size(spec)
    if kind == "digits":
        return (1, h, w)
    if kind == "cifar10":
        return (3, h, w)
    c = _folder_classes(path)[0]
    folder = os.path.join(path, "train", c)
    _, colour = _read_image(os.path.join(folder, _image_files(folder)[0]))
    return (3 if colour else 1, h, w)


def _check_size(native: tuple[int, int], size: int | None, name: str) -> int:
    """The up-sampling factor ``size / native``; refuses anything but a positive integer factor."""
    if size is None:
        return 1
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise DataError(f"--size must be a positive integer, got {size!r}")
    h, w = native
    if h != w:
        raise DataError(f"--size needs square images; {name} images are {h} x {w}: leave --size out")
    if size % h:
        multiples = ", ".join(str(h * k) for k in range(1, 5))
        raise DataError(f"--size {size} is not a multiple of the {h}-pixel side of {name}: up-sampling copies each pixel k x k times; use {multiples}, ...")
    return size // h


def upsampling_factor(spec: str, size: int | None) -> int:
    """``size / native side`` of data set ``spec`` (1 without ``size``); refuses a non-integer factor.

    >>> upsampling_factor("digits", 32), upsampling_factor("digits", None)
    (4, 1)
    """
    return _check_size(native_size(spec), size, _parse(spec)[0])


def check_data_spec(spec: str, size: int | None = None) -> None:
    """Refuse, before any work, a data spec (and ``size``) that cannot be loaded.

    Checks the spec's form, that the folder exists with the expected layout
    (file names only; the files' contents are checked when loaded), and that
    ``size`` is an integer multiple of the images' side.

    Raises
    ------
    DataError
        In one line that names the expected layout.

    Examples
    --------
    >>> check_data_spec("digits", size=32)
    >>> check_data_spec("mnist")
    Traceback (most recent call last):
    ...
    pathstats.errors.DataError: --data: unknown data spec 'mnist': use digits, cifar10:DIR (the python-batches layout) or folder:DIR (DIR/train/<class>/*.png and DIR/test/<class>/*.png)
    >>> check_data_spec("digits", size=12)
    Traceback (most recent call last):
    ...
    pathstats.errors.DataError: --size 12 is not a multiple of the 8-pixel side of digits: up-sampling copies each pixel k x k times; use 8, 16, 24, 32, ...
    """
    _check_size(native_size(spec), size, _parse(spec)[0])


# ----------------------------------------------------------------------------- loaders


def _digits(seed: int) -> tuple:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # levels 0..16, exact (pixel = level / 16)
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: int(round(DIGITS_TEST_FRACTION * len(members)))]] = True
    names = tuple(str(c) for c in range(10))
    how = f"scikit-learn digits 8x8, pixels/16, stratified split {1 - DIGITS_TEST_FRACTION:.0%}/{DIGITS_TEST_FRACTION:.0%} (seed {seed})"
    return x[~test], y[~test], x[test], y[test], names, how


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers, strings and NumPy arrays, nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("_reconstruct",),
        ("numpy._core.multiarray", "_reconstruct"): ("_reconstruct",),
        ("numpy.core.multiarray", "scalar"): ("scalar",),
        ("numpy._core.multiarray", "scalar"): ("scalar",),
        ("numpy", "ndarray"): None,
        ("numpy", "dtype"): None,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to build {module}.{name}")
        if module == "numpy":
            return getattr(np, name)
        try:
            from numpy._core import multiarray
        except ImportError:  # NumPy < 2
            from numpy.core import multiarray
        return getattr(multiarray, name)


def _unpickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except Exception as exc:  # any unreadable file is a malformed data set
        raise DataError(f"cifar10: cannot read {path!r} ({type(exc).__name__}: {exc}); expected {CIFAR_LAYOUT}") from None
    if not isinstance(data, dict):
        raise DataError(f"cifar10: {path!r} is not a pickled dict; expected {CIFAR_LAYOUT}")
    return data


def _cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels is None:
        raise DataError(f"cifar10: {path!r} lacks b'data' (uint8, N x 3072) or b'labels'; expected {CIFAR_LAYOUT}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise DataError(f"cifar10: {path!r} has {len(data)} images but {labels.size} labels; expected {CIFAR_LAYOUT}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar(path: str) -> tuple:
    where = _cifar_dir(path)
    meta = _unpickle(os.path.join(where, "batches.meta"))
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])) or tuple(str(c) for c in range(10))
    train = [_cifar_batch(os.path.join(where, f"data_batch_{i}")) for i in range(1, 6)]
    test_x, test_y = _cifar_batch(os.path.join(where, "test_batch"))
    train_x = np.concatenate([b[0] for b in train])
    train_y = np.concatenate([b[1] for b in train])
    for labels in (train_y, test_y):
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise DataError(f"cifar10: labels outside 0..{len(names) - 1} in {where!r}; expected {CIFAR_LAYOUT}")
    return train_x, train_y, test_x, test_y, names, f"CIFAR-10 python batches in {where}, pixels/255"


def _read_image(path: str) -> tuple[np.ndarray, bool]:
    """An image as uint8 ``H x W x C`` and whether it has colour."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in _GRAY_MODES:
                return np.asarray(image.convert("L"))[..., None], False
            if mode in _COLOUR_MODES:
                return np.asarray(image.convert("RGB")), True
    except OSError as exc:
        raise DataError(f"folder: cannot read image {path!r} ({exc})") from None
    raise DataError(f"folder: {path!r} has image mode {mode!r}; only 8-bit grayscale or colour images (modes {', '.join(_GRAY_MODES + _COLOUR_MODES)}) are read")


def _folder(path: str) -> tuple:
    classes = _folder_classes(path)
    splits, colour, shape = {}, False, None
    for split in ("train", "test"):
        images, labels = [], []
        for label, c in enumerate(classes):
            folder = os.path.join(path, split, c)
            for f in _image_files(folder):
                image, has_colour = _read_image(os.path.join(folder, f))
                if shape is None:
                    shape = image.shape[:2]
                elif image.shape[:2] != shape:
                    raise DataError(f"folder: {os.path.join(folder, f)!r} is {image.shape[0]} x {image.shape[1]}, others are {shape[0]} x {shape[1]}: all images must have one size")
                colour |= has_colour
                images.append(image)
                labels.append(label)
        splits[split] = (images, np.asarray(labels, dtype=np.int64))
    channels = 3 if colour else 1

    def stack(images):
        x = np.stack([np.broadcast_to(im, im.shape[:2] + (channels,)) for im in images])
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.uint8)

    how = f"image folder {path}, {'RGB' if colour else 'grayscale'} pixels/255, classes {', '.join(classes)}"
    return stack(splits["train"][0]), splits["train"][1], stack(splits["test"][0]), splits["test"][1], tuple(classes), how


@dataclass
class ImageData:
    """A data set at its native size, as uint8 levels (what ``pathstats train`` keeps in memory).

    ``train_u8``/``test_u8`` are uint8 ``N x C x h x w``; a pixel in ``[0, 1]`` is
    ``level / levels`` (``levels`` 16 for digits, whose scikit-learn levels are
    0..16, 255 otherwise), so the float images are exact.  :class:`BatchTransform`
    turns a batch of them into the network's input on the device.
    """

    name: str
    train_u8: torch.Tensor
    train_y: torch.Tensor
    test_u8: torch.Tensor
    test_y: torch.Tensor
    classes: int
    levels: int
    class_names: tuple = field(default_factory=tuple)
    description: str = ""

    @property
    def native_shape(self) -> tuple:
        return tuple(self.train_u8.shape[1:])

    def pixels(self, u8: torch.Tensor) -> torch.Tensor:
        """Float32 pixels in ``[0, 1]`` of uint8 levels (exact: ``level / levels``)."""
        return u8.to(torch.float32) / float(self.levels)

    def split_validation(self, n: int, limit: int | None = None) -> tuple:
        """``(train_idx, val_idx)`` of the first ``limit`` training images (default all):
        ``n`` of them held out for validation, fixed (a permutation seeded 0), both sorted.

        >>> data = load_images("digits")
        >>> train, val = data.split_validation(100)
        >>> len(train), len(val), len(set(train.tolist()) & set(val.tolist()))
        (1338, 100, 0)
        >>> [len(i) for i in data.split_validation(10, limit=50)]
        [40, 10]
        """
        total = self.train_u8.shape[0] if limit is None else min(int(limit), self.train_u8.shape[0])
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < total:
            raise DataError(f"--val-split must be an integer in 0..{total - 1} (the {total} training images used), got {n!r}")
        order = torch.randperm(total, generator=torch.Generator().manual_seed(0))
        val = order[:n].sort().values
        train = order[n:].sort().values
        return train.to(self.train_u8.device), val.to(self.train_u8.device)


#: Environment variable naming a folder where :func:`load_images` keeps the uint8 arrays of
#: ``cifar10:``/``folder:`` data as ``.npy`` files, memory-mapped by every process that loads
#: them: the local executor sets it for ``--jobs N`` so the N workers share one copy (the
#: pages of the mapping are shared through the page cache).
DATA_CACHE_ENV = "PATHSTATS_DATA_CACHE"


def _source_key(kind: str, path: str) -> str:
    """A hash of the data's files (paths, sizes, modification times): a changed file gets a new cache entry."""
    import hashlib

    root = _cifar_dir(path) if kind == "cifar10" else path
    entries = []
    for folder, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            st = os.stat(os.path.join(folder, f))
            entries.append(f"{os.path.relpath(os.path.join(folder, f), root)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join([kind, os.path.realpath(root)] + entries).encode()).hexdigest()[:24]


def _shared(cache: str, kind: str, path: str, loader) -> tuple:
    """The loader's arrays, memory-mapped from ``cache`` (written once, atomically, by the first process)."""
    folder = os.path.join(cache, _source_key(kind, path))
    names = ("train_x", "train_y", "test_x", "test_y")
    meta_path = os.path.join(folder, "meta.json")
    if not os.path.exists(meta_path):
        import json
        import tempfile

        arrays = loader()
        os.makedirs(cache, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=cache, prefix=".partial-")
        for name, array in zip(names, arrays[:4]):
            np.save(os.path.join(tmp, name + ".npy"), np.ascontiguousarray(array))
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump({"names": list(arrays[4]), "how": arrays[5]}, f)
        try:
            os.rename(tmp, folder)  # atomic: a folder that exists is complete
        except OSError:  # another process got there first: use its copy
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    import json

    with open(meta_path) as f:
        meta = json.load(f)
    # copy-on-write mappings: the pages stay shared between processes as long as nobody writes them
    mapped = [np.load(os.path.join(folder, name + ".npy"), mmap_mode="c") for name in names]
    return (*mapped, tuple(meta["names"]), meta["how"])


def load_images(spec: str, seed: int = 0, device="cpu") -> ImageData:
    """Load ``spec`` at its native size as uint8 levels on ``device`` (no up-sampled copy).

    Examples
    --------
    >>> data = load_images("digits")
    >>> data.train_u8.dtype, data.native_shape, data.levels, int(data.train_u8.max())
    (torch.uint8, (1, 8, 8), 16, 16)
    """
    kind, path = _parse(spec)
    native = native_size(spec)
    _check_memory(kind, path, native, 1, device)
    loader = {"digits": lambda: _digits(seed), "cifar10": lambda: _cifar(path), "folder": lambda: _folder(path)}[kind]
    cache = os.environ.get(DATA_CACHE_ENV)
    if cache and kind != "digits" and torch.device(device).type == "cpu":
        train_x, train_y, test_x, test_y, names, how = _shared(cache, kind, path, loader)
    else:
        train_x, train_y, test_x, test_y, names, how = loader()
    tensors = [torch.from_numpy(a if isinstance(a, np.memmap) else np.ascontiguousarray(a)).to(device)
               for a in (train_x, train_y, test_x, test_y)]
    return ImageData(name=spec, train_u8=tensors[0], train_y=tensors[1], test_u8=tensors[2], test_y=tensors[3],
                     classes=len(names), levels=16 if kind == "digits" else 255, class_names=names, description=how)


#: Augmentations :class:`BatchTransform` applies (the authors' code: random crop with
#: zero padding, horizontal flip; both at the native size, before up-sampling).
AUGMENTATIONS = ("crop", "flip")


def parse_augment(text: str) -> tuple:
    """``""``, ``"crop"``, ``"flip"`` or ``"crop,flip"`` as a tuple of names.

    >>> parse_augment("crop,flip"), parse_augment("")
    (('crop', 'flip'), ())
    """
    if not isinstance(text, str):
        raise DataError(f"--augment must be a string such as crop,flip, got {text!r}")
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in AUGMENTATIONS]
    if bad or len(set(names)) != len(names):
        raise DataError(f"--augment takes a comma-separated subset of {', '.join(AUGMENTATIONS)}, got {text!r}")
    return tuple(n for n in AUGMENTATIONS if n in names)


class BatchTransform:
    """uint8 images at native size -> the network's input, per batch on the batch's device.

    In order: pixels ``level / levels``; optional augmentation (random crop of the
    native image padded by ``crop_pad`` zero pixels on each side, horizontal flip
    with probability 1/2, each drawn per image from a seeded CPU generator, so a
    batch depends only on its seed); up-sampling by copying each pixel
    ``factor x factor`` times; optional per-channel normalisation ``(x - mean) / std``.
    :attr:`bounds` is the box the inputs live in: ``(0, 1)``, or the normalised image
    of ``[0, 1]`` (per-channel tensors ``C x 1 x 1``).

    Examples
    --------
    >>> data = load_images("digits")
    >>> t = BatchTransform(data.levels, factor=4)
    >>> t(data.train_u8[:2]).shape
    torch.Size([2, 1, 32, 32])
    >>> torch.equal(t(data.train_u8[:5]), load_dataset("digits", size=32).train_x[:5])
    True
    """

    def __init__(self, levels: int, factor: int = 1, mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                 augment: tuple = (), crop_pad: int = 0) -> None:
        self.levels, self.factor, self.augment, self.crop_pad = int(levels), int(factor), tuple(augment), int(crop_pad)
        self.mean = None if mean is None else mean.to(torch.float32).reshape(-1, 1, 1)
        self.std = None if std is None else std.to(torch.float32).reshape(-1, 1, 1)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    @property
    def bounds(self):
        """The input box: ``(0.0, 1.0)`` or per-channel tensors, the normalised ``0`` and ``1``."""
        if self.mean is None:
            return (0.0, 1.0)
        zero = torch.zeros_like(self.mean)
        return (self._normalise(zero), self._normalise(zero + 1.0))

    def __call__(self, u8: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """The network's input for a batch of uint8 images; augmented iff ``seed`` is given."""
        x = u8.to(torch.float32) / float(self.levels)
        if seed is not None and self.augment:
            x = self._augmented(x, torch.Generator().manual_seed(int(seed)))
        if self.factor > 1:
            n, c, h, w = x.shape
            k = self.factor
            x = x[:, :, :, None, :, None].expand(n, c, h, k, w, k).reshape(n, c, h * k, w * k)
        return self._normalise(x)

    def _augmented(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        if "crop" in self.augment and self.crop_pad > 0:
            p = self.crop_pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))  # zero pixels, as the authors' RandomCrop
            offsets = torch.randint(0, 2 * p + 1, (n, 2), generator=generator).to(x.device)
            rows = offsets[:, :1] + torch.arange(h, device=x.device)  # n x h
            cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # n x w
            batch = torch.arange(n, device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
        if "flip" in self.augment:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x


def channel_stats(data: ImageData, idx: torch.Tensor | None = None) -> tuple:
    """Per-channel mean and standard deviation (population) of the pixels of the training images ``idx``.

    >>> mean, std = channel_stats(load_images("digits"))
    >>> mean.shape, 0.2 < float(mean) < 0.4
    (torch.Size([1]), True)
    """
    idx = torch.arange(data.train_u8.shape[0], device=data.train_u8.device) if idx is None else idx
    if idx.numel() * math.prod(data.train_u8.shape[1:]) * 8 <= 2**28:
        # small splits (digits, smoke runs): one float64 pass, exactly as runs started before the chunked sums
        x = data.train_u8[idx].to(torch.float64) / float(data.levels)
        mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3), unbiased=False)
        return mean.to(torch.float32), std.clamp_min(1e-12).to(torch.float32)
    # sums of levels and squared levels in float64, chunk by chunk: no float copy of the whole split
    # (CIFAR-10's would be 1.2 GB); the levels are integers, so the sums are exact
    total = torch.zeros(data.train_u8.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, int(idx.numel()), 4096):
        chunk = data.train_u8[idx[start:start + 4096]].to(torch.float64)
        total += chunk.sum(dim=(0, 2, 3)).cpu()
        squares += chunk.square().sum(dim=(0, 2, 3)).cpu()
    count = int(idx.numel()) * data.train_u8.shape[2] * data.train_u8.shape[3]
    mean_level = total / count
    var_level = (squares / count - mean_level.square()).clamp_min(0.0)
    mean = mean_level / float(data.levels)
    std = var_level.sqrt() / float(data.levels)
    return mean.to(torch.float32), std.clamp_min(1e-12).to(torch.float32)


def load_dataset(spec: str, size: int | None = None, seed: int = 0, device="cpu") -> Dataset:
    """Load the data set ``spec`` on ``device``, up-sampled to ``size`` x ``size`` pixels, as float32.

    The whole set at ``size`` (for the attack command and small evaluations);
    ``pathstats train`` keeps :func:`load_images`' uint8 copy instead.

    Parameters
    ----------
    spec : str
        ``digits``, ``cifar10:DIR`` or ``folder:DIR`` (see the module's description).
    size : int, optional
        Side of the up-sampled images, an integer multiple of the native side
        (each pixel is copied into a block of ``size / native`` squared pixels).
    seed : int
        Seed of the digits' train/test split.  Keep the default 0, the project's
        fixed split: a model's training seed must not reach it.  The other data
        sets come with their own split and ignore it.
    device : str or torch.device
        Where the tensors live (the model's device, so batches need no copies).

    Raises
    ------
    DataError
        Before loading anything, if the spec, its folder layout or ``size`` is
        wrong; while loading, if a file is malformed.

    Examples
    --------
    >>> data = load_dataset("digits", size=16)
    >>> data.train_x.dtype, data.train_y.dtype, float(data.train_x.max()), data.bounds
    (torch.float32, torch.int64, 1.0, (0.0, 1.0))
    >>> bool((data.train_x[:, :, ::2, ::2] == data.train_x[:, :, 1::2, 1::2]).all())
    True
    """
    kind, path = _parse(spec)
    native = native_size(spec)
    factor = _check_size(native, size, kind)
    _check_memory(kind, path, native, factor, device)
    images = load_images(spec, seed=seed, device=device)
    to_float = BatchTransform(images.levels, factor)
    train_x, test_x = to_float(images.train_u8), to_float(images.test_u8)
    how = images.description + (f", up-sampled x{factor} by pixel copying" if factor > 1 else "")
    return Dataset(
        name=spec if size is None else f"{spec}@{size}",
        train_x=train_x,
        train_y=images.train_y,
        test_x=test_x,
        test_y=images.test_y,
        classes=images.classes,
        input_shape=tuple(train_x.shape[1:]),
        class_names=images.class_names,
        description=how,
    )


def _check_memory(kind: str, path: str | None, native: tuple, factor: int, device) -> None:
    """Refuse a data set that cannot fit, as float32 at its up-sampled size, in the device's memory."""
    if kind == "digits":
        images, channels = 1797, 1
    elif kind == "cifar10":
        images, channels = 60000, 3  # the standard batches; a smaller copy only needs less
    else:
        images = sum(len(_image_files(os.path.join(path, split, c))) for split in ("train", "test") for c in _folder_classes(path))
        channels = 3  # at most
    needed = images * channels * native[0] * native[1] * factor**2 * 4
    device = torch.device(device)
    if device.type == "cuda":
        total = torch.cuda.mem_get_info(device)[1]
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not available on this platform
            return
    if needed > total:
        side = native[0] * factor
        raise DataError(f"{kind} up-sampled to {side} x {side} takes up to {needed / 2**30:.1f} GiB as float32, more than the "
                        f"{total / 2**30:.1f} GiB of {device.type} memory here: use a smaller --size")


def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Up-sample square images ``N x C x s x s`` to ``size`` by copying each pixel ``k x k`` times.

    ``k = size / s`` must be an integer: nearest-neighbour up-sampling, no
    interpolation (the paper's Section 4.2).

    Examples
    --------
    >>> upsample(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), 4)[0, 0]
    tensor([[1., 1., 2., 2.],
            [1., 1., 2., 2.],
            [3., 3., 4., 4.],
            [3., 3., 4., 4.]])
    """
    if x.dim() != 4:
        raise DataError(f"upsample takes images N x C x H x W, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    k = _check_size((h, w), size, "the images")
    return x[:, :, :, None, :, None].expand(n, c, h, k, w, k).reshape(n, c, h * k, w * k)


# ----------------------------------------------------------------------------- nets vs data


@functools.lru_cache(maxsize=None)
def minimum_size(arch: str, channels: int = 3, largest: int = 1024) -> int:
    """Smallest square image side that registered network ``arch`` reads.

    Found by running the network on the meta device (shapes only, no
    arithmetic) for sides 1, 2, ...; e.g. ``conv6``'s five stride-2 reflect-
    padded convolutions need 17 pixels.

    >>> minimum_size("conv6"), minimum_size("conv8"), minimum_size("fc")
    (17, 16, 1)
    """
    for side in range(1, largest + 1):
        if _reads(arch, (channels, side, side)):
            return side
    raise DataError(f"{arch} reads no square image up to {largest} pixels")


def _reads(arch: str, input_shape: tuple, native_side: int | None = None) -> bool:
    from pathstats import nets
    from pathstats.nets.base import meta_forward

    try:
        with torch.device("meta"):  # shapes only: no weights drawn, no arithmetic
            model = nets.build(arch, input_shape, native_side=native_side)
        meta_forward(model, input_shape, copy=False)
        return True
    except PathstatsError as exc:
        if isinstance(exc, nets.UnknownArchitectureError):
            raise
        return False
    except (RuntimeError, ValueError, NotImplementedError):
        return False


def check_model_input(arch: str, input_shape: tuple, native_side: int | None = None) -> None:
    """Refuse, in one line with the ``--size`` to use, data that network ``arch`` cannot read.

    Registered networks take their input channels from the data (1 for
    digits, 3 for CIFAR-10); their depth and strides set a smallest image side.

    Examples
    --------
    >>> check_model_input("conv6-avgpool", (1, 8, 8))
    >>> check_model_input("conv6", (1, 8, 8))
    Traceback (most recent call last):
    ...
    pathstats.errors.DataError: conv6 reads images of at least 17 x 17 pixels, and the data are 8 x 8: up-sample with --size 24 (or any multiple of 8 from 24 on)
    >>> check_model_input("conv8", (1, 32, 32), native_side=8)
    Traceback (most recent call last):
    ...
    pathstats.errors.DataError: conv8 cannot read 32 x 32 images with its dilation relative to a side of 8 pixels (its last maps are narrower than their reflect padding); use a larger --native-side, e.g. 16
    """
    if _reads(arch, input_shape, native_side):
        return
    side = input_shape[-1]
    if native_side is not None and _reads(arch, input_shape):
        larger = next((n for n in (2 * native_side * 2**k for k in range(12)) if _reads(arch, input_shape, n)), None)
        raise DataError(
            f"{arch} cannot read {input_shape[1]} x {side} images with its dilation relative to a side of {native_side} pixels "
            f"(its last maps are narrower than their reflect padding); use a larger --native-side"
            + (f", e.g. {larger}" if larger else ""))
    if len(input_shape) != 3:
        raise DataError(f"{arch} cannot read inputs of shape {tuple(input_shape)}")
    least = minimum_size(arch, input_shape[0])
    suggestion = side * math.ceil(least / side)
    raise DataError(
        f"{arch} reads images of at least {least} x {least} pixels, and the data are {input_shape[1]} x {side}: "
        f"up-sample with --size {suggestion} (or any multiple of {side} from {suggestion} on)"
    )


def check_data_files(spec: str) -> None:
    """Refuse, before any training, data whose files cannot be read, in one line.

    :func:`check_data_spec` looks at names only; this reads the contents: every
    CIFAR-10 batch is unpickled and its arrays checked (a truncated or damaged batch is
    refused), every image of a folder is opened (its header: a readable format, an
    8-bit mode and one size for all).  ``digits`` is embedded and always readable.

    Examples
    --------
    >>> check_data_files("digits")
    """
    kind, path = _parse(spec)
    if kind == "cifar10":
        where = _cifar_dir(path)
        _unpickle(os.path.join(where, "batches.meta"))
        for name in CIFAR_FILES[:-1]:
            _cifar_batch(os.path.join(where, name))
    elif kind == "folder":
        from PIL import Image

        shape = None
        for split in ("train", "test"):
            for c in _folder_classes(path):
                folder = os.path.join(path, split, c)
                for f in _image_files(folder):
                    file = os.path.join(folder, f)
                    try:
                        with Image.open(file) as image:
                            mode, size = image.mode, image.size
                    except OSError as exc:
                        raise DataError(f"folder: cannot read image {file!r} ({exc})") from None
                    if mode not in _GRAY_MODES + _COLOUR_MODES:
                        raise DataError(f"folder: {file!r} has image mode {mode!r}; only 8-bit grayscale or colour "
                                        f"images (modes {', '.join(_GRAY_MODES + _COLOUR_MODES)}) are read")
                    if shape is not None and size != shape:
                        raise DataError(f"folder: {file!r} is {size[1]} x {size[0]}, others are {shape[1]} x {shape[0]}: "
                                        "all images must have one size")
                    shape = size
