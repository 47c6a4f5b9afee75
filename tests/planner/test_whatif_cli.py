"""The what-if commands through click.testing.CliRunner: exit codes, JSON fields, error text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from profiles import write_larger, write_profile

from planner.commands import allocate, cost, whatif
from planner.commands.allocate import allocate_cmd
from planner.commands.cost import calibrate_cmd, cost_cmd
from planner.commands.whatif import exchange_cmd, whatif_cmd
from planner.costs import parse_load

COMMANDS = [*whatif.COMMANDS, *cost.COMMANDS, *allocate.COMMANDS]


def run(cmd, args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(cmd, args)
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("whatif")
    small = write_profile(root / "small")
    big = write_larger(root / "big", {1: 0.82, 2: 0.6, 3: 0.3, 4: 0.6})
    return small, big


def test_every_command_has_help_with_example() -> None:
    for cmd in COMMANDS:
        code, out = run(cmd, ["--help"])
        assert code == 0 and "Example:" in out and f"ttc {cmd.name}" in out


def test_registered_in_cli() -> None:
    from planner import cli

    assert {"planner.commands.whatif", "planner.commands.cost", "planner.commands.allocate"} <= set(
        cli._COMMAND_MODULES
    )
    assert {"exchange", "whatif", "cost", "calibrate", "allocate"} <= set(cli.main.commands)


def test_exchange_bare_formula() -> None:
    code, out = run(exchange_cmd, ["--multiplier", "14", "--ratio", "0.16", "--json"])
    assert code == 0
    doc = json.loads(out)
    assert doc["budget_multiplier"] == pytest.approx(257.75)
    code, out = run(exchange_cmd, ["-M", "14", "-R", "0.16,0.79,22", "--json"])
    xs = [r["budget_multiplier"] for r in json.loads(out)["results"]]
    assert [round(x) for x in xs] == [258, 63, 16]
    code, out = run(exchange_cmd, ["-M", "14"])
    assert code == 0 and "257.75" in out


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["-M", "14", "-R", "0"], "must be a positive number, got 0"),
        (["-M", "0", "-R", "1"], "model multiplier M must be a positive number"),
        (["-M", "-2", "-R", "1"], "model multiplier M must be a positive number"),
        (["-M", "14", "-R", "abc"], "comma-separated numbers"),
    ],
)
def test_exchange_bad_inputs(args: list[str], text: str) -> None:
    code, out = run(exchange_cmd, args)
    assert code != 0 and text in out
    assert "Traceback" not in out


def test_exchange_with_profiles(profiles: tuple[Path, Path]) -> None:
    small, big = profiles
    code, out = run(
        exchange_cmd, [str(small), "-M", "14", "-R", "0.16", "--larger-profile", str(big), "--json"]
    )
    assert code == 0, out
    doc = json.loads(out)
    assert doc["larger_model"]["extrapolated"] is False
    bins = {b["bin"]: b["winner"] for b in doc["results"][0]["per_bin"]}
    assert bins[2] == "test-time" and bins[4] == "pretraining"
    # Extrapolated: needs N and D; metadata gives N (1.5e9), D must come from the user.
    code, out = run(exchange_cmd, [str(small), "-M", "14"])
    assert code != 0 and "--pretrain-tokens" in out
    code, out = run(
        exchange_cmd, [str(small), "-M", "14", "--pretrain-tokens", "18e12", "--law", "besiroglu"]
    )
    assert code == 0 and "EXTRAPOLATED" in out
    code, out = run(
        exchange_cmd,
        [str(small), "-M", "14", "--model", "qwen2.5-1.5b", "--require-bins", "1,2,3,4,5"],
    )
    assert code != 0 and "no problems in oracle_bin 5" in out


def test_exchange_larger_profile_missing_bins(profiles: tuple[Path, Path], tmp_path: Path) -> None:
    small, _ = profiles
    big = write_larger(tmp_path / "big", {1: 0.9, 2: 0.9}, bins=(1, 2))
    code, out = run(exchange_cmd, [str(small), "-M", "14", "--larger-profile", str(big)])
    assert code != 0 and "no pass@1 rows for oracle_bin 3, 4" in out


def test_parse_load() -> None:
    grid = parse_load("1e3..1e9", 1)
    assert grid[0] == pytest.approx(1e3) and grid[-1] == pytest.approx(1e9) and len(grid) == 7
    assert parse_load("5,6") == [5.0, 6.0]


def test_whatif_sweep_shows_flip(tmp_path: Path) -> None:
    # Bin 1 needs 64 samples to beat the larger model (0.5 + 0.4·(1 − 1/k) vs 0.885): a low load
    # allows them (X is huge), a load of 1e9 queries a day leaves X ≈ 21 and test-time loses.
    p1, gain = {1: 0.5, 2: 0.3, 3: 0.1, 4: 0.0}, {1: 0.4, 2: 0.4, 3: 0.2, 4: 0.0}
    small = write_profile(
        tmp_path / "small", budgets=(1, 4, 16, 64, 256), p1=p1, gain=gain, jitter=0.0
    )
    big = write_larger(tmp_path / "big", {1: 0.885, 2: 0.5, 3: 0.2, 4: 0.3})
    code, out = run(
        whatif_cmd,
        [
            str(small),
            "--queries-per-day",
            "1e3..1e9",
            "--points-per-decade",
            "2",
            "-M",
            "14",
            "--params",
            "1.5e9",
            "--pretrain-tokens",
            "18e12",
            "--larger-profile",
            str(big),
            "--json",
        ],
    )
    assert code == 0, out
    doc = json.loads(out)
    pts = doc["points"]
    assert len(pts) == 13
    rs = [p["ratio"] for p in pts]
    assert rs == sorted(rs)
    xs = [p["budget_multiplier"] for p in pts]
    assert xs == sorted(xs, reverse=True)
    # Low load: a huge test-time allowance, test-time wins bin 1; at 1e9/day X → 14 and it flips.
    first = {b["bin"]: b["winner"] for b in pts[0]["per_bin"]}
    last = {b["bin"]: b["winner"] for b in pts[-1]["per_bin"]}
    assert first != last
    assert doc["flips"], "the sweep must report where the answer flips"
    for p in pts:
        f = p["flops"]
        assert f["larger_model_total"] == pytest.approx(
            f["small_model_pretrain"] + f["small_model_inference_allowed"]
        )
        assert f["small_model_total"] <= f["larger_model_total"] * (1 + 1e-9)
    assert first[1] == "test-time" and last[1] == "pretraining"
    assert any(f["scope"] == "bin 1" for f in doc["flips"])
    code, out = run(
        whatif_cmd,
        [
            str(small),
            "--queries-per-day",
            "1e3..1e9",
            "-M",
            "14",
            "--params",
            "1.5e9",
            "--pretrain-tokens",
            "18e12",
            "--larger-profile",
            str(big),
        ],
    )
    assert code == 0 and "flip (bin 1): test-time -> pretraining" in out


def test_whatif_without_profile_and_with_hardware(profiles: tuple[Path, Path]) -> None:
    code, out = run(
        whatif_cmd,
        [
            "--queries-per-day",
            "2e6",
            "--days",
            "365",
            "-M",
            "9",
            "--model",
            "llama-3.1-8b",
            "--tokens-per-query",
            "600",
            "--hardware",
            "h100-sxm",
            "--json",
        ],
    )
    assert code == 0, out
    p = json.loads(out)["points"][0]
    assert p["ratio"] == pytest.approx(2e6 * 365 * 600 / 15e12)
    assert p["cost"]["larger_model_pretrain_gpu_hours"] == pytest.approx(
        9 * p["cost"]["small_model_pretrain_gpu_hours"]
    )
    base = ["--queries-per-day", "2e6", "-M", "9", "--model", "llama-3.1-8b"]
    code, out = run(whatif_cmd, [*base, "--tokens-per-query", "600", "--train-mfu", "0"])
    assert code == 2 and "--train-mfu" in out, out
    small, big = profiles
    code, out = run(
        whatif_cmd,
        [
            str(small),
            "--queries-per-day",
            "2e6",
            "-M",
            "14",
            "--model",
            "qwen2.5-1.5b",
            "--larger-profile",
            str(big),
            "--hardware",
            "h100-sxm",
            "--slo-s",
            "10",
            "--json",
        ],
    )
    assert code == 0, out
    c = json.loads(out)["points"][0]["cost"]
    assert (
        c["test_time_gpu_hours"] > 0
        and c["larger_model_gpu_hours"] > 0
        and c["larger_model_usd"] > 0
    )
    assert "test_time_meets_slo" in c
    for args, text in (
        (
            [
                "--queries-per-day",
                "0",
                "-M",
                "14",
                "--params",
                "1e9",
                "--pretrain-tokens",
                "1e12",
                "--tokens-per-query",
                "100",
            ],
            "queries per day must be positive",
        ),
        (
            [
                "--queries-per-day",
                "1e6",
                "-M",
                "14",
                "--params",
                "1e9",
                "--pretrain-tokens",
                "1e12",
            ],
            "--tokens-per-query",
        ),
        (
            [
                "--queries-per-day",
                "1e6",
                "-M",
                "14",
                "--params",
                "-5",
                "--pretrain-tokens",
                "1e12",
                "--tokens-per-query",
                "100",
            ],
            "--params must be a positive number",
        ),
    ):
        code, out = run(whatif_cmd, args)
        assert code != 0 and text in out


def test_cost_command(profiles: tuple[Path, Path]) -> None:
    code, out = run(cost_cmd, ["--list-hardware"])
    assert code == 0 and "h100-sxm" in out and "l4" in out
    code, out = run(
        cost_cmd,
        [
            "--model",
            "llama-3.1-8b",
            "--budget",
            "16",
            "--prompt-tokens",
            "300",
            "--gen-tokens",
            "400",
            "--json",
        ],
    )
    assert code == 0, out
    row = json.loads(out)["rows"][0]
    assert row["width"] == 16 and row["usd_per_1k_queries"] > 0 and row["queries_per_s_per_gpu"] > 0
    code, out = run(
        cost_cmd,
        [
            "--model",
            "llama-3.1-8b",
            "--hardware",
            "tpu-v9",
            "--budget",
            "1",
            "--prompt-tokens",
            "3",
            "--gen-tokens",
            "4",
        ],
    )
    assert code != 0 and "unknown hardware 'tpu-v9'; known: a100-80gb, h100-sxm, h200, l4" in out
    small, _ = profiles
    code, out = run(
        cost_cmd, [str(small), "--model", "qwen2.5-1.5b", "--hardware", "a100-80gb", "--json"]
    )
    assert code == 0, out
    rows = json.loads(out)["rows"]
    samples = sorted(
        (r for r in rows if r["strategy"] == "sample" and r["config"]["select"] == "majority"),
        key=lambda r: r["budget"],
    )
    assert [r["budget"] for r in samples] == [1, 2, 4, 8, 16]
    costs = [r["gpu_s_per_query"] for r in samples]
    assert costs == sorted(costs)
    assert all(r["config"]["select"] != "coverage" for r in rows)
    slo = sorted(r["latency_s"] for r in rows)[len(rows) // 2]
    code, out = run(
        cost_cmd,
        [
            str(small),
            "--model",
            "qwen2.5-1.5b",
            "--hardware",
            "a100-80gb",
            "--slo-s",
            str(slo),
            "--only-slo",
            "--json",
        ],
    )
    kept = json.loads(out)["rows"]
    assert 0 < len(kept) < len(rows) and all(r["latency_s"] <= slo for r in kept)
    code, out = run(
        cost_cmd,
        ["--model", "llama-3.1-8b", "--budget", "1", "--prompt-tokens", "3", "--gen-tokens", "0"],
    )
    assert code != 0


def test_allocate_command(profiles: tuple[Path, Path]) -> None:
    small, _ = profiles
    code, out = run(
        allocate_cmd, [str(small), "--metric", "generations", "--budget", "4", "--json"]
    )
    assert code == 0, out
    doc = json.loads(out)
    assert doc["allocation"]["mean_cost"] <= 4 + 1e-9
    assert len(doc["allocation"]["per_bin"]) == 4
    assert all(r["gain_points"] >= -1e-9 for r in doc["vs_fixed_budget"])
    assert doc["frontier"][0]["mean_cost"] <= doc["frontier"][-1]["mean_cost"]
    code, out = run(allocate_cmd, [str(small), "--metric", "generations", "--budget", "0.5"])
    assert code != 0 and "minimum feasible mean generations is 1" in out
    code, out = run(allocate_cmd, [str(small), "--metric", "usd", "--budget", "1"])
    assert code != 0 and "--hardware and --model" in out
    code, out = run(
        allocate_cmd,
        [
            str(small),
            "--metric",
            "usd",
            "--hardware",
            "h100-sxm",
            "--model",
            "qwen2.5-1.5b",
            "--budget",
            "1e-3",
            "--slo-s",
            "60",
            "--json",
        ],
    )
    assert code == 0, out
    code, out = run(allocate_cmd, [str(small), "--budget", "1e12"])
    assert code == 0 and "fixed 16" in out


def test_allocate_profile_without_bins(tmp_path: Path) -> None:
    import pandas as pd

    from planner.tables import PROBLEMS, read_table, write_table

    p = write_profile(tmp_path / "p")
    probs, _ = read_table(p / "problems.parquet", PROBLEMS)
    write_table(
        probs.assign(predicted_bin=pd.array([None] * len(probs), dtype="Int64")),
        p / "problems.parquet",
        PROBLEMS,
    )
    code, out = run(allocate_cmd, [str(p), "--bins", "predicted", "--budget", "4"])
    assert code != 0 and "no predicted_bin values" in out
    code, out = run(allocate_cmd, [str(tmp_path / "nowhere"), "--budget", "4"])
    assert code != 0 and "no such file" in out


def test_calibrate_writes_a_profile(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out_path = tmp_path / "cpu.json"
    code, out = run(
        calibrate_cmd,
        [
            "--out",
            str(out_path),
            "--size",
            "64",
            "--mbytes",
            "4",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--json",
        ],
    )
    assert code == 0, out
    from planner.costs.hardware import load_hardware

    hw = load_hardware(out_path)
    assert (
        hw.peak_flops_per_s > 1e5 and hw.hbm_bytes_per_s > 1e5
    )  # a loaded CI box is slow, not zero
    assert "measured by ttc calibrate" in hw.sources["peak_flops_per_s"]
    # the CPU overheads outside the roofline are measured on the harness's own loops
    assert (
        "score_tokens" in hw.sources["token_overhead_s"]
        and "sample_batch" in hw.sources["attn_overhead_s"]
    )
    assert hw.token_overhead_s + hw.attn_overhead_s + hw.prefill_attn_overhead_s > 0
    code, out = run(
        cost_cmd,
        [
            "--hardware",
            str(out_path),
            "--model",
            "qwen2.5-1.5b",
            "--budget",
            "1",
            "--prompt-tokens",
            "10",
            "--gen-tokens",
            "10",
            "--json",
        ],
    )
    assert code == 0, out
    # The measured CPU has no price: the table says so and prints no $0 figures.
    args = ["--hardware", str(out_path), "--model", "qwen2.5-1.5b", "--budget", "1"]
    code, out = run(cost_cmd, [*args, "--prompt-tokens", "10", "--gen-tokens", "10"])
    assert code == 0 and "(no price per hour: --usd-per-hour)" in out, out
    row = out.splitlines()[2].split()
    assert row[0] == "sample" and row[4] == "-", out
    code, out = run(cost_cmd, [*args, "--prompt-tokens", "10", "--gen-tokens", "10",
                               "--usd-per-hour", "0.5"])  # fmt: skip
    assert code == 0 and "(0.5 $/h per GPU)" in out and float(out.splitlines()[2].split()[4]) > 0
    code, out = run(calibrate_cmd, ["--out", str(tmp_path / "x.json"), "--size", "2"])
    assert code != 0 and not (tmp_path / "x.json").exists()
