"""`ttc policy`: export a deployable policy file from a plan, validate, show, decide, evaluate."""

from __future__ import annotations

import json
import math

import click

from planner.commands.common import echo_json, handle_errors, json_option, parse_float_list
from planner.errors import PlannerError


@click.group("policy")
def policy_group() -> None:
    """Deployable policy files (pure JSON): difficulty predictor + strategy per bin and budget.

    \b
    Example:
      ttc curves runs/tb --out runs/tb-profile --probe-k 4
      ttc plan runs/tb-profile --out runs/tb-plan --bin-by predicted
      ttc policy export runs/tb-plan --out policy.json
      ttc policy decide policy.json --scores 0.31,0.77,0.5,0.9 --answers 3,3,4,3 \\
          --tokens 80,95,70,88 --budget 16
    """


def _pct(x: float) -> str:
    return "   -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}%"


def _num(x: float) -> str:
    return f"{x:.3g}"


@policy_group.command("export")
@click.argument("plan_dir", type=click.Path(file_okay=False))
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Policy file to write.",
)
@click.option(
    "--budgets", default=None, help="Comma-separated subset of the plan's budgets (default: all)."
)
@json_option
@handle_errors
def export_cmd(plan_dir: str, out_file: str, budgets: str | None, as_json: bool) -> None:
    """Write the policy of PLAN_DIR (a plan on predicted bins) as JSON, byte-identical for the same
    plan.

    \b
    Example:
      ttc policy export runs/tb-plan --out policy.json --budgets 4,8,16
    """
    from planner.policy import dumps_policy
    from planner.policy.build import build_policy
    from planner.tables import atomic_write_text

    doc = build_policy(
        plan_dir, None if budgets is None else parse_float_list(budgets, "--budgets")
    )
    atomic_write_text(out_file, dumps_policy(doc))
    info = {
        "out": out_file,
        "bins": doc["bins"],
        "budgets": doc["budgets"],
        "budget_unit": doc["budget_unit"],
        "probe_k": doc["probe"]["k"],
        "predictor": doc["predictor"]["model"],
    }
    if as_json:
        echo_json(info)
    else:
        click.echo(
            f"wrote {out_file}: {len(doc['bins'])} bins x {len(doc['budgets'])} budgets "
            f"({doc['budget_unit']}), {doc['predictor']['model']} predictor on "
            f"k={doc['probe']['k']} probes"
        )


@policy_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@handle_errors
def validate_cmd(file: str, as_json: bool) -> None:
    """Check FILE against the policy schema and its cross-field rules (exit 1 with one line if bad).

    \b
    Example:
      ttc policy validate policy.json
    """
    from planner.policy import Policy

    p = Policy.load(file)
    info = {
        "file": file,
        "valid": True,
        "schema_version": p.doc["schema_version"],
        "bins": p.doc["bins"],
        "budgets": p.doc["budgets"],
    }
    if as_json:
        echo_json(info)
    else:
        click.echo(
            f"{file}: valid policy (schema_version {p.doc['schema_version']}, {len(p.bins)} bins x "
            f"{len(p.budgets)} budgets)"
        )


