"""Compute-optimal selection: the best strategy and config per difficulty bin and budget.

As the paper: within each difficulty bin, choose the option (strategy + config, including how
the answer is selected and which verifier scores it) with the highest accuracy on one fold,
evaluate it on the other fold, swap, and average. Each problem is thus scored by an option chosen
without it, and the compute-optimal accuracy is an honest estimate of the procedure. The option
that a deployment would use (the `choices` table) is then chosen on all problems of the bin.

An option is eligible at budget t when its cost (generations, or mean FLOPs per query) is at most
t: spending less than the budget is always allowed. Baselines (majority, best-of-N, weighted
best-of-N from the independent-sample pool) take their largest option within t. The efficiency
multiple is the budget at which weighted best-of-N first reaches compute-optimal's accuracy at t,
divided by t (interpolated on log budget), or "> max" when it never does.

The two-fold figure answers the paper's question (how good is the *procedure*, selecting on half
a bin) but is a pessimistic and noisy promise for the option a deployment runs; the promise per
bin and budget (`choices.expected_accuracy`) is the repeated K-fold estimate of `planner.expect`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import norm

from planner.errors import PlannerError
from planner.schema import canonical_config, parse_config
from planner.strategies import DEPLOYABLE_SELECTS

UNITS = ("generations", "flops")


@dataclass(frozen=True)
class PlanOptions:
    """unit: what a budget counts (generations, or FLOPs per query).
    budgets: the budgets to plan at; None = every budget of the pool (generations) or the FLOPs of
    k generations of the independent-sample pool at each k (FLOPs).
    bin_column: the problems-table column that holds the bins (oracle_bin, predicted_bin, ...).
    verifier: the verifier of the best-of-N baselines (None = each verifier in the profile; the
    efficiency multiple uses the first in sorted order).
    ci: confidence level; n_boot: bootstrap resamples over problems (0 = normal approximation).
    probe_k: probe samples charged to every prompt (0 = the paper: difficulty is free). The probes'
    cost is read from the problems table (columns probe_flops, probe_tokens; `ttc curves
    --probe-k`); with probe_reuse a `sample` pool of the probe sampler reuses them (see
    `charge_probes`).
    expect_folds, expect_repeats: K and R of the repeated K-fold estimate of each deployed
    choice's accuracy (`planner.expect.kfold_estimate`; choices' expected_* columns). Folds are
    balanced within each bin from seeded permutations (seed, seed + 1, ...) of the sorted ids.
    select_rule: how the deployed option of a bin is chosen on all its problems
    (`planner.expect.deploy_choices`): "best" (highest accuracy, the paper) or "one-se" (the
    cheapest within one paired standard error of the best). The K-fold estimate applies the same
    rule in every fold; the two-fold figures (curves, selection folds 0/1, choices.accuracy)
    always use "best".
    expect_method: "kfold" (`planner.expect.kfold_estimate`, the default) or "bootstrap" (the
    deployed option's in-sample accuracy minus a bootstrap estimate of its winner's curse,
    `planner.expect.bootstrap_corrected_estimate`; rule "best" only).
    """

    unit: str = "generations"
    budgets: tuple[float, ...] | None = None
    bin_column: str = "oracle_bin"
    verifier: str | None = None
    ci: float = 0.95
    n_boot: int = 1000
    seed: int = 0
    probe_k: int = 0
    probe_verifier: str | None = None
    probe_reuse: bool = True
    expect_folds: int = 10
    expect_repeats: int = 5
    select_rule: str = "best"
    expect_method: str = "kfold"

    def __post_init__(self) -> None:
        # Not at top: planner.expect imports this module (mean_ci).
        from planner.expect import EXPECT_METHODS, SELECT_RULES

        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if not 0 < self.ci < 1:
            raise ValueError("ci must be in (0, 1)")
        if self.n_boot < 0:
            raise ValueError("n_boot must be >= 0")
        if self.budgets is not None and any(b <= 0 for b in self.budgets):
            raise ValueError("budgets must be > 0")
        if self.probe_k < 0:
            raise ValueError("probe_k must be >= 0")
        if self.expect_folds < 2:
            raise ValueError("expect_folds must be >= 2")
        if self.expect_repeats < 1:
            raise ValueError("expect_repeats must be >= 1")
        if self.expect_method not in EXPECT_METHODS:
            raise ValueError(f"expect_method must be one of {EXPECT_METHODS}, got {self.expect_method!r}")
        if self.expect_method == "bootstrap" and self.select_rule != "best":
            raise ValueError("expect_method 'bootstrap' is for select_rule 'best'")
        if self.select_rule not in SELECT_RULES:
            raise ValueError(f"select_rule must be one of {SELECT_RULES}, got {self.select_rule!r}")


# ------------------------------------------------------------------------------------------------
# The dense core (also what benchmarks/bench_plan.py times)


@dataclass
class CrossFit:
    """Result of cross-fitted selection on dense arrays.

    chosen[t, b, f]: option chosen on fold f of bin b at target t (-1 when nothing is eligible);
    deploy[t, b]: option chosen on the whole bin; per_problem[t, p]: the accuracy problem p gets
    from the option chosen on the other fold of its bin (NaN when nothing was eligible).
    """

    chosen: np.ndarray
    deploy: np.ndarray
    per_problem: np.ndarray
    group_means: np.ndarray = field(repr=False)
    in_sample_bins: list[int] = field(default_factory=list)


def cross_fit(
    acc: np.ndarray,
    cost: np.ndarray,
    bins: np.ndarray,
    folds: np.ndarray,
    targets: Sequence[float],
    eligible: np.ndarray | None = None,
) -> CrossFit:
    """Two-fold cross-validated selection within bins.

    acc: [problems, options] accuracies; cost: [options]; bins: [problems] in 0..B-1;
    folds: [problems] in {0, 1}. Options are compared by mean accuracy; ties go to the option
    that comes first, so callers order options by (cost, name) to prefer the cheaper one.
    """
    n_prob, n_opt = acc.shape
    n_bins = int(bins.max()) + 1 if n_prob else 0
    group = bins * 2 + folds
    n_groups = n_bins * 2
    onehot = sp.csr_matrix(
        (np.ones(n_prob, dtype=acc.dtype), (group, np.arange(n_prob))), shape=(n_groups, n_prob)
    )
    sums = np.asarray(onehot @ acc)
    counts = np.bincount(group, minlength=n_groups).astype(float)
    bin_sums = sums[0::2] + sums[1::2]
    bin_counts = counts[0::2] + counts[1::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
        bin_means = bin_sums / bin_counts[:, None]
    base_ok = np.ones(n_opt, bool) if eligible is None else eligible
    n_t = len(targets)
    chosen = np.full((n_t, n_bins, 2), -1, dtype=np.int64)
    deploy = np.full((n_t, n_bins), -1, dtype=np.int64)
    per_problem = np.full((n_t, n_prob), np.nan)
    in_sample: set[int] = set()
    rows = np.arange(n_prob)
    for ti, t in enumerate(targets):
        ok = base_ok & (cost <= t * (1 + 1e-9))
        if not ok.any():
            continue
        masked = np.where(ok[None, :], means, -np.inf)
        masked_bin = np.where(ok[None, :], bin_means, -np.inf)
        pick = np.argmax(np.nan_to_num(masked, nan=-np.inf), axis=1).reshape(n_bins, 2)
        dep = np.argmax(np.nan_to_num(masked_bin, nan=-np.inf), axis=1)
        for b in range(n_bins):
            for f in (0, 1):
                if counts[2 * b + f] == 0:
                    # An empty fold (a bin of one problem) cannot select: fall back to the bin.
                    pick[b, f] = dep[b]
                    if bin_counts[b] > 0:
                        in_sample.add(b + 1)
        chosen[ti] = pick
        deploy[ti] = dep
        sel = pick[bins, 1 - folds]
        per_problem[ti] = acc[rows, sel]
    return CrossFit(chosen, deploy, per_problem, means, sorted(in_sample))


def mean_ci(
    values: np.ndarray, ci: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Mean and a percentile-bootstrap CI over rows (normal approximation when n_boot == 0).

    values: [problems] or [problems, series]; returns arrays per series when 2-D.
    """
    v = np.asarray(values, float)
    one = v.ndim == 1
    v2 = v[:, None] if one else v
    n = v2.shape[0]
    mean = v2.mean(axis=0)
    if n < 2:
        lo = hi = mean
    elif n_boot == 0:
        z = norm.ppf(0.5 + ci / 2)
        half = z * v2.std(axis=0, ddof=1) / math.sqrt(n)
        # A mean never leaves the range of its values (accuracies near 1 gave ci_hi > 1).
        lo, hi = np.maximum(mean - half, v2.min(axis=0)), np.minimum(mean + half, v2.max(axis=0))
    else:
        boots = np.empty((n_boot, v2.shape[1]))
        step = max(1, 2_000_000 // max(n, 1))
        for start in range(0, n_boot, step):
            stop = min(n_boot, start + step)
            idx = rng.integers(0, n, size=(stop - start, n))
            boots[start:stop] = v2[idx].mean(axis=1)
        lo = np.quantile(boots, (1 - ci) / 2, axis=0)
        hi = np.quantile(boots, 1 - (1 - ci) / 2, axis=0)
    if one:
        return float(mean[0]), float(np.asarray(lo).ravel()[0]), float(np.asarray(hi).ravel()[0])
    return mean, lo, hi  # type: ignore[return-value]


def efficiency_multiple(target: float, accuracy: float, ref_cost: np.ndarray, ref_acc: np.ndarray) -> float | None:
    """Budget at which the reference curve first reaches `accuracy`, divided by `target`.

    Interpolated linearly on log budget between the reference's points; None when the reference
    never reaches it (reported as "> max").
    """
    order = np.argsort(ref_cost, kind="stable")
    c, a = ref_cost[order], ref_acc[order]
    hit = np.flatnonzero(a >= accuracy - 1e-12)
    if len(hit) == 0 or math.isnan(accuracy):
        return None
    j = int(hit[0])
    if j == 0:
        return float(c[0] / target)
    lc0, lc1 = math.log(c[j - 1]), math.log(c[j])
    frac = (accuracy - a[j - 1]) / (a[j] - a[j - 1]) if a[j] != a[j - 1] else 1.0
    return float(math.exp(lc0 + frac * (lc1 - lc0)) / target)


# ------------------------------------------------------------------------------------------------
# From profile tables to a plan


@dataclass
class Plan:
    """curves: per budget and method, accuracy with CI and mean cost (compute_optimal = two-fold).
    selection: per budget, bin and fold (-1 = whole bin, the deployed option), the chosen option.
    choices: per bin and budget, the deployment choice (chosen on the whole bin) with
    `accuracy`/`ci_lo`/`ci_hi` the paper's two-fold cross-validated accuracy of the procedure in
    the bin, `expected_accuracy`/`expected_ci_lo`/`expected_ci_hi` the repeated K-fold estimate
    of the deployed choice's accuracy (`planner.expect.kfold_estimate`: the promise a policy
    makes), `selection_agreement` the share of K-fold selections equal to the deployed option, and
    `in_sample_accuracy` its (optimistic) accuracy on the bin's own problems.
    summary: the figures as JSON; `expected_accuracy` names the K-fold estimator's settings.
    """

    curves: pd.DataFrame
    selection: pd.DataFrame
    choices: pd.DataFrame
    summary: dict


def _options(profile: pd.DataFrame) -> pd.DataFrame:
    opts = profile[["strategy", "config", "budget"]].drop_duplicates().reset_index(drop=True)
    cfgs = opts["config"].map(parse_config)
    opts["select"] = cfgs.map(lambda c: c.get("select", "weighted"))
    opts["verifier"] = cfgs.map(lambda c: c.get("verifier", "none"))
    opts["agg"] = cfgs.map(lambda c: c.get("agg", "none"))
    return opts


def _baseline_methods(opts: pd.DataFrame, verifier: str | None) -> tuple[dict[str, np.ndarray], str | None]:
    """Masks over options for each baseline method, and the verifier of the reference curve."""
    pool = opts["strategy"] == "sample"
    methods: dict[str, np.ndarray] = {
        "coverage": (pool & (opts["select"] == "coverage")).to_numpy(),
        "majority": (pool & (opts["select"] == "majority")).to_numpy(),
    }
    verifiers = sorted(v for v in opts.loc[pool, "verifier"].unique() if v != "none")
    if verifier is not None:
        if verifier not in verifiers:
            raise PlannerError(f"verifier {verifier!r} not in the profile (known: {', '.join(verifiers) or 'none'})")
        verifiers = [verifier]
    for v in verifiers:
        for sel in ("best", "weighted"):
            mask = pool & (opts["select"] == sel) & (opts["verifier"] == v) & (opts["agg"] == "last")
            methods[f"{sel}[{v}]"] = mask.to_numpy()
    return methods, (verifiers[0] if verifiers else None)


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
        return ProbeCharge(self.k, self.verifier, self.reuse, self.reusable[order], self.generations[order],
                           self.generations_no_reuse[order], self.flops[:, order], self.flops_no_reuse[:, order],
                           self.tokens[:, order], self.probe_flops, self.probe_tokens)

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
        return {"k": self.k, "verifier": self.verifier, "reuse": self.reuse,
                "mean_flops": float(self.probe_flops.mean()), "mean_tokens": float(self.probe_tokens.mean())}


def charge_probes(options: pd.DataFrame, flops: np.ndarray, tokens: np.ndarray, problems: pd.DataFrame,
                  opts: PlanOptions) -> ProbeCharge:
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
            raise PlannerError(f"probe_k={opts.probe_k}: the problems table has no '{col}' column "
                               "(make the profile with ttc curves --probe-k)")
    pf = problems["probe_flops"].to_numpy(float)
    pt = problems["probe_tokens"].to_numpy(float)
    if np.isnan(pf).any() or np.isnan(pt).any():
        raise PlannerError("problems table: probe_flops / probe_tokens missing for some problems")
    k = float(opts.probe_k)
    n = options["budget"].to_numpy(float)
    bases = options["config"].map(lambda c: canonical_config({
        key: v for key, v in parse_config(c).items() if key not in ("select", "agg", "verifier")}))
    pool = (options["strategy"] == "sample").to_numpy()
    probe_base = sorted(bases[pool].unique())[0] if pool.any() else None
    reusable = (
        opts.probe_reuse & pool & (bases == probe_base).to_numpy()
        & options["verifier"].isin(["none", opts.probe_verifier]).to_numpy()
    )
    frac = np.where(reusable, np.minimum(n, k) / np.maximum(n, 1e-12), 0.0)
    return ProbeCharge(
        k=opts.probe_k, verifier=opts.probe_verifier, reuse=opts.probe_reuse, reusable=reusable,
        generations=np.where(reusable, np.maximum(n, k), n + k), generations_no_reuse=n + k,
        flops=flops + pf[:, None] - frac[None, :] * flops, flops_no_reuse=flops + pf[:, None],
        tokens=tokens + pt[:, None] - frac[None, :] * tokens, probe_flops=pf, probe_tokens=pt,
    )


def make_plan(profile: pd.DataFrame, problems: pd.DataFrame, opts: PlanOptions | None = None) -> Plan:
    # Not at top: planner.expect imports this module (mean_ci).
    from planner.expect import (
        bootstrap_corrected_estimate,
        deploy_choices,
        kfold_estimate,
        kfold_folds,
    )

    opts = opts or PlanOptions()
    if opts.bin_column not in problems.columns:
        raise PlannerError(f"problems table has no column '{opts.bin_column}'")
    prob = problems.set_index("problem_id")
    pids = sorted(set(profile["problem_id"]))
    missing = [p for p in pids if p not in prob.index]
    if missing:
        raise PlannerError(f"problem {missing[0]!r} of the profile is not in the problems table")
    bins_raw = prob.loc[pids, opts.bin_column]
    if bins_raw.isna().any():
        raise PlannerError(f"problems table: column '{opts.bin_column}' is empty for problem {bins_raw.index[bins_raw.isna()][0]!r}")
    bin_labels = sorted(int(b) for b in bins_raw.unique())
    bin_index = {b: i for i, b in enumerate(bin_labels)}
    bins = np.array([bin_index[int(b)] for b in bins_raw], dtype=np.int64)
    folds = prob.loc[pids, "fold"].to_numpy(np.int64) % 2

    options = _options(profile)
    key = pd.MultiIndex.from_frame(options[["strategy", "config", "budget"]])
    pid_index = pd.Index(pids)
    prow = pid_index.get_indexer(profile["problem_id"])
    ocol = key.get_indexer(pd.MultiIndex.from_frame(profile[["strategy", "config", "budget"]]))
    acc = np.full((len(pids), len(options)), np.nan)
    acc[prow, ocol] = profile["accuracy"].to_numpy(float)
    flops = np.full_like(acc, np.nan)
    flops[prow, ocol] = profile["flops"].to_numpy(float)
    tokens = np.full_like(acc, np.nan)
    tokens[prow, ocol] = profile["tokens"].to_numpy(float)

    complete = ~np.isnan(acc).any(axis=0)
    dropped = int((~complete).sum())
    options = options[complete].reset_index(drop=True)
    acc, flops, tokens = acc[:, complete], flops[:, complete], tokens[:, complete]
    if options.empty:
        raise PlannerError("no strategy config was measured on every problem of the profile")
    gen_cost = options["budget"].to_numpy(float)
    flop_cost = flops.mean(axis=0)
    if opts.unit == "flops" and not (flop_cost > 0).all():
        raise PlannerError("the profile records no FLOPs (e.g. an imported dump): plan with --unit generations")
    cost = gen_cost if opts.unit == "generations" else flop_cost
    charged = None
    if opts.probe_k:
        charged = charge_probes(options, flops, tokens, prob.loc[pids], opts)
        cost = charged.generations if opts.unit == "generations" else charged.flops.mean(axis=0)

    # Prefer the cheaper option on equal accuracy, then a fixed order by name.
    order = np.lexsort((options["config"].to_numpy(), options["strategy"].to_numpy(), cost))
    options, acc, flops, tokens, cost = options.iloc[order].reset_index(drop=True), acc[:, order], flops[:, order], tokens[:, order], cost[order]
    gen_cost, flop_cost = gen_cost[order], flop_cost[order]
    if charged is not None:
        charged = charged.reorder(order)
    deployable = options["select"].isin(DEPLOYABLE_SELECTS).to_numpy()
    methods, ref_verifier = _baseline_methods(options, opts.verifier)

    if opts.budgets is not None:
        targets = sorted(set(float(b) for b in opts.budgets))
    elif opts.unit == "generations":
        targets = sorted(set((gen_cost if charged is None else cost)[deployable].tolist()))
    else:
        maj = methods["majority"]
        base = maj if maj.any() else deployable
        targets = sorted(set(np.round(flop_cost[base] if charged is None else cost[base], 6).tolist()))
    fit = cross_fit(acc, cost, bins, folds, targets, deployable)
    rng = np.random.default_rng(opts.seed)
    # Its own generator, so the two-fold figures keep the bootstrap draws they always had.
    deploy = fit.deploy if opts.select_rule == "best" else deploy_choices(acc, cost, bins, targets, deployable,
                                                                           opts.select_rule)
    if opts.expect_method == "bootstrap":
        expected = bootstrap_corrected_estimate(acc, cost, bins, targets, deploy, deployable, opts.ci,
                                                opts.n_boot or 200, np.random.default_rng([opts.seed, 1]))
    else:
        kfolds = kfold_folds(pids, bins, opts.expect_folds, opts.expect_repeats, opts.seed)
        expected = kfold_estimate(acc, cost, bins, kfolds, targets, deployable, deploy, opts.ci, opts.n_boot,
                                  np.random.default_rng([opts.seed, 1]), opts.select_rule)

    curve_rows, sel_rows, choice_rows = [], [], []
    ref_key = f"weighted[{ref_verifier}]" if ref_verifier else None
    for ti, t in enumerate(targets):
        series = {"compute_optimal": fit.per_problem[ti]}
        chosen_cost = {}
        chosen_j: dict[str, int] = {}
        for name, mask in methods.items():
            ok = np.flatnonzero(mask & (cost <= t * (1 + 1e-9)))
            if len(ok):
                # With probes charged several pool sizes cost the same: take the largest.
                j = ok[np.argmax(cost[ok])] if charged is None else ok[np.lexsort((gen_cost[ok], cost[ok]))[-1]]
                series[name] = acc[:, j]
                chosen_cost[name] = (float(gen_cost[j]), float(flop_cost[j]), float(np.nanmean(tokens[:, j])))
                chosen_j[name] = int(j)
        names = [n for n, v in series.items() if not np.isnan(v).any()]
        if not names:
            continue
        m, lo, hi = mean_ci(np.column_stack([series[n] for n in names]), opts.ci, opts.n_boot, rng)
        for i, name in enumerate(names):
            if name == "compute_optimal":
                used = np.array([fit.chosen[ti][bins[p], 1 - folds[p]] for p in range(len(pids))])
                g_used, f_used, t_used = gen_cost[used].mean(), flop_cost[used].mean(), float(np.mean(tokens[np.arange(len(pids)), used]))
            else:
                g_used, f_used, t_used = chosen_cost[name]
            curve_rows.append({
                "budget": float(t), "method": name, "accuracy": float(m[i]), "ci_lo": float(lo[i]),
                "ci_hi": float(hi[i]), "generations": float(g_used), "flops": float(f_used), "tokens": float(t_used),
            })
            if charged is not None:
                used_opts = (np.array([fit.chosen[ti][bins[p], 1 - folds[p]] for p in range(len(pids))])
                             if name == "compute_optimal" else np.full(len(pids), chosen_j[name]))
                curve_rows[-1].update(charged.figures(used_opts))
        for b, label in enumerate(bin_labels):
            for f in (0, 1, -1):
                j = int(deploy[ti][b] if f == -1 else fit.chosen[ti][b, f])
                if j < 0:
                    continue
                sel_mask = bins == b if f == -1 else (bins == b) & (folds == f)
                eval_mask = bins == b if f == -1 else (bins == b) & (folds == 1 - f)
                sel_rows.append({
                    "budget": float(t), "bin": label, "fold": f, "strategy": options.at[j, "strategy"],
                    "config": options.at[j, "config"], "option_budget": float(gen_cost[j]),
                    "select_accuracy": float(acc[sel_mask, j].mean()) if sel_mask.any() else float("nan"),
                    "eval_accuracy": float(acc[eval_mask, j].mean()) if eval_mask.any() else float("nan"),
                    "n_select": int(sel_mask.sum()), "n_eval": int(eval_mask.sum()),
                    "flops": float(flops[bins == b, j].mean()), "tokens": float(tokens[bins == b, j].mean()),
                })
            j = int(deploy[ti][b])
            if j < 0:
                continue
            in_bin = bins == b
            cv, clo, chi = mean_ci(fit.per_problem[ti][in_bin], opts.ci, opts.n_boot, rng)
            choice_rows.append({
                "bin": label, "budget": float(t), "strategy": options.at[j, "strategy"],
                "config": options.at[j, "config"], "option_budget": float(gen_cost[j]),
                "accuracy": cv, "ci_lo": clo, "ci_hi": chi,
                "expected_accuracy": float(expected.accuracy[ti, b]),
                "expected_ci_lo": float(expected.ci_lo[ti, b]), "expected_ci_hi": float(expected.ci_hi[ti, b]),
                "selection_agreement": float(expected.agreement[ti, b]),
                "in_sample_accuracy": float(acc[in_bin, j].mean()),
                "flops": float(flops[in_bin, j].mean()), "tokens": float(tokens[in_bin, j].mean()),
                "n_problems": int(in_bin.sum()),
            })
            if charged is not None:
                choice_rows[-1].update(charged.figures(np.full(int(in_bin.sum()), j), in_bin))
    curves = pd.DataFrame(curve_rows)
    if curves.empty:
        raise PlannerError("no budget has an eligible option: the requested budgets are below every option's cost")
    # Efficiency multiple of compute-optimal against the reference weighted best-of-N.
    eff: dict[float, float | None] = {}
    if ref_key is not None and methods[ref_key].any():
        ref = np.flatnonzero(methods[ref_key])
        ref_acc = acc[:, ref].mean(axis=0)
        co = curves[curves["method"] == "compute_optimal"].set_index("budget")["accuracy"]
        for t, a in co.items():
            eff[float(t)] = efficiency_multiple(float(t), float(a), cost[ref], ref_acc)
    curves["efficiency_multiple"] = [
        (eff.get(float(b)) if m == "compute_optimal" else None) for b, m in zip(curves["budget"], curves["method"], strict=True)
    ]
    curves["efficiency_multiple"] = curves["efficiency_multiple"].astype(float)
    summary = {
        "unit": opts.unit,
        "budgets": [float(t) for t in targets],
        "bins": bin_labels,
        "bin_column": opts.bin_column,
        "problems": len(pids),
        "options": len(options),
        "dropped_incomplete_options": dropped,
        "reference": ref_key,
        "ci": opts.ci,
        "ci_method": "bootstrap" if opts.n_boot else "normal",
        "n_boot": opts.n_boot,
        "seed": opts.seed,
        "in_sample_bins": fit.in_sample_bins,
        "expected_accuracy": (
            {"method": "repeated-kfold", "folds": opts.expect_folds, "repeats": opts.expect_repeats,
             "ci_method": expected.ci_method} if opts.expect_method == "kfold" else
            {"method": "bootstrap-corrected", "folds": 0, "repeats": opts.n_boot or 200, "ci_method": expected.ci_method}),
        "select_rule": opts.select_rule,
        "per_budget": [],
    }
    if charged is not None:
        summary["probe"] = charged.summary()
    for t in targets:
        sub = curves[curves["budget"] == t]
        if sub.empty:
            continue
        entry: dict = {"budget": float(t), "methods": {}}
        for _, r in sub.iterrows():
            entry["methods"][r["method"]] = {k: r[k] for k in ("accuracy", "ci_lo", "ci_hi", "generations", "flops")}
        e = eff.get(float(t))
        entry["efficiency_multiple"] = e if e is not None else ("> max" if ref_key else None)
        entry["choices"] = [
            {k: c[k] for k in ("bin", "strategy", "config", "option_budget", "accuracy", "expected_accuracy")}
            for c in choice_rows if c["budget"] == t
        ]
        summary["per_budget"].append(entry)
    return Plan(curves, pd.DataFrame(sel_rows), pd.DataFrame(choice_rows), summary)
