"""The findings table on real tables: runs built through the real chain (samples -> profile ->
plan) where each claim holds, fails or is too noisy to tell, and the real Qwen2.5-Math dump."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from findings_data import (
    BEAM_FAILS,
    BEAM_HOLDS,
    build_run,
    findings_samples,
    sticky_easy,
    sticky_hard,
)

from planner.estimate import CurveOptions, import_samples, profile_samples
from planner.optimize import PlanOptions, make_plan
from planner.tables import PROBLEMS, SAMPLES, SAMPLES_FILE, ImportOptions, write_table
from reports.findings import MARKS, Finding, findings
from reports.findings.base import across_budgets, combine, side, single_mark
from reports.findings.compare import finding_b, finding_e
from reports.findings.compute_optimal import finding_a
from reports.findings.exchange import finding_d, model_multiplier
from reports.findings.revisions import finding_c
from reports.run import RunTables

QWEN = (
    Path(__file__).resolve().parents[2].parent
    / "shared/data/samples/qwen25math_rm8/math_cot_100.jsonl"
)
M14 = {"model_multiplier": 14}


def _large(seed: int, n: int = 160, **shift: float):
    return findings_samples(n, seed=seed, flops_mult=14.0, signal=0.6, **shift)


@pytest.fixture(scope="module")
def beam_holds() -> RunTables:
    return build_run(findings_samples(160, seed=0, beam=BEAM_HOLDS, signal=0.6))


@pytest.fixture(scope="module")
def exchange_holds() -> RunTables:
    # The larger model gains most on hard problems (a logit shift growing with difficulty).
    small = findings_samples(160, seed=0, signal=0.6)
    return build_run(small, _large(0, logit_shift=0.3, hard_shift=3.0), M14)


def _json(f: Finding) -> str:
    return json.dumps(dataclasses.asdict(f), sort_keys=True, allow_nan=False)


def test_every_finding_on_a_full_run_is_deterministic(beam_holds: RunTables) -> None:
    run = dataclasses.replace(
        beam_holds, large_profile=build_run(_large(0, logit_shift=0.3)).profile, context=M14
    )
    first, second = findings(run), findings(run)
    assert [f.key for f in first] == ["a", "b", "c", "d", "e", "f"]
    assert first == second
    assert [_json(f) for f in first] == [_json(f) for f in second]
    assert all(f.mark in MARKS and f.evidence for f in first)
    # Beam search, the exchange and the larger model are there; revisions are not.
    assert [f.mark == "not testable" for f in first] == [False, False, True, False, False, False]


def test_a_and_b_reproduced_when_beam_wins_low_and_loses_high(beam_holds: RunTables) -> None:
    a = finding_a(beam_holds)
    assert a.mark == "reproduced", a.evidence
    assert "paired percentile bootstrap" in a.numbers["method"]
    assert a.numbers["beats_mark"] == a.numbers["matches_mark"] == "reproduced"
    b = finding_b(beam_holds)
    assert b.mark == "reproduced", b.evidence
    assert b.numbers["easy_bins"] == [1, 2] and b.numbers["select"] == "weighted"
    assert b.numbers["low"]["budget"] == 2 and b.numbers["high"]["budget"] == 16
    assert b.numbers["low"]["ci_lo"] > 0 > b.numbers["high"]["ci_hi"]


def test_b_not_reproduced_and_inconclusive() -> None:
    fails = finding_b(build_run(findings_samples(160, seed=1, beam=BEAM_FAILS, signal=0.6)))
    assert fails.mark == "not reproduced", fails.evidence
    noisy = build_run(findings_samples(20, seed=0, beam={2: 0.15, 16: -0.05}, signal=0.6))
    assert finding_b(noisy).mark == "inconclusive", finding_b(noisy).evidence


def test_a_not_reproduced_when_weighted_best_of_n_is_the_only_option(
    beam_holds: RunTables,
) -> None:
    # A profile of weighted best-of-16 alone: compute-optimal is it, on every problem.
    prof = beam_holds.profile
    prof = prof[
        (prof["strategy"] == "sample")
        & prof["config"].str.contains('"select":"weighted"')
        & (prof["budget"] == 16)
    ]
    plan = make_plan(prof, beam_holds.problems, PlanOptions(n_boot=100, expect_repeats=1))
    run = dataclasses.replace(
        beam_holds, profile=prof, plan_curves=plan.curves, plan_summary=plan.summary
    )
    a = finding_a(run)
    assert a.mark == "not reproduced", a.evidence
    assert [(r["budget"], r["difference"]) for r in a.numbers["per_budget"]] == [(16, 0)]
    assert a.numbers["per_budget"][0]["efficiency_multiple"] == 1


def test_a_pairs_a_flops_plan_at_every_budget(beam_holds: RunTables) -> None:
    # In FLOPs the cheapest budget (one unscored sample) has no weighted option within it.
    plan = make_plan(
        beam_holds.profile,
        beam_holds.problems,
        PlanOptions(unit="flops", n_boot=50, expect_repeats=1),
    )
    a = finding_a(
        dataclasses.replace(beam_holds, plan_curves=plan.curves, plan_summary=plan.summary)
    )
    assert a.numbers["unit"] == "flops" and "paired" in a.numbers["method"], a.evidence
    assert a.mark == "reproduced", a.evidence


def test_a_falls_back_to_the_conservative_unpaired_interval(beam_holds: RunTables) -> None:
    a = finding_a(dataclasses.replace(beam_holds, profile=None))
    assert "conservative unpaired" in a.numbers["method"] and a.numbers["n_boot"] == 0
    paired = finding_a(beam_holds).numbers["per_budget"]
    for u, p in zip(a.numbers["per_budget"], paired, strict=True):
        assert u["difference"] == pytest.approx(p["difference"], abs=1e-6)
        # Unpaired intervals are the wider ones.
        assert u["ci_hi"] - u["ci_lo"] >= p["ci_hi"] - p["ci_lo"] - 1e-9


@pytest.mark.parametrize(
    ("sticky", "n", "seed", "mark"),
    [
        (sticky_hard, 160, 0, "reproduced"),
        (sticky_easy, 160, 0, "not reproduced"),
        (sticky_hard, 20, 0, "inconclusive"),
    ],
)
def test_c_revisions_trend(sticky, n: int, seed: int, mark: str) -> None:
    c = finding_c(build_run(findings_samples(n, seed=seed, revisions=sticky)))
    assert c.mark == mark, c.evidence
    assert c.numbers["budget"] == 8 and c.numbers["selection"] == "weighted[prm]"
    assert [p["bin"] for p in c.numbers["per_bin"]] == [1, 2, 3, 4, 5]
    # Per bin, the most sequential split against the most parallel at the same budget and
    # selection, with its interval; the easiest bin's is in the evidence.
    for p in c.numbers["per_bin"]:
        lo, hi = p["sequential_minus_parallel_ci"]
        assert p["sequential_minus_parallel"] == pytest.approx(-p["parallel_advantage"], abs=1e-5)
        assert lo <= p["sequential_minus_parallel"] <= hi
    easy = c.numbers["per_bin"][0]
    d = 100 * easy["sequential_minus_parallel"]
    assert f"on the easiest bin (1) 2x4 minus 4x2 is {d:+.1f} pts" in c.evidence
    if sticky is sticky_hard and n == 160:  # easy chains that do not stick: sequential wins there
        assert easy["sequential_minus_parallel_ci"][0] > 0


def test_d_and_e_when_the_larger_model_wins_hard_problems(exchange_holds: RunTables) -> None:
    d = finding_d(exchange_holds)
    assert d.mark == "reproduced", d.evidence
    assert d.numbers["easy_mark"] == d.numbers["hardest_mark"] == "reproduced"
    assert [r["ratio"] for r in d.numbers["per_ratio"]] == [0.16, 0.79, 22]
    e = finding_e(exchange_holds)
    assert e.mark in MARKS and e.mark != "not testable"
    assert all(r["large_flops_per_query"] <= r["flops_per_query"] for r in e.numbers["per_budget"])


def test_d_not_reproduced_when_the_larger_model_is_no_better_on_hard_problems() -> None:
    small = findings_samples(160, seed=0, signal=0.6)
    d = finding_d(build_run(small, _large(0, logit_shift=0.3, hard_shift=-3.0), M14))
    assert d.mark == "not reproduced", d.evidence
    assert d.numbers["hardest_mark"] == "not reproduced"


def test_e_marks_follow_the_larger_models_strength() -> None:
    small = findings_samples(160, seed=0, signal=0.6)
    weak = finding_e(build_run(small, _large(0, logit_shift=0.3)))
    assert weak.mark == "reproduced", weak.evidence
    strong = finding_e(build_run(small, _large(0, logit_shift=3.0)))
    assert strong.mark == "not reproduced", strong.evidence


def test_d_and_e_inconclusive_on_few_problems() -> None:
    small = findings_samples(16, seed=0, signal=0.6)
    run = build_run(small, _large(0, n=16, logit_shift=0.3, hard_shift=1.0), M14)
    assert finding_d(run).mark == "inconclusive", finding_d(run).evidence
    assert finding_e(run).mark == "inconclusive", finding_e(run).evidence


def test_model_multiplier_from_context_or_parameter_counts(exchange_holds: RunTables) -> None:
    assert model_multiplier(exchange_holds) == 14
    # From the two profiles' metadata (1e8 and 1.4e9 parameters), or report.json's large size.
    by_meta = dataclasses.replace(exchange_holds, context={})
    assert model_multiplier(by_meta) == pytest.approx(14)
    assert finding_d(by_meta) == finding_d(exchange_holds)
    by_context = dataclasses.replace(
        by_meta, large_profile_meta={}, context={"large_model_params": 2.8e9}
    )
    assert model_multiplier(by_context) == pytest.approx(28)
    unknown = finding_d(dataclasses.replace(by_meta, profile_meta={}))
    assert unknown.mark == "not testable" and "model multiplier" in unknown.evidence


def test_an_empty_run_says_what_is_missing(tmp_path: Path) -> None:
    out = findings(RunTables(root=tmp_path))
    assert [f.mark for f in out] == ["not testable"] * 6
    assert "curves.parquet" in out[0].evidence
    assert all("profile" in f.evidence for f in out[1:5])
    assert "single_best" in out[5].evidence
    assert all(f.numbers == {"missing": f.evidence} for f in out)


def test_the_real_qwen_dump(tmp_path: Path) -> None:
    if not QWEN.exists():
        pytest.skip(f"shared data not present: {QWEN}")
    tables = import_samples(QWEN, ImportOptions(level_field="level", score_transform="sigmoid"))
    write_table(tables.samples, tmp_path / SAMPLES_FILE, SAMPLES, tables.metadata)
    write_table(tables.problems, tmp_path / "problems.parquet", PROBLEMS, tables.metadata)
    prof = profile_samples(tmp_path, CurveOptions(mc_samples=64))
    plan = make_plan(prof.profile, prof.problems, PlanOptions(n_boot=100, expect_repeats=1))
    run = RunTables(
        root=tmp_path,
        problems=prof.problems,
        profile=prof.profile,
        profile_meta=prof.metadata,
        plan_curves=plan.curves,
        plan_summary=plan.summary,
    )
    a, b, c, d, e, f = findings(run)
    assert a.mark != "not testable" and a.numbers["reference"] == "weighted[imported]"
    assert "paired" in a.numbers["method"]
    assert b.evidence == "the profile has no beam-search rows"
    assert c.evidence == "the profile has no revisions rows"
    assert d.mark == e.mark == "not testable" and "larger model" in d.evidence + e.evidence
    # A strong reward model on 100 problems: per-bin choices buy nothing at any budget, the plan
    # runs best-of-N by the reward model for every prompt, and (f) says so.
    assert f.mark == "not reproduced" and "paired" in f.numbers["method"]
    assert not any(r["per_bin"] for r in f.numbers["per_budget"])
    assert findings(run) == [a, b, c, d, e, f]


def test_the_marking_rules() -> None:
    assert [side(*iv) for iv in ((0.1, 0.2), (-0.2, -0.1), (0.0, 0.0), (-1e-17, 0.0), (-1, 1))] == [
        "for",
        "against",
        "tie",
        "tie",
        "unclear",
    ]
    assert single_mark("tie") == single_mark("against") == "not reproduced"
    assert across_budgets(["tie", "for", "unclear"]) == "reproduced"
    assert across_budgets(["for", "against"]) == "not reproduced"
    assert across_budgets(["tie", "tie"]) == "not reproduced"
    assert across_budgets(["tie", "unclear"]) == "inconclusive"
    assert combine(["reproduced", "inconclusive"]) == "inconclusive"
    assert combine(["inconclusive", "not reproduced"]) == "not reproduced"
    with pytest.raises(ValueError, match="mark"):
        Finding("a", "claim", "maybe", "")


def test_a_marks_only_budgets_the_reference_can_spend() -> None:
    # Beam search at 32 generations, the sample pool only up to 8: at 16 and 32 weighted
    # best-of-N is stuck at 8, so those budgets are reported and left out of the mark.
    run = build_run(findings_samples(160, seed=0, pool=8, beam={2: 0.3, 32: 0.6}, signal=0.6))
    a = finding_a(run)
    rows = {r["budget"]: r for r in a.numbers["per_budget"]}
    assert a.numbers["reference_largest_option"] == 8
    assert max(rows) == 32 and not rows[32]["equal_budget"] and rows[8]["equal_budget"]
    assert "not marked, beyond the reference's largest option of 8 generations" in a.evidence
    # the mark is decided by the budgets the reference can spend alone
    only = [side(r["ci_lo"], r["ci_hi"]) for r in rows.values() if r["equal_budget"]]
    assert a.numbers["beats_mark"] == across_budgets(only)
