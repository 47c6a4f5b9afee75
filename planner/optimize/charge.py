"""Probe costs charged to every prompt when difficulty is predicted from k probe samples.

The paper treats difficulty as free; a router pays for its probes. `charge_probes` adds them to
every option's cost, counting them once where the option can reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.errors import PlannerError
from planner.tables import canonical_config, parse_config


@dataclass
class ProbeCharge:
    """Costs with the k probes charged to every prompt (arrays over options, or problems x options).

    generations/flops/tokens: totals with reuse where allowed; *_no_reuse: probes paid on top.
    """

    k: int
    verifier: str | None
    reuse: bool
    reusable: np.ndarray
    generations: np.ndarray
    generations_no_reuse: np.ndarray
    flops: np.ndarray
    flops_no_reuse: np.ndarray
    tokens: np.ndarray
    probe_flops: np.ndarray
    probe_tokens: np.ndarray

    def reorder(self, order: np.ndarray) -> ProbeCharge:
        return ProbeCharge(
            self.k,
            self.verifier,
            self.reuse,
            self.reusable[order],
            self.generations[order],
            self.generations_no_reuse[order],
            self.flops[:, order],
            self.flops_no_reuse[:, order],
            self.tokens[:, order],
            self.probe_flops,
            self.probe_tokens,
        )

    def figures(self, used: np.ndarray, rows: np.ndarray | None = None) -> dict[str, float]:
        """Mean charged cost of problems `rows` (default all), each using option used[i]."""
        r = np.arange(self.flops.shape[0]) if rows is None else np.flatnonzero(rows)
        return {
            "probe_flops": float(self.probe_flops[r].mean()),
            "total_generations": float(self.generations[used].mean()),
            "total_generations_no_reuse": float(self.generations_no_reuse[used].mean()),
            "total_flops": float(self.flops[r, used].mean()),
            "total_flops_no_reuse": float(self.flops_no_reuse[r, used].mean()),
            "total_tokens": float(self.tokens[r, used].mean()),
            "probe_reused": float(self.reusable[used].mean()),
        }

    def summary(self) -> dict:
        return {
            "k": self.k,
            "verifier": self.verifier,
            "reuse": self.reuse,
            "mean_flops": float(self.probe_flops.mean()),
            "mean_tokens": float(self.probe_tokens.mean()),
        }


def charge_probes(
    options: pd.DataFrame,
    flops: np.ndarray,
    tokens: np.ndarray,
    problems: pd.DataFrame,
    k: int,
    verifier: str | None = None,
    reuse: bool = True,
) -> ProbeCharge:
    """Charge k probe samples to every prompt, reusing them where the option can.

    The probes are the first k samples of the probe pool (the first `sample` config in sorted
    order), scored by the probe verifier. An option that draws from that same pool and selects
    with no verifier or the probe verifier (majority, best, weighted) reuses min(n, k) of its n
    samples, so it costs max(n, k) generations, and the probes' FLOPs and tokens are counted
    once: total = option + probe - min(n, k)/n * option (per-sample cost of the pool and of the
    probes are the same samples). Any other option pays n + k generations and option + probe.
    An option with n < k is charged k and keeps its own accuracy (a conservative reading: a
    router could use all k).
    """
    for col in ("probe_flops", "probe_tokens"):
        if col not in problems.columns:
            raise PlannerError(
                f"probe_k={k}: the problems table has no '{col}' column "
                "(make the profile with ttc curves --probe-k)"
            )
    pf = problems["probe_flops"].to_numpy(float)
    pt = problems["probe_tokens"].to_numpy(float)
    if np.isnan(pf).any() or np.isnan(pt).any():
        raise PlannerError("problems table: probe_flops / probe_tokens missing for some problems")
    n_probes = float(k)
    n = options["budget"].to_numpy(float)
    bases = options["config"].map(
        lambda c: canonical_config(
            {
                key: v
                for key, v in parse_config(c).items()
                if key not in ("select", "agg", "verifier")
            }
        )
    )
    pool = (options["strategy"] == "sample").to_numpy()
    probe_base = sorted(bases[pool].unique())[0] if pool.any() else None
    reusable = (
        reuse
        & pool
        & (bases == probe_base).to_numpy()
        & options["verifier"].isin(["none", verifier]).to_numpy()
    )
    frac = np.where(reusable, np.minimum(n, n_probes) / np.maximum(n, 1e-12), 0.0)
    return ProbeCharge(
        k=k,
        verifier=verifier,
        reuse=reuse,
        reusable=reusable,
        generations=np.where(reusable, np.maximum(n, n_probes), n + n_probes),
        generations_no_reuse=n + n_probes,
        flops=flops + pf[:, None] - frac[None, :] * flops,
        flops_no_reuse=flops + pf[:, None],
        tokens=tokens + pt[:, None] - frac[None, :] * tokens,
        probe_flops=pf,
        probe_tokens=pt,
    )
