"""Serving cost simulator: roofline limits, memory, monotonicity, strategy shapes, SLO."""

from __future__ import annotations

import math

import pytest

from planner.costs.hardware import load_hardware
from planner.costs.modelspec import load_model
from planner.costs.roofline import (
    call_overhead_s,
    decode_is_compute_bound,
    decode_step_time_s,
    expected_max,
    gpus_needed,
    kv_cache_bytes,
    max_batch,
    prefill_time_s,
    queries_per_s_per_gpu,
    roofline_time_s,
    usd_per_1k_queries,
)
from planner.costs.simulator import Workload, meets_slo, simulate, workload_from_profile
from planner.errors import PlannerError

H100 = load_hardware("h100-sxm")
L8B = load_model("llama-3.1-8b")
L70B = load_model("llama-3.1-70b")


def test_roofline_basic() -> None:
    # 1 TFLOP at 0.7·989.4 TFLOP/s vs 1 GB at 0.9·3.35 TB/s.
    assert roofline_time_s(1e12, 1e9, H100) == pytest.approx(1e12 / (0.7 * 989.4e12))
    assert roofline_time_s(1e9, 1e12, H100) == pytest.approx(1e12 / (0.9 * 3.35e12))
    assert roofline_time_s(1e12, 1e9, H100, n_gpus=4) == pytest.approx(
        roofline_time_s(1e12, 1e9, H100) / 4
    )
    with pytest.raises(PlannerError):
        roofline_time_s(-1, 0, H100)


def test_decode_bandwidth_bound_at_batch_1() -> None:
    t = decode_step_time_s(L8B, H100, batch=1, context=512)
    # One weight read (16 GB) at 90% of 3.35 TB/s: about 5.3 ms; the KV read is tiny at batch 1.
    assert t == pytest.approx(
        (L8B.weight_bytes + 512 * L8B.kv_bytes_per_token) / (0.9 * 3.35e12), rel=1e-9
    )
    assert not decode_is_compute_bound(L8B, H100, 1, 512)
    # Doubling the batch barely changes the step time (bandwidth-bound), so tokens/s nearly doubles.
    assert decode_step_time_s(L8B, H100, 2, 512) < 1.01 * t


def test_decode_compute_bound_at_large_batch() -> None:
    # Short context, huge batch: FLOPs dominate; the step time grows linearly with the batch.
    assert decode_is_compute_bound(L8B, H100, 4096, 16)
    t1 = decode_step_time_s(L8B, H100, 4096, 16)
    t2 = decode_step_time_s(L8B, H100, 8192, 16)
    assert t2 / t1 == pytest.approx(2.0, rel=0.02)
    assert t1 == pytest.approx(4096 * L8B.flops_per_token(16) / (0.7 * 989.4e12), rel=1e-9)
    # Long contexts stay bandwidth-bound through the KV reads, at any batch.
    assert not decode_is_compute_bound(L8B, H100, 4096, 32768)


def test_prefill_compute_bound() -> None:
    t = prefill_time_s(L8B, H100, tokens=4096)
    flops_t = (2 * L8B.matmul_params * 4096 + 4 * L8B.n_layers * L8B.d_attn * 4096**2 / 2) / (
        0.7 * 989.4e12
    )
    assert t == pytest.approx(flops_t, rel=1e-9)
    # Per token, prefill is far cheaper than decoding at batch 1.
    assert t / 4096 < decode_step_time_s(L8B, H100, 1, 2048) / 50
    assert prefill_time_s(L8B, H100, 0) == 0.0


