"""One source of training defaults: ``TrainConfig``'s fields make ``pathstats train``'s flags,
the methods' options and a run's identity; a regularised method without ``--eps`` is refused."""

import argparse
import dataclasses
import inspect
import json

import pytest

from pathstats.cli import _build_parser, main
from pathstats.robust import attacks, methods
from pathstats.cli.train import add_config_argument, config_from_args
from pathstats.robust.train import TrainConfig, TrainError, evaluate

#: ``json.dumps(TrainConfig("fc").to_dict())`` as main wrote it before the defaults moved into
#: field metadata: config.json and the resume check compare this dict, so it must stay byte-equal.
IDENTITY = ('{"arch": "fc", "data": "digits", "method": "none", "size": null, "eps": 0.0, "epochs": null, '
            '"batch": null, "lr": null, "seed": 0, "device": "cpu", "eval_eps": 0.005, "fd_h": 0.01, "opnorm_p": "2", '
            '"opnorm_q": "2", "opnorm_iters": 5, "momentum": 0.9, "weight_decay": 0.0, "schedule": "cosine", '
            '"steps_per_epoch": null, "eval_n": null, "train_eval_n": 500, "normalise": false, "augment": "", '
            '"crop_pad": null, "val_split": 0, "halve_every": 30, "channels": null, "native_side": null, '
            '"limit_train": null, "limit_test": null, "eval_batch": null, "eval_every": 1, "adv_mode": "eval", '
            '"adv_clip": true, "eval_steps": 7, "eval_step_frac": 0.2, "eval_random_start": true, '
            '"opnorm_form": "eq13", "amp": null, "compile": null}')


def parse(*flags: str) -> argparse.Namespace:
    return _build_parser().parse_args(["train", "--out", "unused", *flags])


def test_a_runs_identity_is_unchanged():
    assert json.dumps(TrainConfig("fc").to_dict()) == IDENTITY


def test_absent_flags_give_the_fields_defaults():
    args = parse("--arch", "fc", "--data", "digits", "--method", "none")
    assert config_from_args(args) == TrainConfig("fc")


def test_every_field_has_one_flag_that_reaches_it():
    actions = {a.dest: a for a in _build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= set(actions)
    # one non-default value per field, given on the command line, arrives in the config
    values = {"size": "16", "eps": "0.5", "epochs": "2", "batch": "8", "lr": "0.5", "seed": "3", "device": "cuda:1",
              "eval_eps": "0.25", "fd_h": "0.5", "opnorm_p": "inf", "opnorm_q": "1", "opnorm_iters": "2",
              "momentum": "0.5", "weight_decay": "0.25", "schedule": "step", "steps_per_epoch": "4", "eval_n": "9",
              "train_eval_n": "11", "augment": "flip", "crop_pad": "2", "val_split": "5", "halve_every": "6",
              "channels": "4", "native_side": "16", "limit_train": "30", "limit_test": "31", "eval_batch": "12",
              "eval_every": "2", "adv_mode": "train", "eval_steps": "3", "eval_step_frac": "0.5",
              "opnorm_form": "squared", "amp": "bf16"}
    flags = ["--arch", "conv6", "--data", "folder:x", "--method", "grad-l1", "--normalise", "--no-adv-clip",
             "--no-eval-random-start", "--compile"]
    for name, text in values.items():
        flags += ["--" + name.replace("_", "-"), text]
    config = config_from_args(parse(*flags))
    default = TrainConfig("fc")
    changed = {f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) != getattr(default, f.name)}
    assert changed == {f.name for f in dataclasses.fields(TrainConfig)}
    assert config.eps == 0.5 and config.eval_steps == 3 and config.opnorm_p == "inf" and config.adv_clip is False


def test_the_help_shows_the_fields_defaults():
    parser = argparse.ArgumentParser()
    for name in ("eval_eps", "train_eval_n", "eval_steps", "adv_clip"):
        add_config_argument(parser, name)
    text = " ".join(parser.format_help().split())
    default = TrainConfig("fc")
    assert f"(default {default.eval_eps:g})" in text and f"(default {default.train_eval_n})" in text
    assert f"steps of the evaluation PGD (default {attacks.PGD_STEPS})" in text and "(default yes)" in text


def test_the_methods_options_are_the_fields_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    options = methods.OPTION_DEFAULTS
    assert options.pop("pgd_steps") == attacks.PGD_STEPS
    assert options == {name: fields[name] for name in options}
    assert set(options) == {"fd_h", "opnorm_p", "opnorm_q", "opnorm_iters", "adv_mode", "adv_clip", "opnorm_form"}


def test_pgd_defaults_have_one_home():
    assert TrainConfig("fc").eval_steps == attacks.PGD_STEPS
    assert TrainConfig("fc").eval_step_frac == attacks.PGD_STEP_FRAC
    parameters = inspect.signature(evaluate).parameters
    assert parameters["steps"].default == attacks.PGD_STEPS
    assert parameters["step_frac"].default == attacks.PGD_STEP_FRAC
    assert inspect.signature(attacks.pgd).parameters["steps"].default == attacks.PGD_STEPS
    assert f"{attacks.PGD_STEPS} steps of {attacks.PGD_STEP_FRAC:g} eps_p" in methods.METHODS["pgd"].description


# ---------------------------------------------------------------- papercut: --method grad-l1 without --eps


@pytest.mark.parametrize("method", ["grad-l1", "pgd", "opnorm"])
def test_a_regularised_method_without_eps_is_refused(tmp_path, capsys, method):
    out = tmp_path / "run"
    assert main(["train", "--arch", "fc", "--data", "digits", "--method", method, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--method {method} needs a strength" in err and "--eps E" in err
    assert not out.exists()  # refused before any work


def test_an_explicit_eps_0_is_accepted():
    config = config_from_args(parse("--arch", "fc", "--data", "digits", "--method", "grad-l1", "--eps", "0"))
    assert config.method == "grad-l1" and config.eps == 0.0
    assert config_from_args(parse("--arch", "fc", "--data", "digits", "--method", "none")).eps == 0.0
    with pytest.raises(TrainError, match="--method fgsm needs a strength: give --eps E"):
        config_from_args(parse("--arch", "fc", "--data", "digits", "--method", "fgsm"))


def test_experiment_shares_trains_data_flag():
    args = _build_parser().parse_args(["experiment", "fig1"])
    assert args.data == TrainConfig("fc").data
