"""Policy files: export, load, decide, bad input, fidelity check and the `ttc policy` CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from policy_data import built_policy_dirs, policy_doc

from planner.cli import main
from planner.errors import PlannerError
from planner.estimate.difficulty import DifficultyPredictor
from planner.estimate.probes import probe_table
from planner.features import FEATURES, feature_columns
from planner.policy import Policy, dumps_policy
from planner.policy.build import build_policy
from planner.policy.evaluate import evaluate_policy
from planner.tables import CHOICES, PROBLEMS, read_samples, read_table


@pytest.fixture(scope="module")
def dirs() -> dict[str, Path]:
    return built_policy_dirs()


@pytest.fixture(scope="module")
def policy(dirs) -> Policy:
    return Policy.load(dirs["policy"])


def _probes(dirs, which: str = "held", n: int | None = None):
    samples, _ = read_samples(dirs[which])
    pr = probe_table(samples, 4)
    k = 4
    ids = pr["problem_id"].to_numpy(dtype=object).reshape(-1, k)[:, 0]
    arr = (
        pr["score"].to_numpy(float).reshape(-1, k),
        pr["answer"].to_numpy(dtype=object).reshape(-1, k),
        pr["gen_tokens"].to_numpy(float).reshape(-1, k),
    )
    if n is not None:
        return ids[:n], tuple(a[:n] for a in arr)
    return ids, arr


def test_export_is_byte_identical_and_loads(dirs, tmp_path) -> None:
    a = dumps_policy(build_policy(dirs["plan"]))
    assert a == dirs["policy"].read_text(encoding="utf-8")
    res = CliRunner().invoke(
        main, ["policy", "export", str(dirs["plan"]), "--out", str(tmp_path / "p.json")]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p.json").read_bytes() == dirs["policy"].read_bytes()
    doc = json.loads(a)
    assert (
        doc["schema_version"] == 1
        and doc["model_id"] == "synthetic-lm"
        and doc["verifier_id"] == "prm"
    )
    assert len(doc["source_profile_sha256"]) == 64 and doc["budget_unit"] == "generations"
    assert len(doc["decisions"]) == len(doc["bins"]) * len(doc["budgets"])
    assert doc["probe"]["k"] == 4 and doc["probe"]["charged"] and doc["probe"]["mean_flops"] > 0
    assert doc["accuracy_estimate"] == {
        "method": "nested-kfold",
        "folds": 10,
        "repeats": 5,
        "ci_method": "bootstrap-fixed+wilson",
        "select_rule": "pooled",
    }


def test_consistency_check_uses_both_intervals() -> None:
    from planner.policy.evaluate import _consistent

    # 0.70 [0.60, 0.80] vs 0.80 [0.75, 0.85]: outside the realised interval, but the gap 0.10 is
    # within hypot(0.10, 0.05) = 0.112.
    assert _consistent(0.70, 0.60, 0.80, 0.80, 0.75, 0.85)
    assert not _consistent(0.70, 0.68, 0.72, 0.80, 0.75, 0.85)  # hypot(0.02, 0.05) < 0.10
    assert not _consistent(0.90, 0.88, 0.92, 0.80, 0.75, 0.85)


def test_old_plans_without_the_kfold_columns_still_export(dirs, tmp_path) -> None:
    """A plan written before the K-fold estimate existed exports its two-fold figures, labelled
    so."""
    import shutil

    from planner.tables import CHOICES_FILE, write_table

    old = tmp_path / "old-plan"
    shutil.copytree(dirs["plan"], old)
    choices, meta = read_table(old / CHOICES_FILE, CHOICES)
    # Old plans charged the probes at every budget: none below their cost, none without them.
    choices = choices[choices["accuracy"].notna()].reset_index(drop=True)
    write_table(
        choices.drop(
            columns=["expected_accuracy", "expected_ci_lo", "expected_ci_hi", "probe", "candidate"]
        ),
        old / CHOICES_FILE,
        CHOICES,
        meta,
    )
    summ = json.loads((old / "summary.json").read_text())
    summ.pop("expected_accuracy")
    (old / "summary.json").write_text(json.dumps(summ))
    doc = build_policy(old)
    assert doc["accuracy_estimate"]["method"] == "two-fold"
    row = choices.iloc[0]
    dec = next(
        d for d in doc["decisions"] if d["bin"] == row["bin"] and d["budget"] == row["budget"]
    )
    assert dec["accuracy"] == pytest.approx(row["accuracy"], rel=1e-10)


def test_decide_matches_plan_and_predictor(dirs, policy) -> None:
    """Round trip: the loaded file decides as the in-memory predictor + the plan's choices do."""
    problems, _ = read_table(dirs["plan"] / "problems.parquet", PROBLEMS)
    est = DifficultyPredictor(model="ordinal", random_state=0).fit(
        problems[feature_columns()].to_numpy(), problems["oracle_bin"].to_numpy()
    )
    choices, _ = read_table(dirs["plan"] / "choices.parquet", CHOICES)
    ids, (s, a, t) = _probes(dirs, n=40)
    from planner.features import features_from_probes

    want_bins = est.predict(features_from_probes(s, a, t, FEATURES))
    in_mem = Policy.from_dict(build_policy(dirs["plan"]))
    summary = json.loads((dirs["plan"] / "summary.json").read_text())
    promise = {e["budget"]: e["promise"] for e in summary["per_budget"]}
    for i in range(len(ids)):
        for budget in policy.budgets:
            d = policy.decide(s[i], float(budget), answers=a[i], gen_tokens=t[i])
            assert d == in_mem.decide(s[i], float(budget), answers=a[i], gen_tokens=t[i])
            if not d.probe:
                # One option for every prompt: no bin, the promise over all problems.
                assert d.bin is None and not d.fallback
                assert d.accuracy == pytest.approx(promise[budget]["accuracy"], rel=1e-10)
                continue
            assert d.bin == want_bins[i] and not d.fallback
            row = choices[(choices.bin == d.bin) & (choices.budget == budget)].iloc[0]
            assert (d.strategy, d.config) == (row["strategy"], row["config"])
            # The promise is the K-fold estimate of the deployed choice, not the two-fold figure.
            assert d.accuracy == pytest.approx(row["expected_accuracy"], rel=1e-10)
            assert d.ci_lo <= d.accuracy <= d.ci_hi


