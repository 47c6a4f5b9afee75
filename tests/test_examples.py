"""Every example that `ttc ... --help` prints or the README shows runs as written.

The examples tell one story with a few names: `dump.jsonl` (a sample dump such as the Qwen2.5-Math
RM file), `runs/qwen*` (its import, curves and plan), `runs/tb` (testbed samples from `ttc
profile`), `runs/tb-profile`, `runs/tb-plan`, `policy.json`, `runs/tb-heldout` (samples of other
problems), `runs/tb-large-profile` (the larger LM's profile) and `my-cpu.json` (a calibrated
profile of this machine). The workspace below holds those inputs, made from the quick testbed and
the shipped dump; each example then runs as a real `ttc` process in it, in the order printed.

Examples whose whole point is a long or remote run (training the default testbed, a full demo, a
GPU, a Ray cluster) are parsed by the real command line instead, with the reason written here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
from click.testing import CliRunner

from planner.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
QWEN = SHARED / "data" / "samples" / "qwen25math_rm8" / "math_cot_100.jsonl"

# Examples that are parsed, not run, and why. Keys are prefixes of the example's command line.
PARSE_ONLY: dict[str, str] = {
    "ttc demo --problems 400": "a long run by design (400 problems on the default testbed)",
    "ttc demo --testbed runs/testbed-paper": "needs the paper-scale testbed (19 minutes of training)",
    "ttc testbed train --out runs/testbed": "trains the default testbed (8 minutes)",
    "ttc profile --config data/configs/math500.toml": "the full MATH-500 run on the default testbed",
    "ttc profile --model /models/qwen": "a user's checkpoint on a GPU",
    "ttc profile --config run.toml --out runs/big --executor ray": "needs a running Ray cluster",
    "ttc curves runs/math500": "reads the output of the MATH-500 run above",
}
# `ttc demo` alone trains the default testbed on a fresh machine; the README's first command
# covers it, and tests/test_demo.py runs the same job on the quick testbed.
PARSE_ONLY["ttc demo"] = "the full default demo (trains the default testbed on a fresh machine)"


def _walk(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, (*prefix, name))


def _join_continued(lines: list[str]) -> list[str]:
    out: list[str] = []
    buf = ""
    for raw in lines:
        line = raw.strip()
        buf = f"{buf} {line}".strip() if buf else line
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        out.append(buf)
        buf = ""
    return out


def help_examples() -> list[str]:
    """Example command lines of every `--help`, continuation lines joined, comments dropped."""
    found: list[str] = []
    runner = CliRunner()
    for path, _ in [((), main), *_walk(main)]:
        text = runner.invoke(main, [*path, "--help"]).output
        block = re.search(r"Examples?:\n(.*?)(?:\n\s*\n|\Z)", text, re.S)
        if block:
            found += _join_continued(block.group(1).splitlines())
    return [_strip_comment(e) for e in found if e.startswith("ttc ")]


def readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines += _join_continued(block.splitlines())
    cmds: list[str] = []
    for line in lines:
        for part in _strip_comment(line).split("&&"):
            part = part.strip()
            if part.startswith("ttc "):
                cmds.append(part)
    return cmds


def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


def _parse_only_reason(example: str) -> str | None:
    for prefix, reason in PARSE_ONLY.items():
        if example == prefix or example.startswith(prefix + " "):
            return reason
    return None


def _parse(example: str) -> None:
    """Let click parse the command line as `ttc` would, without running the command."""
    args = shlex.split(example)[1:]
    cmd: click.Command = main
    ctx = main.make_context("ttc", list(args), resilient_parsing=False)
    while isinstance(cmd, click.Group):
        name, sub, rest = cmd.resolve_command(ctx, ctx.protected_args + ctx.args)
        assert sub is not None, example
        ctx = sub.make_context(name, list(rest), parent=ctx)
        cmd = sub
