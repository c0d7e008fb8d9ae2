"""Functional forms read as their module counterparts, and torch.fx tracing in user terms.

Researchers write ``F.relu(x)``, ``F.avg_pool2d(x, 2)``, ``x.mean((2, 3))`` or
``F.linear(x, self.fc.weight)`` as often as ``nn.ReLU()`` or ``nn.AvgPool2d(2)``.
:func:`modularise` rewrites a traced graph so that each such call becomes a
call of the equivalent ``torch.nn`` layer (built by the table
:data:`FUNCTIONAL_FORMS`, from the call's own arguments), so every reader of the
graph (the layer rules of :func:`pathstats.layer_engine.trace.read_model` and the Monte Carlo
interpreter :class:`pathstats.verify.batched.BatchedInitialisations`) sees one
form, and each operation has one rule.

:func:`symbolic_trace` traces a module as :func:`torch.fx.symbolic_trace` does,
but turns tracing failures into one :class:`TracingError` line, and
:func:`unsupported_operation` names an operation without a rule the way the user
wrote it, with the line of their ``forward`` and the layer to use instead.
"""

from __future__ import annotations

import operator
import os
import traceback
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import TracingError, UnsupportedLayerError
from .rules import MODULE_RULES, Scale

__all__ = [
    "TracingError",
    "FUNCTIONAL_FORMS",
    "RELU_FUNCTIONS",
    "FLATTEN_FUNCTIONS",
    "FLATTEN_METHODS",
    "SCALE_FORMS",
    "symbolic_trace",
    "modularise",
    "operation_name",
    "located",
    "unsupported_operation",
]


# --------------------------------------------------------------------- the table
# Each entry maps an fx target (a function, or the name of a Tensor method) to a
# constructor taking the call's arguments (input first, as torch names them) and
# returning the equivalent layer, or None where the call has no module form.