def test_budget_rule_and_fallback(dirs, policy) -> None:
    _, (s, a, t) = _probes(dirs, n=1)
    b0, b1 = float(policy.budgets[0]), float(policy.budgets[1])
    assert policy.decide(s[0], b1 - 0.5, a[0], t[0]).budget == b0  # largest budget <= requested
    assert policy.decide(s[0], b1, a[0], t[0]).budget == b1
    assert policy.decide(s[0], 1e9, a[0], t[0]).budget == float(policy.budgets[-1])
    low = policy.decide(s[0], b0 - 1, a[0], t[0])
    assert low.fallback and low.strategy == policy.doc["fallback"]["strategy"]
    with pytest.raises(PlannerError, match="k=4"):
        policy.decide(s[0][:3], b0, a[0][:3], t[0][:3])
    with pytest.raises(PlannerError, match="answers"):
        policy.decide(s[0], b0)
    with pytest.raises(PlannerError, match="budget"):
        policy.decide(s[0], float("nan"), a[0], t[0])


def test_decide_many_equals_decide(dirs, policy) -> None:
    _, (s, a, t) = _probes(dirs, n=60)
    budgets = np.resize(np.concatenate([policy.budgets, [policy.budgets[0] - 1, 1e6]]), 60)
    many = policy.decide_many(s, budgets, a, t)
    assert len(many) == 60
    for i in range(60):
        assert many.decision(i) == policy.decide(s[i], float(budgets[i]), a[i], t[i])
    np.testing.assert_array_equal(
        many.column("accuracy"),
        [policy.decide(s[i], float(budgets[i]), a[i], t[i]).accuracy for i in range(60)],
    )


