"""The what-if and serving-cost library (planner.costs.whatif, planner.costs.serving) and the
exchange entry points the commands call, checked on real numbers."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from profiles import write_larger, write_profile

from planner.costs import (
    Deployment,
    exchange_formula,
    exchange_report,
    larger_model,
    load_hardware,
    load_model,
    small_model_size,
    whatif_report,
)
from planner.costs.serving import cost_report, cost_rows, option_serving_costs, workload_cost_row
from planner.costs.whatif import (
    deployment_flops,
    find_flips,
    parse_load,
    pretrain_gpu_hours,
    serving_gpu_hours,
    tokens_by_strategy,
)
from planner.errors import PlannerError
from planner.optimize import load_binned_profile


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("whatif-lib")
    return write_profile(root / "small"), write_larger(
        root / "big", {1: 0.82, 2: 0.6, 3: 0.3, 4: 0.6}
    )


def test_exchange_formula_gives_the_papers_multipliers() -> None:
    out = exchange_formula(14, [0.16])
    # Snell et al. 2024, section 7: M = 14, R = 0.16 -> X = 14 + 3·13/0.16 = 257.75.
    assert out["budget_multiplier"] == 257.75 and out["ratio"] == 0.16
    assert out["formula"] == "X = M + 3(M-1)/R"
    several = exchange_formula(14, [0.16, 0.79, 22])
    assert [r["budget_multiplier"] for r in several["results"]] == pytest.approx(
        [257.75, 14 + 39 / 0.79, 14 + 39 / 22]
    )
    assert "ratio" not in several and "budget_multiplier" not in several


def test_parse_load_grid_and_errors() -> None:
    grid = parse_load("1e3..1e9", 2)
    assert len(grid) == 13 and grid[0] == 1e3 and grid[-1] == pytest.approx(1e9)
    assert all(b / a == pytest.approx(10**0.5) for a, b in itertools.pairwise(grid))
    assert parse_load(" 2e6 ") == [2e6] and parse_load("5,6") == [5.0, 6.0]
    for bad, text in (
        ("0", "positive numbers"),
        ("9..3", "positive and increasing"),
        ("abc", "a range like"),
    ):
        with pytest.raises(PlannerError, match=text):
            parse_load(bad)


def test_deployment_flops_balance_the_exchange() -> None:
    n, d, m, d_inf = 1.5e9, 18e12, 14.0, 2e6 * 365 * 600
    x = m + 3 * (m - 1) / (d_inf / d)
    f = deployment_flops(n, d, m, d_inf, x)
    assert f["small_model_pretrain"] == 6 * n * d
    assert f["larger_model_pretrain"] == pytest.approx(6 * m * n * d)
    assert f["larger_model_inference"] == pytest.approx(2 * m * n * d_inf)
    # X is defined so that both options cost the same in total.
    assert f["small_model_pretrain"] + f["small_model_inference_allowed"] == pytest.approx(
        f["larger_model_total"]
    )


def test_pretrain_gpu_hours_is_flops_over_peak_times_mfu() -> None:
    hw = load_hardware("h100-sxm")
    flops = 6 * 8e9 * 15e12
    assert pretrain_gpu_hours(flops, hw, 0.4) == pytest.approx(
        flops / (hw.peak_flops_per_s * 0.4 * 3600)
    )
    # 989.4 TFLOP/s dense bf16 at 40% MFU: 7.2e23 FLOPs take about 505,000 GPU-hours.
    assert pretrain_gpu_hours(flops, hw, 0.4) == pytest.approx(
        7.2e23 / (hw.peak_flops_per_s * 1440), rel=1e-12
    )


def test_find_flips_reports_where_the_winner_changes() -> None:
    pts = [
        {
            "queries_per_day": q,
            "ratio": r,
            "overall": {"winner": w},
            "per_bin": [{"bin": 1, "winner": w1}],
        }
        for q, r, w, w1 in (
            (1e3, 0.1, "test-time", "test-time"),
            (1e4, 1.0, "test-time", "tie"),
            (1e5, 10.0, "pretraining", "pretraining"),
        )
    ]
    flips = find_flips(pts)
    assert [(f["scope"], f["from"], f["to"], f["between_queries_per_day"]) for f in flips] == [
        ("bin 1", "test-time", "tie", [1e3, 1e4]),
        ("overall", "test-time", "pretraining", [1e4, 1e5]),
        ("bin 1", "tie", "pretraining", [1e4, 1e5]),
    ]
    assert find_flips(pts[:1]) == []


def test_small_model_size_from_flags_spec_or_metadata() -> None:
    spec = load_model("llama-3.1-8b")
    assert small_model_size(spec, None, None) == (spec.n_params, spec.pretrain_tokens)
    assert small_model_size(spec, 2e9, 3e12) == (2e9, 3e12)
    assert small_model_size(None, None, None, {"n_params": 7}) == (7.0, None)
    assert small_model_size(None, None, None, {"n_params": -1}) == (None, None)


def test_whatif_without_profile_matches_the_formulas() -> None:
    dep = Deployment((2e6,), 365.0, 9.0, 8e9, 15e12, tokens_per_query=600.0)
    hw = load_hardware("h100-sxm")
    out = whatif_report(dep, hw=hw)
    p = out["points"][0]
    d_inf = 2e6 * 365 * 600
    assert p["inference_tokens"] == d_inf and p["ratio"] == pytest.approx(d_inf / 15e12)
    assert p["budget_multiplier"] == pytest.approx(9 + 3 * 8 / p["ratio"])
    assert p["cost"]["small_model_pretrain_gpu_hours"] == pytest.approx(
        6 * 8e9 * 15e12 / (hw.peak_flops_per_s * 0.4 * 3600)
    )
    assert p["cost"]["larger_model_pretrain_gpu_hours"] == pytest.approx(
        9 * p["cost"]["small_model_pretrain_gpu_hours"]
    )
    assert "per_bin" not in p and out["flips"] == [] and "larger_model" not in out
    with pytest.raises(PlannerError, match="--tokens-per-query"):
        whatif_report(Deployment((2e6,), 365.0, 9.0, 8e9, 15e12))
    with pytest.raises(ValueError, match="queries_per_day"):
        Deployment((), 365.0, 9.0, 8e9, 15e12)
    # a pretraining MFU of 0 would divide by zero in the GPU-hours
    with pytest.raises(ValueError, match="train_mfu"):
        Deployment((2e6,), 365.0, 9.0, 8e9, 15e12, train_mfu=0.0)


def test_whatif_with_profiles_prices_both_options(profiles: tuple[Path, Path]) -> None:
    small, big = profiles
    bp = load_binned_profile(small)
    spec, hw = load_model("qwen2.5-1.5b"), load_hardware("h100-sxm")
    dep = Deployment((1e3, 1e9), 365.0, 14.0, 1.5e9, 18e12, slo_s=10.0)
    out = whatif_report(dep, bp, str(big), hw=hw, spec=spec)
    assert out["larger_model"]["extrapolated"] is False
    # Default tokens per query: the budget-1 majority rows, 100·(1 + 0.5·bin) generated + 50 prompt.
    assert out["tokens_per_query"] == pytest.approx(50 + 100 * (1 + 0.5 * 2.5))
    for p in out["points"]:
        f, c = p["flops"], p["cost"]
        assert f["small_model_total"] == f["small_model_pretrain"] + f["small_model_inference"]
        assert f["small_model_total"] <= f["larger_model_total"] * (1 + 1e-9)
        assert c["test_time_usd"] == pytest.approx(c["test_time_gpu_hours"] * hw.usd_per_hour)
        assert c["larger_model_usd"] == pytest.approx(c["larger_model_gpu_hours"] * hw.usd_per_hour)
        assert c["larger_model_meets_slo"] == (c["larger_model_latency_s"] <= 10.0)
    low, high = out["points"]
    # A thousand times the queries: a million times the serving GPU-hours of the same choice.
    assert high["queries_per_day"] / low["queries_per_day"] == 1e6
    assert high["cost"]["larger_model_gpu_hours"] == pytest.approx(
        1e6 * low["cost"]["larger_model_gpu_hours"]
    )
    direct = serving_gpu_hours(bp, low["per_bin"], spec, hw, 14.0, 1e3 * 365.0)
    assert direct["test_time_gpu_hours"] == pytest.approx(low["cost"]["test_time_gpu_hours"])
    assert "test_time_meets_slo" not in direct
    assert tokens_by_strategy(bp) == out["tokens_per_query_by_strategy"]
    assert out["tokens_per_query_by_strategy"]["beam"] == {"4": pytest.approx(600.0)}


def test_larger_model_needs_a_profile_or_the_small_models_size(profiles: tuple[Path, Path]) -> None:
    small, big = profiles
    bp = load_binned_profile(small)
    with pytest.raises(PlannerError, match="--params and --pretrain-tokens"):
        larger_model(bp, None, None, 18e12, 14.0)
    extrapolated = larger_model(bp, None, 1.5e9, 18e12, 14.0)
    assert extrapolated.extrapolated and extrapolated.info["law"] == "chinchilla"
    report = exchange_report(bp, larger_model(bp, big, None, None, 14.0), 14.0, [0.16])
    assert report["budget_multiplier"] == 257.75 and report["larger_model"]["source"] == str(big)


def test_cost_rows_and_report(profiles: tuple[Path, Path]) -> None:
    small, _ = profiles
    bp = load_binned_profile(small)
    spec, hw = load_model("qwen2.5-1.5b"), load_hardware("a100-80gb")
    rows = cost_rows(bp, spec, hw)
    per_bin = cost_rows(bp, spec, hw, per_bin=True)
    assert len(per_bin) == len(bp.options) and {r["bin"] for r in per_bin} == {1, 2, 3, 4}
    assert len(rows) == len(bp.options.drop_duplicates(["strategy", "config", "budget"]))
    for r in rows:
        assert r["usd_per_1k_queries"] == pytest.approx(
            r["gpu_s_per_query"] / 3600 * hw.usd_per_hour * 1000
        )
        assert r["queries_per_s_per_gpu"] == pytest.approx(1 / r["gpu_s_per_query"])
    slo = sorted(r["latency_s"] for r in rows)[len(rows) // 2]
    kept = cost_report(spec, hw, cost_rows(bp, spec, hw, slo_s=slo), slo, only_slo=True)["rows"]
    assert 0 < len(kept) < len(rows) and all(r["latency_s"] <= slo for r in kept)
    usd, meets = option_serving_costs(bp, spec, hw, slo)
    assert len(usd) == len(meets) == len(bp.options)
    assert usd.tolist() == pytest.approx([r["usd_per_1k_queries"] / 1000 for r in per_bin])


def test_workload_cost_row_is_one_query_of_the_strategy() -> None:
    spec, hw = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    row = workload_cost_row("sample", {"select": "majority"}, 16, 300, 400, spec, hw, slo_s=1e-9)
    assert row["width"] == 16 and row["depth"] == 1
    assert row["tokens"] == 16 * 400 and row["prompt_tokens"] == 16 * 300
    assert row["meets_slo"] is False and math.isfinite(row["latency_s"]) and row["latency_s"] > 0
    report = cost_report(spec, hw, [row], 1e-9, only_slo=True)
    assert (
        report["rows"] == []
        and report["model"] == "llama-3.1-8b"
        and report["hardware"]["name"] == "h100-sxm"
    )
