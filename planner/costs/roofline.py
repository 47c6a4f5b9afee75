"""Serving cost simulator: a roofline model of prefill and decode, per strategy, config and budget.

The model is the one llm-analysis and LLM-Viewer use: every forward pass takes
`max(FLOPs / (peak · flops_efficiency), bytes / (bandwidth · bandwidth_efficiency))` seconds
(plus overheads outside the roofline, per call, layer, row, prefill token and attention
score, that calibration measures on CPU: `call_overhead_s`). Prefill processes many tokens
per weight read and is compute-bound; decode produces one token per sequence per weight read and is
bandwidth-bound until the batch is large. A test-time strategy is a `Workload`: how many prompt
tokens are prefilled (the prompt prefix is shared by parallel samples), how many tokens are
generated over how many parallel streams (width) and sequential rounds (depth: search rounds,
revision-chain length), and how many tokens a verifier reads in how many sequential passes.

Outputs per option: latency per query, GPU-seconds per query, $ per 1k queries, queries/s per GPU,
the KV-cache batch the memory allows, and whether a latency SLO is met.

References: llm-analysis (Li, 2023; efficiency knobs about 0.7 FLOPs and 0.9 bandwidth; validated
at -1.6% prefill and -13.8% decode against FasterTransformer), LLM-Viewer (Yuan et al. 2024,
arXiv 2402.16363; roofline per layer), vidur (Agrawal et al. 2024; < 9% error with profiled
operators). Ideal tensor parallelism is assumed across the GPUs of one replica (no communication
term), which flatters models that need several GPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from planner.costs.hardware import HardwareSpec
from planner.costs.modelspec import ModelSpec
from planner.errors import PlannerError

# Fraction of device memory usable for weights + KV (the rest: activations, fragmentation);
# vLLM's default gpu_memory_utilization is 0.9.
MEMORY_FRACTION = 0.9
# Largest decode batch a serving engine runs (vLLM's default max_num_seqs is 256).
MAX_BATCH = 256
# Tokens per search step when a search config names no round count (one reasoning line).
DEFAULT_STEP_TOKENS = 32.0

SEARCH_STRATEGIES = ("beam", "lookahead", "dvts")


# ----------------------------------------------------------------------------------------------
# Small pure formulas


def roofline_time_s(flops: float, bytes_moved: float, hw: HardwareSpec, n_gpus: int = 1) -> float:
    """Seconds for one kernel: max(FLOPs / (g·peak·η_f), bytes / (g·BW·η_b)).

    Units: FLOPs, bytes → s. Roofline model (Williams et al. 2009) as used by llm-analysis and
    LLM-Viewer; `g` GPUs split the work ideally (tensor parallel, no communication term).
    """
    if flops < 0 or bytes_moved < 0:
        raise PlannerError("roofline: FLOPs and bytes must be >= 0")
    g = max(int(n_gpus), 1)
    return max(flops / (g * hw.effective_flops_per_s), bytes_moved / (g * hw.effective_bytes_per_s))


def call_overhead_s(
    model: ModelSpec,
    hw: HardwareSpec,
    rows: float = 1.0,
    attn_scores: float = 0.0,
    fed_tokens: float = 0.0,
    prefill: bool = False,
) -> float:
    """Seconds of one forward call outside the roofline (0 on the shipped GPU profiles, measured
    by `ttc calibrate` on CPU, where a small model is dominated by framework time):

      step + n_layers · layer + rows · seq
           + n_layers · (fed_tokens · token + attn_scores · attn)

    rows: sequences in the call; attn_scores: query-key pairs per layer (decode: rows · context;
    a padded prefill: rows · width²/2 causal); fed_tokens: tokens fed by a prefill (decode feeds
    one per row, already in `seq`); attn is `prefill_attn_overhead_s` for a prefill and
    `attn_overhead_s` for a decode step. Units: s.
    """
    attn = hw.prefill_attn_overhead_s if prefill else hw.attn_overhead_s
    per_layer = (fed_tokens * hw.token_overhead_s if prefill else 0.0) + max(
        attn_scores, 0.0
    ) * attn
    return (
        hw.step_overhead_s
        + model.n_layers * (hw.layer_overhead_s + per_layer)
        + max(rows, 1.0) * hw.seq_overhead_s
    )


def prefill_flops(
    model: ModelSpec, tokens: float, context_before: float = 0.0, seqs: float = 1.0
) -> float:
    """FLOPs to prefill `tokens` new tokens (split evenly over `seqs` sequences) after
    `context_before` cached ones.

    2·P_matmul·T + 4·n_layers·d_attn·(T·C + T²/(2·seqs)): each new token attends to the cache and,
    causally, to half of its own sequence on average (Kaplan et al. 2020, attention term).
    """
    t = max(tokens, 0.0)
    s = max(seqs, 1.0)
    return 2.0 * model.matmul_params * t + 4.0 * model.n_layers * model.d_attn * (
        t * context_before + t * t / (2.0 * s)
    )


def prefill_time_s(
    model: ModelSpec,
    hw: HardwareSpec,
    tokens: float,
    context_before: float = 0.0,
    n_gpus: int = 1,
    seqs: float = 1.0,
) -> float:
    """Seconds to prefill `tokens` tokens in one call over `seqs` sequences: roofline of prefill
    FLOPs vs weights + KV traffic, plus the per-call overhead. Compute-bound once tokens ≳ ridge
    point (about 200 on an H100)."""
    if tokens <= 0:
        return 0.0
    flops = prefill_flops(model, tokens, context_before, seqs)
    moved = model.weight_bytes + (tokens + context_before) * model.kv_bytes_per_token
    s = max(seqs, 1.0)
    scores = tokens * context_before + tokens * tokens / (2.0 * s)  # causal query-key pairs
    return roofline_time_s(flops, moved, hw, n_gpus) + call_overhead_s(
        model, hw, seqs, scores, tokens, True
    )


def decode_step_flops(model: ModelSpec, batch: float, context: float) -> float:
    """FLOPs of one decode step: batch · (2·P_matmul + 4·n_layers·context·d_attn)."""
    return batch * model.flops_per_token(context)


def decode_step_bytes(model: ModelSpec, batch: float, context: float) -> float:
    """Bytes one decode step reads: all weights once + each sequence's KV cache.

    weight_bytes + batch · context · kv_bytes_per_token.
    """
    return model.weight_bytes + batch * context * model.kv_bytes_per_token


def decode_step_time_s(
    model: ModelSpec, hw: HardwareSpec, batch: float, context: float, n_gpus: int = 1
) -> float:
    """Seconds for one decode step of `batch` sequences at `context` tokens each.

    At batch 1 the weight read dominates (bandwidth-bound: ≈ weight_bytes / BW); the step becomes
    compute-bound when batch ≳ (η_f·peak / η_b·BW) · weight_bytes / (2·P_matmul) ≈ 230 for bf16 on
    an H100, at short contexts (long contexts stay bandwidth-bound through the KV reads).
    """
    return roofline_time_s(
        decode_step_flops(model, batch, context),
        decode_step_bytes(model, batch, context),
        hw,
        n_gpus,
    ) + call_overhead_s(model, hw, batch, batch * context)


def decode_is_compute_bound(
    model: ModelSpec, hw: HardwareSpec, batch: float, context: float
) -> bool:
    """True when the decode step's FLOP time exceeds its memory time (roofline regime)."""
    return (
        decode_step_flops(model, batch, context) / hw.effective_flops_per_s
        > decode_step_bytes(model, batch, context) / hw.effective_bytes_per_s
    )


