"""One copy of each shared helper: the meta-device shape probe, the padding geometry,
``WEIGHT_LAYERS``, the logit Jacobian, and one JSON naming of standard errors (``*_se``,
old ``*_stderr`` files still read)."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pathstats import nets
from pathstats.dag.generators import padded_source
from pathstats.nets.base import WEIGHT_LAYERS, meta_forward
from pathstats.resources import activation_bytes
from pathstats.robust import opnorm
from pathstats.robust.experiments import runner, tables
from pathstats.robust.vulnerability import vulnerability
from pathstats.verify import batched, montecarlo


def test_one_weight_layers_and_one_logit_jacobian():
    assert batched.WEIGHT_LAYERS is WEIGHT_LAYERS and montecarlo.WEIGHT_LAYERS is WEIGHT_LAYERS
    assert runner.logit_jacobian is opnorm.logit_jacobian


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_asymmetric_padding_geometry_is_f_pads(mode):
    for length, before, after in itertools.product(range(1, 6), range(4), range(4)):
        widest = max(before, after)
        if (mode == "reflect" and widest >= length) or (mode == "circular" and widest > length):
            with pytest.raises(ValueError, match=f"{mode} padding {widest}"):
                padded_source(0, length, before, mode, after=after)
            continue
        signal = torch.arange(float(length)).reshape(1, 1, length)
        expected = F.pad(signal, (before, after), mode=mode).flatten().long().tolist()
        assert [padded_source(q, length, before, mode, after=after) for q in range(before + length + after)] == expected


def test_the_shape_probe_leaves_the_model_alone_and_sees_every_leaf():
    net = nets.build("conv6", (3, 32, 32)).train()
    seen = []
    out = meta_forward(net, (3, 32, 32), leaf_hook=lambda module, output: seen.append(tuple(output.shape)))
    assert tuple(out.shape) == (1, 10) and out.device.type == "meta"
    assert net.training and all(p.device.type == "cpu" for p in net.parameters())
    real = _leaf_outputs(net, (3, 32, 32))
    assert seen == [tuple(o.shape) for o in real]
    with torch.device("meta"):
        on_meta = nets.build("conv6", (3, 32, 32))
    # activation_bytes runs the same probe on a model built on the meta device
    assert activation_bytes(on_meta, (3, 32, 32)) == 4 * sum(o.numel() for o in real)


def _leaf_outputs(net: nn.Module, shape: tuple) -> list:
    outputs = []
    hooks = [m.register_forward_hook(lambda _, __, out: outputs.append(out)) for m in net.modules() if not list(m.children())]
    with torch.no_grad():
        net.eval()(torch.zeros((1,) + shape))
    for hook in hooks:
        hook.remove()
    return outputs


def test_standard_errors_are_named_se():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = 0.1 + 0.8 * torch.rand(32, 1, 4, 4), torch.randint(0, 3, (32,))
    result = vulnerability(model, x, y, attack="fgm", norm="inf", eps=0.01, check=False)
    assert not [key for key in result if key.endswith("_stderr")]
    for key in ("vulnerability", "loss_damage", "grad_l1", "first_order_ratio"):
        assert key + "_se" in result


def test_old_stderr_keys_stay_readable(tmp_path):
    old = {"vulnerability": 0.25, "vulnerability_stderr": 0.05, "accuracy_adv": 0.5}
    columns = tables.flatten_evaluations({"attacks": {"eps": 0.01, "n": 4, "thresholds": {"inf": {"fgsm": old}}}})
    assert columns["atk_inf_fgsm_vulnerability_se"] == 0.05
    (tmp_path / tables.RESULTS).write_text("id,method,eps,seed,d,test_accuracy,atk_inf_fgsm_vulnerability_stderr\n"
                                           "a,none,0.0,0,64,0.9,0.05\n")
    results, _ = tables.read_tables(str(tmp_path))
    assert results[0]["atk_inf_fgsm_vulnerability_se"] == 0.05 and "atk_inf_fgsm_vulnerability_stderr" not in results[0]
    assert math.isclose(results[0]["test_accuracy"], 0.9)
