"""Training off a terminal (a log file, CI): the loop writes its progress as lines, the same
weights come out as without them, and a first run says what it trains, where and for how long."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch

from models.testbed.modeling import LlamaShape, TrainSpec, build_model, train_loop
from models.testbed.settings import TestbedSettings
from models.testbed.train import first_run_line
from planner import progress
from planner.timings import TESTBED, about

TINY = LlamaShape(16, 1, 2)


def _loss_fn(slow_s: float):
    ids = torch.arange(12).reshape(2, 6) % 10

    def loss_fn(m: torch.nn.Module, step: int) -> tuple[torch.Tensor, int]:
        time.sleep(slow_s)  # long enough for the reporting thread to write between steps
        out = m(input_ids=ids, labels=ids)
        return out.loss, int(ids.numel())

    return loss_fn


def test_training_off_a_terminal_writes_progress_lines_and_the_same_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "EVERY_S", 0.02)
    spec = TrainSpec(steps=10, batch_size=2, lr=3e-3, warmup=2)
    quiet = build_model(TINY, 0)
    train_loop(quiet, spec, _loss_fn(0.0), tmp_path / "a.pt", desc="tiny LM", progress=False)
    assert capsys.readouterr().err == ""
    loud = build_model(TINY, 0)
    train_loop(loud, spec, _loss_fn(0.03), tmp_path / "b.pt", desc="tiny LM", progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("[tiny LM] done: 10 steps in ")
    ticks = [line for line in err if re.match(r"\[tiny LM\] \d+/10 steps \(\d+%\), ", line)]
    assert ticks, err
    assert all("elapsed" in t for t in ticks)
    assert any("left" in t and "loss " in t for t in ticks)  # once a step has ended
    assert all(
        torch.equal(a, b) for a, b in zip(quiet.parameters(), loud.parameters(), strict=True)
    )


@pytest.mark.parametrize(
    ("quick", "scale"), [(True, "default"), (False, "default"), (False, "paper")]
)
def test_first_run_says_what_it_trains_where_and_how_long_it_took(
    tmp_path: Path, quick: bool, scale: str
) -> None:
    line = first_run_line(TestbedSettings(quick=quick, scale=scale, seed=0), tmp_path / "testbed")
    name = "quick" if quick else scale
    assert line.startswith(f"[testbed] training the {name} testbed once, into the cache ")
    assert str(tmp_path / "testbed") in line
    assert f"this took {about(TESTBED[name].call_s)} on 2 CPU cores" in line
    assert "PRM recipe" not in line
    other = first_run_line(
        TestbedSettings(quick=quick, scale=scale, seed=0, prm_recipe="rank"), tmp_path
    )
    assert "with the PRM recipe rank" in other
