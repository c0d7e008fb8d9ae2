"""Checks of user input, run before any long computation.

Each function raises :class:`pathstats.errors.InvalidArgumentError` (a
:class:`~pathstats.errors.PathstatsError` and a ``ValueError``) with a message that
names the option and says what to give instead, so that a command can refuse a bad
input in one line before the work starts.  The ``name`` argument is how the value
is called in that message (``"--seed"`` on the command line, ``"seed"`` in Python).
"""

from __future__ import annotations

import math
import os
from typing import Any

from ._io import check_figure_path, check_output_path
from .errors import InvalidArgumentError

__all__ = [
    "MAX_SEED",
    "check_int",
    "check_seed",
    "check_classes",
    "check_samples",
    "check_device",
    "check_memory",
    "physical_memory",
    "check_shape",
    "parse_int_list",
    "parse_shape",
    "parse_architectures",
    "check_architecture_input",
    "PREDICT_BYTES_PER_COORDINATE",
    "check_output_path",
    "check_figure_path",
]

#: Seeds are integers in ``[0, MAX_SEED)`` (what a 64-bit signed seed can hold).
MAX_SEED = 2**63


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None, hint: str = "") -> int:
    """``value`` as an int within ``[minimum, maximum]``, or a one-line refusal.

    Booleans and non-integral numbers are refused (``True`` is not a count).

    Examples
    --------
    >>> check_int(3, "--samples", minimum=2)
    3
    >>> check_int(0, "--batch", minimum=1, hint="a number of initialisations")
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: --batch must be at least 1 (a number of initialisations), got 0
    """
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise InvalidArgumentError(f"{name} must be an integer{f' ({hint})' if hint else ''}, got {value!r}")
    value = int(value)
    detail = f" ({hint})" if hint else ""
    if minimum is not None and value < minimum:
        raise InvalidArgumentError(f"{name} must be at least {minimum}{detail}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidArgumentError(f"{name} must be at most {maximum}{detail}, got {value}")
    return value


def check_seed(seed: Any, name: str = "--seed") -> int:
    """A seed: an integer with ``0 <= seed < 2**63``.

    Examples
    --------
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: --seed must be an integer from 0 to 2**63 - 1, got -1
    """
    if isinstance(seed, bool) or not hasattr(seed, "__index__") or not 0 <= int(seed) < MAX_SEED:
        raise InvalidArgumentError(f"{name} must be an integer from 0 to 2**63 - 1, got {seed!r}")
    return int(seed)


def check_classes(classes: Any, name: str = "--classes") -> int:
    """A number of classes ``K >= 2`` (a softmax over one class has no gradient).

    Examples
    --------
    >>> check_classes(0)
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: --classes must be at least 2 (a softmax over fewer classes has no gradient), got 0
    """
    return check_int(classes, name, minimum=2, hint="a softmax over fewer classes has no gradient")


def check_samples(samples: Any, minimum: int, name: str = "--samples", why: str = "") -> int:
    """A sample count of at least ``minimum``; ``why`` says what needs that many.

    Examples
    --------
    >>> check_samples(10, 17, why="the map test of conv6 3x32x32 (15 bins)")
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: --samples must be at least 17 (the map test of conv6 3x32x32 (15 bins)), got 10
    """
    return check_int(samples, name, minimum=minimum, hint=why or "initialisations")


def check_device(device: str, name: str = "--device") -> str:
    """A torch device that exists here: ``cpu``, or ``cuda``/``cuda:N`` with CUDA available.

    Examples
    --------
    >>> check_device("cpu")
    'cpu'
    >>> check_device("gpu")
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: --device must be cpu, cuda or cuda:N, got 'gpu'
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"{name} must be cpu, cuda or cuda:N, got {device!r}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgumentError(f"{name} {device}: no CUDA device is available here; use {name} cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise InvalidArgumentError(f"{name} {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return str(device)


def check_shape(shape: Any, name: str = "input_shape") -> tuple:
    """One input's shape: a non-empty tuple of positive ints (batch axis excluded).

    Examples
    --------
    >>> check_shape([3, 32, 32])
    (3, 32, 32)
    >>> check_shape(3072)
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: input_shape must be a tuple of positive ints such as (3, 32, 32) (one input, batch axis excluded), not the int 3072; for a flat input of 3072 numbers write (3072,)
    """
    example = "such as (3, 32, 32) (one input, batch axis excluded)"
    if isinstance(shape, (int, float)) and not isinstance(shape, bool):
        raise InvalidArgumentError(f"{name} must be a tuple of positive ints {example}, not the {type(shape).__name__} "
                                   f"{shape!r}; for a flat input of {shape} numbers write ({shape},)")
    try:
        dims = tuple(shape)
    except TypeError:
        raise InvalidArgumentError(f"{name} must be a tuple of positive ints {example}, not {type(shape).__name__}") from None
    if not dims or any(isinstance(n, bool) or not hasattr(n, "__index__") or int(n) < 1 for n in dims):
        raise InvalidArgumentError(f"{name} must be a non-empty tuple of positive ints {example}, got {shape!r}")
    return tuple(int(n) for n in dims)


def parse_int_list(text: str, name: str, *, minimum: int = 1, min_items: int = 1, why: str = "") -> list:
    """Comma-separated integers, each ``>= minimum``, at least ``min_items`` of them, no repeats.

    Examples
    --------
    >>> parse_int_list("32, 64", "--sizes", min_items=2)
    [32, 64]
    >>> parse_int_list("32", "--sizes", min_items=2, why="a slope needs two sizes")
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: --sizes needs at least 2 values (a slope needs two sizes), got '32'; e.g. 32,64,128
    """
    items = [item.strip() for item in str(text).split(",")]
    try:
        values = [int(item) for item in items]
    except ValueError:
        raise InvalidArgumentError(f"{name} takes comma-separated integers like 32,64,128, not {text!r}") from None
    if len(values) < min_items:
        raise InvalidArgumentError(f"{name} needs at least {min_items} values{f' ({why})' if why else ''}, got {text!r}; "
                                   "e.g. 32,64,128")
    small = [v for v in values if v < minimum]
    if small:
        raise InvalidArgumentError(f"{name} values must be at least {minimum}, got {small[0]}")
    return _no_repeats(values, name)


def _no_repeats(items: list, name: str) -> list:
    """``items``, or a refusal naming the first item listed twice."""
    repeated = next((item for k, item in enumerate(items) if item in items[:k]), None)
    if repeated is not None:
        raise InvalidArgumentError(f"{name} lists {repeated!r} more than once")
    return items


def parse_shape(text: str, name: str = "--shape") -> tuple:
    """``"C,H,W"`` (or any number of axes) as a tuple of positive ints.

    Examples
    --------
    >>> parse_shape("3,64,48")
    (3, 64, 48)
    """
    try:
        shape = tuple(int(n) for n in str(text).split(","))
    except ValueError:
        raise InvalidArgumentError(f"{name} takes comma-separated integers like 3,32,32, not {text!r}") from None
    if min(shape) < 1:
        raise InvalidArgumentError(f"{name} needs positive sizes, got {text!r}")
    if math.prod(shape) > 2**40:
        raise InvalidArgumentError(f"{name} {text} has {math.prod(shape)} coordinates; that cannot fit in memory")
    return shape


def parse_architectures(text: str, name: str = "--arch") -> list:
    """Comma-separated registered architecture names, all checked before any work.

    Examples
    --------
    >>> parse_architectures("conv6-strided,conv6-avgpool")
    ['conv6-strided', 'conv6-avgpool']
    >>> parse_architectures("conv6,conv7")
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: --arch: unknown architecture 'conv7'; registered: conv6, conv8, conv6-avgpool, conv6-maxpool, conv6-strided, fc, resnet, resnet18, resnet18-nopool, vgg
    """
    from pathstats import nets

    names = [item.strip() for item in str(text).split(",")]
    if any(not n for n in names):
        raise InvalidArgumentError(f"{name} has an empty name in {text!r}; separate architectures by single commas")
    for n in names:
        if n not in nets.ARCHITECTURES:
            raise InvalidArgumentError(f"{name}: unknown architecture {n!r}; registered: {', '.join(nets.ARCHITECTURES)}")
    return _no_repeats(names, name)


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def check_memory(nbytes: float, what: str, advice: str) -> None:
    """Refuse a run that would keep more than 80% of this machine's memory.

    ``what`` says what the memory is for and ``advice`` how to need less.

    Examples
    --------
    >>> check_memory(2**80, "--samples 10**20 keeps N x d gradients", "use fewer --samples")
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: --samples 10**20 keeps N x d gradients: about 1.13e+15 GiB, more than this machine has (... GiB); use fewer --samples
    """
    total = physical_memory()
    if total and nbytes > 0.8 * total:
        raise InvalidArgumentError(f"{what}: about {nbytes / 2**30:.3g} GiB, more than this machine has "
                                   f"({total / 2**30:.0f} GiB); {advice}")


#: Peak memory of :func:`pathstats.predict` per input coordinate (float64 maps,
#: exact path counts as Python ints, fingerprints): about 150-200 bytes, measured
#: on conv6 at 3x256x256 and 3x1024x1024.
PREDICT_BYTES_PER_COORDINATE = 200


def _reads(arch: str, shape: tuple, classes: int) -> bool:
    import torch

    from pathstats import nets
    from pathstats.nets.base import meta_forward

    try:
        with torch.device("meta"):
            model = nets.get(arch).build(shape, classes)
        meta_forward(model, shape, copy=False)
        return True
    except (RuntimeError, ValueError, IndexError, TypeError, InvalidArgumentError):
        return False


def _smallest_square_side(arch: str, shape: tuple, classes: int, limit: int = 4096) -> int | None:
    """For a square image shape ``(C, s, s)`` that ``arch`` cannot read: the smallest larger side it reads
    (doubling, then bisection, on the meta device: no arithmetic), or None (not square, or none up to ``limit``)."""
    if len(shape) != 3 or shape[1] != shape[2]:
        return None
    low, high = shape[1], max(2 * shape[1], 2)
    while not _reads(arch, (shape[0], high, high), classes):
        low, high = high, 2 * high
        if high > limit:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _reads(arch, (shape[0], middle, middle), classes) else (middle, high)
    return high


def check_architecture_input(arch: str, shape: tuple, classes: int = 10, *, predict: bool = True) -> int:
    """Check that registered ``arch`` reads inputs of ``shape`` and fits in memory, without
    allocating it (the network is built on PyTorch's ``meta`` device); return its
    number of parameters.

    With ``predict`` the memory of a prediction (:data:`PREDICT_BYTES_PER_COORDINATE`
    per input coordinate) is counted too.

    Examples
    --------
    >>> check_architecture_input("fc", (64,)) > 0
    True
    >>> check_architecture_input("conv6", (3, 2, 2))
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: conv6 cannot read inputs of shape (3, 2, 2) (its smallest 3 x s x s input has s = 17): ...
    """
    import torch

    from pathstats import nets
    from pathstats.nets.base import meta_forward

    architecture = nets.get(arch)
    try:  # building it, then a forward pass without arithmetic, finds the layers the shape does not fit
        with torch.device("meta"):
            model = architecture.build(shape, classes)
        meta_forward(model, shape, copy=False)
    except (RuntimeError, ValueError, IndexError, TypeError, InvalidArgumentError) as exc:
        smallest = _smallest_square_side(arch, shape, classes)
        hint = f" (its smallest {shape[0]} x s x s input has s = {smallest})" if smallest else ""
        reason = str(exc).splitlines()[0].split(": ", 1)[-1] if isinstance(exc, InvalidArgumentError) else \
            str(exc).splitlines()[0]
        raise InvalidArgumentError(f"{arch} cannot read inputs of shape {tuple(shape)}{hint}: {reason}") from None
    params = sum(p.numel() for p in model.parameters())
    d = math.prod(shape)
    need = 4 * params + (PREDICT_BYTES_PER_COORDINATE * d if predict else 0)
    check_memory(need, f"{arch} at input {'x'.join(map(str, shape))} ({params} weights, d = {d})",
                 "give a smaller input")
    return params
