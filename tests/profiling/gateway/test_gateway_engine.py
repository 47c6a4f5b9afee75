"""The engine runs every kind of decision (pool with probe reuse, search, revisions), and the
README's Python client example runs against a live gateway."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from gateway_support import metric

from planner.policy import Policy
from planner.tables import canonical_config
from profiling.gateway.choose import Pick, choose
from profiling.gateway.engine import Ask

ROOT = Path(__file__).resolve().parents[3]
VID = "lik:large:mean"


def _with_decisions(
    policy_file: Path, strategy: str, config: dict, option_budget: float, reused: bool = False
) -> Policy:
    doc = json.loads(policy_file.read_text())
    for d in [*doc["decisions"], doc["fallback"]]:
        d.update(strategy=strategy, config=canonical_config(config), option_budget=option_budget)
        d["probe_reused"] = reused
    return Policy.from_dict(doc, "edited policy")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "config", "budget"),
    [
        ("beam", {"n": 4, "m": 2, "max_step_tokens": 32, "max_new_tokens": 64,
                  "select": "weighted", "agg": "last", "verifier": VID}, 4.0),
        ("revisions", {"chains": 2, "length": 2, "max_new_tokens": 64, "run_chains": 4,
                       "run_length": 4, "select": "majority", "agg": "none",
                       "verifier": "none"}, 4.0),
    ],
)  # fmt: skip
def test_search_and_revision_decisions_run(engine, policy_file, strategy, config, budget) -> None:
    policy = _with_decisions(policy_file, strategy, config, budget)
    engine.check(policy)
    asks = [Ask(f"Q: {a}+{a}\n", float(policy.budgets[-1])) for a in range(1, 4)]
    replies = engine.run(policy, asks)
    assert len(replies) == 3
    for r in replies:
        assert r.decision.strategy == strategy
        assert r.spend.candidate_tokens > 0 and r.spend.candidate_flops > 0
        assert r.spend.probe_flops > 0 and len(r.probe_scores) == policy.k
        # the completion is the chosen candidate's whole text (its steps, then its answer line)
        assert r.answer is None or r.text.rstrip().endswith(r.answer), r.text
        assert "\n" in r.text.strip() and len(r.text) > len(r.answer or ""), r.text


@pytest.mark.slow
def test_a_pool_reuses_the_probes(engine, policy_file) -> None:
    base = Policy.load(policy_file)
    # The probes' own pool (same sampler), read at k candidates: the probes are the pool.
    config = {**json.loads(base.doc["probe"]["config"]), "select": "weighted", "agg": "last"}
    config["verifier"] = VID
    policy = _with_decisions(policy_file, "sample", config, float(base.k), reused=True)
    replies = engine.run(policy, [Ask("Q: 3+4\n", float(policy.budgets[-1]))])
    d = replies[0].decision
    assert d.strategy == "sample" and d.probe_reused and d.option_budget == policy.k
    assert replies[0].spend.candidate_tokens == 0  # the probes are the pool
    assert replies[0].text  # a pool returns the chosen probe's text


def test_choose_follows_the_selection_rules() -> None:
    picks = [
        Pick("a", "1", scores={"v": 0.9}),
        Pick("b", "2", scores={"v": 0.4}),
        Pick("c", "2", scores={"v": 0.4}),
        Pick("d", None, scores={"v": 0.99}),
    ]
    assert choose(picks, "best", "v", "last") == 3
    assert choose(picks, "majority", "none", "none") == 1
    assert choose(picks, "weighted", "v", "last") == 0
    with_steps = [Pick("a", "1", steps={"v": [0.9, 0.1]}), Pick("b", "2", steps={"v": [0.5, 0.5]})]
    assert choose(with_steps, "best", "v", "min") == 1


@pytest.mark.slow
def test_the_readme_client_example_runs(server) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Serving a policy", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "http://127.0.0.1:8000/v1" in code
    code = code.replace("http://127.0.0.1:8000/v1", f"{server.url}/v1")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and "policy@" in lines[-1]
    bin_, strategy, flops = lines[-2].split()
    assert int(bin_) >= 1 and strategy and float(flops) > 0


@pytest.mark.slow
def test_a_budget_that_needs_no_probes_skips_them(engine, policy_file, server) -> None:
    """At a budget whose decisions have `probe: false` (the same option in every bin) the engine
    runs that option without the probe forward: bin None, no probe cost; through the app the
    bin header says "none" and the metrics label the bin "none"."""
    import httpx

    doc = json.loads(policy_file.read_text())
    top = max(doc["budgets"])
    at_top = [d for d in doc["decisions"] if d["budget"] == top]
    one = at_top[0]
    for d in at_top:
        d.update({k: one[k] for k in ("strategy", "config", "option_budget")}, probe=False)
        d["probe_reused"] = False
    policy = Policy.from_dict(doc, "unprobed at the top budget")
    low = float(doc["budgets"][0])
    replies = engine.run(policy, [Ask("Q: 2+2\n", top), Ask("Q: 3+3\n", low), Ask("Q: 1+5\n", top)])
    for r in (replies[0], replies[2]):
        assert r.decision.bin is None and not r.decision.probe and r.probe_scores is None
        assert (
            r.spend.probe_tokens == 0 and r.spend.probe_flops == 0 and r.spend.candidate_tokens > 0
        )
        assert r.decision.strategy == one["strategy"]
    assert replies[1].decision.bin is not None and replies[1].spend.probe_tokens > 0
    # through the app: a policy file with the unprobed budget
    path = server.gateway.policy_path
    Path(path).write_text(json.dumps(doc))
    with httpx.Client(base_url=server.url, timeout=120) as c:
        assert c.post("/admin/reload").status_code == 200
        r = c.post("/v1/completions", json={"model": f"policy@{top:g}", "prompt": "Q: 2+2\n"})
        metrics = c.get("/metrics").text
    assert r.status_code == 200 and r.headers["x-ttc-bin"] == "none"
    ttc = r.json()["ttc"]
    assert ttc["bin"] is None and ttc["probe"] is None and ttc["usage"]["probe_tokens"] == 0
    labels = {"route": "/v1/completions", "bin": "none", "status": "200"}
    assert metric(metrics, "ttc_requests_total", strategy=one["strategy"], **labels) == 1
