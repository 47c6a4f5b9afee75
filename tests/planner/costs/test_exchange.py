"""Pretraining-vs-inference exchange: the paper's multipliers, the FLOPs identity, extrapolation and
the per-bin comparison on real parquet profiles."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from profiles import write_larger, write_profile

from planner.costs.exchange import exchange_report, larger_extrapolated, larger_from_profile
from planner.costs.scaling import (
    SCALING_LAWS,
    budget_multiplier,
    extrapolate_pass1,
    inference_flops,
    pretrain_flops,
    ratio_for,
)
from planner.errors import PlannerError
from planner.optimize import load_binned_profile
from planner.tables import read_profile


@pytest.mark.parametrize(("ratio", "expected"), [(0.16, 257.75), (0.79, 63.37), (22, 15.77)])
def test_paper_multipliers(ratio: float, expected: float) -> None:
    # Snell et al. 2024: M ≈ 14 gives about 258, 63 and 16.
    assert budget_multiplier(14, ratio) == pytest.approx(expected, abs=0.01)


def test_multiplier_matches_total_flops() -> None:
    # The definition: 6·N·Dp + 2·N·X·Di equals 6·M·N·Dp + 2·M·N·Di.
    n, dp, m = 1.5e9, 18e12, 14.0
    for r in (0.05, 0.16, 1.0, 22.0):
        di = r * dp
        x = budget_multiplier(m, r)
        small = pretrain_flops(n, dp) + inference_flops(n, x * di)
        large = pretrain_flops(m * n, dp) + inference_flops(m * n, di)
        assert small == pytest.approx(large, rel=1e-12)
    # M = 1: no exchange, whatever R.
    assert budget_multiplier(1, 0.3) == 1


def test_multiplier_monotone() -> None:
    xs = [budget_multiplier(14, r) for r in (0.01, 0.1, 1, 10, 100)]
    assert all(a > b for a, b in itertools.pairwise(xs))
    assert budget_multiplier(30, 1) > budget_multiplier(14, 1)
    assert budget_multiplier(14, 1e9) == pytest.approx(14, abs=1e-6)  # R → ∞: only M


@pytest.mark.parametrize(
    ("m", "r"), [(0, 1), (-3, 1), (14, 0), (14, -0.5), (0.5, 1), (math.nan, 1)]
)
def test_bad_exchange_inputs(m: float, r: float) -> None:
    with pytest.raises(PlannerError):
        budget_multiplier(m, r)


def test_ratio_and_bad_sizes() -> None:
    assert ratio_for(1e6, 365, 500, 18e12) == pytest.approx(1e6 * 365 * 500 / 18e12)
    for bad in ((0, 365, 500, 1e12), (1e6, -1, 500, 1e12), (1e6, 365, 0, 1e12), (1e6, 365, 500, 0)):
        with pytest.raises(PlannerError):
            ratio_for(*bad)
    with pytest.raises(PlannerError):
        pretrain_flops(0, 1e12)


def test_scaling_law_constants_and_extrapolation() -> None:
    ch = SCALING_LAWS["chinchilla"]
    # Chinchilla-70B on 1.4T tokens: about 1.94 nats (Hoffmann et al. 2022, approach 3).
    assert ch.loss(70e9, 1.4e12) == pytest.approx(1.94, abs=0.01)
    assert SCALING_LAWS["besiroglu"].loss(70e9, 1.4e12) > ch.E
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    big, info = extrapolate_pass1(p, 1.5e9, 18e12, 14)
    assert info["loss_large"] < info["loss_small"]
    assert np.all(big >= np.clip(p, 1e-3, 1 - 1e-3) - 1e-12)
    bigger, _ = extrapolate_pass1(p, 1.5e9, 18e12, 50)
    assert np.all(bigger >= big) and bigger[2] > big[2]
    # The anchor of the slope: Llama-3.1 8B → 70B on MATH, 51.9% → about 68%.
    p70, _ = extrapolate_pass1(np.array([0.519]), 8e9, 15e12, 70 / 8)
    assert p70[0] == pytest.approx(0.68, abs=0.01)
    with pytest.raises(PlannerError):
        extrapolate_pass1(p, 1.5e9, 18e12, 14, law="kaplan")
    # Inside the fitted range no warning; a 36k-parameter testbed model gets one.
    assert "warning" not in info
    assert "outside the range" in extrapolate_pass1(p, 3.6e4, 1e7, 4)[1]["warning"]


def test_exchange_with_larger_profile(tmp_path: Path) -> None:
    small = write_profile(tmp_path / "small")
    # The larger model: a little better than test-time on easy bins, far better on the hardest.
    big = write_larger(tmp_path / "big", {1: 0.82, 2: 0.6, 3: 0.3, 4: 0.6})
    bp = load_binned_profile(small)
    larger = larger_from_profile(read_profile(big)[0], str(big), bp)
    rep = exchange_report(bp, larger, 14, [0.16, 22])
    assert rep["larger_model"]["extrapolated"] is False
    lo_r, hi_r = rep["results"]
    assert lo_r["budget_multiplier"] == pytest.approx(257.75)
    by_bin = {b["bin"]: b for b in lo_r["per_bin"]}
    # Easy/medium bins: 16 samples reach p1 + gain·15/16, beating the larger model's pass@1.
    assert by_bin[2]["winner"] == "test-time"
    assert by_bin[2]["difference_points"] > 0
    assert by_bin[4]["winner"] == "pretraining"  # test-time gains nothing on the hardest bin
    lo, hi = by_bin[4]["ci95_points"]
    assert lo <= by_bin[4]["difference_points"] <= hi < 0
    assert by_bin[2]["selection"] == "cross-fitted"
    # Coverage (pass@k) is never chosen.
    assert all(
        b["option"]["config"]["select"] != "coverage" for b in lo_r["per_bin"] if "option" in b
    )
    # At R = 22 the allowance is ~16 generations' FLOPs: weakly smaller accuracy than at R = 0.16.
    hi_bins = {b["bin"]: b for b in hi_r["per_bin"]}
    for b in (1, 2, 3):
        assert hi_bins[b]["test_time_accuracy"] <= by_bin[b]["test_time_accuracy"] + 1e-12


def test_exchange_extrapolated_is_labelled(tmp_path: Path) -> None:
    bp = load_binned_profile(write_profile(tmp_path / "small"))
    larger = larger_extrapolated(bp, 1.5e9, 18e12, 14, "besiroglu")
    rep = exchange_report(bp, larger, 14, [0.79])
    assert rep["larger_model"]["extrapolated"] is True
    assert rep["larger_model"]["law"] == "besiroglu"
    assert len(rep["results"][0]["per_bin"]) == 4


def test_larger_profile_missing_bins(tmp_path: Path) -> None:
    bp = load_binned_profile(write_profile(tmp_path / "small"))
    big = write_larger(tmp_path / "big", {1: 0.9, 2: 0.9, 3: 0.9, 4: 0.9}, bins=(1, 2))
    with pytest.raises(PlannerError, match="bin 3, 4"):
        larger_from_profile(read_profile(big)[0], str(big), bp)


def test_profile_needs_bins(tmp_path: Path) -> None:
    bp = load_binned_profile(write_profile(tmp_path / "small", bins=(1, 2)))
    larger = larger_extrapolated(bp, 1.5e9, 18e12, 14, "chinchilla")
    with pytest.raises(PlannerError, match="no problems in oracle_bin 3, 4, 5"):
        exchange_report(bp, larger, 14, [1.0], needed_bins=[1, 2, 3, 4, 5])
