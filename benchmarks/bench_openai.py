"""The openai backend against vLLM on this machine: ratios measured in one run.

1. Sampling throughput (generated tokens/s) of the harness's HTTP backend (`OpenAIBackend.sample`,
   parsing and checks included) / a plain concurrent client (httpx, the same request bodies, the
   same number in flight) against the same server. Goal >= 0.9.
2. Beam search through the server (SelfLikelihood guides it, so the policy's server does all the
   model work): the prefix-cache hit rate of its prompt tokens (vLLM's /metrics, goal >= 80%),
   and its generated tokens/s / sampling's on the same server (goal: within 1.5x, i.e. >= 0.67).
3. In-process (TransformersBackend, lean decode, one torch thread) / vLLM CPU generated tokens/s
   on the same model and sampling workload: reported, so a user knows when to use which.

Run:  .venv/bin/python benchmarks/bench_openai.py [--problems 16] [--n 16] [--shape gqa]
      [--base-url URL --served-model NAME] [--vllm-python .venv-vllm/bin/python]
Without --base-url it starts a vLLM server with the launcher's flags (those of the README's
command: CPU, float32, --block-size 32, --no-enable-chunked-prefill) on the quick testbed's
policy (`ttc testbed train --quick` or the cache), or with `--shape gqa` on a Llama of another
shape (head_dim 64, grouped-query attention: 4 heads over 2 KV heads, random weights, so it writes
long answers; `gqa_model`), and stops it at the end. A failure (a server that dies, a folder
that is not the served model) is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from planner.errors import PlannerError
from profiling import SelfLikelihood, TransformersBackend, run
from profiling.backend import PromptTemplate
from profiling.openai import open_backend
from profiling.openai.launch import VLLMServer
from profiling.openai.server import PrefixCacheMeter
from profiling.sweep.datasets import DataSpec, load_problems

ROOT = Path(__file__).resolve().parents[1]


async def _plain(url: str, bodies: list[dict], concurrency: int) -> int:
    """Send the bodies with at most `concurrency` in flight; the completion tokens."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def one(b: dict) -> int:
            async with sem:
                r = await client.post(url + "/v1/completions", json=b)
                if r.status_code >= 400:
                    raise PlannerError(
                        f"server {url} refused POST /v1/completions (HTTP {r.status_code}) "
                        f"to the plain client: {' '.join(r.text.split())[:300]}"
                    )
                return int(r.json()["usage"]["completion_tokens"])

        return sum(await asyncio.gather(*(one(b) for b in bodies)))


def gqa_model(out: Path, seed: int = 0) -> Path:
    """A Llama of another shape than the testbed's on its tokenizer: hidden 256, 4 query heads
    over 2 KV heads (head_dim 64), 4 layers, random weights (seeded); made once into `out`."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from models.testbed.tokenizer import build_tokenizer

    tok = build_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    LlamaForCausalLM(cfg).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)  # whole or absent
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--shots", type=int, default=6, help="few-shot examples per prompt")
    ap.add_argument("--search-batch", type=int, default=256, help="rows per search batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base-url")
    ap.add_argument("--served-model", default="policy")
    ap.add_argument("--model-dir", help="the policy's folder (default: the quick testbed's)")
    ap.add_argument(
        "--shape", choices=("testbed", "gqa"), default="testbed", help="served model's shape"
    )
    ap.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    args = ap.parse_args()
    try:
        serve_and_report(args)
    except (PlannerError, httpx.HTTPError) as exc:
        print(f"bench_openai: {exc}", file=sys.stderr)
        sys.exit(1)


def serve_and_report(args: argparse.Namespace) -> None:
    if args.model_dir:
        model_dir = Path(args.model_dir)
    elif args.shape == "gqa":
        from models.testbed.train import cache_root

        model_dir = gqa_model(cache_root() / "bench" / "gqa-h256-kv2-d64")
    else:
        from models.testbed import ensure_testbed

        model_dir = ensure_testbed(quick=True, progress=False) / "policy"
    server = None
    url = args.base_url
    if url is None:
        print(f"starting vLLM on {model_dir} ...", file=sys.stderr)
        server = VLLMServer(args.vllm_python, model_dir, args.served_model).start()
        url = server.url
    try:
        report(args, url, model_dir)
    finally:
        if server is not None:
            server.stop()


def few_shot(url: str, args: argparse.Namespace, model_dir: Path) -> PromptTemplate:
    """Few-shot prompts (solved examples before each problem, as MATH prompts have): the shots
    are the policy's own greedy solutions of other problems."""
    if args.shots == 0:
        return PromptTemplate()
    plain = open_backend(url, args.served_model, model_dir)
    others = load_problems(DataSpec(source="testbed", n=args.shots, seed=99)).problems
    pools = plain.sample(
        [plain.prompt_ids(p) for p in others], 1, max_new_tokens=64, temperature=0.0
    )
    # each shot's text without the eos that ended it (decoded text keeps special tokens)
    answers = [pool[0] for pool in pools]
    ids = [g.token_ids[:-1] if g.finish == "eos" else g.token_ids for g in answers]
    shots = tuple((p.prompt, plain.decode(a)) for p, a in zip(others, ids, strict=True))
    plain.client.close()
    return PromptTemplate(few_shot=shots)