def kv_cache_bytes(model: ModelSpec, tokens: float) -> float:
    """KV-cache bytes for `tokens` cached tokens: tokens · 2 · n_layers · n_kv_heads · head_dim · bytes."""
    return max(tokens, 0.0) * model.kv_bytes_per_token


def gpus_needed(
    model: ModelSpec,
    hw: HardwareSpec,
    memory_fraction: float = MEMORY_FRACTION,
    kv_share: float = 0.2,
) -> int:
    """Smallest power-of-two GPU count whose usable memory holds the weights with `kv_share` of it
    left for the KV cache: weight_bytes ≤ (1 − kv_share) · memory_fraction · g · hbm_bytes."""
    usable = (1.0 - kv_share) * memory_fraction * hw.hbm_bytes
    g = 1
    while model.weight_bytes > usable * g:
        g *= 2
        if g > 1024:
            raise PlannerError(
                f"model {model.name} ({model.weight_bytes:.3g} bytes) does not fit on 1024 {hw.name}"
            )
    return g


def max_batch(
    model: ModelSpec,
    hw: HardwareSpec,
    tokens_per_seq: float,
    n_gpus: int = 1,
    shared_tokens_per_group: float = 0.0,
    seqs_per_group: int = 1,
    memory_fraction: float = MEMORY_FRACTION,
    cap: int = MAX_BATCH,
) -> int:
    """Sequences whose KV cache fits beside the weights, capped at `cap`.

    free = memory_fraction·g·hbm_bytes − weight_bytes; each group of `seqs_per_group` parallel
    samples keeps its shared prompt prefix once: per-sequence bytes = kv · (tokens_per_seq +
    shared_tokens_per_group / seqs_per_group). Returns 0 when not even one sequence fits.
    """
    free = memory_fraction * n_gpus * hw.hbm_bytes - model.weight_bytes
    per_seq = kv_cache_bytes(
        model, tokens_per_seq + shared_tokens_per_group / max(seqs_per_group, 1)
    )
    if free <= 0:
        return 0
    if per_seq <= 0:
        return cap
    return int(min(cap, math.floor(free / per_seq)))


def expected_max(lengths: list[float] | tuple[float, ...], k: float) -> float:
    """Expected maximum of `k` independent draws from the empirical distribution `lengths`.

    E[max] = Σ_x x · (F(x)^k − F(x⁻)^k) (order statistics, e.g. David & Nagaraja 2003, §2.1);
    units follow `lengths` (tokens). A batch decoded in lock step (a search round, one padded
    decode call) lasts as long as its longest row, so its decode steps are this maximum over the
    rows still active; k ≤ 0 gives 0 (no row decodes), k = 1 the mean.
    """
    if k <= 0 or not lengths:
        return 0.0
    xs = sorted(float(x) for x in lengths)
    n = len(xs)
    total, prev_cdf = 0.0, 0.0
    i = 0
    while i < n:
        j = i
        while j < n and xs[j] == xs[i]:
            j += 1
        cdf = j / n
        total += xs[i] * (cdf**k - prev_cdf**k)
        prev_cdf, i = cdf, j
    return total


def usd_per_1k_queries(gpu_s_per_query: float, usd_per_hour: float) -> float:
    """$ per 1000 queries = GPU-seconds per query / 3600 · $/GPU-hour · 1000."""
    return gpu_s_per_query / 3600.0 * usd_per_hour * 1000.0


def queries_per_s_per_gpu(gpu_s_per_query: float) -> float:
    """Throughput of one GPU: 1 / GPU-seconds per query (queries/s)."""
    return math.inf if gpu_s_per_query <= 0 else 1.0 / gpu_s_per_query


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
    count every candidate's prompt; with a shared prefix the parallel streams prefill it once
    (divide by width).
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
        width = _int(config, "n") or b
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
