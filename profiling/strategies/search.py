"""Step-level search guided by a verifier: `beam`, `lookahead` and `dvts`.

Each has its own frozen config (`BeamConfig`, `LookaheadConfig`, `DVTSConfig`, sharing the keys
and checks of `SearchConfig`), which owns its rules: n a multiple of m; k >= 1 for lookahead only.

All three keep the partial solutions of one problem as rows of one KV cache
(`backend.start_batch(prompts)`): each prompt is encoded once, a kept row is copied M ways with
`select` (no re-encoding), and each round feeds only the new step's tokens.

- beam (paper, Snell et al. 2024): sample N first steps; score; keep the top N/M; expand each M
  ways; repeat until solutions end or `max_rounds`. A finished solution leaves the beam and frees
  its slot for good, so the number of live rows plus finished solutions never exceeds N (at most
  N final candidates, at most N step generations per round).
- lookahead (k): as beam, but a candidate step is scored after rolling it out k more steps at
  temperature 0 (on a copy of its cache rows); the rollouts are discarded. Budget N·(k+1).
- dvts (search-and-learn): N/M independent subtrees; each round each subtree keeps the best of
  its M expansions (a finished best ends the subtree) and expands it M ways; N/M final candidates.

The search verifier scores incrementally (`profiling.verifiers.incremental`): between rounds it
keeps the KV rows of the partial solutions it read, so each round feeds it only the new step.

The first verifier guides the search; every verifier scores the final candidates (one row per
final candidate and verifier). Costs: the run's whole cost (prompt once, every generated token
including pruned branches and rollouts, every verifier call) is spread evenly over the run's final
rows, so the rows of one (run, verifier) sum to the run's total. `prompt_tokens` is not a cost
spread but what each final candidate was generated from: the problem's prompt, whole, on every
row (the samples table's rule for shared prompts, `planner.tables.schema`).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from models.decoding import Generation, make_generator
from planner.strategies import aggregate
from profiling.backend import Backend, SearchState
from profiling.problems import Problem
from profiling.strategies.common import (
    Verifiers,
    config_from,
    grader_for,
    judge,
    make_candidate,
    row,
    row_config,
    spread_float,
    spread_int,
    timed_score,
    verifier_list,
)
from profiling.verifiers import Candidate, Scored, Verifier, incremental


@dataclass(frozen=True)
class SearchConfig:
    """What beam, lookahead and DVTS share. n: budget (generations, the paper's N); m: beam
    width (DVTS: branching; n / m subtrees); k: lookahead steps (only lookahead's may be > 0,
    and the key stays in every search's row config)."""

    strategy: ClassVar[str] = "search"

    n: int
    m: int = 4
    k: int = 0
    max_rounds: int = 40
    temperature: float = 0.8
    top_p: float = 1.0
    max_step_tokens: int = 128
    max_new_tokens: int = 1024
    seed: int = 0
    runs: int = 1
    grader: str = "testbed"

    def __post_init__(self) -> None:
        name = self.strategy
        if self.n < 1 or self.m < 1:
            raise ValueError(f"{name}: n and m must be >= 1, got n={self.n}, m={self.m}")
        if self.n % self.m:
            raise ValueError(f"{name}: n ({self.n}) must be a multiple of m ({self.m})")
        if self.k < 0 or self.max_rounds < 1:
            raise ValueError(f"{name}: k must be >= 0 and max_rounds >= 1")
        if self.max_step_tokens < 1 or self.max_new_tokens < 1 or self.runs < 1:
            raise ValueError(f"{name}: max_step_tokens, max_new_tokens and runs must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"{name}: temperature must be >= 0 and top_p in (0, 1]")


@dataclass(frozen=True)
class BeamConfig(SearchConfig):
    strategy: ClassVar[str] = "beam"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k:
            raise ValueError("beam: k (lookahead steps) only applies to 'lookahead'")


@dataclass(frozen=True)
class LookaheadConfig(SearchConfig):
    strategy: ClassVar[str] = "lookahead"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ValueError("lookahead: k must be >= 1 (k = 0 is beam search)")


@dataclass(frozen=True)
class DVTSConfig(SearchConfig):
    strategy: ClassVar[str] = "dvts"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k:
            raise ValueError("dvts: k (lookahead steps) only applies to 'lookahead'")


@dataclass
class _Path:
    tokens: list[int]
    logprobs: list[float]
    done: bool = False


@dataclass
class _Final:
    path: _Path
    scored: Scored | None  # the search verifier's direct score of the complete path, if known


class _Run:
    """The search of one problem: its paths (rows of the shared state), finals and costs."""

    def __init__(
        self,
        problem: Problem,
        backend: Backend,
        verifiers: list[Verifier],
        cfg: SearchConfig,
        strategy: str,
        run: int,
    ) -> None:
        self.problem, self.backend, self.cfg, self.strategy = problem, backend, cfg, strategy
        self.sv = verifiers[0]
        self.grader = grader_for(cfg.grader)
        self.prompt = backend.prompt_ids(problem)
        self.paths = [_Path([], []) for _ in range(cfg.n)]
        self.tree = [i // cfg.m for i in range(cfg.n)]  # dvts subtree of each row
        self.finals: list[_Final] = []
        self.verifier_flops = 0.0
        self.verifier_wall = 0.0
        self.gen_flops = 0.0
        self.gen_tokens = 0

    def cand(self, path: _Path) -> Candidate:
        return make_candidate(self.backend, self.problem, path.tokens, path.logprobs)

    def finished(self, path: _Path, finish: str, step_tokens: Sequence[int]) -> bool:
        if finish == "eos" or len(path.tokens) >= self.cfg.max_new_tokens:
            return True
        return self.grader.extract_answer(self.backend.decode(step_tokens)) is not None

    def after_step(self, gens: Sequence[Generation]) -> None:
        for p, g in zip(self.paths, gens, strict=True):
            p.tokens += g.token_ids
            p.logprobs += g.logprobs
            p.done = self.finished(p, g.finish, g.token_ids)

    def choose(self, scores: dict[int, Scored], last_round: bool) -> list[int]:
        """Record finished paths; return the rows (local indices) to expand next round."""
        cfg, paths = self.cfg, self.paths
        value = {i: aggregate(scores[i].step_scores, self.sv.agg) for i in range(len(paths))}
        dvts = self.strategy == "dvts"
        keep: list[int] = []
        if last_round:
            if dvts:
                for t in sorted(set(self.tree)):
                    best = max(
                        (i for i in range(len(paths)) if self.tree[i] == t),
                        key=lambda i: (value[i], -i),
                    )
                    self.finals.append(_Final(paths[best], scores[best]))
            else:
                self.finals += [_Final(paths[i], scores[i]) for i in range(len(paths))]
            return keep
        if dvts:
            new_tree: list[int] = []
            for t in sorted(set(self.tree)):
                members = [i for i in range(len(paths)) if self.tree[i] == t]
                best = max(members, key=lambda i: (value[i], -i))
                if paths[best].done:
                    self.finals.append(_Final(paths[best], scores[best]))
                else:
                    keep += [best] * cfg.m
                    new_tree += [t] * cfg.m
            self.tree = new_tree
        else:
            for i in range(len(paths)):
                if paths[i].done:
                    self.finals.append(_Final(paths[i], scores[i]))
            remaining = cfg.n - len(self.finals)
            live = [i for i, p in enumerate(paths) if not p.done]
            if remaining > 0 and live:
                n_keep = max(1, remaining // cfg.m)
                width = min(cfg.m, remaining)
                best = sorted(live, key=lambda i: (-value[i], i))[:n_keep]
                keep = [i for i in best for _ in range(width)]
        self.paths = [_Path(list(paths[i].tokens), list(paths[i].logprobs)) for i in keep]
        return keep


def _score_many(
    sv: Verifier, runs: Sequence[_Run], items: Sequence[tuple[int, Candidate]]
) -> list[Scored]:
    """Score candidates of several runs in one verifier call; charge each run its share."""
    if not items:
        return []
    scored, wall = timed_score(sv, [c for _, c in items])
    for (ri, _), s in zip(items, scored, strict=True):
        runs[ri].verifier_flops += s.flops
        runs[ri].verifier_wall += wall / len(items)
    return scored


def _execute(runs: list[_Run], backend: Backend, cfg: SearchConfig, seed: int) -> SearchState:
    """Search several problems at once: their rows share one batch and one KV cache."""
    # the search verifier keeps its KV rows between rounds (a PRM reads each new step once,
    # not the whole partial solution every round), for this search only
    with incremental(runs[0].sv):
        return _execute_rounds(runs, backend, cfg, seed)


def _execute_rounds(
    runs: list[_Run], backend: Backend, cfg: SearchConfig, seed: int
) -> SearchState:
    st = backend.start_batch([r.prompt for r in runs])
    gen = make_generator(seed, st.device)
    st.select([ri for ri, _ in enumerate(runs) for _ in range(cfg.n)])
    rows_of = [cfg.n] * len(runs)  # live rows of each run, in run order in the state
    sv = runs[0].sv
    for rnd in range(cfg.max_rounds):
        gens = st.step(
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_step_tokens=cfg.max_step_tokens,
            generator=gen,
        )
        off = 0
        for r, k in zip(runs, rows_of, strict=True):
            if k:
                r.after_step(gens[off : off + k])
            off += k
        last_round = rnd == cfg.max_rounds - 1
        active = [ri for ri, k in enumerate(rows_of) if k]
        direct = [
            (ri, i)
            for ri in active
            for i, p in enumerate(runs[ri].paths)
            if p.done or cfg.k == 0 or last_round
        ]
        scores: dict[tuple[int, int], Scored] = dict(
            zip(
                direct,
                _score_many(sv, runs, [(ri, runs[ri].cand(runs[ri].paths[i])) for ri, i in direct]),
                strict=True,
            )
        )
        if cfg.k and not last_round:
            scores.update(_lookahead(st, runs, rows_of, cfg, sv))
        keep: list[int] = []
        offsets = [sum(rows_of[:ri]) for ri in range(len(runs))]
        new_rows = [0] * len(runs)
        for ri in active:
            local = runs[ri].choose({i: scores[(ri, i)] for i in range(rows_of[ri])}, last_round)
            keep += [offsets[ri] + i for i in local]
            new_rows[ri] = len(local)
        rows_of = new_rows
        if not keep:
            break
        st.select(keep)
    for ri, r in enumerate(runs):
        r.gen_flops = st.flops_by[ri] + sum(c.flops_by.get(ri, 0.0) for c in st.children)
        r.gen_tokens = st.generated_by[ri] + sum(c.generated_by.get(ri, 0) for c in st.children)
    return st


def _lookahead(
    st: SearchState, runs: list[_Run], rows_of: list[int], cfg: SearchConfig, sv: Verifier
) -> dict[tuple[int, int], Scored]:
    """Roll every live row out k greedy steps on a copy of its cache rows; score the rollout."""
    live: list[tuple[int, int, int]] = []  # (run, local row, row in st)
    off = 0
    for ri, k in enumerate(rows_of):
        for i in range(k):
            if not runs[ri].paths[i].done:
                live.append((ri, i, off + i))
        off += k
    if not live:
        return {}
    fork = st.fork([g for _, _, g in live])
    extra: list[list[int]] = [[] for _ in live]
    extra_lp: list[list[float]] = [[] for _ in live]
    going = list(range(len(live)))
    for _ in range(cfg.k):
        if not going:
            break
        gens = fork.step(temperature=0.0, max_step_tokens=cfg.max_step_tokens, rows=going)
        still = []
        for j in going:
            ri, i, _ = live[j]
            g = gens[j]
            extra[j] += g.token_ids
            extra_lp[j] += g.logprobs
            path = runs[ri].paths[i]
            probe = _Path(path.tokens + extra[j], [])
            if not runs[ri].finished(probe, g.finish, g.token_ids):
                still.append(j)
        going = still
    items = [
        (
            ri,
            make_candidate(
                runs[ri].backend,
                runs[ri].problem,
                runs[ri].paths[i].tokens + extra[j],
                runs[ri].paths[i].logprobs + extra_lp[j],
            ),
        )
        for j, (ri, i, _) in enumerate(live)
    ]
    scored = _score_many(sv, runs, items)
    return {(ri, i): s for (ri, i, _), s in zip(live, scored, strict=True)}


def _search(
    cfg: SearchConfig, problems: Sequence[Problem], backend: Backend, verifier: Verifiers
) -> list[dict]:
    strategy = cfg.strategy
    verifiers = verifier_list(verifier)
    if not verifiers:
        raise ValueError(f"{strategy} needs a verifier to guide the search")
    cfg_json = row_config(cfg, {"search_verifier": verifiers[0].verifier_id})
    # as many problems per batch as fit in the backend's batch size (at least one)
    per = max(1, backend.batch_size // cfg.n)
    rows: list[dict] = []
    for run in range(cfg.runs):
        for start in range(0, len(problems), per):
            group = list(problems[start : start + per])
            t0 = time.perf_counter()
            runs = [_Run(p, backend, verifiers, cfg, strategy, run) for p in group]
            seed = (
                cfg.seed * 1_000_003
                + run * 7919
                + zlib.crc32("|".join(p.problem_id for p in group).encode())
            )
            _execute(runs, backend, cfg, seed % (2**63 - 1))
            gen_wall = time.perf_counter() - t0 - sum(r.verifier_wall for r in runs)
            total_tokens = sum(r.gen_tokens for r in runs) or 1
            for r in runs:
                wall = max(gen_wall, 0.0) * r.gen_tokens / total_tokens
                rows += _rows(r, verifiers, strategy, cfg_json, run, wall)
    return rows


def _rows(
    r: _Run, verifiers: list[Verifier], strategy: str, cfg_json: str, run: int, wall: float
) -> list[dict]:
    finals = r.finals
    cands = [r.cand(f.path) for f in finals]
    outcomes = [judge(r.grader, c) for c in cands]
    k = len(finals)
    g_tok = spread_int(r.gen_tokens, k)
    g_flops = spread_float(r.gen_flops, k)
    out: list[dict] = []
    for v in verifiers:
        if v is verifiers[0]:
            scored = [f.scored for f in finals]
            v_flops, v_wall = r.verifier_flops, r.verifier_wall
        else:
            scored, own_wall = timed_score(v, cands)
            v_flops = r.verifier_flops + sum(s.flops for s in scored)
            v_wall = r.verifier_wall + own_wall
        vf = spread_float(v_flops, k)
        ws = spread_float(wall + v_wall, k)
        for i in range(k):
            out.append(
                row(
                    r.problem,
                    strategy,
                    cfg_json,
                    run,
                    i,
                    outcomes[i],
                    v.verifier_id,
                    scored[i],
                    v.agg,
                    prompt_tokens=len(r.prompt),
                    gen_tokens=g_tok[i],
                    gen_flops=g_flops[i],
                    verifier_flops=vf[i],
                    wall_s=ws[i],
                )
            )
    return out


def beam(
    problems: Sequence[Problem], backend: Backend, verifier: Verifiers, config: Mapping[str, Any]
) -> list[dict]:
    return _search(config_from(BeamConfig, config, "beam"), problems, backend, verifier)


def lookahead(
    problems: Sequence[Problem], backend: Backend, verifier: Verifiers, config: Mapping[str, Any]
) -> list[dict]:
    return _search(config_from(LookaheadConfig, config, "lookahead"), problems, backend, verifier)


def dvts(
    problems: Sequence[Problem], backend: Backend, verifier: Verifiers, config: Mapping[str, Any]
) -> list[dict]:
    return _search(config_from(DVTSConfig, config, "dvts"), problems, backend, verifier)
