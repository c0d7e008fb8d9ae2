"""--amp and --compile are execution options: a run trains with them and resumes without them."""

import pytest

from pathstats.robust.train import TrainConfig, TrainError, train


def _config(**kw):
    return TrainConfig("fc", epochs=2, batch=64, steps_per_epoch=3, eval_n=40, train_eval_n=40, eval_steps=1, **kw)


def test_amp_run_resumes_without_amp_and_stays_close(tmp_path):
    plain = train(_config(), str(tmp_path / "plain"), progress=False)
    first = train(_config(amp="bf16"), str(tmp_path / "amp"), progress=False, max_steps=3)
    assert first["status"] == "interrupted"
    done = train(_config(), str(tmp_path / "amp"), progress=False)  # same identity without --amp
    assert done["status"] == "done"
    a, b = plain["metrics"]["test_grad_l1"], done["metrics"]["test_grad_l1"]
    assert a != b and abs(a - b) / a < 0.1  # bfloat16 forward passes perturb the training, not the scale


def test_compile_failure_falls_back_in_one_line(tmp_path, capsys, monkeypatch):
    import torch

    def broken(model, *a, **k):
        raise RuntimeError("no compiler here\nsecond line")

    monkeypatch.setattr(torch, "compile", broken)
    eager = train(_config(), str(tmp_path / "eager"), progress=False)
    compiled = train(_config(compile=True), str(tmp_path / "compiled"), progress=False)
    err = capsys.readouterr().err
    assert "torch.compile failed (RuntimeError: no compiler here); training the eager model" in err
    assert compiled["metrics"]["test_grad_l1"] == eager["metrics"]["test_grad_l1"]


def test_bad_amp_is_refused():
    with pytest.raises(TrainError, match="--amp must be one of bf16"):
        _config(amp="fp8").resolved().validate()
