"""The strategies on tiny real models: row shapes, budgets, real token counts, determinism."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import profiling_tiny as T
import pytest
from profiling_tiny import single_thread  # noqa: F401  (autouse fixture)

import profiling
from planner.strategies import SEARCH, STRATEGY_KINDS, prefilled_prompt_tokens
from planner.tables import SAMPLES, validate
from profiling.backend import TransformersBackend
from profiling.flops import forward_flops
from profiling.strategies import STRATEGIES
from profiling.strategies.common import row_config
from profiling.strategies.revisions import RevisionsConfig, revision_prompt
from profiling.strategies.search import BeamConfig, DVTSConfig, LookaheadConfig, SearchConfig
from profiling.verifiers import LMCandidatePRM, SelfLikelihood

COMMON = {"max_step_tokens": 8, "max_new_tokens": 40, "max_rounds": 6}


class RecordingBackend(TransformersBackend):
    """The real backend, keeping the search states it opens (to audit their budgets) and every
    prompt it was sent."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.states: list = []
        self.sent: list[list[int]] = []

    def start_batch(self, prompts):
        self.sent += [list(p) for p in prompts]
        st = super().start_batch(prompts)
        self.states.append(st)
        return st

    def sample(self, prompts, n, **kw):
        self.sent += [list(p) for p in prompts]
        return super().sample(prompts, n, **kw)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("strategies")
    policy = TransformersBackend.load(T.save_policy(root / "policy"), batch_size=16)
    backend = RecordingBackend(policy.config, policy.model, policy.tokenizer)
    prm = LMCandidatePRM.load(
        T.save_lm_prm(root / "prm"), step_tag="<step>", good_token="<good>", bad_token="<bad>"
    )
    return backend, [prm, SelfLikelihood(stat="min")], T.problems(2)


def _frame(rows: list[dict], name: str) -> pd.DataFrame:
    return validate(pd.DataFrame(rows), SAMPLES, name)