def report(args: argparse.Namespace, url: str, model_dir: Path) -> None:
    backend = open_backend(
        url,
        args.served_model,
        model_dir,
        max_concurrency=args.concurrency,
        template=few_shot(url, args, model_dir),
        batch_size=args.search_batch,
    )
    problems = load_problems(DataSpec(source="testbed", n=args.problems)).problems
    prompts = [backend.prompt_ids(p) for p in problems]
    kw = {"max_new_tokens": args.max_new_tokens, "temperature": 0.8, "top_p": 1.0}

    def harness(seed: int) -> tuple[float, int]:
        t = time.perf_counter()
        pools = backend.sample(prompts, args.n, seed=seed, **kw)
        return time.perf_counter() - t, sum(len(g.token_ids) for pool in pools for g in pool)

    def plain(seed: int) -> tuple[float, int]:
        bodies = [
            backend.body(p, n=args.n, seed=seed * 7919 + i, **kw) for i, p in enumerate(prompts)
        ]
        t = time.perf_counter()
        toks = asyncio.run(_plain(backend.client.root, bodies, args.concurrency))
        return time.perf_counter() - t, toks

    harness(0)  # warm both paths (connections, server caches)
    plain(0)
    h_rates, p_rates = [], []
    for r in range(1, args.repeats + 1):  # interleaved, so drift of a shared machine hits both
        s, toks = harness(r)
        h_rates.append(toks / s)
        s, toks = plain(r)
        p_rates.append(toks / s)
    h, p = max(h_rates), max(p_rates)

    meter = PrefixCacheMeter(backend.client)
    t = time.perf_counter()
    rows = run(
        "beam",
        problems,
        backend,
        [SelfLikelihood()],
        {"n": args.n, "m": 4, "max_new_tokens": args.max_new_tokens, "seed": 1},
    )
    beam_s = time.perf_counter() - t
    beam_rate = sum(r["gen_tokens"] for r in rows) / beam_s
    hit = (meter.delta() or {}).get("prefix_cache_hit_rate", float("nan"))

    local = TransformersBackend.load(model_dir, threads=1, template=backend.config.template)
    t = time.perf_counter()
    pools = local.sample(prompts, args.n, seed=1, **kw)
    local_rate = sum(len(g.token_ids) for pool in pools for g in pool) / (time.perf_counter() - t)

    plen = sum(map(len, prompts)) / len(prompts)
    print(
        f"workload: {len(problems)} testbed problems ({plen:.0f}-token prompts, {args.shots} "
        f"shots) x n={args.n}, <= {kw['max_new_tokens']} "
        f"tokens, {args.concurrency} requests in flight, server {url}"
    )
    print(f"sampling, harness HTTP backend:      {h:9.0f} generated tokens/s")
    print(f"sampling, plain concurrent client:   {p:9.0f} generated tokens/s")
    print(f"  ratio harness / plain:             {h / p:9.2f}   (goal >= 0.9)")
    print(f"beam search (n={args.n}, m=4) via server: {beam_rate:9.0f} generated tokens/s")
    print(f"  prefix-cache hit rate of prompts:  {hit:9.1%}   (goal >= 80%)")
    print(f"  ratio beam / sampling tokens/s:    {beam_rate / h:9.2f}   (goal >= 0.67, 1.5x)")
    print(f"in-process lean backend (1 thread):  {local_rate:9.0f} generated tokens/s")
    print(f"  ratio in-process / vLLM CPU:       {local_rate / h:9.2f}")


if __name__ == "__main__":
    main()
