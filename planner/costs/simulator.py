"""Serving cost simulator: a strategy's `Workload` and its latency and cost per query.

A test-time strategy is a `Workload`: how many prompt tokens are prefilled (the prompt prefix is
shared by parallel samples), how many tokens are generated over how many parallel streams (width)
and sequential rounds (depth: search rounds, revision-chain length), and how many tokens a
verifier reads in how many sequential passes; `workload_from_profile` reads one from a profile
row and `simulate` turns it into latency per query, GPU-seconds per query, $ per 1k queries,
queries/s per GPU, the KV-cache batch the memory allows, and whether a latency SLO is met
(`meets_slo`). It is separate from `planner.costs.roofline` because those per-phase formulas
are pure functions of a model, a device and token counts, and know nothing of strategies,
configs or budgets; this module is where strategies meet them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from planner.costs.hardware import HardwareSpec
from planner.costs.modelspec import ModelSpec
from planner.costs.roofline import (
    MAX_BATCH,
    call_overhead_s,
    decode_is_compute_bound,
    decode_step_time_s,
    gpus_needed,
    max_batch,
    prefill_flops,
    prefill_time_s,
    queries_per_s_per_gpu,
    usd_per_1k_queries,
)
from planner.errors import PlannerError

# Tokens per search step when a search config names no round count (one reasoning line).
DEFAULT_STEP_TOKENS = 32.0

SEARCH_STRATEGIES = ("beam", "lookahead", "dvts")


# ----------------------------------------------------------------------------------------------
# Workloads


@dataclass(frozen=True)
class Workload:
    """The tokens one query costs under a strategy.

    prompt_tokens: unique prompt tokens prefilled per query (the shared prefix counted once, plus
        per-round context such as a revision's previous answers).
    gen_tokens: generated tokens per query, all streams together.
    width: parallel streams per query (samples, beams, revision chains).
    depth: sequential rounds (search rounds, revision-chain length); adds latency per round.
    verifier_tokens: tokens the verifier reads per query (0: no verifier).
    verifier_passes: sequential verifier calls per query (search: one per round).
    max_stream_tokens: tokens of the longest stream, when known: a query (or a batch decoded
        together) ends with its longest sample, so decode latency counts its steps; None: the
        mean stream (gen_tokens / width).
    prompt_seqs, verifier_seqs: how many sequences the prompt tokens (and each verifier pass's
        tokens) are split over: attention is quadratic per sequence, not over their sum.
    """

    prompt_tokens: float
    gen_tokens: float
    width: int = 1
    depth: int = 1
    verifier_tokens: float = 0.0
    verifier_passes: int = 0
    max_stream_tokens: float | None = None
    prompt_seqs: int = 1
    verifier_seqs: int = 1

    def __post_init__(self) -> None:
        for f in ("prompt_tokens", "gen_tokens", "verifier_tokens"):
            v = getattr(self, f)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"workload {f} must be >= 0, got {v!r}")
        if (
            self.width < 1
            or self.depth < 1
            or self.verifier_passes < 0
            or self.prompt_seqs < 1
            or self.verifier_seqs < 1
        ):
            raise ValueError(
                "workload width, depth and sequence counts must be >= 1, verifier_passes >= 0"
            )
        if self.max_stream_tokens is not None and not (
            math.isfinite(self.max_stream_tokens)
            and self.max_stream_tokens >= self.gen_tokens / self.width - 1e-9
        ):
            raise ValueError("workload max_stream_tokens must be >= the mean stream length")

    @property
    def tokens_per_stream(self) -> float:
        return self.gen_tokens / self.width

    @property
    def decode_steps(self) -> float:
        """Sequential decode steps of one stream group: the longest stream when known."""
        return (
            self.max_stream_tokens if self.max_stream_tokens is not None else self.tokens_per_stream
        )


def uses_verifier(config: dict[str, Any], strategy: str) -> bool:
    """Search always scores with its verifier; pooled strategies only when the answer is chosen by
    score (best, weighted), not by majority vote or coverage."""
    verifier = str(config.get("verifier", "none")).lower()
    if verifier in ("", "none", "null"):
        return False
    if strategy in SEARCH_STRATEGIES:
        return True
    return str(config.get("select", "")).lower() in ("best", "weighted")


def _int(config: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = config.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool) and v >= 1:
            return int(v)
    return None


def workload_from_profile(
    strategy: str,
    config: dict[str, Any],
    budget: float,
    tokens: float,
    prompt_tokens: float,
    shared_prefix: bool = True,
    step_tokens: float = DEFAULT_STEP_TOKENS,
) -> Workload:
    """Map a profile row (expected tokens and prompt tokens per query) to a workload.

    Width: sample → the budget (independent pool); beam/lookahead/dvts → config "n" (else budget);
    revisions → config "chains". Depth: revisions → config "length"; search → the config's round
    count ("rounds", "max_rounds", "num_iterations") else generated tokens per stream divided by
    (k + 1)·step_tokens (lookahead rolls k extra steps per round). The profile's prompt tokens
    count every parallel stream's prompt (planner.tables.schema: profile.prompt_tokens); with a
    shared prefix the streams prefill it once (divide by width).
    """
    strategy = strategy.lower()
    b = max(round(budget), 1)
    if strategy == "revisions":
        width = _int(config, "chains") or 1
        depth = _int(config, "length") or max(b // width, 1)
    elif strategy in SEARCH_STRATEGIES:
        width = _int(config, "n") or b
        rounds = _int(config, "rounds", "max_rounds", "num_iterations", "depth")
        if rounds is None:
            k = _int(config, "k") or 0
            rounds = max(1, round(tokens / width / ((k + 1) * step_tokens)))
        depth = rounds
    else:
        # a pool read at budget k draws k of its n samples (its config keeps the pool's n)
        width = b
        depth = 1
    prefill = prompt_tokens / width if shared_prefix else prompt_tokens
    verifier = uses_verifier(config, strategy)
    passes = (depth if strategy in SEARCH_STRATEGIES else 1) if verifier else 0
    return Workload(
        prompt_tokens=prefill,
        gen_tokens=tokens,
        width=width,
        depth=depth,
        verifier_tokens=(prefill + tokens) if verifier else 0.0,
        verifier_passes=passes,
        prompt_seqs=1 if shared_prefix else width,
        verifier_seqs=width,
    )


@dataclass(frozen=True)
class CostResult:
    latency_s: float
    gpu_s_per_query: float
    usd_per_1k_queries: float
    queries_per_s_per_gpu: float
    batch: int
    max_batch_kv: int
    n_gpus: int
    prefill_s: float
    decode_s: float
    verifier_s: float
    decode_compute_bound: bool
    flops_per_query: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def simulate(
    work: Workload,
    model: ModelSpec,
    hw: HardwareSpec,
    verifier: ModelSpec | None = None,
    batch: int | None = None,
    n_gpus: int | None = None,
    max_batch_cap: int = MAX_BATCH,
) -> CostResult:
    """Latency and GPU cost of one query under `work`, served with `batch` sequences in flight.

    batch None: the largest batch the KV memory and `max_batch_cap` allow (at least the query's
    width), i.e. a loaded server. Per query:
      prefill   = prefill_time(prompt_tokens)                       (compute-bound)
      decode    = steps · t_step(batch, ctx), steps = longest stream (or gen_tokens / width)
      verifier  = passes · prefill_time_v(verifier_tokens / passes) (scoring = a prefill)
      latency   = prefill + decode + verifier + (depth − 1) · step overhead
    GPU-seconds per query amortise each step over the sequences sharing it:
      gpu_s = g · [prefill_time(q·P)/q + gen_tokens · t_step(batch)/batch + verifier_time(q·V)/q],
    with q = batch / width queries in flight. ctx = one prompt + half a stream.
    """
    verifier = verifier or model
    g = n_gpus or max(
        gpus_needed(model, hw), gpus_needed(verifier, hw) if work.verifier_tokens else 1
    )
    # Each stream attends to its own prompt (the shared prefix, or one of `prompt_seqs` prompts).
    ctx = work.prompt_tokens / work.prompt_seqs + work.tokens_per_stream / 2.0
    kv_batch = max_batch(
        model,
        hw,
        work.tokens_per_stream,
        g,
        shared_tokens_per_group=work.prompt_tokens,
        seqs_per_group=work.width,
        cap=max(max_batch_cap, work.width),
    )
    if kv_batch < 1:
        raise PlannerError(f"model {model.name} leaves no memory for a KV cache on {g} x {hw.name}")
    b = int(batch) if batch else max(min(kv_batch, max_batch_cap), work.width)
    if b < 1:
        raise PlannerError("batch must be >= 1")
    q = max(b / work.width, 1.0)

    step = decode_step_time_s(model, hw, b, ctx, g)
    # A batch smaller than the query's width runs its streams in turns.
    decode_lat = work.decode_steps * step * math.ceil(work.width / b)
    prefill_lat = prefill_time_s(model, hw, work.prompt_tokens, 0.0, g, work.prompt_seqs)
    per_pass = work.verifier_tokens / work.verifier_passes if work.verifier_passes else 0.0
    v_seqs = float(work.verifier_seqs)
    ver_lat = (
        work.verifier_passes * prefill_time_s(verifier, hw, per_pass, 0.0, g, v_seqs)
        if per_pass
        else 0.0
    )
    latency = prefill_lat + decode_lat + ver_lat + (work.depth - 1) * call_overhead_s(model, hw)

    prefill_gpu = (
        prefill_time_s(model, hw, q * work.prompt_tokens, 0.0, g, q * work.prompt_seqs) / q
    )
    decode_gpu = work.gen_tokens * step / b
    ver_gpu = (
        (work.verifier_passes * prefill_time_s(verifier, hw, q * per_pass, 0.0, g, q * v_seqs) / q)
        if per_pass
        else 0.0
    )
    gpu_s = g * (prefill_gpu + decode_gpu + ver_gpu)

    flops = (
        prefill_flops(model, work.prompt_tokens, 0.0, work.prompt_seqs)
        + work.gen_tokens * model.flops_per_token(ctx)
        + (
            prefill_flops(verifier, per_pass, 0.0, v_seqs) * work.verifier_passes
            if per_pass
            else 0.0
        )
    )
    return CostResult(
        latency_s=latency,
        gpu_s_per_query=gpu_s,
        usd_per_1k_queries=usd_per_1k_queries(gpu_s, hw.usd_per_hour),
        queries_per_s_per_gpu=queries_per_s_per_gpu(gpu_s),
        batch=b,
        max_batch_kv=kv_batch,
        n_gpus=g,
        prefill_s=prefill_lat,
        decode_s=decode_lat,
        verifier_s=ver_lat,
        decode_compute_bound=decode_is_compute_bound(model, hw, b, ctx),
        flops_per_query=flops,
    )


def meets_slo(result: CostResult, slo_s: float | None) -> bool:
    """Latency SLO filter: True when there is no SLO or latency ≤ SLO."""
    return slo_s is None or result.latency_s <= slo_s