def _avg_pool(cls) -> Callable:
    def make(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
        if cls is nn.AvgPool1d:
            if divisor_override is not None:
                return None
            return cls(kernel_size, stride, padding, ceil_mode, count_include_pad)
        return cls(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    return make


def _max_pool(cls) -> Callable:
    def make(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        return None if return_indices else cls(kernel_size, stride, padding, dilation, False, ceil_mode)

    return make


def _adaptive(cls) -> Callable:
    def make(input, output_size, return_indices=False):
        return None if return_indices else cls(output_size)

    return make


def _relu(input, inplace=False):
    return nn.ReLU()


def _leaky_relu(input, negative_slope=0.01, inplace=False):
    return nn.LeakyReLU(negative_slope)


def _clamp(input, min=None, max=None):
    return nn.ReLU() if min == 0 and max is None else None


def _dropout(cls) -> Callable:
    def make(input, p=0.5, training=True, inplace=False):
        return cls(p).train(bool(training))  # the rule refuses training mode

    return make


def _interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None, recompute_scale_factor=None, antialias=False):
    if antialias:
        return None
    return nn.Upsample(size, scale_factor, mode, align_corners, recompute_scale_factor)


def _flatten(input, start_dim=0, end_dim=-1):
    return nn.Flatten(start_dim, end_dim)


def _constant(value) -> float | None:
    """A Python number (fx bakes plain attributes like ``self.scale`` in as constants)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _times(a, b=None):  # x * c or c * x: exactly one operand is the tensor
    if isinstance(a, fx.Node) == isinstance(b, fx.Node):
        return None
    return _constant(b if isinstance(a, fx.Node) else a)


def _divided(a, b=None):  # x / c (not c / x)
    c = _constant(b) if isinstance(a, fx.Node) else None
    return None if not c else 1.0 / c


def _negated(a):
    return -1.0


RELU_FUNCTIONS = {F.relu, torch.relu, F.relu_, torch.relu_}
FLATTEN_FUNCTIONS = {torch.flatten}
FLATTEN_METHODS = {"flatten", "view", "reshape"}

#: The functional calls read as layers: fx target (a function such as ``F.avg_pool2d``, or
#: the name of a Tensor method such as ``"relu"``) -> constructor of the equivalent
#: ``torch.nn`` layer from the call's own arguments (shape-free forms; the shape-dependent
#: ones, ``x.mean((2, 3))`` and ``F.linear`` / ``F.conv2d`` on a layer's weight, are
#: rewritten by :func:`modularise` itself).  Its entries are the rows of the table
#: "Written as / Read as" at the top of the page "Supported layers and functional forms".
FUNCTIONAL_FORMS: dict = {
    F.avg_pool1d: _avg_pool(nn.AvgPool1d),
    F.avg_pool2d: _avg_pool(nn.AvgPool2d),
    F.avg_pool3d: _avg_pool(nn.AvgPool3d),
    F.max_pool1d: _max_pool(nn.MaxPool1d),
    F.max_pool2d: _max_pool(nn.MaxPool2d),
    F.max_pool3d: _max_pool(nn.MaxPool3d),
    F.adaptive_avg_pool1d: _adaptive(nn.AdaptiveAvgPool1d),
    F.adaptive_avg_pool2d: _adaptive(nn.AdaptiveAvgPool2d),
    F.adaptive_avg_pool3d: _adaptive(nn.AdaptiveAvgPool3d),
    F.adaptive_max_pool1d: _adaptive(nn.AdaptiveMaxPool1d),
    F.adaptive_max_pool2d: _adaptive(nn.AdaptiveMaxPool2d),
    F.adaptive_max_pool3d: _adaptive(nn.AdaptiveMaxPool3d),
    **{f: _relu for f in RELU_FUNCTIONS},
    "relu": _relu,
    "relu_": _relu,
    torch.clamp: _clamp,
    "clamp": _clamp,
    "clamp_": _clamp,
    torch.clamp_min: lambda input, min: _clamp(input, min),
    "clamp_min": lambda input, min: _clamp(input, min),
    F.leaky_relu: _leaky_relu,
    F.leaky_relu_: _leaky_relu,
    **{f: (lambda input: nn.Tanh()) for f in (torch.tanh, F.tanh, "tanh", torch.tanh_, "tanh_")},
    F.silu: lambda input, inplace=False: nn.SiLU(),
    F.gelu: lambda input, approximate="none": nn.GELU(approximate),
    F.dropout: _dropout(nn.Dropout),
    F.dropout1d: _dropout(nn.Dropout1d),
    F.dropout2d: _dropout(nn.Dropout2d),
    F.dropout3d: _dropout(nn.Dropout3d),
    torch.dropout: lambda input, p, train: nn.Dropout(p).train(bool(train)),
    F.interpolate: _interpolate,
    torch.flatten: _flatten,
    "flatten": _flatten,
}

#: fx target -> factor of ``x * c``, ``x / c``, ``-x`` (rewritten where ``x`` is known to be a tensor,
#: so that shape arithmetic such as ``x.size(1) * 2`` stays as it is).
SCALE_FORMS: dict = {
    operator.mul: _times, torch.mul: _times, "mul": _times,
    operator.truediv: _divided, torch.div: _divided, "div": _divided,
    operator.neg: _negated, torch.neg: _negated, "neg": _negated,
}

#: fx targets of a difference ``a - b`` (``torch.sub(a, b)``, ``a.sub(b)``): of two tensors it is read as
#: ``a + (-1) b``, the sum the add rule knows, with the negation a :class:`~pathstats.layer_engine.rules.Scale` layer.
SUBTRACTIONS = {operator.sub, operator.isub, torch.sub, torch.subtract, "sub", "subtract"}

_WEIGHT_FORMS = {F.linear: nn.Linear, F.conv1d: nn.Conv1d, F.conv2d: nn.Conv2d, F.conv3d: nn.Conv3d}
_GLOBAL_POOLS = {3: nn.AdaptiveAvgPool1d, 4: nn.AdaptiveAvgPool2d, 5: nn.AdaptiveAvgPool3d}


# --------------------------------------------------------------------- tracing
def _user_frame(frames, code: bool = True) -> str:
    """``file.py:12: code`` (or ``file.py:12``) for the innermost frame outside torch, or ''."""
    torch_dir = os.path.dirname(torch.__file__)
    for frame in reversed(list(frames)):
        if not frame.filename.startswith(torch_dir) and frame.filename != __file__:
            text = f": {frame.line.strip()}" if frame.line and code else ""
            return f"{os.path.basename(frame.filename)}:{frame.lineno}{text}"
    return ""


def symbolic_trace(model: nn.Module, *, record_lines: bool = False) -> fx.GraphModule:
    """:func:`torch.fx.symbolic_trace`, with failures as one :class:`TracingError` line.

    Parameters
    ----------
    model : torch.nn.Module
    record_lines : bool
        Keep the line of ``forward`` that made each node (``node.stack_trace``),
        for messages.

    Examples
    --------
    >>> import torch
    >>> class Gate(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x if x.sum() > 0 else -x
    >>> try:
    ...     symbolic_trace(Gate())
    ... except TracingError as error:
    ...     print(str(error).split(" (")[0])
    Gate cannot be traced symbolically: its forward uses the value of a tensor in Python control flow
    """
    tracer = fx.Tracer()
    tracer.record_stack_traces = record_lines
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types on dynamic control flow
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        advice = ""
        if any(s in reason for s in ("control flow", "iterate", "Proxy", "symbolic tracing", "torch.fx")):
            reason = "its forward uses the value of a tensor in Python control flow (if, for, len, int on a tensor)"
            advice = "; pathstats reads networks whose layers do not depend on the input's values"
        where = _user_frame(traceback.extract_tb(exc.__traceback__))
        where = f" (at {where})" if where else ""
        raise TracingError(f"{type(model).__name__} cannot be traced symbolically: {reason}{where}{advice}") from None
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


# --------------------------------------------------------------------- naming
_OPERATORS = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/", operator.floordiv: "//",
              operator.matmul: "@", operator.pow: "**", operator.getitem: "indexing x[...]", operator.neg: "unary -"}


def operation_name(node: fx.Node, gm: fx.GraphModule | None = None) -> str:
    """The operation of a node as the user wrote it: ``torch.sigmoid``, ``F.gelu``, ``x.tanh()``, ``*``.

    Examples
    --------
    >>> import torch
    >>> gm = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Sigmoid()))
    >>> [operation_name(n, gm) for n in gm.graph.nodes if n.op == "call_module"]
    ["layer '0' (Sigmoid)"]
    """
    target = node.target
    if "pathstats_form" in node.meta:  # a layer that modularise made from a functional form
        return node.meta["pathstats_form"]
    if node.op == "call_module":
        module = gm.get_submodule(target) if gm is not None else None
        return f"layer {target!r} ({type(module).__name__})" if module is not None else f"layer {target!r}"
    if node.op == "call_method":
        return f"x.{target}()"
    if node.op == "get_attr":
        return f"attribute {target}"
    if target in _OPERATORS:
        return f"operator {_OPERATORS[target]}"
    name = getattr(target, "__name__", str(target))
    if name == "fn" and hasattr(target, "__qualname__"):  # boolean_dispatch wrappers
        name = next((k for k, v in vars(F).items() if v is target), name)
    if getattr(F, name, None) is target:
        return f"F.{name}"
    if getattr(torch, name, None) is target:
        return f"torch.{name}"
    module = getattr(target, "__module__", None)
    return f"{module}.{name}" if module else name


_ACTIVATIONS = {"sigmoid", "tanh", "gelu", "silu", "elu", "selu", "celu", "softplus", "relu6", "hardtanh", "hardswish",
                "hardsigmoid", "mish", "softsign", "tanhshrink", "prelu", "rrelu", "glu", "logsigmoid", "softmax", "log_softmax"}
_CONCAT = {"cat", "concat", "concatenate", "stack", "hstack", "vstack"}


def _advice(node: fx.Node, gm: fx.GraphModule | None) -> str:
    """What to use instead of an operation that has no rule."""
    if node.op == "call_module" and gm is not None and "pathstats_form" not in node.meta:
        key = type(gm.get_submodule(node.target)).__name__.lower()
    else:
        key = getattr(node.target, "__name__", str(node.target)).lower().rstrip("_")
    if key in _ACTIVATIONS:
        return ("pathstats models ReLU (both modes), LeakyReLU, tanh, SiLU and GELU (model mode); "
                "use one of them")
    if key in _CONCAT:
        return "concatenation is read along the channel axis only: torch.cat(tensors, dim=1)"
    if node.target in SUBTRACTIONS or node.target == "sub_":
        return ("subtraction has a rule for two tensors of one shape only (a - b, torch.sub(a, b) without alpha); "
                "subtracting a constant or a parameter (a bias) has none: give biases to the layer that owns them "
                "(nn.Linear, nn.Conv2d)")
    if node.target in (operator.add, torch.add, "add"):
        return ("adding a constant or a parameter (a bias) has no rule; add tensors of one shape, "
                "and give biases to the layer that owns them (nn.Linear, nn.Conv2d)")
    if node.target in (operator.mul, torch.mul, "mul", operator.truediv, torch.div, "div", operator.matmul, torch.matmul):
        return ("only multiplication or division by a constant number has a rule; "
                "weighted sums belong in nn.Linear / nn.Conv2d (or F.linear / F.conv2d with a stored weight)")
    if key in ("view", "reshape", "flatten"):
        return "only flattening all non-batch axes has a rule: nn.Flatten(), torch.flatten(x, 1), x.view(x.size(0), -1)"
    if key in ("mean", "avg"):
        return "a mean has a rule over all spatial axes only: x.mean((2, 3)) on images, or nn.AdaptiveAvgPool2d(1)"
    if key in ("batch_norm", "layer_norm", "group_norm", "instance_norm"):
        return "use the eval-mode nn.BatchNorm1d / nn.BatchNorm2d layer"
    if node.op == "call_module":
        return "supported layers are " + ", ".join(sorted(t.__name__ for t in MODULE_RULES if t.__module__.startswith("torch.nn")))
    return "build the model from the layers and calls listed on the documentation page 'Supported layers and functional forms'"


def located(node: fx.Node, gm: fx.GraphModule | None = None) -> str:
    """:func:`operation_name` and, where it was recorded, the user's line: ``F.gelu (at net.py:12: x = F.gelu(x))``."""
    where = _user_frame(_stack_frames(node))
    return f"{operation_name(node, gm)} (at {where})" if where else operation_name(node, gm)


def unsupported_operation(node: fx.Node, gm: fx.GraphModule | None = None, why: str = "") -> UnsupportedLayerError:
    """The error for a node without a rule: the operation in user terms, where, and what to use.

    Examples
    --------
    >>> import torch
    >>> class Net(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.sigmoid(x)
    >>> gm = symbolic_trace(Net())
    >>> node = [n for n in gm.graph.nodes if n.op == "call_function"][0]
    >>> print(unsupported_operation(node, gm))
    torch.sigmoid is not supported: pathstats models ReLU (both modes), LeakyReLU, tanh, SiLU and GELU (model mode); use one of them
    """
    return UnsupportedLayerError(f"{located(node, gm)} is not supported: {why or _advice(node, gm)}")


def _stack_frames(node: fx.Node) -> list:
    """The frames recorded by ``record_lines``, as ``traceback.FrameSummary``."""
    text = node.stack_trace or ""
    frames, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        line = line.strip()
        if line.startswith('File "'):
            filename, _, rest = line[6:].partition('", line ')
            lineno, _, _ = rest.partition(",")
            code = lines[i + 1].strip() if i + 1 < len(lines) and not lines[i + 1].strip().startswith("File ") else None
            frames.append(traceback.FrameSummary(filename, int(lineno) if lineno.isdigit() else 0, "", line=code))
    return frames


# --------------------------------------------------------------------- rewriting
def _fresh_name(gm: fx.GraphModule, base: str) -> str:
    name, k = base, 1
    while hasattr(gm, name):
        name, k = f"{base}_{k}", k + 1
    return name


def _attach(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
    """Make ``tensor`` (shared, not copied) the ``name`` attribute of a freshly built layer."""
    module._parameters.pop(name, None)
    if tensor is None:
        module.register_parameter(name, None)
    elif isinstance(tensor, nn.Parameter):
        module.register_parameter(name, tensor)
    else:
        module.register_buffer(name, tensor)


def _installable(gm: fx.GraphModule, root: nn.Module, path: str, module: nn.Module, replaced: fx.Node) -> bool:
    """Whether ``module`` can sit at ``path`` of ``gm`` without changing anything else.

    Every container on the way must be one fx made for the graph module (not a
    module of the user's model), and the slot must be free, hold ``module``
    already, hold a container of some of ``module``'s own tensors, or hold one
    of its tensors that nothing but the ``replaced`` call reads.
    """
    *prefix, last = path.split(".")
    here, theirs = gm, root
    for part in prefix:
        here, theirs = getattr(here, part, None), getattr(theirs, part, None)
        if here is None:
            return True
        if not isinstance(here, nn.Module) or here is theirs or type(here) is not nn.Module:
            return False
    slot = getattr(here, last, None)
    own = {id(t) for t in list(module.parameters()) + list(module.buffers())}
    if slot is None or slot is module:
        return True
    if isinstance(slot, torch.Tensor):
        readers = [n for n in gm.graph.nodes if n.op == "get_attr" and n.target == path]
        return id(slot) in own and all(set(n.users) <= {replaced} for n in readers)
    if type(slot) is not nn.Module or len(slot._modules) or slot is getattr(theirs, last, None):
        return False
    return all(id(t) in own for t in list(slot.parameters()) + list(slot.buffers()))


def _weight_layer(node: fx.Node, gm: fx.GraphModule, root: nn.Module) -> tuple:
    """``(name, layer)`` for ``F.linear`` / ``F.conv*d`` on stored parameters, or ``(None, why)``."""
    cls = _WEIGHT_FORMS[node.target]
    names = ("input", "weight", "bias") if cls is nn.Linear else ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    call = dict(zip(names, node.args), **node.kwargs)
    weight, bias = call.get("weight"), call.get("bias")
    if not (isinstance(weight, fx.Node) and weight.op == "get_attr"):
        return None, "its weight is computed in forward; pathstats reads weights stored as parameters (nn.Linear / nn.Conv2d)"
    if bias is not None and not (isinstance(bias, fx.Node) and bias.op == "get_attr"):
        return None, "its bias is computed in forward; give the layer a stored bias"
    try:
        _fetch(root, weight.target)
    except AttributeError:  # a tensor made in forward, which fx stored as a constant
        return None, "its weight is made in forward; pathstats reads weights stored as parameters (nn.Linear / nn.Conv2d)"
    w = _fetch(gm, weight.target)
    b = None if bias is None else _fetch(gm, bias.target)
    owner_path, _, attribute = weight.target.rpartition(".")
    owner = root.get_submodule(owner_path) if owner_path else root
    if cls is nn.Linear:
        settings = {}
        layer = nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")
    else:
        settings = {k: call.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1))}
        groups = settings["groups"]
        layer = cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), bias=False, device="meta", **settings)
    _attach(layer, "weight", w)
    _attach(layer, "bias", b)
    same = (
        type(owner) is cls and attribute == "weight" and getattr(owner, "bias", None) is b
        and all(getattr(owner, k) == getattr(layer, k) for k in ("stride", "padding", "dilation", "groups") if k in settings)
        and getattr(owner, "padding_mode", "zeros") == "zeros"
    )
    if same:
        layer = owner  # the user's own layer, as a module call would use it
    name = owner_path if attribute == "weight" and owner_path else weight.target
    return name, layer


