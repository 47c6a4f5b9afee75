"""`ttc testbed train`: help, bad --out, and populating --out from the cached quick testbed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import main


def test_help_has_an_example() -> None:
    res = CliRunner().invoke(main, ["testbed", "train", "--help"])
    assert res.exit_code == 0
    assert "Example:" in res.output and "--quick" in res.output and "TTC_CACHE" in res.output


def test_planner_import_does_not_load_torch() -> None:
    import subprocess
    import sys

    code = "import sys, planner.cli; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_unwritable_out_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(main, ["testbed", "train", "--out", str(blocker / "sub"), "--quick"])
    assert res.exit_code != 0
    assert "Error:" in res.output and "cannot create output directory" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_out_holding_another_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "tb"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"run_key": "run-somethingelse", "seed": 9}))
    res = CliRunner().invoke(main, ["testbed", "train", "--out", str(out), "--quick"])
    assert res.exit_code != 0
    assert "another testbed run" in res.output and len(res.output.strip().splitlines()) == 1
    stray = tmp_path / "stray"
    (stray / "policy").mkdir(parents=True)
    res = CliRunner().invoke(main, ["testbed", "train", "--out", str(stray), "--quick"])
    assert res.exit_code != 0 and "without a testbed manifest" in res.output


@pytest.mark.slow
def test_train_populates_out_from_the_cache(quick_testbed: Path, tmp_path: Path) -> None:
    out = tmp_path / "tb"
    res = CliRunner().invoke(
        main, ["testbed", "train", "--out", str(out), "--quick", "--quiet", "--json"]
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads(res.output)
    cached = json.loads((quick_testbed / "manifest.json").read_text())
    assert manifest["run_key"] == cached["run_key"]
    for name in ("policy", "large", "prm", "reviser"):
        assert (out / name / "config.json").exists() and (out / name / "tokenizer.json").exists()
        assert (out / name / "model.safetensors").read_bytes() == (
            quick_testbed / name / "model.safetensors"
        ).read_bytes()
    # A second call on the same --out is a no-op that returns the same manifest.
    res2 = CliRunner().invoke(
        main, ["testbed", "train", "--out", str(out), "--quick", "--quiet", "--json"]
    )
    assert res2.exit_code == 0 and json.loads(res2.output)["run_key"] == manifest["run_key"]
    assert manifest["models"]["prm"]["recipe"]["name"] == "paper"
    # Without --json: one line per model; the PRM's says which recipe trained it.
    text = CliRunner().invoke(main, ["testbed", "train", "--out", str(out), "--quick", "--quiet"])
    assert text.exit_code == 0 and f"-> {out}/prm  (recipe paper)" in text.output
    # The same directory with another seed is another run's: refused.
    res3 = CliRunner().invoke(
        main, ["testbed", "train", "--out", str(out), "--quick", "--seed", "1"]
    )
    assert res3.exit_code != 0 and "another testbed run" in res3.output


def test_prm_recipes_in_the_help_are_the_settings_ones(tmp_path: Path) -> None:
    """Every recipe the settings know is named in --help (the CLI cannot import them: torch), and
    an unknown one is one clear line naming the known ones, with nothing written."""
    import re

    from models.testbed.settings import DEFAULT_PRM_RECIPE, PRM_RECIPES

    res = CliRunner().invoke(main, ["testbed", "train", "--help"])
    text = " ".join(res.output.split())
    d = DEFAULT_PRM_RECIPE
    assert d["quick"] == d["default"]
    assert f"[default: {d['default']}; {d['paper']} with --scale paper]" in text
    listed = re.search(r"paper \(Math- ?Shepherd.*?\) or one of (.*?) \(README", text)
    assert listed is not None
    assert ["paper", *listed.group(1).split(", ")] == list(PRM_RECIPES)
    out = tmp_path / "tb"
    res = CliRunner().invoke(
        main, ["testbed", "train", "--out", str(out), "--quick", "--prm-recipe", "best"]
    )
    assert res.exit_code != 0 and len(res.output.strip().splitlines()) == 1
    assert "unknown PRM recipe 'best'" in res.output and "rank+deep2" in res.output
    assert not out.exists() or not any(out.iterdir())
