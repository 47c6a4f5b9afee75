"""Roofline formulas of serving: time, FLOPs and memory of prefill and decode on one replica.

The model is the one llm-analysis and LLM-Viewer use: every forward pass takes
`max(FLOPs / (peak · flops_efficiency), bytes / (bandwidth · bandwidth_efficiency))` seconds
(plus overheads outside the roofline, per call, layer, row, prefill token and attention
score, that calibration measures on CPU: `call_overhead_s`). Prefill processes many tokens
per weight read and is compute-bound; decode produces one token per sequence per weight read and is
bandwidth-bound until the batch is large. The KV cache bounds the batch (`max_batch`) and the
weights set the GPUs of a replica (`gpus_needed`). `planner.costs.simulator` composes these
per-phase formulas into the cost of one query under a strategy.

References: llm-analysis (Li, 2023; efficiency knobs about 0.7 FLOPs and 0.9 bandwidth; validated
at -1.6% prefill and -13.8% decode against FasterTransformer), LLM-Viewer (Yuan et al. 2024,
arXiv 2402.16363; roofline per layer), vidur (Agrawal et al. 2024; < 9% error with profiled
operators). Ideal tensor parallelism is assumed across the GPUs of one replica (no communication
term), which flatters models that need several GPUs.
"""

from __future__ import annotations

import math

from planner.costs.hardware import HardwareSpec
from planner.costs.modelspec import ModelSpec
from planner.errors import PlannerError

# Fraction of device memory usable for weights + KV (the rest: activations, fragmentation);
# vLLM's default gpu_memory_utilization is 0.9.
MEMORY_FRACTION = 0.9
# Largest decode batch a serving engine runs (vLLM's default max_num_seqs is 256).
MAX_BATCH = 256


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
    """KV-cache bytes for `tokens` cached tokens:
    tokens · 2 · n_layers · n_kv_heads · head_dim · bytes."""
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
                f"model {model.name} ({model.weight_bytes:.3g} bytes) does not "
                f"fit on 1024 {hw.name}"
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