def _no_wall(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_registry_is_the_planner_table() -> None:
    """The harness runs exactly the strategies the planner can read, each of the planner's kind;
    a search's config class is a SearchConfig (one config class per strategy)."""
    assert {n: s.kind for n, s in STRATEGIES.items()} == STRATEGY_KINDS
    for name, s in STRATEGIES.items():
        assert s.name == name and dataclasses.is_dataclass(s.config)
        assert issubclass(s.config, SearchConfig) == (s.kind == SEARCH)
    assert len({s.config for s in STRATEGIES.values()}) == len(STRATEGIES)


@pytest.mark.parametrize(
    ("cls", "config", "needle"),
    [
        (BeamConfig, {"n": 6, "m": 4}, "beam: n (6) must be a multiple of m (4)"),
        (DVTSConfig, {"n": 4, "m": 2, "k": 1}, "dvts: k (lookahead steps) only applies"),
        (BeamConfig, {"n": 4, "m": 2, "k": 1}, "beam: k (lookahead steps) only applies"),
        (LookaheadConfig, {"n": 4, "m": 2}, "lookahead: k must be >= 1"),
        (LookaheadConfig, {"n": 4, "m": 2, "k": 1, "top_p": 0}, "lookahead: temperature"),
    ],
)
def test_search_configs_own_their_rules(cls: type, config: dict, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        cls(**config)
    assert needle in str(err.value)


def test_search_row_configs_keep_their_keys() -> None:
    """The samples table's config JSON: every search key (k too, 0 for beam and DVTS)."""
    keys = [
        "k",
        "m",
        "max_new_tokens",
        "max_rounds",
        "max_step_tokens",
        "n",
        "temperature",
        "top_p",
    ]
    assert row_config(BeamConfig(n=4, m=2, seed=9)) == json.dumps(
        {
            "k": 0,
            "m": 2,
            "max_new_tokens": 1024,
            "max_rounds": 40,
            "max_step_tokens": 128,
            "n": 4,
            "temperature": 0.8,
            "top_p": 1.0,
        },
        separators=(",", ":"),
    )
    for cls, k in ((DVTSConfig, 0), (LookaheadConfig, 2)):
        assert sorted(json.loads(row_config(cls(n=4, m=2, k=k)))) == keys


def test_registry_and_api_errors(env) -> None:
    backend, verifiers, problems = env
    with pytest.raises(ValueError, match="unknown strategy"):
        profiling.run("mcts", problems, backend, verifiers, {"n": 2})
    with pytest.raises(ValueError, match="unknown config keys"):
        profiling.run("sample", problems, backend, verifiers, {"n": 2, "budget": 4})
    with pytest.raises(ValueError, match="multiple of m"):
        profiling.run("beam", problems, backend, verifiers, {"n": 6, "m": 4})
    with pytest.raises(ValueError, match="needs a verifier"):
        profiling.run("dvts", problems, backend, None, {"n": 4, "m": 2})
    with pytest.raises(ValueError, match="k must be >= 1"):
        profiling.run("lookahead", problems, backend, verifiers, {"n": 4, "m": 2})


def test_sample_pool_rows_tokens_and_flops(env) -> None:
    backend, verifiers, problems = env
    cfg = {"n": 6, "max_new_tokens": 30, "seed": 3}
    rows = profiling.run("sample", problems, backend, verifiers, cfg)
    df = _frame(rows, "sample")
    assert len(df) == len(problems) * 6 * len(verifiers)
    config = json.loads(df.config.iloc[0])
    assert config["n"] == 6 and "seed" not in config and "budget" not in config
    assert set(df.verifier) == {"prm:prm", "self:min"}
    # token counts are the real ones: re-draw the same pools
    prompts = [backend.prompt_ids(p) for p in problems]
    pools = backend.sample(prompts, 6, max_new_tokens=30, seed=3, temperature=0.8)
    for (pid, _v), g in df.groupby(["problem_id", "verifier"]):
        i = int(pid[1:])
        assert g.gen_tokens.tolist() == [len(x.token_ids) for x in pools[i]]
        plen = len(prompts[i])
        assert (g.prompt_tokens == plen).all()  # each candidate's whole prompt
        assert (
            prefilled_prompt_tokens("sample", zip(g.run, g.position, g.prompt_tokens, strict=True))
            == plen
        )
        expected = forward_flops(backend.shape, plen, 0, logits=1) + sum(
            forward_flops(backend.shape, len(x.token_ids) - 1, plen) for x in pools[i]
        )
        assert g.gen_flops.sum() == pytest.approx(expected)
        assert g.position.tolist() == list(range(6))
    for _, r in df[df.verifier == "prm:prm"].iterrows():
        assert r.score == (r.step_scores[-1] if len(r.step_scores) else 0.0)
        assert all(0 <= s <= 1 for s in r.step_scores)
    assert (df[df.verifier == "self:min"].verifier_flops == 0).all()
    assert (df[df.verifier == "prm:prm"].verifier_flops > 0).all()
    again = profiling.run("sample", problems, backend, verifiers, cfg)
    assert _no_wall(again) == _no_wall(rows)


def _audit(backend, rows: list[dict], n: int, k: int = 0) -> None:
    """Budget checks on the search states the run opened (several problems share one state)."""
    df = _frame(rows, "search")
    prm = df[df.verifier == "prm:prm"]
    prompts = {p.problem_id: len(backend.prompt_ids(p)) for p in T.problems(5)}
    order = list(dict.fromkeys(zip(prm.run, prm.problem_id, strict=True)))
    owners = [(st, o) for st in backend.states for o in sorted(st.flops_by)]
    assert len(owners) == len(order)
    for (st, o), (run, pid) in zip(owners, order, strict=True):
        g = prm[(prm.run == run) & (prm.problem_id == pid)]
        assert len(g) <= n  # never more final candidates than the budget
        assert max(st.step_rows_by[o]) <= n  # never more than N live rows in a round
        rollout_steps = 0
        for child in st.children:
            assert child.owners.count(o) <= n and len(child.step_rows_by.get(o, [])) <= k
            rollout_steps += sum(child.step_rows_by.get(o, []))
        # lookahead: step generations per round <= N (k + 1)
        rounds = len(st.step_rows_by[o])
        assert sum(st.step_rows_by[o]) + rollout_steps <= n * (k + 1) * rounds
        total = st.generated_by[o] + sum(c.generated_by.get(o, 0) for c in st.children)
        assert g.gen_tokens.sum() == total  # the costs of a run sum to its total
        flops = st.flops_by[o] + sum(c.flops_by.get(o, 0.0) for c in st.children)
        assert g.gen_flops.sum() == pytest.approx(flops)
        assert (g.prompt_tokens == prompts[pid]).all()  # every final was searched from it
        assert (
            prefilled_prompt_tokens("beam", zip(g.run, g.position, g.prompt_tokens, strict=True))
            == (prompts[pid])
        )
        assert g.position.tolist() == list(range(len(g)))
    backend.states.clear()


def test_beam(env) -> None:
    backend, verifiers, problems = env
    backend.states.clear()
    cfg = {"n": 8, "m": 2, "seed": 1, **COMMON}
    rows = profiling.run("beam", problems, backend, verifiers, cfg)
    _audit(backend, rows, 8)
    config = json.loads(rows[0]["config"])
    assert (config["n"], config["m"], config["k"]) == (8, 2, 0)
    assert config["search_verifier"] == "prm:prm"
    again = profiling.run("beam", problems, backend, verifiers, cfg)
    backend.states.clear()
    assert _no_wall(again) == _no_wall(rows)


def test_lookahead_budget_is_n_times_k_plus_one(env) -> None:
    backend, verifiers, problems = env
    backend.states.clear()
    rows = profiling.run(
        "lookahead", problems[:1], backend, verifiers[:1], {"n": 4, "m": 2, "k": 2, **COMMON}
    )
    st = backend.states[0]
    assert st.children, "lookahead must roll candidates out"
    for child, live in zip(st.children, st.step_rows, strict=False):
        assert child.rows <= live  # only the live rows of a round are rolled out
    _audit(backend, rows, 4, k=2)
    assert json.loads(rows[0]["config"])["k"] == 2


def test_dvts(env) -> None:
    backend, verifiers, problems = env
    backend.states.clear()
    rows = profiling.run("dvts", problems, backend, verifiers, {"n": 8, "m": 4, **COMMON})
    df = _frame(rows, "dvts")
    # one final candidate per subtree
    assert (df.groupby(["problem_id", "verifier"]).size() == 2).all()
    _audit(backend, rows, 8)


def test_revisions_rows(env) -> None:
    backend, verifiers, problems = env
    rows = profiling.run(
        "revisions", problems, backend, verifiers, {"chains": 2, "length": 3, "max_new_tokens": 20}
    )
    df = _frame(rows, "revisions")
    assert len(df) == len(problems) * 2 * 3 * len(verifiers)
    g = df[(df.problem_id == "p0") & (df.verifier == "prm:prm")]
    assert sorted(zip(g.run, g.position, strict=True)) == [
        (c, t) for c in range(2) for t in range(3)
    ]
    # later answers see earlier ones in context: their prompts are longer
    first = g[g.position == 0].prompt_tokens.sum()
    last = g[g.position == 2].prompt_tokens.sum()
    assert last > first
    config = json.loads(df.config.iloc[0])
    assert (config["chains"], config["length"], config["window"]) == (2, 3, 4)


def test_prompt_tokens_are_the_prompt_each_row_was_sent(env) -> None:
    """A row's prompt_tokens is the tokenizer's length of the prompt its answer was generated
    from, as sent to the model: a pool's and a search's the problem's prompt (whole on every
    row), a revision step's the revision prompt holding the chain's earlier attempts."""
    backend, verifiers, problems = env
    tok, tpl = backend.tokenizer, backend.config.template
    by_id = {p.problem_id: p for p in problems}

    def tokenized(text: str) -> list[int]:
        special = tpl.add_special_tokens and not tpl.chat
        return tok(tpl.render(text, tok), add_special_tokens=special)["input_ids"]

    for strategy, cfg in (("sample", {"n": 3, "max_new_tokens": 20}), ("beam", {"n": 4, "m": 2})):
        backend.sent.clear()
        cfg = {**COMMON, **cfg} if strategy == "beam" else cfg
        rows = profiling.run(strategy, problems, backend, verifiers[:1], cfg)
        for r in rows:
            ids = tokenized(by_id[r["problem_id"]].prompt)
            assert ids in backend.sent and r["prompt_tokens"] == len(ids)
    backend.states.clear()
    backend.sent.clear()
    cfg = {"chains": 2, "length": 3, "max_new_tokens": 20, "seed": 4}
    rows = profiling.run("revisions", problems, backend, verifiers[:1], cfg)
    text = {(r["problem_id"], r["run"], r["position"]): r["text"] for r in rows}
    own = {(r["problem_id"], r["run"], r["position"]): r["prompt_tokens"] for r in rows}
    for r in rows:
        pid, chain, step = r["problem_id"], r["run"], r["position"]
        earlier = [text[(pid, chain, t)] for t in range(step)]
        ids = tokenized(revision_prompt(RevisionsConfig(**cfg), by_id[pid], earlier))
        assert ids in backend.sent and r["prompt_tokens"] == len(ids)
        if step:  # it holds the previous prompt's attempts and the latest one
            latest = len(tok(earlier[-1], add_special_tokens=False)["input_ids"])
            assert r["prompt_tokens"] >= own[(pid, chain, step - 1)] + latest
    assert len(backend.sent) == len(rows)  # one request per answer, each checked above


@pytest.mark.parametrize("strategy,extra", [("beam", {}), ("lookahead", {"k": 1}), ("dvts", {})])
def test_search_verifier_cache_changes_cost_not_choices(env, strategy: str, extra: dict) -> None:
    """The PRM keeps its KV rows between rounds: the same search, scores and answers as
    re-reading every partial solution each round, at a lower verifier cost."""
    import contextlib

    backend, verifiers, problems = env
    prm = verifiers[0]
    cfg = {"n": 4, "m": 2, "seed": 5, **COMMON, **extra}
    cached = _frame(profiling.run(strategy, problems, backend, verifiers, cfg), strategy)
    prm.incremental = contextlib.nullcontext  # re-read everything, as without the cache
    try:
        plain = _frame(profiling.run(strategy, problems, backend, verifiers, cfg), strategy)
    finally:
        del prm.incremental
    keys = ["problem_id", "run", "position", "verifier"]
    cached, plain = cached.sort_values(keys), plain.sort_values(keys)
    for col in ("answer", "gen_tokens", "gen_flops", "prompt_tokens"):
        assert cached[col].tolist() == plain[col].tolist()
    for a, b in zip(cached.step_scores, plain.step_scores, strict=True):
        assert list(a) == pytest.approx(list(b), abs=1e-5)
    # the guiding PRM's cost falls (every verifier's rows carry it: it guided the search)
    for v in ("prm:prm", "self:min"):
        assert (
            cached[cached.verifier == v].verifier_flops.sum()
            < plain[plain.verifier == v].verifier_flops.sum()
        )
