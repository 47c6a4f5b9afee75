"""Throughput of the profiling harness against raw `generate`, one-at-a-time sampling and the
forward-pass ceiling; and beam search's wall time per generated token against `sample`'s.

    .venv/bin/python benchmarks/bench_generate.py                  # the quick testbed's policy
    .venv/bin/python benchmarks/bench_generate.py --model DIR      # any local causal LM dir
    .venv/bin/python benchmarks/bench_generate.py --random-hidden 128 --random-layers 4  # ~1M

Prints one JSON document of figures measured in this run (fastest of --repeats timings):
- sample_vs_generate: harness `sample` tokens/s / HF `model.generate` tokens/s, same batch
  (target >= 0.9);
- sample_vs_one_at_a_time: harness tokens/s / the same samples drawn one per call (>= 10);
- beam_vs_sample_per_token: beam search's wall seconds per generated token / sample's (<= 1.5);
  with --prm also the same without the verifier's KV cache between rounds, and the speedup;
- sample_vs_ceiling: harness tokens/s / tokens/s of one batched forward over the same
  sequences (the compute-bound ceiling of decoding them; 0.5 is the aim).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def _best_time(fn, repeats: int) -> float:
    """Fastest of `repeats` timings: on a shared machine the minimum is the least disturbed."""
    fn()  # warm-up (allocator, lazy init)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _model_dir(args: argparse.Namespace) -> Path:
    if args.model:
        return Path(args.model)
    if args.random_hidden:
        import transformers

        from models.testbed.tokenizer import build_tokenizer

        tok = build_tokenizer()
        cfg = transformers.LlamaConfig(
            vocab_size=len(tok),
            hidden_size=args.random_hidden,
            intermediate_size=4 * args.random_hidden,
            num_hidden_layers=args.random_layers,
            num_attention_heads=max(1, args.random_hidden // 32),
            max_position_embeddings=1024,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        torch.manual_seed(0)
        out = Path(tempfile.mkdtemp()) / f"random-{args.random_hidden}x{args.random_layers}"
        transformers.LlamaForCausalLM(cfg).save_pretrained(out)
        tok.save_pretrained(out)
        return out
    from models.testbed import ensure_testbed

    return Path(ensure_testbed(quick=True, progress=False)) / "policy"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="local model directory (default: the quick testbed policy)")
    ap.add_argument(
        "--random-hidden",
        type=int,
        default=0,
        help="benchmark a random Llama of this width instead (testbed tokenizer)",
    )
    ap.add_argument("--random-layers", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=8, help="samples per prompt (batch = prompts x n)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument(
        "--one-at-a-time",
        type=int,
        default=8,
        help="how many of the samples to draw one per call (throughput extrapolates)",
    )
    ap.add_argument("--beam-n", type=int, default=16)
    ap.add_argument("--beam-m", type=int, default=4)
    ap.add_argument(
        "--max-step-tokens",
        type=int,
        default=32,
        help="beam search's cap on one step (testbed lines are < 32 characters)",
    )
    ap.add_argument(
        "--prm",
        help="guide beam (and score sample) with this local PRM dir "
        "(default: the policy's own likelihood, a free verifier)",
    )
    ap.add_argument(
        "--prm-args",
        default="step_tag=<step>,good_token=<good>,bad_token=<bad>",
        help="k=v,... passed to profiling.verifiers.load_prm with --prm",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from models.decoding import sample_batch
    from models.testbed.task import generate_problems
    from profiling import run
    from profiling.backend import TransformersBackend
    from profiling.problems import testbed_problems
    from profiling.verifiers import SelfLikelihood

    path = _model_dir(args)
    backend = TransformersBackend.load(
        path, device=args.device, batch_size=args.prompts * args.n, threads=args.threads
    )
    model = backend.model
    problems = testbed_problems(generate_problems(args.prompts, seed=123))
    prompts = [backend.prompt_ids(p) for p in problems]
    T = args.max_new_tokens
    kw = dict(max_new_tokens=T, temperature=1.0, seed=0)

    # 1. harness sample (whole solutions; stop at eos)
    pools = backend.sample(prompts, args.n, **kw)
    gen_tokens = sum(len(g.token_ids) for pool in pools for g in pool)
    t_sample = _best_time(lambda: backend.sample(prompts, args.n, **kw), args.repeats)
    sample_tps = gen_tokens / t_sample

    # 2. raw HF generate on the same left-padded batch
    flat = [p for p in prompts for _ in range(args.n)]
    width = max(map(len, flat))
    pad = backend.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in flat], device=backend.device)
    mask = torch.tensor(
        [[0] * (width - len(p)) + [1] * len(p) for p in flat], device=backend.device
    )

    def hf_generate():
        with torch.no_grad():
            return model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=T,
                eos_token_id=backend.eos_token_id,
                pad_token_id=pad,
            )

    out = hf_generate()
    new = out[:, width:]
    # generated tokens up to and including eos (what the harness counts)
    hf_tokens = 0
    for row in new.tolist():
        n = 0
        for t in row:
            n += 1
            if t == backend.eos_token_id:
                break
        hf_tokens += n
    t_generate = _best_time(hf_generate, args.repeats)
    generate_tps = hf_tokens / t_generate

    # 3. the same samples one per call
    single = flat[: args.one_at_a_time]

    def one_by_one():
        return [
            sample_batch(model, [p], pad_token_id=pad, eos_token_id=backend.eos_token_id, **kw)
            for p in single
        ]

    singles = one_by_one()
    single_tokens = sum(len(g[0].token_ids) for g in singles)
    t_single = _best_time(one_by_one, max(1, args.repeats - 1))
    single_tps = single_tokens / t_single

    # 4. forward-pass ceiling: one batched forward over the sampled sequences
    seqs = [p + g.token_ids for p, pool in zip(prompts, pools, strict=True) for g in pool]
    L = max(map(len, seqs))
    full = torch.tensor([s + [pad] * (L - len(s)) for s in seqs], device=backend.device)

    def ceiling():
        with torch.no_grad():
            model(input_ids=full, logits_to_keep=0)

    t_ceiling = _best_time(ceiling, args.repeats)
    ceiling_tps = gen_tokens / t_ceiling

    # 5. beam search vs sample, wall seconds per generated token (by default a free verifier,
    # so the comparison is generation against generation; --prm adds a PRM's cost to both)
    verifier = SelfLikelihood()
    if args.prm:
        from profiling.verifiers import load_prm

        kv = dict(x.split("=", 1) for x in args.prm_args.split(",") if x)
        verifier = load_prm(args.prm, batch_size=args.prompts * args.n, **kv)
    beam_cfg = {
        "n": args.beam_n,
        "m": args.beam_m,
        "max_step_tokens": args.max_step_tokens,
        "max_new_tokens": T,
        "temperature": 1.0,
    }
    sample_cfg = {"n": args.beam_n, "max_new_tokens": T, "temperature": 1.0}
    sub = problems[: max(1, args.prompts // 2)]

    calls = [0]
    hook = model.get_input_embeddings().register_forward_pre_hook(
        lambda *_: calls.__setitem__(0, calls[0] + 1)
    )

    def per_token(strategy: str, cfg: dict) -> tuple[float, float]:
        """Wall seconds per generated token, and generated tokens per forward pass."""
        calls[0] = 0
        rows = run(strategy, sub, backend, verifier, cfg)
        tokens = max(1, sum(r["gen_tokens"] for r in rows))
        per_forward = tokens / max(1, calls[0])
        return _best_time(
            lambda: run(strategy, sub, backend, verifier, cfg), args.repeats
        ) / tokens, per_forward

    # A beam round lasts as long as its longest step: tokens per forward pass say how much of
    # the batch a round keeps busy (the cause when beam's per-token time exceeds sample's).
    beam_pt, beam_tpf = per_token("beam", beam_cfg)
    sample_pt, sample_tpf = per_token("sample", sample_cfg)
    uncached_pt = None
    if hasattr(verifier, "incremental"):
        # the same beam search with the PRM re-reading every partial solution every round
        # (its KV rows not kept between rounds): what the verifier cache saves
        import contextlib

        verifier.incremental = contextlib.nullcontext
        uncached_pt, _ = per_token("beam", beam_cfg)
        del verifier.incremental
    hook.remove()

    result = {
        "model": str(path.name),
        "params": backend.n_params,
        "device": args.device,
        "threads": args.threads,
        "batch": len(flat),
        "max_new_tokens": T,
        "tokens_per_s": {
            "sample": round(sample_tps, 1),
            "generate": round(generate_tps, 1),
            "one_at_a_time": round(single_tps, 1),
            "forward_ceiling": round(ceiling_tps, 1),
        },
        "sample_vs_generate": round(sample_tps / generate_tps, 3),
        "sample_vs_one_at_a_time": round(sample_tps / single_tps, 2),
        "verifier": verifier.verifier_id,
        "beam_vs_sample_per_token": round(beam_pt / sample_pt, 3),
        "tokens_per_forward": {"beam": round(beam_tpf, 1), "sample": round(sample_tpf, 1)},
        **(
            {}
            if uncached_pt is None
            else {
                "beam_vs_sample_per_token_no_verifier_cache": round(uncached_pt / sample_pt, 3),
                "beam_verifier_cache_speedup": round(uncached_pt / beam_pt, 3),
            }
        ),
        "sample_vs_ceiling": round(sample_tps / ceiling_tps, 3),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
