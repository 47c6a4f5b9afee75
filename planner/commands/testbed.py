"""`ttc testbed train`: train the CPU testbed's models (or fetch them from the cache)."""

from __future__ import annotations

import click

from planner.commands.common import echo_json, handle_errors, json_option
from planner.timings import TESTBED, about


@click.group("testbed")
def testbed() -> None:
    """The CPU testbed: a synthetic step-by-step arithmetic task and tiny models trained here."""


@testbed.command("train")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory to receive policy/, large/, prm/, reviser/ and manifest.json.",
)
@click.option(
    "--quick",
    is_flag=True,
    help=f"Small models for tests (from an empty cache {about(TESTBED['quick'].call_s)} on 2 "
    "cores).",
)
@click.option(
    "--scale",
    type=click.Choice(["default", "paper"]),
    default="default",
    show_default=True,
    help=f"default: larger LM ~4x the policy ({about(TESTBED['default'].call_s)} from an empty "
    f"cache on 2 cores); paper: ~13x, like the paper ({about(TESTBED['paper'].call_s)}).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of initialisation, data and rollouts: a seed always gives the same models.",
)
@click.option(
    "--prm-recipe",
    default="",
    metavar="NAME",
    help="The PRM's training recipe [default: paper; surprise+deep2 with --scale paper]: paper "
    "(Math-Shepherd: soft labels, BCE at the step tag) or "
    "one of hard, rank, bce+rank, value, deep2, rank+deep2, bce+rank+deep2, "
    "surprise+deep2, surprise+rank+deep2, surprise+bce+rank+deep2 (README: Testbed). Each recipe "
    "is its own cached run.",
)
@click.option("--quiet", is_flag=True, help="No progress bars or progress lines.")
@json_option
@handle_errors
def train(
    out_dir: str, quick: bool, scale: str, seed: int, prm_recipe: str, quiet: bool, as_json: bool
) -> None:
    """Train the policy LM, a larger LM, a PRM and a reviser; write them with a manifest.

    \b
    Each model directory loads offline with AutoModelForCausalLM.from_pretrained(dir) and
    AutoTokenizer.from_pretrained(dir). manifest.json records sizes, parameter counts, D_pretrain
    tokens, 6·N·D FLOPs, training times, the prompt / step / PRM / reviser formats and the quality
    figures (pass@1 per level, verifier AUROCs, weighted best-of-k vs majority).

    \b
    Cache: models are trained into $TTC_CACHE/testbed (default ~/.cache/ttc-planner/testbed), one
    directory per stage keyed by a hash of its settings; --out receives a copy (hard links where
    possible), so a second call with the same settings only copies files, and an interrupted call
    resumes from the last checkpoint. Training stops at fixed step counts, never at a time limit.
    --out must be empty or hold this same run; a directory holding another run's models is refused.

    \b
    Example:
      ttc testbed train --out runs/testbed
      ttc testbed train --out runs/testbed-quick --quick --json
      ttc testbed train --out runs/testbed-quick-rank --quick --prm-recipe rank+deep2
    """
    from models.testbed import train_testbed

    manifest = train_testbed(
        out_dir, quick=quick, scale=scale, seed=seed, progress=not quiet, prm_recipe=prm_recipe
    )
    if as_json:
        echo_json(manifest)
        return
    models = manifest["models"]
    for name in ("policy", "large", "prm", "reviser"):
        m = models[name]
        # The PRM's recipe differs by scale (the paper's at the default scale): say which.
        recipe = f"  (recipe {m['recipe']['name']})" if "recipe" in m else ""
        click.echo(
            f"{name:8s} {m['params']:>10,d} params  "
            f"{m.get('train_seconds', 0):8.1f} s  -> {out_dir}/{name}{recipe}"
        )
    q = manifest.get("quality", {}).get("levels", {})
    if q:
        click.echo("level  policy pass@1  large pass@1")
        for lv, row in q.items():
            click.echo(f"{lv:>5s}  {row['policy_pass1']:12.3f}  {row['large_pass1']:12.3f}")
    click.echo(f"manifest: {out_dir}/manifest.json")


COMMANDS = [testbed]