def test_probe_costs_in_the_plan(dirs) -> None:
    """Probes are charged: pool options reuse them (max(n, k)), others pay n + k; both figures
    shown."""
    choices, _ = read_table(dirs["plan"] / "choices.parquet", CHOICES)
    probed = choices["probe"].astype(bool)
    assert probed.any() and not probed.all()
    # A decision without probes pays none.
    np.testing.assert_allclose(
        choices.loc[~probed, "total_generations"], choices.loc[~probed, "option_budget"]
    )
    np.testing.assert_allclose(
        choices.loc[~probed, "total_flops"], choices.loc[~probed, "flops"], rtol=1e-12
    )
    choices = choices[probed]
    pool = choices["strategy"] == "sample"
    np.testing.assert_allclose(
        choices.loc[pool, "total_generations"], np.maximum(choices.loc[pool, "option_budget"], 4)
    )
    np.testing.assert_allclose(
        choices.loc[~pool, "total_generations"], choices.loc[~pool, "option_budget"] + 4
    )
    np.testing.assert_allclose(choices["total_generations_no_reuse"], choices["option_budget"] + 4)
    reused = choices["probe_reused"] > 0.5
    assert reused.any() and (~reused).any()
    np.testing.assert_allclose(
        choices.loc[~reused, "total_flops"],
        choices.loc[~reused, "flops"] + choices.loc[~reused, "probe_flops"],
        rtol=1e-9,
    )
    assert (
        choices.loc[reused, "total_flops"]
        < choices.loc[reused, "flops"] + choices.loc[reused, "probe_flops"]
    ).all()
    assert (choices["total_flops_no_reuse"] >= choices["total_flops"] - 1e-6).all()
    assert (choices["total_generations"] <= choices["budget"] + 1e-9).all()
    summary = json.loads((dirs["plan"] / "summary.json").read_text())
    assert summary["probe"]["k"] == 4 and summary["bin_column"] == "predicted_bin"