def _fetch(gm: nn.Module, target: str) -> torch.Tensor:
    value = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _input(node: fx.Node) -> fx.Node | None:
    """The tensor a layer-like call reads: its first tensor argument (``2 * x`` reads ``x``),
    or where shapes are not annotated its first node argument."""
    nodes = [a for a in node.args if isinstance(a, fx.Node)]
    tensors = [a for a in nodes if "tensor_meta" in a.meta]
    return (tensors or nodes or [None])[0]


def _called(make: Callable, node: fx.Node) -> Any:
    """``make(*args, **kwargs)`` of the node, or None where the call does not fit the form.

    Arguments computed from shapes (``F.avg_pool2d(x, x.size()[2:])``) take the
    values recorded by the shape pass (``node.meta["pathstats_value"]``); a call
    with any other computed argument has no form.
    """
    source, unknown = _input(node), []

    def value(a: fx.Node):
        if a is source:
            return a
        if "pathstats_value" in a.meta:
            return a.meta["pathstats_value"]
        unknown.append(a)
        return a

    args, kwargs = fx.node.map_arg(node.args, value), fx.node.map_arg(node.kwargs, value)
    if unknown:
        return None
    try:
        return make(*args, **kwargs)
    except (TypeError, ValueError):
        return None


def _shape_of(node: Any) -> tuple | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _shape_forms(node: fx.Node) -> list | None:
    """Forms that need the input's shape (known once shapes are annotated).

    ``x.mean((2, 3))`` over every spatial axis is global average pooling (then a
    flatten without ``keepdim``); ``x.view(x.size(0), -1)`` and
    ``x.reshape(...)`` that flatten every non-batch axis are ``nn.Flatten``.
    """
    source = _input(node)
    in_shape, out_shape = _shape_of(source), _shape_of(node)
    if in_shape is None or out_shape is None:
        return None
    if node.target in SCALE_FORMS and (node.op == "call_function") == callable(node.target):
        factor = _called(SCALE_FORMS[node.target], node)
        return None if factor is None else [Scale(factor)]
    if node.target in ("view", "reshape") and node.op == "call_method":
        full = len(out_shape) == 2 and out_shape[0] == in_shape[0] and len(in_shape) >= 2
        return [nn.Flatten()] if full else None
    if node.target in (torch.mean, "mean"):
        call = dict(zip(("input", "dim", "keepdim"), node.args), **node.kwargs)
        dims, ndim = call.get("dim"), len(in_shape)
        if dims is None or call.get("dtype") is not None or ndim not in _GLOBAL_POOLS:
            return None
        dims = {d % ndim for d in (dims if isinstance(dims, (tuple, list)) else (dims,))}
        if dims != set(range(2, ndim)):
            return None
        pool = _GLOBAL_POOLS[ndim](1)
        return [pool] if call.get("keepdim", False) else [pool, nn.Flatten()]
    return None


