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
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from cli_commands import all_commands
from click.testing import CliRunner

from planner.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
QWEN = SHARED / "data" / "samples" / "qwen25math_rm8" / "math_cot_100.jsonl"

# Examples that are parsed, not run, and why. Keys are prefixes of the example's command line.
PARSE_ONLY: dict[str, str] = {
    "ttc demo --problems 400": "a long run by design (400 problems on the default testbed)",
    "ttc demo --scale paper": "trains the paper-scale testbed (19 min) on a fresh machine",
    "ttc testbed train --out runs/testbed": "trains the default testbed (8 minutes)",
    "ttc profile --config data/configs/math500.toml": "MATH-500 in full on the default testbed",
    "ttc profile --model /models/qwen": "a user's checkpoint on a GPU",
    "ttc profile --config run.toml --out runs/big --executor ray": "needs a running Ray cluster",
    "ttc profile --backend openai": "needs a running vLLM server (tests/profiling/openai)",
    "ttc curves runs/math500": "reads the output of the MATH-500 run above",
    "ttc plan runs/math500-profile": "reads the output of the MATH-500 run above",
    "ttc profile --model models/qwen": "a user's checkpoint on a GPU",
    "ttc serve --policy": "starts a server that runs until stopped (tests/profiling/gateway)",
}
# Parsed, not run, when the example is exactly this line: `ttc demo` alone trains the default
# testbed on a fresh machine (the README's first command); `ttc demo --quick ...` runs here.
PARSE_ONLY_EXACT: dict[str, str] = {
    "ttc demo": "the full default demo (trains the default testbed on a fresh machine)",
}


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
    for path, _ in [((), main), *all_commands(main)]:
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
    if example in PARSE_ONLY_EXACT:
        return PARSE_ONLY_EXACT[example]
    for prefix, reason in PARSE_ONLY.items():
        if example == prefix or example.startswith(prefix + " "):
            return reason
    return None


def _parse(example: str) -> None:
    """Let click parse the command line as `ttc` would, without running the command."""
    tokens = shlex.split(example)[1:]
    cmd: click.Command = main
    ctx = click.Context(main, info_name="ttc")
    # The examples give no group options: a group's first token names its sub-command.
    while isinstance(cmd, click.Group):
        name, tokens = tokens[0], tokens[1:]
        sub = cmd.get_command(ctx, name)
        assert sub is not None, f"{example}: no command {name!r}"
        ctx = (
            click.Context(sub, info_name=name, parent=ctx) if isinstance(sub, click.Group) else ctx
        )
        cmd = sub
    cmd.make_context(name, tokens, parent=ctx)


def _ttc() -> str:
    return str(Path(sys.executable).parent / "ttc")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def workspace(quick_testbed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out as the examples expect: the shipped dump as `dump.jsonl`, the quick
    testbed as `runs/testbed`, `data/` and `../shared` beside it. Every other input (runs/tb,
    runs/tb-heldout, runs/tb-large-profile, ...) is made by an earlier example."""
    base = tmp_path_factory.mktemp("examples")
    (base / "shared").symlink_to(SHARED)
    ws = base / "main"
    (ws / "runs").mkdir(parents=True)
    (ws / "data").symlink_to(ROOT / "data")
    (ws / "runs" / "testbed").symlink_to(quick_testbed)
    shutil.copyfile(QWEN, ws / "dump.jsonl")
    return ws


def _examples() -> list[str]:
    # README first: it tells the story in order, so every later example finds its inputs.
    seen: list[str] = []
    for e in readme_examples() + help_examples():
        if e not in seen:
            seen.append(e)
    return seen


def test_examples_are_found() -> None:
    examples = _examples()
    assert len(examples) >= 30
    assert any(e.startswith("ttc samples import") for e in help_examples())
    assert any(e.startswith("ttc policy decide") for e in readme_examples())
    stale = [p for p in PARSE_ONLY if not any(e == p or e.startswith(p + " ") for e in examples)]
    assert not stale, f"PARSE_ONLY names examples that no longer exist: {stale}"


@pytest.mark.slow
def test_every_example_runs_as_written(workspace: Path) -> None:
    failures = []
    for example in _examples():
        reason = _parse_only_reason(example)
        if reason is not None:
            try:
                _parse(example)
            except (click.ClickException, click.exceptions.Exit, AssertionError) as exc:
                failures.append(f"{example}\n  does not parse: {exc}")
            continue
        res = _run([_ttc(), *shlex.split(example)[1:]], workspace)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            failures.append(f"{example}\n  exit {res.returncode}: {' / '.join(tail)}")
    assert not failures, "examples that do not run as written:\n" + "\n".join(failures)