def test_kv_cache_and_max_batch() -> None:
    # Llama-3.1-8B: 2 · 32 layers · 8 KV heads · 128 · 2 bytes = 128 KiB per token.
    assert L8B.kv_bytes_per_token == 131072
    assert kv_cache_bytes(L8B, 1000) == 131072000
    b = max_batch(L8B, H100, tokens_per_seq=4096, cap=10**9)
    free = 0.9 * 80e9 - L8B.weight_bytes
    assert b == math.floor(free / (4096 * 131072))
    # Longer sequences fit fewer; a shared prefix lets more samples in.
    assert max_batch(L8B, H100, 8192, cap=10**9) < b
    assert max_batch(
        L8B, H100, 100, shared_tokens_per_group=4000, seqs_per_group=64, cap=10**9
    ) > max_batch(L8B, H100, 4100, cap=10**9)
    # 70B in bf16 (141 GB) does not fit one 80 GB GPU.
    assert max_batch(L70B, H100, 1000) == 0
    assert gpus_needed(L70B, H100) == 4
    assert gpus_needed(L8B, H100) == 1


def test_cost_monotone_in_budget() -> None:
    prev = None
    for n in (1, 2, 4, 8, 16, 64, 256):
        w = workload_from_profile("sample", {"select": "majority"}, n, n * 400.0, n * 300.0)
        r = simulate(w, L8B, H100)
        if prev is not None:
            assert r.gpu_s_per_query > prev.gpu_s_per_query
            assert r.usd_per_1k_queries > prev.usd_per_1k_queries
            assert r.queries_per_s_per_gpu < prev.queries_per_s_per_gpu
            assert r.latency_s >= prev.latency_s
        prev = r


def test_cost_monotone_in_model_size() -> None:
    w = Workload(prompt_tokens=300, gen_tokens=400)
    costs = []
    for m in ("qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-72b"):
        costs.append(simulate(w, load_model(m), H100))
    assert costs[0].gpu_s_per_query < costs[1].gpu_s_per_query < costs[2].gpu_s_per_query
    assert costs[0].latency_s < costs[1].latency_s < costs[2].latency_s
    # Scaled specs too: 14x the 1.5B model costs more than the 1.5B model.
    big = load_model("qwen2.5-1.5b").scaled(14)
    assert big.n_params == pytest.approx(14 * 1.54e9)
    assert simulate(w, big, H100).gpu_s_per_query > costs[0].gpu_s_per_query


def test_shared_prefix_and_verifier_and_depth() -> None:
    cfg = {"select": "majority", "verifier": "none"}
    shared = simulate(workload_from_profile("sample", cfg, 16, 16 * 300.0, 16 * 2000.0), L8B, H100)
    unshared = simulate(
        workload_from_profile("sample", cfg, 16, 16 * 300.0, 16 * 2000.0, shared_prefix=False),
        L8B,
        H100,
    )
    assert shared.gpu_s_per_query < unshared.gpu_s_per_query
    scored = simulate(
        workload_from_profile(
            "sample", {**cfg, "select": "weighted", "verifier": "prm"}, 16, 16 * 300.0, 16 * 2000.0
        ),
        L8B,
        H100,
    )
    assert scored.verifier_s > 0 and shared.verifier_s == 0
    assert scored.gpu_s_per_query > shared.gpu_s_per_query
    # Revisions: 4 chains x 4 steps decodes 4 answers in turn; 16 parallel samples decode 1.
    rev = workload_from_profile(
        "revisions", {"chains": 4, "length": 4, "select": "majority"}, 16, 16 * 300.0, 16 * 2000.0
    )
    assert (rev.width, rev.depth) == (4, 4)
    assert simulate(rev, L8B, H100).latency_s > 3 * shared.latency_s
    # Search: one verifier pass per round; more rounds, more latency.
    beam = workload_from_profile(
        "beam",
        {"n": 16, "m": 4, "verifier": "prm", "select": "weighted", "rounds": 10},
        16,
        16 * 300.0,
        16 * 2000.0,
    )
    assert (beam.width, beam.depth, beam.verifier_passes) == (16, 10, 10)
    beam40 = workload_from_profile(
        "beam",
        {"n": 16, "m": 4, "verifier": "prm", "select": "weighted", "rounds": 40},
        16,
        16 * 300.0,
        16 * 2000.0,
    )
    assert simulate(beam40, L8B, H100).latency_s > simulate(beam, L8B, H100).latency_s


