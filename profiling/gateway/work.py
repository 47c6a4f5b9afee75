"""The model work of a decision: draw a pool (probes or candidates), score it, or run a search or
revision strategy through its registered function; each call charges what it spent to the
requests it served.

Costs follow the `sample` strategy's accounting (each prompt's prefill once per drawn pool, each
generated token at its context length, the verifiers' metered FLOPs), so the FLOPs a request
reports compare with the policy's `total_flops`. Verifier tokens are counted as the prompt and
candidate tokens each scored candidate shows the verifier (in the policy's tokenizer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from planner.strategies import CHAINS, aggregate, prefilled_prompt_tokens, strategy_kind
from profiling.backend import Backend
from profiling.flops import forward_flops
from profiling.gateway.choose import Pick, Spend
from profiling.grading import Grader
from profiling.problems import Problem
from profiling.strategies import STRATEGIES
from profiling.strategies.common import make_candidate
from profiling.verifiers import Verifier


@dataclass(frozen=True)
class Sampler:
    """How a pool is drawn: a sample config's sampler, its length capped by the request."""

    temperature: float
    top_p: float
    max_new_tokens: int

    @classmethod
    def of(cls, sample_cfg: Any, cap: int | None) -> Sampler:
        mnt = int(sample_cfg.max_new_tokens)
        return cls(
            float(sample_cfg.temperature),
            float(sample_cfg.top_p),
            mnt if cap is None else min(mnt, int(cap)),
        )


def draw(
    backend: Backend,
    grader: Grader,
    prompts: Sequence[Sequence[int]],
    problems: Sequence[Problem],
    n: int,
    sampler: Sampler,
    seed: int,
    spends: Sequence[Spend],
    probe: bool,
) -> list[list[Pick]]:
    """n candidates per prompt in one batched call, with their generation cost."""
    pools = backend.sample(
        [list(p) for p in prompts],
        n,
        max_new_tokens=sampler.max_new_tokens,
        temperature=sampler.temperature,
        top_p=sampler.top_p,
        seed=seed,
    )
    out = []
    for prompt, problem, pool, spend in zip(prompts, problems, pools, spends, strict=True):
        plen = len(prompt)
        flops = forward_flops(backend.shape, plen, 0, logits=1)
        picks = []
        for g in pool:
            m = len(g.token_ids)
            flops += forward_flops(backend.shape, m - 1, plen) if m > 1 else 0.0
            cand = make_candidate(backend, problem, g.token_ids, g.logprobs)
            picks.append(
                Pick(
                    cand.text,
                    grader.extract_answer(cand.text),
                    gen_tokens=m,
                    finish="length" if g.finish == "length" else "stop",
                    candidate=cand,
                    prompt_tokens=plen,
                )
            )
        spend.prompt_tokens += plen
        if probe:
            spend.probe_tokens += sum(p.gen_tokens for p in picks)
            spend.probe_flops += flops
        else:
            spend.candidate_tokens += sum(p.gen_tokens for p in picks)
            spend.candidate_flops += flops
        out.append(picks)
    return out


def score(
    verifier: Verifier | None,
    pools: Sequence[list[Pick]],
    spends: Sequence[Spend],
    probe: bool,
) -> None:
    """Score the candidates that lack the verifier's score, in one call; charge each owner."""
    if verifier is None:
        return
    vid = verifier.verifier_id
    todo = [(p, o) for o, pool in enumerate(pools) for p in pool if vid not in p.scores]
    if not todo:
        return
    scored = verifier.score([p.candidate for p, _ in todo])
    for (p, o), s in zip(todo, scored, strict=True):
        p.steps[vid] = [float(x) for x in s.step_scores]
        p.scores[vid] = aggregate(p.steps[vid], verifier.agg)
        spends[o].verifier_tokens += p.prompt_tokens + p.gen_tokens
        if probe:
            spends[o].probe_flops += float(s.flops)
        else:
            spends[o].verifier_flops += float(s.flops)


def strategy_rows(
    strategy: str,
    run_cfg: Mapping[str, Any],
    guide: str | None,
    select_vid: str,
    backend: Backend,
    verifiers: Mapping[str, Verifier],
    problems: Sequence[Problem],
    spends: Sequence[Spend],
) -> list[list[Pick]]:
    """A search or revision strategy through its registered function; the rows of the
    decision's verifier become each request's picks, their costs its spend.

    A search is guided by the verifier its profile rows name (`guide`, passed first) and
    selected with the decision's `verifier`; a verifier's rows other than the guide's carry the
    guide's cost too (as the profile charged them), so only the selecting verifier's rows are
    read. A revision option without a verifier reads the rows of none."""
    names = [n for n in (guide, select_vid) if n and n != "none"]
    used = [verifiers[n] for n in dict.fromkeys(names)]
    read = select_vid if select_vid != "none" or strategy_kind(strategy) == CHAINS else guide
    rows = STRATEGIES[strategy].run(list(problems), backend, used, dict(run_cfg))
    pos = {p.problem_id: i for i, p in enumerate(problems)}
    out: list[list[Pick]] = [[] for _ in problems]
    prompts: list[list[tuple[int, int, int]]] = [[] for _ in problems]
    for r in rows:
        if r["verifier"] != read:
            continue
        i = pos[r["problem_id"]]
        pick = Pick(r.get("text"), r["answer"], gen_tokens=int(r["gen_tokens"]))
        pick.steps[read] = list(r["step_scores"])
        pick.scores[read] = float(r["score"])
        out[i].append(pick)
        prompts[i].append((int(r["run"]), int(r["position"]), int(r["prompt_tokens"])))
        s = spends[i]
        s.candidate_tokens += int(r["gen_tokens"])
        s.candidate_flops += float(r["gen_flops"])
        s.verifier_flops += float(r["verifier_flops"])
        if read != "none":
            s.verifier_tokens += int(r["prompt_tokens"]) + int(r["gen_tokens"])
    # a row counts its whole prompt; the request is charged each prompt it prefilled once
    for s, ps in zip(spends, prompts, strict=True):
        s.prompt_tokens += prefilled_prompt_tokens(strategy, ps)
    return out
