"""Reading a ``torch.nn.Module`` into a graph of layer rules, the torch.fx way.

The module is traced by :func:`torch.fx.symbolic_trace` (torch.nn layers are
leaves), shapes are annotated on ``node.meta`` by fx's ``ShapeProp`` run on a
meta-device copy (no arithmetic, no change to the user's model), functional
forms (``F.relu``, ``F.avg_pool2d``, ``x.mean((2, 3))``, ``F.linear`` with a
stored weight...) are rewritten as their layers (:mod:`pathstats.layer_engine.functional`),
and each node gets the rule of :mod:`pathstats.layer_engine.rules` for its layer.
Values that are not tensors (shape arithmetic such as ``x.size(0)``) carry no
gradient and get no rule.
"""

from __future__ import annotations

import contextlib
import io
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import InvalidArgumentError, PathstatsError
from .functional import (
    FLATTEN_FUNCTIONS,
    FLATTEN_METHODS,
    RELU_FUNCTIONS,
    modularise,
    located,
    symbolic_trace,
    unsupported_operation,
)
from .rules import MODULE_RULES, AddRule, ConcatRule, Scale, ScaleRule, UnsupportedLayerError, add_rule, scale_rule
from ..nets.base import meta_copy

__all__ = ["LayerGraph", "read_model", "RELU_FUNCTIONS", "FLATTEN_FUNCTIONS", "FLATTEN_METHODS"]

_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add, "add", "add_"}


@dataclass
class LayerGraph:
    """A traced network as rules in topological order.

    Attributes
    ----------
    rules : dict
        fx node name -> rule (:mod:`pathstats.layer_engine.rules`), in topological order;
        the input has rule None.
    input_name, output_name : str
        The input tensor and the logits tensor.
    input_shape : tuple
        Input shape without the batch axis.
    classes : int
        Number of logits.
    notes : list of str
        Everything the rules noticed that weakens a prediction.
    """

    rules: dict
    input_name: str
    output_name: str
    input_shape: tuple
    classes: int
    notes: list = field(default_factory=list)

    def node_rules(self) -> list:
        """The rules whose outputs are DAG nodes."""
        return [r for r in self.rules.values() if r is not None and r.kind == "node"]

    # The one interpreter of the graph: every pass of the engines (the recursions of
    # :mod:`.recursion`, the forward laws, the neuron-level DAG of :mod:`.expand`) is one
    # of these two walks with its own step, as torch.fx's Interpreter runs one node at a time.
    def forward(self, source: Any, step) -> dict:
        """Walk the rules in topological order from ``source`` at the input.

        ``step(name, rule, operands)`` gets the values of the rule's operands and returns
        the value of its output; the result maps every tensor to its value.
        """
        values = {self.input_name: source}
        for name, rule in self.rules.items():
            if rule is not None:
                values[name] = step(name, rule, [values[o] for o in rule.operands])
        return values

    def backward(self, seed: Any, step, add, bar=None) -> Any:
        """Walk the rules in reverse topological order from ``seed`` at the logits.

        ``step(name, rule, state)`` gets the state of the rule's output and returns one
        contribution per operand; contributions that reach one tensor through several
        consumers are combined with ``add(a, b)``.  A tensor that does not reach the logits
        is never visited.  Returns the state at the input (None if it does not reach them);
        ``bar`` advances by one per traced layer.
        """
        values = {self.output_name: seed}
        result = None
        for name in reversed(list(self.rules)):
            if bar is not None:
                bar.update(1)
            state = values.pop(name, None)
            if state is None:
                continue
            rule = self.rules[name]
            if rule is None:
                result = state
                continue
            for operand, contribution in zip(rule.operands, step(name, rule, state)):
                values[operand] = contribution if operand not in values else add(values[operand], contribution)
        return result


def _shape(node: fx.Node) -> tuple:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise unsupported_operation(node, None, "it returns several tensors; pathstats reads layers with one output tensor")
    return tuple(meta.shape)[1:]


def _is_tensor(node: fx.Node) -> bool:
    """Whether the node's value holds a tensor (ShapeProp records metadata only then)."""
    return "tensor_meta" in node.meta


