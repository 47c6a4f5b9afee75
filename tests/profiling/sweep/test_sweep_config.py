"""Run configs of `ttc profile`: TOML parsing into frozen dataclasses, grids, and the errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from planner.errors import PlannerError
from profiling.sweep.adaptive import AdaptiveSpec
from profiling.sweep.config import (
    ModelConfig,
    RunConfig,
    VerifierSpec,
    config_from_dict,
    load_config,
)
from profiling.sweep.datasets import DataSpec
from profiling.sweep.flags import apply_flags, parse_strategy_flag, run_config_flags

CONFIGS = Path(__file__).resolve().parents[3] / "data" / "configs"

BASE = """
seed = 3
shard_size = 4
[data]
source = "testbed"
n = 12
[model]
path = "/models/policy"
[[verifiers]]
kind = "prm"
path = "/models/prm"
[[strategies]]
name = "sample"
n = 8
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(text)
    return p


def test_parses_into_frozen_dataclasses(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert isinstance(cfg, RunConfig)
    assert (cfg.seed, cfg.shard_size, cfg.data.n, cfg.model.path) == (3, 4, 12, "/models/policy")
    assert cfg.verifiers[0].kind == "prm" and cfg.verifiers[0].agg == "last"
    assert [s.key for s in cfg.strategies] == ['sample:{"n":8}']
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 4  # type: ignore[misc]


def test_list_values_expand_into_a_grid(tmp_path: Path) -> None:
    text = BASE + '[[strategies]]\nname = "beam"\nn = [4, 16]\nm = [2, 4]\n'
    cfg = load_config(write(tmp_path, text))
    beams = [s.config for s in cfg.strategies if s.name == "beam"]
    assert beams == [{"m": 2, "n": 4}, {"m": 2, "n": 16}, {"m": 4, "n": 4}, {"m": 4, "n": 16}]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            BASE.replace('name = "sample"', 'name = "sampel"'),
            "unknown strategy 'sampel' (known: beam, dvts, lookahead, revisions, sample)",
        ),
        (
            BASE + "n_max = 3\n",
            "unknown key 'n_max' for strategy 'sample' (known: max_new_tokens, n, ",
        ),
        (
            BASE.replace("seed = 3", "sed = 3"),
            "unknown key 'sed' (known: adaptive, address, data, executor",
        ),
        (
            BASE.replace('source = "testbed"', 'sorce = "testbed"'),
            "unknown key 'sorce' in [data] (known: ",
        ),
        (
            BASE.replace('path = "/models/policy"', 'path = "/m"\ndevice = "tpu"'),
            "model.device must be",
        ),
        (
            BASE.replace('kind = "prm"', 'kind = "orm"'),
            "verifiers.kind must be one of prm, likelihood, self",
        ),
        (BASE.replace("shard_size = 4", "shard_size = 0"), "shard_size must be >= 1"),
        (
            BASE.replace('kind = "prm"', 'kind = "prm"\nformat = "orm"'),
            "verifiers.format must be step_tag, rlhflow or token_class",
        ),
        (BASE.replace('[model]\npath = "/models/policy"\n', ""), "missing [model] section"),
        (BASE.split("[[strategies]]")[0], "no strategies"),
        (
            BASE + '[[strategies]]\nname = "revisions"\nchains = 2\nlength = 2\n',
            "needs a [reviser] model",
        ),
        (BASE + '[[strategies]]\nname = "sample"\nn = 8\n', "strategy config listed twice"),
        (BASE + '[[strategies]]\nname = "beam"\nn = []\n', "has an empty list"),
        ("seed = [", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_list_what_is_known(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PlannerError) as err:
        load_config(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PlannerError, match="run config not found"):
        load_config(tmp_path / "nope.toml")


def test_strategy_flags_parse_scalars_and_sweeps() -> None:
    assert parse_strategy_flag("beam:n=4|16,m=4,temperature=0.7") == (
        "beam",
        {"n": [4, 16], "m": 4, "temperature": 0.7},
    )
    assert parse_strategy_flag("sample") == ("sample", {})
    cfg = config_from_dict(
        {
            "model": {"path": "/p"},
            "strategies": [{"name": "beam", "n": [4, 16], "m": 4}],
            "verifiers": [{"kind": "self"}],
        }
    )
    assert [s.config["n"] for s in cfg.strategies] == [4, 16]


def test_fingerprint_ignores_how_the_run_executes() -> None:
    raw = {"model": {"path": "/p"}, "strategies": [{"name": "sample", "n": 4}]}
    a = config_from_dict(raw)
    b = config_from_dict({**raw, "executor": "ray", "workers": 7, "shard_size": 3})
    c = config_from_dict({**raw, "seed": 1})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize("name", ["testbed.toml", "math500.toml", "gsm8k.toml"])
def test_shipped_reference_configs_parse(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert cfg.strategies


def test_prm_format_is_a_verifier_key(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, BASE.replace('kind = "prm"', 'kind = "prm"\nformat = "rlhflow"'))
    )
    assert cfg.verifiers[0].format == "rlhflow"


def test_every_run_config_key_has_a_flag_and_help() -> None:
    """One declaration per key: [model], [data] and top-level keys each have their own flag;
    --reviser, --strategy and --verifier set the other tables; every key has a help text."""
    flags = run_config_flags()
    by_key = {(f.section, f.key) for f in flags}
    for f in dataclasses.fields(ModelConfig):
        assert ("model", f.name) in by_key
    for f in dataclasses.fields(DataSpec):
        assert ("data", f.name) in by_key
    for f in dataclasses.fields(AdaptiveSpec):
        assert ("adaptive", f.name) in by_key
    for f in dataclasses.fields(RunConfig):
        if f.name not in ("model", "data", "adaptive"):
            assert f.metadata["flag"] in {g.flag for g in flags}, f.name
    for cls in (RunConfig, ModelConfig, DataSpec, VerifierSpec, AdaptiveSpec):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
    assert len({f.flag for f in flags}) == len(flags)


# A flag's text and the TOML value it stands for: one row per flag (a new key needs a row here).
FLAG_VALUES = {
    "--model": ("/other", "/other"),
    "--device": ("cuda:1", "cuda:1"),
    "--dtype": ("bfloat16", "bfloat16"),
    "--batch-size": (7, 7),
    "--step-delimiter": ("\n\n", "\n\n"),
    "--template": ("Q {prompt}", "Q {prompt}"),
    "--trust-remote-code": (True, True),
    "--backend": ("openai", "openai"),
    "--base-url": ("http://h:8000", "http://h:8000"),
    "--served-model": ("policy", "policy"),
    "--model-config": ("/cfg", "/cfg"),
    "--max-concurrency": (8, 8),
    "--request-timeout": (30.0, 30.0),
    "--strategy": (("beam:n=4|8,m=2",), [{"name": "beam", "n": [4, 8], "m": 2}]),
    "--data": ("gsm8k", "gsm8k"),
    "--data-path": ("/d.jsonl", "/d.jsonl"),
    "--n": (9, 9),
    "--levels": ("1,3", [1, 3]),
    "--data-seed": (4, 4),
    "--split": ("train", "train"),
    "--limit": (5, 5),
    "--offset": (2, 2),
    "--shuffle": (True, True),
    "--shuffle-seed": (3, 3),
    "--id-field": ("id", "id"),
    "--prompt-field": ("q", "q"),
    "--answer-field": ("a", "a"),
    "--level-field": ("lv", "lv"),
    "--answer-format": ("boxed", "boxed"),
    "--grader": ("string", "string"),
    "--verifier": (("prm:path=/v,agg=min",), [{"kind": "prm", "path": "/v", "agg": "min"}]),
    "--reviser": ("/rev", "/rev"),
    "--seed": (11, 11),
    "--shard-size": (3, 3),
    "--timing": (False, False),
    "--testbed": ("quick", "quick"),
    "--executor": ("ray", "ray"),
    "--workers": (5, 5),
    "--address": ("auto", "auto"),
    "--threads": (2, 2),
    "--adaptive-first": (16, 16),
    "--adaptive-growth": (3.0, 3.0),
    "--adaptive-z": (1.5, 1.5),
    "--adaptive-bins": (4, 4),
    "--adaptive-mc-samples": (32, 32),
}


@pytest.mark.parametrize("flag", [f.flag for f in run_config_flags()])
def test_a_flag_and_its_toml_key_give_the_same_config(flag: str) -> None:
    base = {"model": {"path": "/p"}, "strategies": [{"name": "sample", "n": 4}]}
    f = next(g for g in run_config_flags() if g.flag == flag)
    text, value = FLAG_VALUES[flag]
    via_flag = apply_flags(base, {f.dest: text})
    via_toml = {**base, "model": dict(base["model"])}
    if f.multiple or f.section is None:
        via_toml[f.key] = value
    else:
        via_toml.setdefault(f.section, {})[f.key] = value
    assert via_flag == via_toml
    assert config_from_dict(via_flag) == config_from_dict(via_toml)
    assert base == {"model": {"path": "/p"}, "strategies": [{"name": "sample", "n": 4}]}


def test_device_moves_every_model_and_flags_override_the_file() -> None:
    raw = {
        "model": {"path": "/p", "device": "cpu"},
        "seed": 1,
        "strategies": [{"name": "sample", "n": 4}],
    }
    out = apply_flags(raw, {"reviser": "/r", "device": "cuda", "seed": None, "strategy": ()})
    assert out["model"]["device"] == out["reviser"]["device"] == "cuda"
    assert out["reviser"]["path"] == "/r" and out["seed"] == 1
    assert out["strategies"] == raw["strategies"]
    with pytest.raises(PlannerError, match=r"flags: \[data\] must be a table"):
        apply_flags({"data": 3}, {"limit": 2})