def test_slo_and_money() -> None:
    assert usd_per_1k_queries(3.6, 4.25) == pytest.approx(4.25)
    assert queries_per_s_per_gpu(0.5) == 2.0
    r = simulate(Workload(300, 400), L8B, H100)
    assert meets_slo(r, None) and meets_slo(r, r.latency_s) and not meets_slo(r, r.latency_s / 2)
    assert r.usd_per_1k_queries == pytest.approx(r.gpu_s_per_query / 3600 * 4.25 * 1000)
    # A cheaper GPU hour gives a cheaper query; slower memory a slower one.
    l4 = load_hardware("l4")
    assert (
        simulate(Workload(300, 400), load_model("qwen2.5-1.5b"), l4).latency_s
        > simulate(Workload(300, 400), load_model("qwen2.5-1.5b"), H100).latency_s
    )


def test_bad_workloads() -> None:
    with pytest.raises(ValueError):
        Workload(prompt_tokens=-1, gen_tokens=10)
    with pytest.raises(ValueError):
        Workload(prompt_tokens=1, gen_tokens=10, width=0)
    with pytest.raises(PlannerError):
        load_model("qwen2.5-1.5b").scaled(0)


def test_longest_stream_sets_decode_latency() -> None:
    mean = Workload(prompt_tokens=100, gen_tokens=4 * 200, width=4)
    skew = Workload(prompt_tokens=100, gen_tokens=4 * 200, width=4, max_stream_tokens=500)
    a, b = simulate(mean, L8B, H100, batch=4), simulate(skew, L8B, H100, batch=4)
    assert b.decode_s == pytest.approx(a.decode_s * 500 / 200, rel=1e-9)
    assert b.gpu_s_per_query == pytest.approx(a.gpu_s_per_query)  # same tokens, same GPU work
    with pytest.raises(ValueError):
        Workload(prompt_tokens=1, gen_tokens=400, width=4, max_stream_tokens=50)


def test_calibrated_overheads_add_per_call() -> None:
    cpu = load_hardware("l4").with_overrides(step_overhead_s=1e-3, layer_overhead_s=1e-4)
    tiny = load_model("qwen2.5-1.5b")
    base = decode_step_time_s(tiny, load_hardware("l4"), 1, 10)
    assert decode_step_time_s(tiny, cpu, 1, 10) == pytest.approx(base + 1e-3 + 28 * 1e-4)


def test_attention_and_token_overheads_scale_with_their_counts() -> None:
    l4 = load_hardware("l4")
    cpu = l4.with_overrides(
        attn_overhead_s=1e-8, token_overhead_s=1e-6, prefill_attn_overhead_s=2e-8
    )
    tiny = load_model("qwen2.5-1.5b")
    layers = tiny.n_layers
    # decode: rows x context attention scores per layer
    extra = decode_step_time_s(tiny, cpu, 8, 100) - decode_step_time_s(tiny, l4, 8, 100)
    assert extra == pytest.approx(layers * 8 * 100 * 1e-8)
    # prefill of 4 sequences of 50 tokens: 200 fed tokens and 4 * 50^2 / 2 causal scores per layer
    extra = prefill_time_s(tiny, cpu, 200, seqs=4) - prefill_time_s(tiny, l4, 200, seqs=4)
    assert extra == pytest.approx(layers * (200 * 1e-6 + 4 * 50 * 50 / 2 * 2e-8))
    assert call_overhead_s(tiny, l4, 8, 1e6, 1e6, True) == 0.0  # GPU profiles: no overhead


def test_expected_max_order_statistic() -> None:
    assert expected_max([1, 2, 3], 1) == pytest.approx(2.0)  # one draw: the mean
    assert expected_max([1, 2, 3], 2) == pytest.approx((1 * 1 + 2 * 3 + 3 * 5) / 9)
    assert expected_max([4, 4], 7) == 4.0 and expected_max([1, 2], 0) == 0.0
    values = [3, 9, 1, 7, 7, 2]
    ks = [1, 2, 4, 16, 256]
    maxes = [expected_max(values, k) for k in ks]
    assert maxes == sorted(maxes) and maxes[-1] == pytest.approx(9.0)  # grows to the largest
