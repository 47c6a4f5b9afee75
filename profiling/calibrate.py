"""Measure this machine for the cost simulator: matmul FLOP/s, memory bandwidth, forward overhead.

`ttc calibrate` imports this module lazily (it needs torch). The result is a hardware profile in the
data-file form of `planner.costs.hardware` (every value with how it was measured); its efficiencies
are 1.0 because the peaks are measured achievable rates, not datasheet numbers.

- peak_flops_per_s: best of `repeats` timings of `torch.mm` on two size×size matrices (2·size³
  FLOPs per call), the rate a large GEMM reaches.
- hbm_bytes_per_s: best timing of a matrix-vector product over a `mbytes` MiB float32 matrix (bytes
  of the matrix per call): the weight-streaming pattern of a decode step at batch 1.
- step_overhead_s, layer_overhead_s: a tiny Llama (hidden 32, so FLOPs and bytes are negligible)
  decodes with the harness's own loop (`models.decoding.sample_batch`) at 1 and at 5 layers and
  at 1 and `rows` rows (32; the fidelity bench passes its batch size); the differences give the
  per-layer and per-row overheads of eager PyTorch (sampling, softmax, tiny matmuls), the rest is
  the fixed per-step overhead (cache bookkeeping, Python).
- attn_overhead_s: the same decode loop at `rows` rows with a 16- vs a 400-token prompt: the extra
  seconds per step per layer per cached token and row (masked attention over the cache).
- token_overhead_s, prefill_attn_overhead_s: the harness's scoring forward
  (`models.decoding.score_tokens`) on three padded shapes (rows x width 8x32, 8x256, 32x64);
  a 3x3 solve of t = c + L·(tokens·token + scores·attn), scores = rows·width²/2.
With `model_dir`, these overheads are measured on a randomly initialised model of that folder's
config (its hidden size, heads and layers: the operators the served model runs, as vidur
profiles operators per model), else on a tiny Llama.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

from models.decoding import sample_batch, score_tokens


def _clock() -> float:
    """Process CPU time when torch runs one thread (immune to other jobs on a shared machine, as
    a single-threaded harness run is timed), else wall time."""
    return time.process_time() if torch.get_num_threads() == 1 else time.perf_counter()


def _best_time(fn: Callable[[], Any], repeats: int, min_s: float = 0.05) -> float:
    """Best mean seconds per call over `repeats` timed blocks of enough calls to last `min_s`."""
    fn()  # warm-up (allocations, thread pool)
    t0 = _clock()
    fn()
    one = max(_clock() - t0, 1e-7)
    calls = max(1, int(min_s / one))
    best = float("inf")
    for _ in range(repeats):
        t0 = _clock()
        for _ in range(calls):
            fn()
        best = min(best, (_clock() - t0) / calls)
    return best


def measure_matmul_flops(
    size: int = 1024, repeats: int = 5, dtype: torch.dtype = torch.float32
) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(dtype)
    b = torch.randn(size, size, generator=g).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    t = _best_time(lambda: torch.mm(a, b, out=out), repeats)
    return 2.0 * size**3 / t


def measure_bandwidth(mbytes: int = 256, repeats: int = 5) -> float:
    rows = max(1, mbytes * (1 << 20) // (4 * 1024))
    w = torch.ones(rows, 1024, dtype=torch.float32)
    x = torch.ones(1024, dtype=torch.float32)
    out = torch.empty(rows, dtype=torch.float32)
    t = _best_time(lambda: torch.mv(w, x, out=out), repeats)
    return w.numel() * 4 / t


def _tiny_llama(layers: int) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def _shaped_model(model_dir: str | None, layers: int | None = None) -> torch.nn.Module:
    """A random-weight causal LM with `model_dir`'s config (tiny Llama when None)."""
    if model_dir is None:
        return _tiny_llama(layers or 1)
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(model_dir)
    if layers is not None:
        cfg.num_hidden_layers = layers
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval()


def _vocab(model: torch.nn.Module) -> int:
    return int(model.config.vocab_size)


def measure_attention_overhead(
    repeats: int = 3, rows: int = 32, model_dir: str | None = None
) -> float:
    """Seconds per decode step per layer per (row, cached token): slope of the harness decode
    loop's step time between a 16- and a 400-token context at `rows` rows."""
    model = _shaped_model(model_dir)
    layers = int(model.config.num_hidden_layers)
    tok = min(3, _vocab(model) - 1)
    per_step = {}
    for ctx in (16, 400):
        prompts = [[tok] * ctx for _ in range(rows)]

        def gen(n: int, m: torch.nn.Module = model, p: list = prompts) -> None:
            sample_batch(m, p, max_new_tokens=n, temperature=1.0, seed=0)

        per_step[ctx] = (
            max(
                _best_time(lambda g=gen: g(56), repeats, min_s=0.0)
                - _best_time(lambda g=gen: g(8), repeats, min_s=0.0),
                0.0,
            )
            / 48.0
        )
    return max(per_step[400] - per_step[16], 0.0) / (rows * 384.0 * layers)


def measure_prefill_overhead(repeats: int = 3, model_dir: str | None = None) -> tuple[float, float]:
    """(seconds per fed token per layer, seconds per causal attention score per layer) of the
    harness's scoring forward (`score_tokens`, one padded batch), from three shapes."""
    model = _shaped_model(model_dir)
    layers = int(model.config.num_hidden_layers)
    tok = min(3, _vocab(model) - 1)
    shapes = ((8, 32), (8, 256), (32, 64))
    times = []
    for rows, width in shapes:
        seqs = [[tok] * width for _ in range(rows)]
        plens = [1] * rows
        times.append(
            _best_time(
                lambda s=seqs, p=plens: score_tokens(model, s, p, batch_size=len(s)), repeats
            )
        )
    a = torch.tensor(
        [[1.0, layers * r * w, layers * r * w * w / 2.0] for r, w in shapes], dtype=torch.float64
    )
    sol = torch.linalg.solve(a, torch.tensor(times, dtype=torch.float64)).tolist()
    return max(sol[1], 0.0), max(sol[2], 0.0)