def render_policy(doc: dict) -> str:
    unit = doc["budget_unit"]
    pred, probe = doc["predictor"], doc["probe"]
    lines = [
        f"model: {doc['model_id'] or '-'}   verifier: "
        f"{doc['verifier_id'] or '-'}   budget unit: {unit}",
        f"probes: k={probe['k']} from the '{probe['strategy']}' pool scored by {probe['verifier']} "
        f"(cost {'charged' if probe['charged'] else 'not charged'}"
        f"{', reused by pool strategies' if probe['charged'] and probe['reuse'] else ''})",
        f"predictor: {pred['model']} on {', '.join(pred['features'])} -> bins "
        f"{doc['bins']} (1 = easiest)",
        f"source profile sha256: {doc['source_profile_sha256'] or '-'}",
    ]
    est = doc.get("accuracy_estimate")
    if est:
        lines.append(
            f"expected accuracy: {est['method']}"
            + (
                f" (K={est['folds']}, {est['repeats']} repeats)"
                if est["method"] == "repeated-kfold"
                else ""
            )
            + f", intervals {est['ci_method']}, options chosen by rule "
            f"'{est.get('select_rule', 'best')}'"
        )
    lines.append("")
    head = (
        f"{'budget':>10} {'bin':>3}  {'strategy':<9} {'select':<9} {'verifier':<10} {'gens':>5} "
        f"{'accuracy [CI]':>21} {'FLOPs total':>11} {'gens total':>10} {'probes':>6}"
    )
    lines += [head, "-" * len(head)]
    for dec in sorted(doc["decisions"], key=lambda d: (d["budget"], d["bin"])):
        cfg = json.loads(dec["config"])
        lines.append(
            f"{_num(dec['budget']):>10} {dec['bin']:>3}  {dec['strategy']:<9} "
            f"{cfg.get('select', '-')!s:<9} {str(cfg.get('verifier', '-'))[:10]:<10} "
            f"{_num(dec['option_budget']):>5} {_pct(dec['accuracy'])} "
            f"[{100 * dec['ci_lo']:4.1f},{100 * dec['ci_hi']:5.1f}] {_num(dec['total_flops']):>11} "
            f"{_num(dec['total_generations']):>10} "
            f"{'reused' if dec['probe_reused'] else 'extra':>6}"
        )
    fb = doc["fallback"]
    lines += [
        "",
        f"fallback: {fb['strategy']} {fb['config']} (budget {_num(fb['option_budget'])}) "
        f"{_pct(fb['accuracy'])}: {fb['reason']}",
    ]
    return "\n".join(lines)


@policy_group.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@handle_errors
def show_cmd(file: str, as_json: bool) -> None:
    """Print a policy as a readable table (per budget and bin: strategy, accuracy with CI, cost).

    \b
    Example:
      ttc policy show policy.json
    """
    from planner.policy import Policy

    p = Policy.load(file)
    if as_json:
        echo_json(p.doc)
    else:
        click.echo(render_policy(p.doc))


@policy_group.command("decide")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--scores", required=True, help="The k probe scores, comma-separated.")
@click.option(
    "--budget",
    required=True,
    type=float,
    help="Budget per prompt in the policy's unit; the largest policy budget <= it is used.",
)
@click.option(
    "--answers",
    default=None,
    help="The k probe answers, comma-separated (when the predictor uses agreement).",
)
@click.option(
    "--tokens",
    default=None,
    help="The k probes' generated tokens, comma-separated (when it uses gen_tokens).",
)
@json_option
@handle_errors
def decide_cmd(
    file: str, scores: str, budget: float, answers: str | None, tokens: str | None, as_json: bool
) -> None:
    """Decide what to run for one prompt from its probe scores.

    \b
    Example:
      ttc policy decide policy.json --scores 0.31,0.77,0.5,0.9 --answers 3,3,4,3 \\
          --tokens 80,95,70,88 --budget 16 --json
    """
    from planner.policy import Policy

    p = Policy.load(file)
    s = parse_float_list(scores, "--scores")
    a = None if answers is None else [x.strip() or None for x in answers.split(",")]
    t = None if tokens is None else parse_float_list(tokens, "--tokens")
    missing = [n for n, v in (("agreement", a), ("gen_tokens", t)) if n in p.needs() and v is None]
    if missing:
        raise PlannerError(
            f"this policy's predictor uses {missing[0]}: pass "
            f"{'--answers' if missing[0] == 'agreement' else '--tokens'}"
        )
    d = p.decide(s, budget, answers=a, gen_tokens=t)
    if as_json:
        echo_json({"requested_budget": budget, **d.as_dict()})
    else:
        where = (
            "fallback (budget below the smallest policy budget)"
            if d.fallback
            else f"policy budget {d.budget:g}"
        )
        click.echo(
            f"bin {d.bin} -> {d.strategy} {d.config} (option budget {d.option_budget:g}; {where})\n"
            f"expected accuracy {_pct(d.accuracy)} [{100 * d.ci_lo:.1f}, {100 * d.ci_hi:.1f}], "
            f"expected FLOPs {d.total_flops:.4g} (strategy {d.flops:.4g}), generations "
            f"{d.total_generations:g}"
        )


