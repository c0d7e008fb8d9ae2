"""Reading a ``torch.nn.Module`` into a graph of layer rules, the torch.fx way.

The module is traced by :func:`torch.fx.symbolic_trace` (torch.nn layers are
leaves), shapes are annotated on ``node.meta`` by fx's ``ShapeProp`` run on a
meta-device copy (no arithmetic, no change to the user's model or graph), and
each node gets the rule of :mod:`pathstats.layers` for its layer.
"""

from __future__ import annotations

import copy
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .errors import PathstatsError
from .layers import (
    MODULE_RULES,
    UnsupportedLayerError,
    add_rule,
    flatten_rule,
    relu_rule,
)

__all__ = ["LayerGraph", "read_model"]

_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
# fx call targets read as a ReLU or a flatten (also by verify.reduction)
RELU_FUNCTIONS = {F.relu, torch.relu}
FLATTEN_FUNCTIONS = {torch.flatten}
FLATTEN_METHODS = {"flatten", "view", "reshape"}
_IGNORED_METHODS = {"size", "dim"}  # shape queries, not tensors


@dataclass
class LayerGraph:
    """A traced network as rules in topological order.

    Attributes
    ----------
    rules : dict
        fx node name -> rule (:mod:`pathstats.layers`), in topological order;
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


def _shape(node: fx.Node) -> tuple:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise UnsupportedLayerError(f"{node.name}: produces no single tensor ({node.format_node()}); pathstats reads single-tensor layers")
    return tuple(meta.shape)[1:]


def _rule_for(node: fx.Node, modules: dict, init: Any):
    operands = [a for a in node.args if isinstance(a, fx.Node) and "tensor_meta" in a.meta and hasattr(a.meta["tensor_meta"], "shape")]
    names = [a.name for a in operands]
    in_shapes = [_shape(a) for a in operands]
    out_shape = _shape(node)
    if node.op == "call_module":
        module = modules[node.target]
        maker = MODULE_RULES.get(type(module))
        if maker is None:
            raise UnsupportedLayerError(
                f"layer {node.target!r} ({type(module).__name__}) has no rule; supported: "
                + ", ".join(sorted(t.__name__ for t in MODULE_RULES))
            )
        return maker(node.target, module, names, in_shapes, out_shape, init)
    if node.op == "call_function":
        if node.target in _ADD_FUNCTIONS and len(operands) >= 2:
            return add_rule(node.name, None, names, in_shapes, out_shape, init)
        if node.target in RELU_FUNCTIONS:
            return relu_rule(node.name, None, names, in_shapes, out_shape, init)
        if node.target in FLATTEN_FUNCTIONS:
            return flatten_rule(node.name, None, names, in_shapes, out_shape, init)
    if node.op == "call_method":
        if node.target in FLATTEN_METHODS:
            return flatten_rule(node.name, None, names[:1], in_shapes[:1], out_shape, init)
        if node.target == "relu":
            return relu_rule(node.name, None, names, in_shapes, out_shape, init)
    what = getattr(node.target, "__name__", str(node.target))
    raise UnsupportedLayerError(f"operation {what!r} at {node.name!r} ({node.op}) has no rule; build the model from supported layers")


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
    try:
        traced = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types on dynamic control flow
        raise UnsupportedLayerError(f"torch.fx cannot trace {type(model).__name__}: {exc}") from None
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedLayerError(f"the model takes {len(placeholders)} inputs; pathstats reads models with one input tensor")
    probe = copy.deepcopy(traced).to("meta").eval()  # shapes only: eval keeps BatchNorm from needing a batch
    try:
        ShapeProp(probe).propagate(torch.empty((1,) + tuple(input_shape), device="meta"))
    except Exception as exc:
        cause = exc.__cause__ or exc
        where = re.search(r"target=([^\]]+)\]", str(exc))
        at = f" at layer {where.group(1)!r}" if where else ""
        raise PathstatsError(
            f"input shape {tuple(input_shape)} does not fit {type(model).__name__}{at}: {str(cause).splitlines()[0]}"
        ) from None
    shapes = {n.name: n.meta.get("tensor_meta") for n in probe.graph.nodes}
    for node in traced.graph.nodes:  # annotate the real graph; the graph itself is unchanged
        node.meta["tensor_meta"] = shapes[node.name]
    modules = dict(traced.named_modules())
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
        elif node.op == "get_attr" or (node.op == "call_method" and node.target in _IGNORED_METHODS) or (
            node.op == "call_function" and node.target is getattr
        ):
            continue
        else:
            rules[node.name] = _rule_for(node, modules, init)
    logits_shape = _shape(next(n for n in traced.graph.nodes if n.name == output_name))
    if len(logits_shape) != 1:
        raise UnsupportedLayerError(f"the model's output has shape {logits_shape} per example; expected logits (K,)")
    notes = [note for rule in rules.values() if rule is not None for note in getattr(rule, "notes", [])]
    return LayerGraph(rules, placeholders[0].name, output_name, tuple(input_shape), logits_shape[0], notes)