def modularise(gm: fx.GraphModule, root: nn.Module) -> fx.GraphModule:
    """Rewrite the functional forms of ``gm`` as calls of their ``torch.nn`` layers, in place.

    Parameters
    ----------
    gm : torch.fx.GraphModule
        Traced from ``root`` (by :func:`symbolic_trace`).  Where its nodes carry
        shapes (``node.meta["tensor_meta"]``, from fx's ``ShapeProp``), the forms
        that depend on them (``x.mean(dims)``, ``x.view(x.size(0), -1)``) are
        rewritten too.
    root : torch.nn.Module
        The traced model.  It is never changed: new layers are added to ``gm``
        only, and share (do not copy) the parameters they read.

    Returns
    -------
    torch.fx.GraphModule
        ``gm``, computing exactly what it computed before.

    Notes
    -----
    ``F.linear(x, self.fc.weight, self.fc.bias)`` becomes a call of ``self.fc``
    itself when ``fc`` is an ``nn.Linear`` (likewise ``F.conv2d`` with the
    layer's own stride, padding, dilation and groups); otherwise a new layer
    sharing the stored weight is named after its owner (``self.weight`` of a
    block ``block1`` gives layer ``block1``).

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = torch.nn.Linear(4, 3)
    ...     def forward(self, x):
    ...         return F.linear(F.relu(F.avg_pool2d(x, 2)).flatten(1), self.fc.weight, self.fc.bias)
    >>> net = Net()
    >>> gm = modularise(symbolic_trace(net), net)
    >>> [(n.target, type(gm.get_submodule(n.target)).__name__) for n in gm.graph.nodes if n.op == "call_module"]
    [('avg_pool2d', 'AvgPool2d'), ('relu', 'ReLU'), ('flatten', 'Flatten'), ('fc', 'Linear')]
    >>> x = torch.randn(2, 1, 4, 4)
    >>> torch.equal(gm(x), net(x))
    True
    """
    graph = gm.graph
    placed: dict = {}  # layers built for weights, so that a weight read twice is one layer
    labels: dict = {}  # label -> how many layers carry it
    for node in list(graph.nodes):
        if node.op not in ("call_function", "call_method"):
            continue
        modules, name = None, None
        if _is_difference(node):
            _as_sum(node, gm, root, placed, labels)
            continue
        if node.op == "call_function" and node.target in _WEIGHT_FORMS:
            name, layer = _weight_layer(node, gm, root)
            if name is None:
                node.meta["pathstats_refusal"] = layer
                continue
            modules = [layer]
        elif node.target in FUNCTIONAL_FORMS and (node.op == "call_function") == callable(node.target):
            made = _called(FUNCTIONAL_FORMS[node.target], node)
            if isinstance(made, nn.modules.dropout._DropoutNd) and made.training:
                node.meta["pathstats_refusal"] = (
                    "this dropout is active (training=True; F.dropout's default): call model.eval() and write "
                    "F.dropout(x, p, training=self.training), or use nn.Dropout"
                )
                continue
            modules = [made] if made is not None else None
        else:
            modules = _shape_forms(node)
        if modules is None:
            continue
        with graph.inserting_before(node):
            current = _input(node)
            for k, module in enumerate(modules):
                target = _place(gm, root, module, name if k == 0 else None, node.name if k == 0 else f"{node.name}_flatten", node, placed)
                current = graph.call_module(target, (current,))
                current.meta["pathstats_form"] = operation_name(node, gm)
                current.stack_trace = node.stack_trace
                if "nn_module_stack" in node.meta:
                    current.meta["nn_module_stack"] = node.meta["nn_module_stack"]
                if name is None or k > 0:
                    _label(current, labels)
        if "tensor_meta" in node.meta:  # same output: later shape-dependent forms read it
            current.meta["tensor_meta"] = node.meta["tensor_meta"]
        node.replace_all_uses_with(current)
        graph.erase_node(node)
    for node in list(graph.nodes):  # weights and biases now read by their layers
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    graph.lint()
    gm.recompile()
    return gm


