"""Gateway test helpers: a policy through the real chain (profile, curves, plan, export) and a
real uvicorn server in a thread on a free loopback port."""

from __future__ import annotations

import functools
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from planner.cli import main

VERIFIER = "likelihood:path=testbed:large,name=large,stat=mean,agg=min"


POLICY_STRATEGIES = (
    "sample:n=8,max_new_tokens=64",
    "beam:n=4,m=2,max_step_tokens=32,max_new_tokens=64",
)


def make_policy(
    testbed: Path,
    work: Path,
    n: int = 24,
    strategies: tuple[str, ...] = POLICY_STRATEGIES,
    select_rule: str = "one-se",
) -> Path:
    """profile -> curves -> plan -> policy export on n problems (levels 1-3) of the quick
    testbed."""
    runner = CliRunner()
    profile = [
        "profile", "--testbed", str(testbed), "--model", "testbed:policy",
        "--verifier", VERIFIER, "--n", str(n), "--levels", "1,2,3", "--no-timing",
        "--no-progress", "--out", str(work / "tb"),
    ]  # fmt: skip
    for strategy in strategies:
        profile += ["--strategy", strategy]
    steps = [
        profile,
        ["curves", str(work / "tb"), "--out", str(work / "prof"), "--probe-k", "4"],
        [
            "plan", str(work / "prof"), "--out", str(work / "plan"), "--bin-by", "predicted",
            "--probe-k", "4", "--n-boot", "50", "--select-rule", select_rule,
        ],
        ["policy", "export", str(work / "plan"), "--out", str(work / "policy.json")],
    ]  # fmt: skip
    for args in steps:
        res = runner.invoke(main, args)
        assert res.exit_code == 0, (args[0], res.output)
    return work / "policy.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """`profiling.gateway.server.make_server` running in a thread until the block ends."""

    def __init__(self, gateway: Any, **kwargs: Any) -> None:
        from profiling.gateway.server import make_server

        self.gateway = gateway
        self.port = free_port()
        self.server = make_server(gateway, "127.0.0.1", self.port, **kwargs)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(120)

    def __exit__(self, *exc: object) -> None:
        self.stop()


# A profile that holds every strategy, each pool scored by three verifiers (the first guides
# the searches). Each search or revision strategy reaches a budget (generations) that no other
# option reaches (the pool holds 4, the probes): curves read at 1 (the probe pool's smallest
# option, which gives the policy its probe config) and at that budget leave the plan a choice
# between the probe pool at 1 and that strategy's options.
EVERY_VERIFIERS = (VERIFIER, "prm:path=testbed:prm,name=prm", "self")
EVERY_STRATEGIES = (
    "sample:n=4,max_new_tokens=64",
    "revisions:chains=1,length=5,max_new_tokens=64",
    "beam:n=6,m=2,max_step_tokens=32,max_new_tokens=64",
    "lookahead:n=4,m=2,k=1,max_step_tokens=32,max_new_tokens=64",
    "dvts:n=10,m=2,max_step_tokens=32,max_new_tokens=64",
)
EVERY_BUDGETS = {"all": None, "revisions": "1,5", "beam": "1,6", "lookahead": "1,8", "dvts": "1,10"}


def _invoke(args: list[str]) -> None:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, (args[:2], res.output)


def every_strategy_policies(testbed: Path, work: Path, n: int = 24) -> dict[str, Path]:
    """`ttc profile` with every strategy (and three verifiers) on n quick-testbed problems, then
    for each entry of EVERY_BUDGETS `ttc curves` (at those budgets), `ttc plan` on predicted
    bins and `ttc policy export`: the policies by name."""
    samples = work / "every-samples"
    if not (samples / "samples.parquet").is_file():
        args = ["profile", "--testbed", str(testbed), "--model", "testbed:policy",
                "--reviser", "testbed:reviser", "--n", str(n), "--levels", "1,2,3",
                "--no-timing", "--no-progress", "--out", str(samples)]  # fmt: skip
        for v in EVERY_VERIFIERS:
            args += ["--verifier", v]
        for s in EVERY_STRATEGIES:
            args += ["--strategy", s]
        _invoke(args)
    out = {}
    for name, budgets in EVERY_BUDGETS.items():
        prof, plan, policy = (work / f"every-{name}-{x}" for x in ("profile", "plan", "policy"))
        curves = ["curves", str(samples), "--out", str(prof), "--probe-k", "4"]
        _invoke(curves + (["--budgets", budgets] if budgets else []))
        _invoke(["plan", str(prof), "--out", str(plan), "--bin-by", "predicted",
                 "--probe-k", "4", "--n-boot", "50", "--select-rule", "best"])  # fmt: skip
        _invoke(["policy", "export", str(plan), "--out", str(policy.with_suffix(".json"))])
        out[name] = policy.with_suffix(".json")
    return out


def demo_policy(work: Path, problems: int = 32) -> Path:
    """The policy `ttc demo --quick --problems N` exports (seed 0)."""
    _invoke(["demo", "--quick", "--problems", str(problems), "--out", str(work / "demo"),
             "--no-progress"])  # fmt: skip
    return work / "demo" / "policy.json"


@functools.cache
def shared_policies(testbed: Path) -> dict[str, Path]:
    """The quick demo's policy ("demo") and the every-strategy policies, made once per test
    session (the in-process and the upstream tests serve the same files)."""
    work = Path(tempfile.mkdtemp(prefix="ttc-gateway-policies-"))
    return {"demo": demo_policy(work), **every_strategy_policies(testbed, work)}


def fresh_prompts(n: int, seed: int = 11) -> list[str]:
    """Fresh testbed prompts of every level (easy to hard), in round-robin order."""
    from models.testbed.task import generate_problems
    from profiling.problems import testbed_problems

    return [p.prompt for p in testbed_problems(generate_problems(n, seed, tuple(range(1, 9))))]


def decision_keys(policy: Any) -> set[tuple[Any, float | None]]:
    """(bin, budget) of every decision of a policy file in a bin its predictor can output,
    (None, budget) where the budget's decisions need no probes, and ("fallback", None)."""
    keys: set[tuple[Any, float | None]] = {("fallback", None)}
    bins = predictable_bins(policy)
    for d in policy.doc["decisions"]:
        if not d.get("probe", True):
            keys.add((None, float(d["budget"])))
        elif int(d["bin"]) in bins:
            keys.add((int(d["bin"]), float(d["budget"])))
    return keys