def measure_decode_overhead(repeats: int = 3, rows: int = 32) -> tuple[float, float, float]:
    """(fixed, per-layer, per-row) seconds of one step of the harness's own decode loop
    (`models.decoding.sample_batch`: forward + sampling + cache bookkeeping), from the slope of
    wall time in generated tokens (64 vs 8 new tokens, so prefill and setup cancel) at 1 and 5
    layers (one row), and at 1 vs `rows` rows (one layer)."""
    per_step = {}
    # Stop and end tokens are out of the tiny vocabulary's reach: every row decodes all tokens.
    for layers, batch in ((1, 1), (5, 1), (1, rows)):
        model = _tiny_llama(layers)
        prompt = [[3] * 16 for _ in range(batch)]

        def gen(n: int, m: torch.nn.Module = model, p: list = prompt) -> None:
            sample_batch(m, p, max_new_tokens=n, temperature=1.0, seed=0)

        t_long = _best_time(lambda g=gen: g(64), repeats, min_s=0.0)
        t_short = _best_time(lambda g=gen: g(8), repeats, min_s=0.0)
        per_step[(layers, batch)] = max(t_long - t_short, 0.0) / 56.0
    per_layer = max((per_step[(5, 1)] - per_step[(1, 1)]) / 4.0, 0.0)
    per_row = max((per_step[(1, rows)] - per_step[(1, 1)]) / (rows - 1), 0.0)
    return max(per_step[(1, 1)] - per_layer - per_row, 0.0), per_layer, per_row


def calibrate(
    name: str = "this-machine",
    size: int = 1024,
    mbytes: int = 256,
    repeats: int = 5,
    dtype: str = "float32",
    threads: int | None = None,
    usd_per_hour: float = 0.0,
    model_dir: str | None = None,
    rows: int = 32,
) -> dict[str, Any]:
    """Run the measurements and return the hardware profile (data-file form); `model_dir`: measure
    the context and prefill overheads on a random-weight model of that config's shape; `rows`:
    the decode batch the per-row and attention overheads are measured at (the serving batch)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _calibrate(name, size, mbytes, repeats, dtype, usd_per_hour, model_dir, rows)
    finally:
        torch.set_num_threads(before)  # a library call must not change the caller's torch state


def _calibrate(
    name: str,
    size: int,
    mbytes: int,
    repeats: int,
    dtype: str,
    usd_per_hour: float,
    model_dir: str | None = None,
    rows: int = 32,
) -> dict[str, Any]:
    tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    flops = measure_matmul_flops(size, repeats, tdtype)
    bw = measure_bandwidth(mbytes, repeats)
    step, layer, seq = measure_decode_overhead(repeats, max(int(rows), 2))
    what = (
        "models.decoding.sample_batch step (forward + sampling), tiny Llama, 64 vs 8 tokens, "
        f"1 vs 5 layers, 1 vs {rows} rows"
    )
    attn = measure_attention_overhead(repeats, max(int(rows), 1), model_dir)
    token, pattn = measure_prefill_overhead(repeats, model_dir=model_dir)
    shape = f"random-weight model shaped as {model_dir}" if model_dir else "tiny Llama"
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = 8 * 1024**3
    nthreads = torch.get_num_threads()
    clock = "CPU time" if nthreads == 1 else "wall time"
    how = (
        f"measured by ttc calibrate (torch {torch.__version__}, {nthreads} threads, {clock}, "
        f"best of {repeats})"
    )
    return {
        "name": name,
        "description": "this machine's CPU as measured by ttc calibrate "
        f"({os.cpu_count()} logical cores)",
        "peak_flops_per_s": {"value": flops, "source": f"torch.mm {size}x{size} {dtype}; {how}"},
        "hbm_bytes_per_s": {
            "value": bw,
            "source": f"torch.mv over a {mbytes} MiB float32 matrix; {how}",
        },
        "hbm_bytes": {"value": float(mem), "source": "physical memory (os.sysconf)"},
        "usd_per_hour": {
            "value": float(usd_per_hour),
            "source": "given to ttc calibrate (--usd-per-hour)",
        },
        "flops_efficiency": {"value": 1.0, "source": "1.0: the peak is a measured achievable rate"},
        "bandwidth_efficiency": {
            "value": 1.0,
            "source": "1.0: the bandwidth is a measured achievable rate",
        },
        "step_overhead_s": {"value": step, "source": f"{what}: fixed part; {how}"},
        "layer_overhead_s": {"value": layer, "source": f"{what}: per layer; {how}"},
        "seq_overhead_s": {"value": seq, "source": f"{what}: per row; {how}"},
        "token_overhead_s": {
            "value": token,
            "source": f"score_tokens on {shape}, shapes 8x32, 8x256, "
            f"32x64: per fed token per layer; {how}",
        },
        "attn_overhead_s": {
            "value": attn,
            "source": f"sample_batch on {shape}, {rows} rows, 16 vs 400 "
            f"context tokens: per cached token, row and layer per step; {how}",
        },
        "prefill_attn_overhead_s": {
            "value": pattn,
            "source": f"score_tokens on {shape}, shapes 8x32, "
            f"8x256, 32x64: per causal attention score per layer; {how}",
        },
    }