def _is_difference(node: fx.Node) -> bool:
    """``a - b`` of two tensors (shapes annotated), without ``alpha``: a sum with a negated operand."""
    return (node.target in SUBTRACTIONS and (node.op == "call_function") == callable(node.target)
            and len(node.args) == 2 and not node.kwargs
            and all(isinstance(a, fx.Node) and _shape_of(a) is not None for a in node.args))


def _as_sum(node: fx.Node, gm: fx.GraphModule, root: nn.Module, placed: dict, labels: dict) -> None:
    """Rewrite ``a - b`` as ``a + Scale(-1)(b)``, in place.

    The gradient of a difference is that of the sum with one branch's sign flipped:
    every path through ``b`` is multiplied by -1, which squares to 1, and the forward
    laws of model mode see ``-b`` (its mean negated) through the Scale rule.
    """
    graph = gm.graph
    minuend, subtrahend = node.args
    with graph.inserting_before(node):
        negated = graph.call_module(_place(gm, root, Scale(-1.0), None, f"{node.name}_negated", node, placed),
                                    (subtrahend,))
        negated.meta["pathstats_form"] = operation_name(node, gm) + " (the subtracted operand)"
        negated.meta["tensor_meta"] = subtrahend.meta["tensor_meta"]
        negated.stack_trace = node.stack_trace
        if "nn_module_stack" in node.meta:
            negated.meta["nn_module_stack"] = node.meta["nn_module_stack"]
        _label(negated, labels)
        total = graph.call_function(operator.add, (minuend, negated))
        total.meta.update({k: v for k, v in node.meta.items() if k != "pathstats_refusal"})
        total.stack_trace = node.stack_trace
    node.replace_all_uses_with(total)
    graph.erase_node(node)