def render_evaluation(res: dict) -> str:
    lines = [
        f"{res['problems']} held-out problems, k={res['probe_k']} probes ({res['verifier']}), "
        f"{100 * res['ci']:.0f}% bootstrap intervals"
    ]
    for entry in res["budgets"]:
        o, g = entry["overall"], entry["goal"]
        lines += [
            "",
            f"budget {entry['budget']:g}:",
            f"{'bin':>7} {'n':>6} {'predicted [CI]':>22} {'realised [CI]':>22} {'inside':>6} "
            f"{'both':>4} {'pred FLOPs':>11} {'real FLOPs':>11}",
        ]
        for b in entry["bins"]:
            lines.append(
                f"{b['bin']:>7} {b['n']:>6} "
                f"{_pct(b['predicted_accuracy'])} "
                f"[{100 * b['predicted_ci_lo']:5.1f},{100 * b['predicted_ci_hi']:5.1f}] "
                f"{_pct(b['realised_accuracy'])} "
                f"[{100 * b['realised_ci_lo']:5.1f},{100 * b['realised_ci_hi']:5.1f}] "
                f"{'yes' if b['inside'] else 'NO':>6} "
                f"{'yes' if b.get('consistent', True) else 'NO':>4} "
                f"{_num(b['predicted_flops']):>11} {_num(b['realised_flops']):>11}"
            )
        lines.append(
            f"{'overall':>7} {o['n']:>6} {_pct(o['predicted_accuracy']):>22} "
            f"{_pct(o['realised_accuracy'])} "
            f"[{100 * o['realised_ci_lo']:5.1f},{100 * o['realised_ci_hi']:5.1f}] {'':>6} {'':>4} "
            f"{_num(o['predicted_flops']):>11} {_num(o['realised_flops']):>11}"
        )
        ratio = o["flops_ratio"]
        lines.append(
            f"  |predicted - realised| = {100 * o['abs_error']:.2f} points "
            f"({'ok' if g['accuracy_within_2_points'] else 'MISS'} <= 2); bins inside CI: "
            f"{'yes' if g['bins_inside_ci'] else 'NO'} (consistent given both intervals: "
            f"{'yes' if g.get('bins_consistent', True) else 'NO'}); FLOPs realised/predicted = "
            + (
                "n/a (no FLOPs recorded)"
                if ratio is None or math.isnan(ratio)
                else f"{ratio:.3f} ({'ok' if g['flops_within_5_percent'] else 'MISS'} within 5%)"
            )
        )
    return "\n".join(lines)


@policy_group.command("evaluate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--samples",
    "samples_dir",
    required=True,
    type=click.Path(),
    help="Samples of held-out problems (a directory with samples.parquet, or the file).",
)
@click.option(
    "--budgets",
    default=None,
    help="Comma-separated budgets to check (default: every policy budget).",
)
@click.option(
    "--n-boot",
    default=1000,
    show_default=True,
    help="Bootstrap resamples (0 = normal approximation).",
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed of the bootstrap and Monte Carlo subsets."
)
@json_option
@handle_errors
def evaluate_cmd(
    file: str, samples_dir: str, budgets: str | None, n_boot: int, seed: int, as_json: bool
) -> None:
    """Check a policy's promise on held-out problems: predicted vs realised accuracy and FLOPs.

    The samples must be of problems the policy was not fitted on (e.g. fresh testbed problems
    profiled with a new seed). Exits 0 whether or not the goal is met; the goal is reported.
    Per bin, "inside" = the prediction lies in the realised interval (the goal); "both" = the
    difference is within the two intervals combined (the prediction is an estimate too).

    \b
    Example:
      ttc policy evaluate policy.json --samples runs/tb-heldout --json
    """
    from planner.policy import Policy
    from planner.policy.evaluate import evaluate_policy
    from planner.tables import read_samples

    p = Policy.load(file)
    samples, _ = read_samples(samples_dir)
    res = evaluate_policy(
        p,
        samples,
        None if budgets is None else parse_float_list(budgets, "--budgets"),
        n_boot=n_boot,
        seed=seed,
    )
    if as_json:
        echo_json(res)
    else:
        click.echo(render_evaluation(res))


COMMANDS = [policy_group]
