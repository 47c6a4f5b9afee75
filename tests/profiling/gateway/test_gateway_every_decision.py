"""Every decision a policy can make is served, through the real app (uvicorn on loopback, httpx):
the quick demo's policy (`ttc demo --quick --problems 32`, seed 0) and the policies that `ttc
plan` and `ttc policy export` make of a profile holding every strategy, one request per (bin,
budget) decision, each answered 200 with the decision `Policy.decide` makes on its own probes.
Adding to them: every option of that profile (each strategy, select, aggregation and verifier)
run by the engine, all in one batch."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from gateway_support import (
    EVERY_BUDGETS,
    EVERY_VERIFIERS,
    ServerThread,
    decision_keys,
    fresh_prompts,
    serve_every_decision,
    shared_policies,
)

from planner.policy import Policy
from planner.strategies import DEPLOYABLE_SELECTS
from planner.tables import PROFILE, read_table
from profiling.gateway.app import Gateway
from profiling.gateway.asks import Ask, Reply
from profiling.strategies import SELECT_KEYS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


def every_flags(testbed: Path) -> dict:
    """The models the every-strategy profile was made with, named as `ttc serve` flags."""
    return {
        "model": "testbed:policy",
        "testbed": str(testbed),
        "reviser": "testbed:reviser",
        "verifier": EVERY_VERIFIERS,
    }


@pytest.fixture(scope="module")
def policies(quick_testbed: Path) -> dict[str, Path]:
    return shared_policies(quick_testbed)


@pytest.fixture(scope="module")
def every_engine(quick_testbed: Path):
    from profiling.gateway.loading import load_engine

    return load_engine(None, every_flags(quick_testbed), threads=1)


def serve_all(engine, path: Path) -> dict:
    """Serve every decision of the policy file through a real server; check none is missing
    and the server answered no 5xx."""
    policy = Policy.load(path)
    with (
        ServerThread(Gateway(engine, str(path))) as s,
        httpx.Client(base_url=s.url, timeout=600) as c,
    ):
        served = serve_every_decision(c, policy, fresh_prompts(48))
        metrics = c.get("/metrics").text
    missing = decision_keys(policy) - set(served)
    assert not missing, f"{path}: decisions never served: {sorted(missing, key=str)}"
    assert 'status="5' not in metrics
    return served


def test_the_quick_demo_policy_serves_every_decision(quick_testbed: Path, policies) -> None:
    from profiling.gateway.loading import load_engine

    # served with the run config the demo profiled with
    engine = load_engine(str(ROOT / "data" / "configs" / "demo.toml"),
                         {"testbed": str(quick_testbed)}, threads=1)  # fmt: skip
    served = serve_all(engine, policies["demo"])
    doc = json.loads(policies["demo"].read_text())
    assert {t["strategy"] for t in served.values()} <= {d["strategy"] for d in doc["decisions"]}


def test_the_policies_of_a_profile_with_every_strategy_serve_every_decision(
    policies, every_engine
) -> None:
    strategies: set[str] = set()
    for name in EVERY_BUDGETS:
        strategies |= {t["strategy"] for t in serve_all(every_engine, policies[name]).values()}
    # the plans chose each search strategy somewhere (the quick reviser's chains are too weak
    # for any plan to choose them: the next test runs every revisions option)
    assert {"sample", "beam", "lookahead", "dvts"} <= strategies


def test_every_option_of_the_profile_runs_in_one_batch(policies, every_engine) -> None:
    """A policy whose budget j runs the profile's option j in every bin, asked once at each
    budget in one batch: every strategy, select, aggregation and verifier the plan can choose
    (one budget each), with the probes reused and not."""
    src = policies["all"]
    profile, _ = read_table(src.parent / "every-all-profile" / "profile.parquet", PROFILE)
    options = profile[["strategy", "config", "budget"]].drop_duplicates()
    options = options[options["config"].map(lambda c: json.loads(c)["select"]).isin(
        DEPLOYABLE_SELECTS)]  # fmt: skip
    options = options.sort_values("budget").groupby(["strategy", "config"]).tail(1)
    # one per (strategy, select, agg, verifier): the largest budget
    key = options["config"].map(lambda c: str([json.loads(c)[k] for k in SELECT_KEYS]))
    options = options.assign(key=key).groupby(["strategy", "key"]).tail(1)
    doc = json.loads(src.read_text())
    template = doc["decisions"][0]
    decisions = []
    for j, row in enumerate(options.itertuples()):
        for b in doc["bins"]:
            decisions.append({**template, "bin": b, "budget": float(j + 1),
                              "strategy": row.strategy, "config": row.config,
                              "option_budget": float(row.budget),
                              "probe_reused": row.strategy == "sample" and j % 2 == 0})  # fmt: skip
    doc.update(budgets=[float(j + 1) for j in range(len(options))], decisions=decisions)
    policy = Policy.from_dict(doc, "every option")
    every_engine.check(policy)
    prompt = fresh_prompts(8)[5]
    asks = [Ask(prompt, float(j + 1)) for j in range(len(options))]
    replies = every_engine.run(policy, asks)
    assert all(isinstance(r, Reply) for r in replies), [
        r for r in replies if not isinstance(r, Reply)
    ]
    got = {(r.decision.strategy, r.decision.config) for r in replies}
    assert got == set(zip(options["strategy"], options["config"], strict=True))
    assert {s for s, _ in got} == {"sample", "revisions", "beam", "lookahead", "dvts"}
    for r in replies:
        assert r.spend.total_flops > 0 and r.text
        if r.decision.strategy != "sample" or not r.decision.probe_reused:
            assert r.spend.candidate_tokens > 0  # candidates beyond the probes were drawn