def _label(node: fx.Node, labels: dict) -> None:
    """Name a layer made from a functional form after the call, the block it is in and its line,
    ``F.relu in layer1 (net.py:23)``, for notes and reports (``#2`` on a second such layer);
    weight layers keep their owner's name."""
    stack = node.meta.get("nn_module_stack") or {}
    scope = next(reversed(stack.values()))[0] if stack else ""
    where = _user_frame(_stack_frames(node), code=False)
    if not (scope or where):
        return
    label = node.meta["pathstats_form"] + (f" in {scope}" if scope else "") + (f" ({where})" if where else "")
    labels[label] = labels.get(label, 0) + 1
    node.meta["pathstats_label"] = label if labels[label] == 1 else f"{label} #{labels[label]}"


def _place(gm, root, module: nn.Module, name: str | None, base: str, node: fx.Node, placed: dict) -> str:
    """Add ``module`` to ``gm`` and return its target: ``name`` where that changes nothing
    else (see :func:`_installable`), else a fresh name made from ``base``."""
    key = (id(getattr(module, "weight", module)), id(getattr(module, "bias", None)), repr(module))
    if name is not None and key in placed:
        return placed[key]
    if name is not None and _installable(gm, root, name, module, node):
        target = name
    else:
        target = _fresh_name(gm, (name or base).replace(".", "_"))
    _install(gm, target, module)
    if name is not None:
        placed[key] = target
    return target


def _install(gm: fx.GraphModule, path: str, module: nn.Module) -> None:
    *prefix, last = path.split(".")
    here = gm
    for part in prefix:
        if getattr(here, part, None) is None:
            setattr(here, part, nn.Module())
        here = getattr(here, part)
    if last in here._modules or hasattr(here, last):
        delattr(here, last)
    setattr(here, last, module)