def test_export_refuses_oracle_plans_and_unknown_budgets(dirs, tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        main, ["plan", str(dirs["profile"]), "--out", str(tmp_path / "oracle"), "--n-boot", "0"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        main, ["policy", "export", str(tmp_path / "oracle"), "--out", str(tmp_path / "x.json")]
    )
    assert res.exit_code == 1 and "predicted" in res.output and not (tmp_path / "x.json").exists()
    res = runner.invoke(
        main,
        [
            "policy",
            "export",
            str(dirs["plan"]),
            "--out",
            str(tmp_path / "x.json"),
            "--budgets",
            "3.5",
        ],
    )
    assert res.exit_code == 1 and "not in the plan" in res.output
    res = runner.invoke(
        main,
        [
            "policy",
            "export",
            str(dirs["plan"]),
            "--out",
            str(tmp_path / "y.json"),
            "--budgets",
            "4,16",
        ],
    )
    assert res.exit_code == 0 and json.loads((tmp_path / "y.json").read_text())["budgets"] == [
        4.0,
        16.0,
    ]


# ------------------------------------------------------------------------------------------------
# Bad input: one PlannerError, non-zero exit in the CLI


def _mut(fn):
    doc = copy.deepcopy(policy_doc())
    fn(doc)
    return doc


BAD = {
    "missing schema_version": (lambda d: d.pop("schema_version"), "schema_version"),
    "wrong schema_version": (lambda d: d.update(schema_version=2), "unsupported version 2"),
    "unknown strategy": (
        lambda d: d["decisions"][0].update(strategy="telepathy"),
        "unknown strategy",
    ),
    "missing bin": (
        lambda d: d.update(decisions=[x for x in d["decisions"] if x["bin"] != 3]),
        "no decision for bin 3",
    ),
    "negative flops": (lambda d: d["decisions"][1].update(total_flops=-1.0), "total_flops"),
    "accuracy above 1": (lambda d: d["decisions"][1].update(accuracy=1.5), "accuracy"),
    "extra field": (lambda d: d.update(shiny=True), "shiny"),
    "extra decision field": (lambda d: d["decisions"][0].update(note="x"), "note"),
    "feature count mismatch": (lambda d: d["predictor"]["mean"].pop(), "predictor/mean"),
    "coef count mismatch": (lambda d: d["predictor"]["coef"].append(0.5), "predictor/coef"),
    "unknown feature": (lambda d: d["predictor"]["features"].__setitem__(0, "vibes"), "features"),
    "coverage is not deployable": (
        lambda d: d["decisions"][0].update(config=json.dumps({"select": "coverage"})),
        "not deployable",
    ),
    "thresholds not increasing": (lambda d: d["predictor"]["intercept"].reverse(), "increase"),
    "duplicate decision": (lambda d: d["decisions"].append(dict(d["decisions"][0])), "twice"),
    "zero scale": (lambda d: d["predictor"]["scale"].__setitem__(0, 0.0), "scale"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_policies_raise_one_error(name: str, tmp_path) -> None:
    fn, needle = BAD[name]
    with pytest.raises(PlannerError, match=needle):
        Policy.from_dict(_mut(fn))
    path = tmp_path / "bad.json"
    path.write_text(dumps_policy(_mut(fn)))
    res = CliRunner().invoke(main, ["policy", "validate", str(path)])
    assert (
        res.exit_code == 1
        and res.output.startswith("Error:")
        and len(res.output.strip().splitlines()) == 1
    )


def test_nan_truncated_and_missing_files(tmp_path) -> None:
    text = dumps_policy(policy_doc())
    (tmp_path / "trunc.json").write_text(text[: len(text) // 2])
    with pytest.raises(PlannerError, match="not valid JSON"):
        Policy.load(tmp_path / "trunc.json")
    (tmp_path / "nan.json").write_text(text.replace('"ci": 0.95', '"ci": NaN'))
    with pytest.raises(PlannerError, match="NaN"):
        Policy.load(tmp_path / "nan.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PlannerError):
        Policy.load(tmp_path / "bin.json")
    with pytest.raises(PlannerError, match="not found"):
        Policy.load(tmp_path / "nope.json")
    res = CliRunner().invoke(
        main,
        [
            "policy",
            "decide",
            str(tmp_path / "trunc.json"),
            "--scores",
            "0.1,0.2,0.3,0.4",
            "--budget",
            "8",
        ],
    )
    assert res.exit_code == 1 and "not valid JSON" in res.output


def test_a_router_loads_and_decides_with_numpy_and_jsonschema_only(dirs) -> None:
    # `planner.policy` is the file format and the runtime: a router must not pay for pandas,
    # pyarrow, scipy, scikit-learn or torch (build and evaluate are separate modules).
    code = (
        "import sys; import planner.policy; "
        "from planner.policy import POLICY_SCHEMA_VERSION, Decision, Decisions, Policy, "
        "dumps_policy, read_policy, validate_policy; "
        f"p = Policy.load({str(dirs['policy'])!r}); "
        "d = p.decide([0.3, 0.7, 0.5, 0.9], float(p.budgets[-1]), answers=['3', '3', '4', '3'], "
        "gen_tokens=[80, 95, 70, 88]); assert isinstance(d, Decision); "
        "heavy = ('torch', 'sklearn', 'scipy', 'pandas', 'pyarrow'); "
        "bad = [m for m in heavy if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------
# Fidelity on held-out problems


def test_evaluate_on_held_out_problems(dirs, policy) -> None:
    samples, _ = read_samples(dirs["held"])
    res = evaluate_policy(policy, samples, n_boot=200, seed=0)
    assert res["problems"] == 300 and len(res["budgets"]) == len(policy.budgets)
    for entry in res["budgets"]:
        o = entry["overall"]
        assert sum(b["n"] for b in entry["bins"]) == 300
        assert o["realised_ci_lo"] <= o["realised_accuracy"] <= o["realised_ci_hi"]
        # The synthetic testbed is stationary: the promise holds within a few points (240 fit
        # and 300 held-out problems: the difference of two means has an SE of about 3 points)
        # and FLOPs within 5%.
        assert o["abs_error"] < 0.06, entry
        assert abs(o["flops_ratio"] - 1) < 0.05, entry
        pred = np.average(
            [b["predicted_accuracy"] for b in entry["bins"]],
            weights=[b["n"] for b in entry["bins"]],
        )
        assert pred == pytest.approx(o["predicted_accuracy"])
        for b in entry["bins"]:
            # Inside the realised interval implies consistent given both intervals.
            assert b["consistent"] or not b["inside"]
            assert b["predicted_ci_lo"] <= b["predicted_accuracy"] <= b["predicted_ci_hi"]
        assert entry["goal"]["bins_consistent"] == all(b["consistent"] for b in entry["bins"])
    again = evaluate_policy(policy, samples, n_boot=200, seed=0)
    assert again == res
    # A budget between two policy budgets decides as the lower one: same decisions, same intervals.
    b0 = float(policy.budgets[0])
    two = evaluate_policy(policy, samples, budgets=[b0, b0 + 0.5], n_boot=200, seed=0)["budgets"]
    assert two[0]["bins"] == two[1]["bins"] and two[0]["overall"] == two[1]["overall"]


def test_evaluate_cli_and_missing_strategy(dirs, tmp_path) -> None:
    res = CliRunner().invoke(
        main,
        [
            "policy",
            "evaluate",
            str(dirs["policy"]),
            "--samples",
            str(dirs["held"]),
            "--n-boot",
            "0",
            "--budgets",
            "8",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["budgets"][0]["budget"] == 8.0 and "goal" in out["budgets"][0]
    samples, _ = read_samples(dirs["held"])
    with pytest.raises(PlannerError, match="cannot evaluate"):
        evaluate_policy(
            Policy.load(dirs["policy"]),
            samples[samples.strategy == "sample"].reset_index(drop=True),
            n_boot=0,
        )


# ------------------------------------------------------------------------------------------------
# CLI


@pytest.mark.parametrize("sub", ["export", "validate", "show", "decide", "evaluate"])
def test_every_policy_command_has_help(sub: str) -> None:
    res = CliRunner().invoke(main, ["policy", sub, "--help"])
    assert res.exit_code == 0 and "Example" in res.output


def test_cli_show_validate_decide(dirs) -> None:
    runner = CliRunner()
    p = str(dirs["policy"])
    res = runner.invoke(main, ["policy", "validate", p])
    assert res.exit_code == 0 and "valid policy" in res.output
    res = runner.invoke(main, ["policy", "show", p])
    assert res.exit_code == 0 and "fallback" in res.output and "predictor: ordinal" in res.output
    args = [
        "policy",
        "decide",
        p,
        "--scores",
        "0.9,0.95,0.85,0.97",
        "--answers",
        "A,A,A,A",
        "--tokens",
        "50,60,55,52",
        "--budget",
        "16",
        "--json",
    ]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert (
        d["bin"] == 1
        and d["budget"] == 16.0
        and 0 <= d["accuracy"] <= 1
        and d["requested_budget"] == 16.0
    )
    res = runner.invoke(
        main, ["policy", "decide", p, "--scores", "0.9,0.95,0.85,0.97", "--budget", "16"]
    )
    assert res.exit_code == 1 and "--answers" in res.output
    res = runner.invoke(
        main,
        [
            "policy",
            "decide",
            p,
            "--scores",
            "0.1,0.1,0.2,0.1",
            "--answers",
            "a,b,c,d",
            "--tokens",
            "190,180,170,185",
            "--budget",
            "16",
        ],
    )
    assert res.exit_code == 0 and "bin 5" in res.output


def test_policy_on_the_real_qwen_dump(tmp_path) -> None:
    src = (
        Path(__file__).resolve().parents[3]
        / ".."
        / "shared"
        / "data"
        / "samples"
        / "qwen25math_rm8"
        / "math_cot_100.jsonl"
    )
    if not src.exists():
        pytest.skip(f"shared data not present: {src}")
    runner = CliRunner()
    for args in (
        [
            "samples",
            "import",
            str(src),
            "--out",
            str(tmp_path / "s"),
            "--level-field",
            "level",
            "--score-transform",
            "sigmoid",
        ],
        [
            "curves",
            str(tmp_path / "s"),
            "--out",
            str(tmp_path / "p"),
            "--probe-k",
            "4",
            "--mc-samples",
            "100",
        ],
        [
            "plan",
            str(tmp_path / "p"),
            "--out",
            str(tmp_path / "plan"),
            "--bin-by",
            "predicted",
            "--n-boot",
            "100",
        ],
        ["policy", "export", str(tmp_path / "plan"), "--out", str(tmp_path / "pol.json")],
    ):
        res = runner.invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
    pol = Policy.load(tmp_path / "pol.json")
    assert pol.doc["verifier_id"] == "imported" and pol.doc["budgets"] == [1.0, 2.0, 4.0, 8.0]
    # On this dump (the reward model is strong, 100 problems) per-bin choices do not repay the
    # probes at any budget: at 8 every prompt gets best-of-8 by the reward model, unprobed.
    assert not pol.probes_needed(pol.budgets).any()
    easy = pol.decide([0.99, 0.98, 0.99, 0.97], 8, answers=["1"] * 4, gen_tokens=[0] * 4)
    hard = pol.decide([0.01, 0.2, 0.05, 0.1], 8, answers=["1", "2", "3", "4"], gen_tokens=[0] * 4)
    assert easy == hard and easy.bin is None and easy.option_budget == 8
    cfg = json.loads(easy.config)
    assert cfg["verifier"] == "imported" and cfg["select"] in ("best", "weighted")
    # Per predicted bin the predictor still orders difficulty (a router may log it).
    bins = pol.predict_bins(
        np.array([[0.99, 0.98, 0.99, 0.97], [0.01, 0.2, 0.05, 0.1]]),
        np.array([["1"] * 4, ["1", "2", "3", "4"]], dtype=object),
        np.zeros((2, 4)),
    )
    assert bins[0] < bins[1]
    assert isinstance(
        pd.read_parquet(tmp_path / "plan" / "problems.parquet")["feat_agreement"].iloc[0], float
    )
    # The dump records no token counts: that constant feature is dropped, a router need not send it.
    assert "gen_tokens" not in pol.features and "agreement" in pol.features
    # The paper's scores-only predictor: decide from the scores alone, as a router with only a PRM.
    for args in (
        [
            "curves",
            str(tmp_path / "s"),
            "--out",
            str(tmp_path / "p2"),
            "--probe-k",
            "4",
            "--mc-samples",
            "100",
            "--probe-features",
            "score_mean,score_max,score_min,score_std",
        ],
        [
            "plan",
            str(tmp_path / "p2"),
            "--out",
            str(tmp_path / "plan2"),
            "--bin-by",
            "predicted",
            "--n-boot",
            "100",
        ],
        ["policy", "export", str(tmp_path / "plan2"), "--out", str(tmp_path / "pol2.json")],
    ):
        res = runner.invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
    res = runner.invoke(
        main,
        [
            "policy",
            "decide",
            str(tmp_path / "pol2.json"),
            "--scores",
            "0.31,0.77,0.5,0.9",
            "--budget",
            "8",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["budget"] == 8.0
    res = runner.invoke(
        main,
        [
            "curves",
            str(tmp_path / "s"),
            "--out",
            str(tmp_path / "p3"),
            "--probe-k",
            "4",
            "--probe-features",
            "score_mean,vibes",
        ],
    )
    assert res.exit_code == 1 and "unknown feature" in res.output


def test_plan_probe_options(dirs, tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "plan",
            str(dirs["profile"]),
            "--out",
            str(tmp_path / "a"),
            "--bin-by",
            "predicted",
            "--probe-k",
            "3",
        ],
    )
    assert res.exit_code == 1 and "k=4" in res.output
    # --probe-k 0: the paper's figure (difficulty for free) on the same predicted bins.
    res = runner.invoke(
        main,
        [
            "plan",
            str(dirs["profile"]),
            "--out",
            str(tmp_path / "free"),
            "--bin-by",
            "predicted",
            "--probe-k",
            "0",
            "--n-boot",
            "0",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    free = json.loads(res.output)
    assert "probe" not in free and min(free["budgets"]) == 1.0
    charged = json.loads((dirs["plan"] / "summary.json").read_text())
    # Below the k = 4 probes' cost the plan runs one option for every prompt, without probes.
    assert min(charged["budgets"]) == 1.0
    low = next(e for e in charged["per_budget"] if e["budget"] == 1.0)
    assert low["deployed"]["probe"] is False and not any(c["probe"] for c in low["choices"])


def test_plan_expect_options_reach_the_policy(dirs, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "k4"
    res = runner.invoke(
        main,
        [
            "plan",
            str(dirs["profile"]),
            "--out",
            str(out),
            "--bin-by",
            "predicted",
            "--expect-folds",
            "4",
            "--expect-repeats",
            "2",
            "--n-boot",
            "0",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summ = json.loads(res.output)
    assert summ["expected_accuracy"] == {
        "method": "nested-kfold",
        "folds": 4,
        "repeats": 2,
        "ci_method": "normal+wilson",
    }
    assert summ["select_rule"] == "pooled"
    assert all("expected_accuracy" in c for e in summ["per_budget"] for c in e["choices"])
    doc = build_policy(out)
    assert doc["accuracy_estimate"] == {
        "method": "nested-kfold",
        "folds": 4,
        "repeats": 2,
        "ci_method": "normal+wilson",
        "select_rule": "pooled",
    }
    res = runner.invoke(
        main, ["plan", str(dirs["profile"]), "--out", str(tmp_path / "bad"), "--expect-folds", "1"]
    )
    assert res.exit_code != 0 and "expect-folds" in res.output
