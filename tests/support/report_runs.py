"""Run directories for the report tests, built once per session through the real chain.

`full_run`: samples/ -> profile/ (k=4 probes) -> plan/ on predicted bins -> policy.json, and the
policy evaluated on held-out problems (evaluation.json), as `ttc demo` lays a run out.
`qwen_run`: the Qwen2.5-Math RM@8 dump in ../shared imported, then `ttc curves` and
`ttc plan --bin-by level`: what a user gets from a dump made elsewhere (no FLOPs, no policy).
`run_with_costs`: a copy of the full run with what `ttc demo` adds for the cost figure.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

from click.testing import CliRunner
from planner.data import shipped_dir
from policy_data import built_policy_dirs

from planner.cli import main
from planner.commands.common import dumps_json
from planner.policy import Policy
from planner.policy.evaluate import evaluate_policy
from planner.tables import read_samples

QWEN_DUMP = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "samples"
    / "qwen25math_rm8"
    / "math_cot_100.jsonl"
)


def _invoke(args: list[str]) -> None:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, (args, res.output)


@functools.cache
def full_run() -> Path:
    src = built_policy_dirs()
    root = Path(tempfile.mkdtemp(prefix="ttc-report-full-"))
    shutil.copytree(src["train"], root / "samples")
    shutil.copytree(src["profile"], root / "profile")
    shutil.copytree(src["plan"], root / "plan")
    shutil.copy(src["policy"], root / "policy.json")
    held, _ = read_samples(src["held"])
    res = evaluate_policy(Policy.load(src["policy"]), held, n_boot=200, seed=0, mc_samples=200)
    (root / "evaluation.json").write_text(dumps_json(res) + "\n", encoding="utf-8")
    return root


@functools.cache
def qwen_run() -> Path:
    root = Path(tempfile.mkdtemp(prefix="ttc-report-qwen-"))
    fields = ["--id-field", "idx", "--answers-field", "pred", "--correct-field", "score"]
    fields += ["--scores-field", "pred_score", "--level-field", "level"]
    out = ["--out", str(root / "samples"), "--score-transform", "sigmoid"]
    _invoke(["samples", "import", str(QWEN_DUMP), *out, *fields])
    _invoke(["curves", str(root / "samples"), "--out", str(root / "profile")])
    plan = ["--out", str(root / "plan"), "--bin-by", "level", "--n-boot", "200"]
    _invoke(["plan", str(root / "profile"), *plan])
    return root


def run_with_costs(root: Path, cpu_flops_per_s: float | None = None) -> Path:
    """A copy of the full run under `root` with what `ttc demo` adds for the cost figure: a served
    model, an SLO and this CPU as `ttc calibrate` records it (at $0/h unless told a price);
    `cpu_flops_per_s` stands for another calibration's measured peak."""
    run = root / "run"
    shutil.copytree(full_run(), run)
    cpu = json.loads((shipped_dir("hardware") / "l4.json").read_text(encoding="utf-8"))
    cpu["name"] = "this-machine"
    cpu["usd_per_hour"] = {"value": 0.0, "source": "given to ttc calibrate (--usd-per-hour)"}
    if cpu_flops_per_s is not None:
        cpu["peak_flops_per_s"] = {"value": cpu_flops_per_s, "source": "measured (ttc calibrate)"}
    (run / "hardware").mkdir()
    (run / "hardware" / "this-machine.json").write_text(json.dumps(cpu), encoding="utf-8")
    context = {"model": "qwen2.5-1.5b", "cpu_hardware": "hardware/this-machine.json", "slo_s": 10}
    (run / "report.json").write_text(json.dumps(context), encoding="utf-8")
    return run
