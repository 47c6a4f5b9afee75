"""The `ttc` CLI: help everywhere, one-line errors, no partial files, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from cli_commands import all_commands
from click.testing import CliRunner

from planner.cli import main


def test_every_command_has_help_with_an_example():
    runner = CliRunner()
    seen = list(all_commands(main))
    assert seen
    for path, cmd in seen:
        res = runner.invoke(main, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        if not isinstance(cmd, click.Group):
            assert "Example" in res.output, f"ttc {' '.join(path)} --help has no example"


# Modules that take seconds to import (or pull in a server stack): no `--help` may load them.
HEAVY = ("torch", "transformers", "altair", "vl_convert", "ray", "fastapi", "uvicorn")

# Runs `ttc ARGS` as the console script does, then lists the heavy modules it imported.
_HELP_PROBE = """
import sys
from planner.cli import main
try:
    main(sys.argv[1:], prog_name="ttc")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print([m for m in HEAVY if m in sys.modules])
"""


@pytest.mark.parametrize(
    "path", [(), *(path for path, _ in all_commands(main))], ids=lambda p: " ".join(p) or "ttc"
)
def test_help_does_not_import_heavy_modules(path: tuple[str, ...]) -> None:
    # A fresh interpreter per command: what one `ttc ... --help` imports, measured as imports
    # (sys.modules), not as time.
    import subprocess
    import sys

    code = f"HEAVY = {HEAVY!r}" + _HELP_PROBE
    res = subprocess.run(
        [sys.executable, "-c", code, *path, "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "Usage: ttc" in res.stdout
    assert res.stdout.strip().splitlines()[-1] == "[]", f"ttc {' '.join(path)} --help imported"


def _samples_dir(tmp_path: Path) -> Path:
    rows = []
    for p in range(12):
        preds = [str((p + i) % 3) for i in range(8)]
        rows.append(
            {
                "idx": p,
                "pred": preds,
                "score": [a == "0" for a in preds],
                "pred_score": [[0.1 * ((i * 7 + p) % 10)] for i in range(8)],
                "level": f"Level {1 + p % 3}",
            }
        )
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "s"
    res = CliRunner().invoke(
        main, ["samples", "import", str(src), "--out", str(out), "--level-field", "level"]
    )
    assert res.exit_code == 0, res.output
    return out


def test_curves_and_plan_end_to_end_json_and_deterministic(tmp_path):
    runner = CliRunner()
    s = _samples_dir(tmp_path)
    res = runner.invoke(main, ["curves", str(s), "--out", str(tmp_path / "p"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["budgets"] == [1.0, 2.0, 4.0, 8.0]
    for name in ("a", "b"):
        res = runner.invoke(
            main,
            [
                "plan",
                str(tmp_path / "p"),
                "--out",
                str(tmp_path / name),
                "--bin-by",
                "level",
                "--json",
            ],
        )
        assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["bins"] == [1, 2, 3]
    assert {"compute_optimal", "majority", "weighted[imported]"} <= set(
        summary["per_budget"][0]["methods"]
    )
    for f in (
        "curves.parquet",
        "selection.parquet",
        "choices.parquet",
        "problems.parquet",
        "summary.json",
    ):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    res = runner.invoke(main, ["plan", str(tmp_path / "p"), "--out", str(tmp_path / "c")])
    assert res.exit_code == 0 and "compute-optimal choice per bin" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["curves", "{missing}", "--out", "{out}"], "no such file or directory"),
        (["plan", "{samples}", "--out", "{out}"], "file not found (expected a profile table)"),
        (["curves", "{samples}", "--out", "{out}", "--aggs", "max"], "unknown aggregation 'max'"),
        (["curves", "{samples}", "--out", "{out}", "--budgets", "64"], "exceeds the pools"),
    ],
)
def test_errors_are_one_line_and_leave_nothing(tmp_path, args, message):
    s = _samples_dir(tmp_path)
    out = tmp_path / "out"
    filled = [a.format(missing=tmp_path / "nope", out=out, samples=s) for a in args]
    res = CliRunner().invoke(main, filled)
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_unwritable_output_directory(tmp_path):
    s = _samples_dir(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(main, ["curves", str(s), "--out", str(blocker / "sub")])
    assert res.exit_code == 1 and "Error:" in res.output and "Traceback" not in res.output


def test_planner_package_never_imports_torch():
    """A serving team loads policies with the planner alone: no module of it may pull in torch."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, planner\n"
        "for m in pkgutil.walk_packages(planner.__path__, 'planner.'):\n"
        "    importlib.import_module(m.name)\n"
        "print([m for m in ('torch', 'transformers', 'ray', 'models', 'profiling') "
        "if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