def _rule_for(node: fx.Node, gm: fx.GraphModule, init: Any):
    operands = [a for a in node.args if isinstance(a, fx.Node) and _is_tensor(a)]
    names = [a.name for a in operands]
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        maker = MODULE_RULES.get(type(module))
        if maker is None:
            raise unsupported_operation(node, gm)
        name = node.meta.get("pathstats_label", node.target)  # a functional form: the call and its line
        try:
            return maker(name, module, names, [_shape(a) for a in operands], _shape(node), init)
        except UnsupportedLayerError as error:
            if "pathstats_form" not in node.meta:
                raise
            # a functional form: name the call as written, not the layer it was read as
            raise unsupported_operation(node, gm, str(error).removeprefix(f"{name}: ")) from None
    if node.target in _ADD_FUNCTIONS and len(operands) == len(node.args) >= 2 and not node.kwargs:
        return add_rule(node.name, None, names, [_shape(a) for a in operands], _shape(node), init)
    if node.target in _CONCAT_FUNCTIONS:
        return _concat_rule(node, gm)
    raise unsupported_operation(node, gm, node.meta.get("pathstats_refusal", ""))


_CONCAT_FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)


def _concat_rule(node: fx.Node, gm: fx.GraphModule) -> ConcatRule:
    """``torch.cat(tensors, dim)`` along the channel axis (``dim=1``, or its negative form), as a :class:`ConcatRule`."""
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", node.kwargs.get("axis", 0))
    rank = len(_shape(node)) + 1
    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, fx.Node) and _is_tensor(t) for t in tensors):
        raise unsupported_operation(node, gm, "concatenation is read for a list of tensors")
    if not isinstance(dim, int) or dim % rank != 1 or rank < 2:
        raise unsupported_operation(node, gm, f"concatenation is read along the channel axis (dim=1) only, got dim={dim!r}")
    return ConcatRule(node.name, f"concatenation of {len(tensors)} tensors", [t.name for t in tensors],
                      [_shape(t) for t in tensors], _shape(node))


class _ShapeProbe(ShapeProp):
    """fx's ShapeProp, remembering the node it runs and keeping its traceback print to itself."""

    node = None

    def run_node(self, n):
        self.node = n
        with contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints torch's traceback on failure
            result = super().run_node(n)
        if _is_size(result):  # shape arithmetic: functional forms may take it as an argument
            n.meta["pathstats_value"] = tuple(result) if isinstance(result, (tuple, list)) else result
        return result


