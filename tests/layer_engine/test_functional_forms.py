"""Functional forms read exactly as their layers, by the predictor and by the Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers.batched_check import assert_batched_equals_module
from pathstats.errors import PathstatsError
from pathstats.layer_engine.rules import AssumptionError, Scale, UnsupportedLayerError
from pathstats.nets.base import InitialisedNet, spatial_after
from pathstats.prediction import predict
from pathstats.layer_engine.trace import read_model
from pathstats.verify.batched import BatchedInitialisations
from pathstats.verify.compare import compare
from pathstats.verify.montecarlo import run_monte_carlo

SHAPE = (2, 8, 8)
Z_MAX = 4.0


class Net(nn.Module):
    """``fc(flatten(op(conv(x))))`` where ``op`` is a layer or a function of the tensor.

    A function is traced through (``F.avg_pool2d(x, 2)`` is an fx function call),
    a layer is a leaf; the two twins share their convolution and linear weights.
    """

    def __init__(self, op, flatten=None, channels: int = 4, classes: int = 3, seed: int = 0, shape: tuple = SHAPE):
        super().__init__()
        torch.manual_seed(seed)
        self.shape = shape
        self.conv = (nn.Conv1d if len(shape) == 2 else nn.Conv2d)(shape[0], channels, 3, padding=1, bias=False)
        self.op = op
        self.flatten = flatten or nn.Flatten()
        features = math.prod(spatial_after(nn.Sequential(self.conv, _as_layer(op)), shape))
        self.fc = nn.Linear(features, classes, bias=False)

    def forward(self, x):
        return self.fc(self.flatten(self.op(self.conv(x))))


def _as_layer(op):
    return op if isinstance(op, nn.Module) else _Lambda(op)


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


# functional form -> its layer twin
PAIRS = {
    "F.avg_pool2d": (lambda x: F.avg_pool2d(x, 2), nn.AvgPool2d(2)),
    "F.avg_pool2d padded": (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
                            nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
    "F.max_pool2d": (lambda x: F.max_pool2d(x, 2), nn.MaxPool2d(2)),
    "F.max_pool2d overlapping": (lambda x: F.max_pool2d(x, 3, 2, 1), nn.MaxPool2d(3, 2, 1)),
    "F.adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 3), nn.AdaptiveAvgPool2d(3)),
    "F.adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, 2), nn.AdaptiveMaxPool2d(2)),
    "x.mean((2, 3), keepdim=True)": (lambda x: x.mean((2, 3), keepdim=True), nn.AdaptiveAvgPool2d(1)),
    "x.mean(dim=(-2, -1))": (lambda x: x.mean(dim=(-2, -1)), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
    "torch.mean(x, [2, 3])": (lambda x: torch.mean(x, [2, 3]), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
    "F.relu": (F.relu, nn.ReLU()),
    "torch.relu": (torch.relu, nn.ReLU()),
    "x.relu()": (lambda x: x.relu(), nn.ReLU()),
    "F.relu_": (F.relu_, nn.ReLU()),
    "x.relu_()": (lambda x: x.relu_(), nn.ReLU()),
    "F.relu(inplace=True)": (lambda x: F.relu(x, inplace=True), nn.ReLU(inplace=True)),
    "x.clamp(min=0)": (lambda x: x.clamp(min=0), nn.ReLU()),
    "torch.clamp_min(x, 0)": (lambda x: torch.clamp_min(x, 0), nn.ReLU()),
    "F.avg_pool2d(x, x.size()[2:])": (lambda x: F.avg_pool2d(x, x.size()[2:]), nn.AvgPool2d(8)),
    "F.avg_pool2d(x, x.shape[-1] // 2)": (lambda x: F.avg_pool2d(x, x.shape[-1] // 2), nn.AvgPool2d(4)),
    "F.leaky_relu": (lambda x: F.leaky_relu(x, 0.2), nn.LeakyReLU(0.2)),
    "F.leaky_relu default": (F.leaky_relu, nn.LeakyReLU()),
    "F.dropout": (lambda x: F.dropout(x, 0.3, training=False), nn.Dropout(0.3)),
    "F.dropout2d": (lambda x: F.dropout2d(x, 0.3, False), nn.Dropout2d(0.3)),
    "F.interpolate": (lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), nn.Upsample(scale_factor=2)),
    "F.interpolate size": (lambda x: F.interpolate(x, size=(12, 12)), nn.Upsample(size=(12, 12))),
}

# the same on 1-d signals (batch, channels, length)
PAIRS_1D = {
    "F.avg_pool1d": (lambda x: F.avg_pool1d(x, 2), nn.AvgPool1d(2)),
    "F.max_pool1d": (lambda x: F.max_pool1d(x, 3, 2, 1), nn.MaxPool1d(3, 2, 1)),
    "F.adaptive_avg_pool1d": (lambda x: F.adaptive_avg_pool1d(x, 5), nn.AdaptiveAvgPool1d(5)),
    "F.adaptive_max_pool1d": (lambda x: F.adaptive_max_pool1d(x, 4), nn.AdaptiveMaxPool1d(4)),
    "x.mean(2)": (lambda x: x.mean(2), nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten())),
    "x.mean(-1, keepdim=True)": (lambda x: x.mean(-1, keepdim=True), nn.AdaptiveAvgPool1d(1)),
}

FLATTENS = {
    "x.reshape(x.shape[0], -1)": lambda x: x.reshape(x.shape[0], -1),
    "x.view(x.size(0), -1)": lambda x: x.view(x.size(0), -1),
    "torch.flatten(x, 1)": lambda x: torch.flatten(x, 1),
    "x.flatten(1)": lambda x: x.flatten(1),
    "x.view(-1, 256)": lambda x: x.view(-1, 256),
}


def _predictions(model):
    """Both modes' predictions, or the refusal's type where theory mode refuses."""
    out = {}
    for mode in ("model", "theory"):
        try:
            out[mode] = predict(model.eval(), getattr(model, "shape", SHAPE), mode=mode)
        except AssumptionError as error:
            out[mode] = type(error)
    return out


def _assert_same(functional, layer):
    a, b = _predictions(functional), _predictions(layer)
    assert a["model"] is not AssumptionError
    for mode in ("model", "theory"):
        if b[mode] is AssumptionError:
            assert a[mode] is AssumptionError  # refused in both forms
            continue
        p, q = a[mode], b[mode]
        np.testing.assert_allclose(p.grad_sq_map, q.grad_sq_map, rtol=1e-12, atol=0)
        np.testing.assert_allclose(p.path_sum_map, q.path_sum_map, rtol=1e-12, atol=0)
        assert (p.path_count_map == q.path_count_map).all()
        assert p.symmetry_classes == q.symmetry_classes and p.avgpool_factor == q.avgpool_factor
        # notes name the layer as written (``op`` or ``avg_pool2d``); what they say is the same
        assert [n.split(": ", 1)[-1] for n in p.notes] == [n.split(": ", 1)[-1] for n in q.notes]


@pytest.mark.parametrize("form", sorted(PAIRS))
def test_functional_form_predicts_exactly_as_its_layer(form):
    fn, layer = PAIRS[form]
    _assert_same(Net(fn), Net(layer))


@pytest.mark.parametrize("form", sorted(PAIRS_1D))
def test_functional_form_on_signals_predicts_exactly_as_its_layer(form):
    fn, layer = PAIRS_1D[form]
    _assert_same(Net(fn, shape=(2, 16)), Net(layer, shape=(2, 16)))


@pytest.mark.parametrize("form", sorted(FLATTENS))
def test_flatten_forms_predict_exactly_as_nn_flatten(form):
    functional, layer = Net(nn.ReLU(), flatten=FLATTENS[form]), Net(nn.ReLU())
    _assert_same(functional, layer)
    assert [type(r).__name__ for r in read_model(functional, SHAPE).rules.values()] == [
        "NoneType", "ConvRule", "PointwiseRule", "ReshapeRule", "LinearRule"]  # shape queries get no rule


def test_each_functional_form_reads_as_the_rule_object_of_its_layer():
    graph = read_model(Net(lambda x: F.avg_pool2d(F.relu(x), 2)), SHAPE)
    twin = read_model(Net(nn.Sequential(nn.ReLU(), nn.AvgPool2d(2))), SHAPE)
    assert [type(r) for r in graph.rules.values()] == [type(r) for r in twin.rules.values()]


class Weights(nn.Module):
    """``F.linear`` / ``F.conv2d`` with the layers' own parameters, or a custom block's ``self.weight``."""

    def __init__(self, how: str):
        super().__init__()
        torch.manual_seed(1)
        self.how = how
        self.conv = nn.Conv2d(SHAPE[0], 4, 3, padding=1, bias=True)
        self.fc = nn.Linear(4 * 4 * 4, 3, bias=True)
        self.weight = nn.Parameter(torch.randn(3, 64) / 8)  # a custom module's own parameter

    def forward(self, x):
        if self.how == "modules":
            h = F.avg_pool2d(self.conv(x).relu(), 2)
            return self.fc(h.flatten(1))
        if self.how == "F.conv2d stride 2":
            return self.fc(F.conv2d(x, self.conv.weight, self.conv.bias, stride=2, padding=1).relu().flatten(1))
        h = F.avg_pool2d(F.conv2d(x, self.conv.weight, self.conv.bias, padding=1).relu(), 2).flatten(1)
        if self.how == "own parameter":
            return F.linear(h, self.weight)
        return F.linear(h, self.fc.weight, self.fc.bias)


def test_f_linear_and_f_conv2d_on_stored_parameters_read_as_the_layers():
    _assert_same(Weights("functional"), Weights("modules"))
    graph = read_model(Weights("functional"), SHAPE)
    conv, pool, fc = (r.name for r in graph.node_rules())
    assert (conv, fc) == ("conv", "fc")  # weight layers are named after their owners (init mappings use these names)
    assert pool.startswith("F.avg_pool2d (test_functional_forms.py:")  # other calls after the call and its line
    assert any("non-zero bias" in note for note in graph.notes)  # the biases are read like the layers'


def test_f_conv2d_with_its_own_settings_and_a_custom_parameter():
    strided = Weights("F.conv2d stride 2").eval()
    twin = nn.Sequential(nn.Conv2d(SHAPE[0], 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        twin[0].weight.copy_(strided.conv.weight), twin[0].bias.copy_(strided.conv.bias)
        twin[3].weight.copy_(strided.fc.weight), twin[3].bias.copy_(strided.fc.bias)
    _assert_same(strided, twin.eval())
    own = Weights("own parameter")
    layer = Weights("modules")
    with torch.no_grad():
        layer.fc.weight.copy_(own.weight), layer.fc.bias.zero_(), layer.conv.bias.copy_(own.conv.bias)
    _assert_same(own, layer)
    assert read_model(own, SHAPE).node_rules()[-1].name == "weight"  # the parameter's name: init mappings use it


@pytest.mark.parametrize("factor, fn", [(3.0, lambda x: x * 3), (2.0, lambda x: 2.0 * x), (0.25, lambda x: x / 4),
                                        (-1.0, lambda x: -x), (0.5, lambda x: torch.mul(x, 0.5))])
def test_multiplication_by_a_constant_scales_the_prediction_by_its_square(factor, fn):
    scaled, plain = _predictions(Net(fn)), _predictions(Net(nn.Identity()))
    for mode in ("model", "theory"):
        np.testing.assert_allclose(scaled[mode].grad_sq_map, factor**2 * plain[mode].grad_sq_map, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(scaled[mode].path_sum_map, plain[mode].path_sum_map)


def test_the_user_model_is_left_as_it_was():
    model = Weights("functional")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules = dict(model.named_modules())
    read_model(model, SHAPE)
    BatchedInitialisations(model.eval())
    assert dict(model.named_modules()).keys() == modules.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------ Monte Carlo
class FunctionalNet(InitialisedNet):
    """A net written the functional way, on layers where model mode is exact:

    ``conv -> F.avg_pool2d -> x.relu() -> F.conv2d(own weight) -> F.leaky_relu ->
    F.dropout -> x * 2 -> x.view(x.size(0), -1) -> F.linear(classifier.weight)``.
    """

    def __init__(self, channels: int = 6):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.classifier = nn.Linear(channels * 4 * 4, 5, bias=False)
        self.reset_parameters()

    def forward(self, x):
        h = F.avg_pool2d(self.conv1(x), 2).relu()
        h = F.leaky_relu(F.conv2d(h, self.conv2.weight, padding=1), 0.1)
        h = F.dropout(h, 0.5, training=self.training) * 2
        return F.linear(h.view(h.size(0), -1), self.classifier.weight)


class ModuleNet(FunctionalNet):
    """:class:`FunctionalNet` written with layers (same layer names, so the same weights are drawn)."""

    def __init__(self, channels: int = 6):
        super().__init__(channels)
        self.rest = nn.Sequential(nn.AvgPool2d(2), nn.ReLU())
        self.after = nn.Sequential(nn.LeakyReLU(0.1), nn.Dropout(0.5), Scale(2.0), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.after(self.conv2(self.rest(self.conv1(x)))))


def test_monte_carlo_samples_of_the_functional_net_are_those_of_its_layer_twin():
    shape = (1, 8, 8)
    functional = run_monte_carlo(FunctionalNet().eval(), shape, 64, seed=5, batch=32)
    layers = run_monte_carlo(ModuleNet().eval(), shape, 64, seed=5, batch=32)
    np.testing.assert_array_equal(functional.grad_sq_samples, layers.grad_sq_samples)  # the same arithmetic
    np.testing.assert_array_equal(functional.loss_l2, layers.loss_l2)


def test_monte_carlo_runs_the_functional_net_and_agrees_with_model_mode():
    model, shape = FunctionalNet().eval(), (1, 8, 8)
    result = run_monte_carlo(model, shape, 1500, seed=11, batch=250, loss=False)
    assert result.reduction is not None and result.reduction.classifier == "classifier"  # F.linear read as the layer
    total = compare(result, predict(model, shape))["grad_sq_total"]
    assert total["samples"] == 1500 and total["stderr"] > 0
    assert abs(total["z"]) < Z_MAX, total


def test_batched_functional_net_equals_the_module_one_initialisation_at_a_time():
    assert_batched_equals_module(FunctionalNet(channels=3).eval(), (1, 8, 8), seed=4)


def test_monte_carlo_refuses_a_weight_it_cannot_draw():
    class Own(InitialisedNet):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 4))

        def forward(self, x):
            return F.linear(x, self.weight)

    with pytest.raises(PathstatsError, match=r"no initialisation for the weights of 'weight' .* nn.Linear"):
        run_monte_carlo(Own().eval(), (4,), 4, seed=0)


# ------------------------------------------------------------------ refusals
class Bad(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fc = nn.Linear(16, 3)
        self.fn = fn

    def forward(self, x):
        return self.fc(self.fn(x).flatten(1))


REFUSALS = {
    "torch.sigmoid": (torch.sigmoid, "torch.sigmoid (at test_functional_forms.py:", "tanh, SiLU and GELU (model mode)"),
    "F.elu": (F.elu, "F.elu (at ", "ReLU (both modes), LeakyReLU, tanh, SiLU and GELU (model mode)"),
    "x.sigmoid()": (lambda x: x.sigmoid(), "x.sigmoid() (at ", "tanh, SiLU and GELU"),
    "torch.cat": (lambda x: torch.cat([x, x], 2)[:, :, :4], "torch.cat (at ", "channel axis (dim=1) only"),
    "x * x": (lambda x: x * x, "operator * (at ", "constant"),
    "x + 1": (lambda x: x + 1, "operator + (at ", "bias"),
    "F.dropout active": (lambda x: F.dropout(x, 0.5), "F.dropout (at ", "model.eval()"),
    "x.mean(1)": (lambda x: x.mean(1, keepdim=True), "x.mean() (at ", "spatial axes"),
    "F.linear made weight": (lambda x: F.linear(x, torch.ones(4, 4)), "F.linear (at ", "stored as parameters"),
    "partial flatten": (lambda x: x.flatten(2).unsqueeze(1), "x.flatten() (at ", "only a flatten of all non-batch axes"),
}
SMOOTH_FORMS = {
    "F.gelu": (lambda x: F.gelu(x), nn.GELU()),
    "F.gelu tanh": (lambda x: F.gelu(x, approximate="tanh"), nn.GELU("tanh")),
    "F.silu": (F.silu, nn.SiLU()),
    "torch.tanh": (torch.tanh, nn.Tanh()),
    "x.tanh()": (lambda x: x.tanh(), nn.Tanh()),
}


@pytest.mark.parametrize("case", sorted(SMOOTH_FORMS))
def test_smooth_activations_read_as_their_modules(case):
    fn, module = SMOOTH_FORMS[case]
    as_function = predict(Bad(fn).eval(), (1, 4, 4), init="he")
    as_module = predict(Bad(module).eval(), (1, 4, 4), init="he")
    np.testing.assert_array_equal(as_function.grad_sq_map, as_module.grad_sq_map)
    assert as_function.mode == "model"


FX_INTERNALS = ("call_function", "call_method", "built-in", "getattr_1", "<function", "Proxy", "torch.fx", "Traceback")


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_operation_in_user_terms_on_one_line(case):
    fn, names, advice = REFUSALS[case]
    with pytest.raises(UnsupportedLayerError) as info:
        predict(Bad(fn).eval(), (1, 4, 4))
    message = str(info.value)
    assert message.startswith(names) and advice in message, message
    assert "\n" not in message and not any(s in message for s in FX_INTERNALS), message
    assert info.value.__suppress_context__ or info.value.__context__ is None  # no chained torch traceback


def test_data_dependent_control_flow_is_one_clear_line():
    class Gate(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    with pytest.raises(PathstatsError) as info:
        predict(Gate(), (3,))
    message = str(info.value)
    assert message.startswith("Gate cannot be traced symbolically: its forward uses the value of a tensor in Python control flow")
    assert "test_functional_forms.py:" in message and "if x.sum() > 0:" in message
    assert "\n" not in message and not any(s in message for s in FX_INTERNALS), message
    assert info.value.__suppress_context__ and info.value.__cause__ is None
    with pytest.raises(PathstatsError, match="cannot be traced symbolically"):
        BatchedInitialisations(Gate())


def test_a_shape_that_does_not_fit_names_the_call_without_printing_a_traceback(capfd):
    with pytest.raises(PathstatsError) as info:
        predict(Bad(lambda x: F.avg_pool2d(x, 8)).eval(), (1, 4, 4))
    message = str(info.value)
    assert message.startswith("input shape (1, 4, 4) does not fit Bad at F.avg_pool2d (at test_functional_forms.py:"), message
    assert "\n" not in message and not any(s in message for s in FX_INTERNALS), message
    assert capfd.readouterr().err == ""  # fx's ShapeProp prints torch's traceback; none reaches the user


def test_a_linear_subclass_calling_f_linear_is_its_layer_even_when_shared():
    class MyLinear(nn.Linear):  # not a torch.nn leaf: fx traces into its forward
        def forward(self, x):
            return F.linear(x, self.weight, self.bias)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = MyLinear(4, 4, bias=False)

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    model = Twice().eval()
    assert [r.name for r in read_model(model, (4,)).node_rules()] == ["lin", "lin"]
    runner = BatchedInitialisations(model)
    assert runner.layers == ["lin"]  # the weights verify draws for ``lin`` (a Linear by inheritance)
    weights = {"lin": torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0))}
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    expected = torch.stack([torch.relu(x[b] @ weights["lin"][b].T) @ weights["lin"][b].T for b in range(2)])
    torch.testing.assert_close(runner.run_batch(weights, x), expected)