def serve_every_decision(
    client: Any, policy: Any, prompts: list[str], seeds: tuple[int, ...] = (0, 1, 2, 3)
) -> dict[tuple[Any, float | None], dict]:
    """Send requests until every decision of `policy` has been served once (or the prompts run
    out): a seeded request's probes do not depend on its budget, so a (prompt, seed) found in
    a bin at one budget lands in it at every budget. Each answer must be 200 and run the
    decision `Policy.decide` makes on its own probes. Returns the `ttc` field by decision key
    (see `decision_keys`); every third request goes through the chat route."""
    import numpy as np

    served: dict[tuple[Any, float | None], dict] = {}
    sent = [0]

    def ask(prompt: str, seed: int, budget: float) -> dict:
        sent[0] += 1
        body: dict[str, Any] = {"model": f"policy@{budget:g}", "seed": seed}
        if sent[0] % 3 == 0:
            route = "/v1/chat/completions"
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            route = "/v1/completions"
            body["prompt"] = prompt
        r = client.post(route, json=body)
        assert r.status_code == 200, (route, budget, r.text)
        data = r.json()
        ttc = data["ttc"]
        probe = ttc["probe"]
        if probe is None:
            d = policy.decide_many(None, [budget]).decision(0)
        else:
            d = policy.decide(probe["scores"], budget, probe["answers"], probe["gen_tokens"])
        assert (ttc["bin"], ttc["strategy"], ttc["config"]) == (d.bin, d.strategy, d.config)
        assert r.headers["x-ttc-strategy"] == d.strategy and ttc["flops"] > 0
        assert r.headers["x-ttc-bin"] == ("none" if d.bin is None else str(d.bin))
        text = data["choices"][0]["message"]["content"] if "messages" in body else (
            data["choices"][0]["text"])  # fmt: skip
        assert isinstance(text, str)
        key = ("fallback", None) if ttc["fallback"] else (ttc["bin"], float(ttc["budget"]))
        served.setdefault(key, ttc)
        return ttc

    budgets = [float(b) for b in policy.budgets]
    need = dict(zip(budgets, np.asarray(policy.probes_needed(budgets), bool), strict=True))
    bins = predictable_bins(policy)
    found: dict[int, tuple[str, int]] = {}
    probed = [b for b in budgets if need[b]]
    if probed:
        for seed in seeds:
            for p in prompts:
                if set(found) >= bins:
                    break
                found.setdefault(ask(p, seed, probed[0])["bin"], (p, seed))
    for t in budgets:
        if not need[t]:
            if (None, t) not in served:
                ask(prompts[0], seeds[0], t)
            continue
        for b, (p, seed) in sorted(found.items()):
            if (b, t) not in served:
                ask(p, seed, t)
    if budgets[0] > 0:
        ask(prompts[0], seeds[0], budgets[0] / 2)
    return served


def predictable_bins(policy: Any) -> set[int]:
    """The bins the policy's predictor can output at all: an ordinal predictor's class whose
    two thresholds lie close never has the largest probability, whatever the probes, so its
    decisions cannot be served (scanned over the latent difficulty; a multinomial predictor
    over random standardised features)."""
    import numpy as np

    from planner.features import linear_proba

    coef = np.asarray(policy.coef, float)
    if policy.model == "ordinal":
        th = np.asarray(policy.intercept, float)
        eta = np.linspace(th.min() - 30, th.max() + 30, 200_001)
        z = eta[:, None] * coef[None, :] / float(coef @ coef)
    else:
        z = np.random.default_rng(0).normal(0, 4, (200_000, coef.shape[-1]))
    p = linear_proba(policy.model, z, coef, np.asarray(policy.intercept, float))
    return {int(policy.classes[j]) for j in np.unique(np.argmax(p, axis=1))}


class FailOn:
    """A real verifier that raises when it is asked to score a candidate of a prompt holding
    `marker`: a fault injected into real work (the other prompts are scored by the model)."""

    def __init__(self, inner: Any, marker: str) -> None:
        self.inner = inner
        self.marker = marker
        self.verifier_id = inner.verifier_id
        self.agg = inner.agg
        self.mode = inner.mode

    def score(self, candidates: list[Any]) -> list[Any]:
        if any(self.marker in c.problem.prompt for c in candidates):
            raise RuntimeError(f"scoring failed on a prompt with {self.marker!r}")
        return self.inner.score(candidates)


def failing_engine(engine: Any, marker: str) -> Any:
    """The engine's models, its verifiers failing on prompts that hold `marker`."""
    from profiling.gateway.engine import Engine

    verifiers = [FailOn(v, marker) for v in engine.verifiers.values()]
    return Engine(engine.backend, verifiers, engine.reviser, engine.grader_name)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus text's samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