def _is_size(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    return isinstance(value, int) and not isinstance(value, bool)


def _annotate_shapes(traced: fx.GraphModule, model: nn.Module, input_shape: tuple) -> None:
    """Put ``tensor_meta`` on every node of ``traced`` from a meta-device run (no arithmetic)."""
    probe = meta_copy(traced)  # shapes only: eval keeps BatchNorm from needing a batch
    runner = _ShapeProbe(probe)
    try:
        runner.propagate(torch.empty((1,) + tuple(input_shape), device="meta"))
    except Exception as exc:
        cause = str(exc.__cause__ or exc).strip().splitlines() or [type(exc).__name__]
        at = f" at {located(runner.node, probe)}" if runner.node is not None and runner.node.op != "placeholder" else ""
        raise InvalidArgumentError(f"input shape {tuple(input_shape)} does not fit {type(model).__name__}{at}: {cause[0]}") from None
    probed = {n.name: n.meta for n in probe.graph.nodes}
    for node in traced.graph.nodes:  # annotate the real graph; the graph itself is unchanged
        for key in ("tensor_meta", "pathstats_value"):
            node.meta.pop(key, None)
            if probed[node.name].get(key) is not None:
                node.meta[key] = probed[node.name][key]


def _carried(rules: dict, name: str) -> tuple:
    """``(source, c)``: the tensor ``name`` is ``c * source`` through identity-like layers.

    Identity, Dropout (eval) and multiplication by a constant change neither
    which tensor a branch carries nor anything random about it; an empty
    ``nn.Sequential`` is no node at all once traced.
    """
    coefficient = 1.0
    while True:
        rule = rules.get(name)
        if rule is None or rule.kind != "pointwise" or rule.is_gate:
            return name, coefficient
        if isinstance(rule, ScaleRule):
            coefficient *= float(np.asarray(rule.affine[0]).ravel()[0])
        elif rule.affine is not None:  # BatchNorm: per-channel statistics, not one constant
            return name, coefficient
        name = rule.operands[0]


def merge_identical_operands(rules: dict) -> dict:
    """Rewrite additions whose operands carry one tensor: ``h + drop(h)`` is ``2 h``.

    Two branches that are the same tensor are perfectly correlated: their
    gradients add before squaring (``(2 delta)^2 = 4 delta^2``), not after
    (``2 delta^2``), which the addition's rule (independent operands) would
    give.  Operands are compared by the tensor they carry after identity-like
    layers (:func:`_carried`); each group becomes one operand scaled by the
    sum of its coefficients (a :class:`~pathstats.layer_engine.rules.ScaleRule`, exact in
    every mode), and an addition left with one operand becomes that scaling.

    Examples
    --------
    >>> from torch import nn
    >>> class Twice(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc, self.drop, self.out = nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         h = self.fc(x)
    ...         return self.out(h + self.drop(h))
    >>> graph = read_model(Twice().eval(), (4,))
    >>> rule = graph.rules["add"]
    >>> type(rule).__name__, rule.operands, rule.model_gain
    ('ScaleRule', ['fc'], 4.0)
    """
    merged: dict = {}
    for key, rule in rules.items():
        if not isinstance(rule, AddRule):
            merged[key] = rule
            continue
        groups: dict = {}
        for operand in rule.operands:
            source, coefficient = _carried(merged, operand)
            groups.setdefault(source, []).append((operand, coefficient))
        if all(len(members) == 1 for members in groups.values()):
            merged[key] = rule
            continue
        shape = tuple(rule.out_shape)
        operands = []
        for j, (source, members) in enumerate(groups.items()):
            if len(members) == 1:
                operands.append(members[0][0])
                continue
            total = sum(c for _, c in members)
            label = f"{rule.name}: {' + '.join(m for m, _ in members)} carry one tensor, read as {total:g} * {source}"
            if len(groups) == 1:
                merged[key] = scale_rule(rule.name, Scale(total), [source], [shape], shape, None)
                merged[key].layer = label
                break
            name = f"{key}.{j}"
            merged[name] = scale_rule(name, Scale(total), [source], [shape], shape, None)
            merged[name].layer = label
            operands.append(name)
        else:
            merged[key] = AddRule(rule.name, rule.layer, operands, [shape] * len(operands), shape, rule.category,
                                  rule.variance, list(rule.notes))
    return merged


def read_model(model: nn.Module, input_shape: tuple, init: Any = "weights") -> LayerGraph:
    """Trace a module and make the rule of each of its layers.

    Parameters
    ----------
    model : torch.nn.Module
        A network with one input tensor and one logits tensor ``(batch, K)``.
    input_shape : tuple of int
        The input shape without the batch axis, e.g. ``(3, 32, 32)``.
    init : {"he", "torch", "weights"} or mapping
        Where model mode takes each weight layer's variance from (see
        :func:`pathstats.predict`).

    Returns
    -------
    LayerGraph

    Raises
    ------
    UnsupportedLayerError
        If a layer has no rule, is in training mode, or the module cannot be traced.
    PathstatsError
        If the input shape does not fit the network.

    Examples
    --------
    >>> from torch import nn
    >>> graph = read_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3)), (1, 4, 6))
    >>> [type(r).__name__ for r in graph.rules.values()]
    ['NoneType', 'ConvRule', 'PointwiseRule', 'ReshapeRule', 'LinearRule']
    >>> graph.classes
    3
    """
    if type(model) in MODULE_RULES:  # a lone layer: trace it as a call, not through its forward
        model = nn.Sequential(model)
    traced = symbolic_trace(model, record_lines=True)
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedLayerError(f"the model takes {len(placeholders)} inputs; pathstats reads models with one input tensor")
    _annotate_shapes(traced, model, input_shape)
    modularise(traced, model)  # functional forms as their layers (shapes decide x.mean(dims), x.view(...))
    if any("pathstats_form" in n.meta and "tensor_meta" not in n.meta for n in traced.graph.nodes):
        _annotate_shapes(traced, model, input_shape)  # a form read as two layers (x.mean(dims) -> pool, flatten)
    rules: dict = {}
    output_name = None
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            rules[node.name] = None
        elif node.op == "output":
            result = node.args[0]
            if not isinstance(result, fx.Node):
                raise UnsupportedLayerError("the model returns a tuple or dict; pathstats reads models that return one logits tensor")
            output_name = result.name
        elif node.op != "get_attr" and _is_tensor(node):  # parameters are read by their layers
            rules[node.name] = _rule_for(node, traced, init)
    logits_shape = _shape(next(n for n in traced.graph.nodes if n.name == output_name))
    if len(logits_shape) != 1:
        raise UnsupportedLayerError(f"the model's output has shape {logits_shape} per example; expected logits (K,)")
    rules = merge_identical_operands(rules)
    notes = [note for rule in rules.values() if rule is not None for note in getattr(rule, "notes", [])]
    return LayerGraph(rules, placeholders[0].name, output_name, tuple(input_shape), logits_shape[0], notes)
