"""Adaptive profiling against the full sweep, replayed on a full profile.

An adaptive run's decisions read only the sample rows of the shards it ran
(`profiling.sweep.adaptive.run_rounds`), and a shard's rows are the same whether a full or an
adaptive run makes them (seeded per problem). So `run_rounds`, fed the shards of a full sweep in
the sweep's problem order, takes exactly the decisions `ttc profile --adaptive-first N` takes,
without running a model. This prints, for each adaptive setting:

- the generations (nominal budget per problem: n for pools and searches, n(k+1) for lookahead,
  chains x length for revisions) and generated tokens it spends, as a share of the full sweep's;
- which strategy configs stopped, after how many problems;
- the plan `ttc demo` makes (the fit half's curves with k = 4 probes, predicted bins, the pooled
  rule) from the adaptive rows against the same from the full sweep: cross-fitted
  compute-optimal per budget and the largest difference (goal: within 1 point at every budget
  on at most 40% of the generations).

With `--problems N` the full sweep is cut to its first N problems and the adaptive run gets
every problem: the "same generations, more problems" comparison.

Run:
  .venv/bin/python benchmarks/bench_adaptive.py /tmp/runs/demo0/samples --first 16,32
  (SAMPLES_DIR: a full sweep, e.g. `ttc demo`'s samples or `ttc profile --config
  data/configs/demo.toml --out DIR`.)
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_selection import run_one

from planner.estimate import CurveOptions, profile_from_samples
from planner.strategies import search_budget
from planner.tables import PROBLEMS, PROBLEMS_FILE, parse_config, read_samples, read_table
from profiling.sweep.adaptive import AdaptiveSpec, run_rounds


@dataclass(frozen=True)
class _Key:
    key: str


@dataclass
class _Unit:
    name: str
    shard: int
    problems: tuple[str, ...]
    strategy: _Key


def _order(ids: list[str]) -> list[str]:
    """The sweep's problem order: generated ids end in their index (tb-<seed>-<i>)."""

    def key(pid: str) -> tuple:
        m = re.search(r"(\d+)$", pid)
        return (0, int(m.group(1)), pid) if m else (1, 0, pid)

    return sorted(ids, key=key)


def _generations(strategy: str, config: str) -> float:
    """A config's nominal generations per problem: chains x length for revisions, else its
    search budget (n; n(k+1) for lookahead)."""
    c = parse_config(config)
    if strategy == "revisions":
        return float(c["chains"] * c["length"])
    return search_budget(strategy, c)


def _cost(rows: pd.DataFrame) -> tuple[float, float]:
    """Generations and generated tokens of sample rows (one verifier's rows: the others repeat
    the same generations)."""
    first = rows[rows["verifier"] == rows["verifier"].iloc[0]]
    per = first.groupby(["strategy", "config"])["problem_id"].nunique()
    gens = sum(_generations(s, c) * n for (s, c), n in per.items())
    return gens, float(first["gen_tokens"].sum())


def replay(samples: pd.DataFrame, order: list[str], spec: AdaptiveSpec, shard: int, seed: int):
    pairs = sorted(samples.groupby(["strategy", "config"]).groups)
    pos = {pid: i for i, pid in enumerate(order)}
    units = []
    for k in range(len(pairs)):
        for sh in range((len(order) + shard - 1) // shard):
            probs = tuple(order[sh * shard : (sh + 1) * shard])
            units.append(_Unit(f"u{k}-shard{sh:05d}", sh, probs, _Key(f"u{k}")))
    by_pair = {p: g for p, g in samples.groupby(["strategy", "config"])}

    def read(u: _Unit) -> pd.DataFrame:
        g = by_pair[pairs[int(u.strategy.key[1:])]]
        return g[g["problem_id"].map(pos).floordiv(shard) == u.shard]

    rounds = run_rounds(units, spec, shard, seed, lambda u: True, lambda todo: None, read)
    rows = pd.concat([read(u) for u in rounds.units], ignore_index=True)
    stopped = {
        f"{pairs[int(k[1:])][0]} {pairs[int(k[1:])][1][:60]}": v for k, v in rounds.stopped.items()
    }
    return rows, rounds.ends, stopped


def _plan(rows: pd.DataFrame, levels: pd.Series, seed: int, n_boot: int) -> dict:
    prof = profile_from_samples(rows, CurveOptions(mc_samples=200, seed=0))
    ids = sorted(rows["problem_id"].unique())
    return run_one(rows, prof, levels, ids, seed, "pooled", n_boot)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("samples", type=Path)
    ap.add_argument("--first", default="16,32", help="adaptive first-slice sizes to replay")
    ap.add_argument("--growth", type=float, default=2.0)
    ap.add_argument("--z", type=float, default=2.0)
    ap.add_argument("--shard-size", type=int, default=16)
    ap.add_argument("--problems", type=int, default=0, help="cut the full sweep to N problems")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=200)
    args = ap.parse_args()
    samples, _ = read_samples(args.samples)
    problems, _ = read_table(args.samples / PROBLEMS_FILE, PROBLEMS)
    levels = problems.set_index("problem_id")["level"]
    order = _order(list(problems["problem_id"]))
    full_ids = order[: args.problems] if args.problems else order
    full_rows = samples[samples["problem_id"].isin(full_ids)]
    full_gens, full_tok = _cost(full_rows)
    full = _plan(full_rows, levels, args.seed, args.n_boot)
    ref = {b["budget"]: b["cv_co"] for b in full["budgets"]}
    print(
        f"full sweep: {len(full_ids)} problems, {full_gens:.0f} generations, "
        f"{full_tok:.0f} generated tokens"
    )
    for first in [int(x) for x in args.first.split(",")]:
        spec = AdaptiveSpec(first=first, growth=args.growth, z=args.z)
        rows, ends, stopped = replay(samples, order, spec, args.shard_size, args.seed)
        gens, tok = _cost(rows)
        res = _plan(rows, levels, args.seed, args.n_boot)
        print(
            f"adaptive first {first} (rounds end at {ends}): {rows['problem_id'].nunique()} "
            f"problems, {gens:.0f} generations = {100 * gens / full_gens:.1f}% of the full "
            f"sweep's, tokens {100 * tok / full_tok:.1f}%"
        )
        for name, v in stopped.items():
            print(f"  stopped after {v['after_problems']} problems: {name}")
        diffs = []
        for b in res["budgets"]:
            if b["budget"] in ref:
                d = b["cv_co"] - ref[b["budget"]]
                diffs.append(abs(d))
                print(
                    f"  budget {b['budget']:5g}: compute-optimal {100 * b['cv_co']:5.1f} "
                    f"(full {100 * ref[b['budget']]:5.1f}, {100 * d:+5.1f})"
                )
        print(f"  largest difference {100 * max(diffs):.1f} points over {len(diffs)} budgets")


if __name__ == "__main__":
    main()
