"""Curve estimators: closed forms and vote estimates against brute-force enumeration."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.errors import PlannerError
from planner.estimate.closed_form import best_of_k, pass_at_k
from planner.estimate.curves import profile_from_samples
from planner.estimate.pools import CurveOptions
from planner.estimate.votes import vote_curve, vote_curve_sparse
from planner.tables import PROFILE, canonical_config, validate


def brute_vote(answers, weights, correct, k):
    """Expected correctness of (weighted) voting over every k-subset, ties drawn at random."""
    accs = []
    for sub in itertools.combinations(range(len(answers)), k):
        totals: dict[str, float] = {}
        ok: dict[str, bool] = {}
        for i in sub:
            if answers[i] is None:
                continue
            totals[answers[i]] = totals.get(answers[i], 0.0) + weights[i]
            ok[answers[i]] = correct[i]
        if not totals or max(totals.values()) <= 0:
            accs.append(0.0)
            continue
        top = max(totals.values())
        tied = [a for a, v in totals.items() if abs(v - top) <= 1e-9 * max(1.0, abs(top))]
        accs.append(sum(ok[a] for a in tied) / len(tied))
    return float(np.mean(accs))


def brute_best(scores, correct, k):
    accs = []
    for sub in itertools.combinations(range(len(scores)), k):
        top = max(scores[i] for i in sub)
        tied = [i for i in sub if scores[i] == top]
        accs.append(np.mean([correct[i] for i in tied]))
    return float(np.mean(accs))


pools = st.integers(min_value=1, max_value=9).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(pools)
def test_closed_forms_equal_brute_force(pool):
    answers, scores, _ = pool
    # Correctness is a property of the answer: the right answer is "a".
    correct = [a == "a" for a in answers]
    n = len(answers)
    for k in range(1, n + 1):
        exact_pass = np.mean(
            [any(correct[i] for i in s) for s in itertools.combinations(range(n), k)]
        )
        assert pass_at_k(n, sum(correct), k) == pytest.approx(exact_pass, abs=1e-12)
        assert best_of_k(np.array(scores), np.array(correct, float), k) == pytest.approx(
            brute_best(scores, correct, k), abs=1e-12
        )


@settings(max_examples=60, deadline=None)
@given(pools)
def test_votes_exact_for_small_pools(pool):
    answers, scores, _ = pool
    correct = [a == "a" for a in answers]
    n = len(answers)
    names = sorted({a for a in answers if a is not None})
    cls = np.array([names.index(a) if a is not None else -1 for a in answers])
    cls_ok = np.array([name == "a" for name in names], float)
    budgets = list(range(1, n + 1))
    rng = np.random.default_rng(0)
    if not names:
        return
    maj = vote_curve_sparse(cls, np.ones(n), cls_ok, budgets, 10_000, rng)
    wmaj = vote_curve_sparse(cls, np.array(scores), cls_ok, budgets, 10_000, rng)
    for k, m, w in zip(budgets, maj, wmaj, strict=True):
        assert m.exact and w.exact
        assert m.accuracy == pytest.approx(brute_vote(answers, [1.0] * n, correct, k), abs=1e-12)
        assert w.accuracy == pytest.approx(brute_vote(answers, scores, correct, k), abs=1e-12)
        assert 0.0 <= m.accuracy <= 1.0 and 0.0 <= w.accuracy <= 1.0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.data())
def test_pass_at_k_in_unit_interval_and_monotone(n, data):
    c = data.draw(st.integers(0, n))
    vals = [float(pass_at_k(n, c, k)) for k in range(1, n + 1)]
    assert all(0.0 <= v <= 1.0 for v in vals)
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(vals))
    assert vals[0] == pytest.approx(c / n)


def test_monte_carlo_close_to_exact_and_reports_se():
    rng = np.random.default_rng(1)
    n = 14
    answers = rng.choice(["a", "b", "c"], size=n, p=[0.4, 0.35, 0.25]).tolist()
    correct = [a == "a" for a in answers]
    names = ["a", "b", "c"]
    cls = np.array([names.index(a) for a in answers])
    cls_ok = np.array([1.0, 0.0, 0.0])
    k = 7
    exact = brute_vote(answers, [1.0] * n, correct, k)
    est = vote_curve_sparse(cls, np.ones(n), cls_ok, [k], 1000, np.random.default_rng(2))[0]
    assert not est.exact
    assert est.se > 0
    assert abs(est.accuracy - exact) < 4 * est.se + 1e-3


def test_dense_and_sparse_vote_engines_agree_exactly():
    answers = ["a", "b", "a", "c", "b", "a"]
    cls = np.array([0, 1, 0, 2, 1, 0])
    w = np.array([0.2, 0.9, 0.3, 0.5, 0.1, 0.4])
    dense = np.zeros((6, 3))
    dense[np.arange(6), cls] = w
    ok = np.array([1.0, 0.0, 0.0])
    for k in range(1, 7):
        a = vote_curve(dense, ok, [k], 10_000, np.random.default_rng(0))[0].accuracy
        b = vote_curve_sparse(cls, w, ok, [k], 10_000, np.random.default_rng(0))[0].accuracy
        assert a == pytest.approx(b, abs=1e-12)
        assert a == pytest.approx(brute_vote(answers, w.tolist(), [x == "a" for x in answers], k))


def _row(
    pid,
    strategy,
    config,
    run,
    pos,
    answer,
    correct,
    score,
    steps=(),
    verifier="v",
    gen=10.0,
    ver=4.0,
):
    return {
        "problem_id": pid,
        "strategy": strategy,
        "config": canonical_config(config),
        "run": run,
        "position": pos,
        "answer": answer,
        "correct": correct,
        "verifier": verifier,
        "score": score,
        "step_scores": list(steps),
        "prompt_tokens": 5,
        "gen_tokens": 3,
        "gen_flops": gen,
        "verifier_flops": ver,
        "wall_s": 0.5,
    }


def test_profile_rows_and_costs_for_a_pool():
    rows = [
        _row("p1", "sample", {"n": 4}, 0, i, a, a == "7", s, steps=(0.9, s))
        for i, (a, s) in enumerate([("7", 0.9), ("3", 0.2), ("7", 0.6), ("5", 0.8)])
    ]
    prof = validate(profile_from_samples(pd.DataFrame(rows)), PROFILE, "test")
    cfgs = {c: json.loads(c) for c in prof["config"].unique()}
    selects = {(c["select"], c["agg"]) for c in cfgs.values()}
    assert ("coverage", "none") in selects and ("majority", "none") in selects
    assert {("best", a) for a in ("last", "min", "prod", "mean")} <= selects
    at4 = prof[prof["budget"] == 4].set_index(
        prof[prof["budget"] == 4]["config"].map(
            lambda c: json.loads(c)["select"] + json.loads(c)["agg"]
        )
    )
    assert at4.loc["coveragenone", "accuracy"] == 1.0
    assert at4.loc["majoritynone", "accuracy"] == 1.0  # "7" has two votes of four
    assert at4.loc["bestlast", "accuracy"] == 1.0  # 0.9 is the top score and is right
    # Majority needs no verifier: its cost is generation only; best-of-N pays the verifier.
    assert at4.loc["majoritynone", "flops"] == pytest.approx(40.0)
    assert at4.loc["bestlast", "flops"] == pytest.approx(56.0)
    assert at4.loc["bestlast", "tokens"] == pytest.approx(12.0)
    assert at4.loc["bestlast", "wall_s"] == pytest.approx(2.0)
    assert sorted(prof["budget"].unique()) == [1.0, 2.0, 4.0]


def test_revision_chains_are_subsampled_whole():
    # Two chains of length 2; chain 0 ends right, chain 1 stays wrong.
    rows = []
    for chain, seq in enumerate([[("1", False), ("2", True)], [("3", False), ("3", False)]]):
        for pos, (a, ok) in enumerate(seq):
            rows.append(
                _row(
                    "p", "revisions", {"chains": 2, "length": 2}, chain, pos, a, ok, 0.5 + 0.1 * ok
                )
            )
    prof = profile_from_samples(pd.DataFrame(rows))
    cfg = prof["config"].map(json.loads)
    cov = prof[(cfg.map(lambda c: c["select"]) == "coverage")]
    got = {
        (json.loads(c)["chains"], json.loads(c)["length"]): a
        for c, a in zip(cov["config"], cov["accuracy"], strict=True)
    }
    # One chain of length 1: never right; one chain of length 2: right half the time (chain 0 only).
    assert got[(1, 1)] == 0.0
    assert got[(1, 2)] == pytest.approx(0.5)
    assert got[(2, 2)] == 1.0
    assert set(prof["budget"]) == {1.0, 2.0, 4.0}
    # A second revisions run of another shape gives distinct options, never duplicate keys.
    more = [
        {**r, "config": canonical_config({"chains": 1, "length": 2})} for r in rows if r["run"] == 0
    ]
    both = profile_from_samples(pd.DataFrame(rows + more))
    validate(both, PROFILE, "two revision runs")
    assert len(both) > len(prof)


def test_search_runs_read_one_budget_each():
    rows = []
    for run in range(2):
        for pos, (a, ok, s) in enumerate([("4", True, 0.9), ("8", False, 0.3), ("8", False, 0.35)]):
            rows.append(
                _row(
                    "p",
                    "lookahead",
                    {"n": 4, "m": 2, "k": 1},
                    run,
                    pos,
                    a,
                    ok if run == 0 else not ok,
                    s,
                )
            )
    prof = profile_from_samples(pd.DataFrame(rows))
    assert set(prof["budget"]) == {8.0}  # N(k+1) generations
    sel = prof["config"].map(lambda c: json.loads(c)["select"])
    maj = prof[sel == "majority"]["accuracy"].iloc[0]
    best = prof[(sel == "best")]["accuracy"].iloc[0]
    assert maj == pytest.approx(0.5)  # run 0: "8" wins (wrong); run 1: "8" wins (right)
    assert best == pytest.approx(0.5)
    # Search cost is the sum of a run's rows (gen + verifier), averaged over runs.
    assert prof["flops"].iloc[0] == pytest.approx(3 * 14.0)


def test_negative_scores_rejected_for_weighted_votes():
    rows = [_row("p", "sample", {}, 0, i, "1", True, -0.5) for i in range(2)]
    with pytest.raises(PlannerError, match="non-negative scores"):
        profile_from_samples(pd.DataFrame(rows))


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    rows = [
        _row(
            f"p{p}",
            "sample",
            {},
            0,
            i,
            str(rng.integers(0, 5)),
            bool(rng.random() < 0.4),
            float(rng.random()),
        )
        for p in range(3)
        for i in range(40)
    ]
    df = pd.DataFrame(rows)
    a = profile_from_samples(df, CurveOptions(mc_samples=200, seed=3))
    b = profile_from_samples(
        df.sample(frac=1.0, random_state=1), CurveOptions(mc_samples=200, seed=3)
    )
    pd.testing.assert_frame_equal(a, b)


def test_profile_prompt_tokens_count_every_streams_prompt():
    # Each samples row holds its whole prompt (5 tokens here; a revision step's holds the earlier
    # attempt too). The profile counts every parallel stream's prompt, and the cost simulator,
    # dividing by the width, prefills a shared prompt once.
    from planner.costs.simulator import workload_from_profile

    pool = [_row("p", "sample", {"n": 4}, 0, i, "7", True, 0.5) for i in range(4)]
    dvts = [
        _row("p", "dvts", {"n": 4, "m": 2}, r, i, "7", True, 0.5) for r in (0, 1) for i in (0, 1)
    ]
    chains = [
        {
            **_row("p", "revisions", {"chains": 2, "length": 2}, c, pos, "7", True, 0.5),
            "prompt_tokens": t,
        }
        for c in (0, 1)
        for pos, t in enumerate((5, 12 + c))
    ]
    prof = profile_from_samples(pd.DataFrame(pool + dvts + chains))
    cfg = prof["config"].map(json.loads)
    maj = prof[cfg.map(lambda c: c["select"]) == "majority"]
    got = {
        (s, c.get("chains"), c.get("length"), b): p
        for s, c, b, p in zip(
            maj["strategy"],
            maj["config"].map(json.loads),
            maj["budget"],
            maj["prompt_tokens"],
            strict=True,
        )
    }
    assert [got[("sample", None, None, k)] for k in (1.0, 2.0, 4.0)] == [5.0, 10.0, 20.0]
    assert got[("dvts", None, None, 4.0)] == 20.0  # 4 beams read it, though 2 finals remain
    assert got[("revisions", 1, 1, 1.0)] == 5.0
    assert got[("revisions", 1, 2, 2.0)] == pytest.approx(17.5)  # 5 + (12 or 13)
    assert got[("revisions", 2, 2, 4.0)] == pytest.approx(35.0)
    for (strategy, *_, budget), p in got.items():
        if strategy != "revisions":
            c = {"n": 4, "m": 2} if strategy == "dvts" else {"n": 4, "select": "majority"}
            assert workload_from_profile(strategy, c, budget, 8.0 * budget, p).prompt_tokens == 5.0
