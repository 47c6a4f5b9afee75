"""Hardware profiles and model shapes as data: every value sourced, loaders, errors, and parameter
counts checked against real transformers models built from configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from planner.costs.hardware import (
    NUMERIC_FIELDS,
    HardwareSpec,
    hardware_from_json,
    known_hardware,
    load_hardware,
)
from planner.costs.modelspec import (
    ModelSpec,
    known_models,
    load_model,
    params_from_config,
    read_hf_config,
)
from planner.errors import PlannerError


def test_shipped_hardware_has_sources() -> None:
    names = known_hardware()
    assert {"h100-sxm", "h200", "a100-80gb", "l4"} <= set(names)
    for n in names:
        hw = load_hardware(n)
        assert hw.name == n
        for f in NUMERIC_FIELDS:
            assert hw.sources.get(f), f"{n}: {f} has no source"
        assert hw.ridge_flops_per_byte > 10  # GPUs are far more compute than bandwidth
    h100, h200 = load_hardware("h100-sxm"), load_hardware("h200")
    assert h100.peak_flops_per_s == pytest.approx(989.4e12)
    assert h200.hbm_bytes_per_s > h100.hbm_bytes_per_s and h200.hbm_bytes > h100.hbm_bytes


def test_unknown_hardware_lists_known() -> None:
    with pytest.raises(PlannerError) as e:
        load_hardware("tpu-v9")
    msg = str(e.value)
    assert "unknown hardware 'tpu-v9'" in msg
    for n in known_hardware():
        assert n in msg


def test_bad_hardware_files(tmp_path: Path) -> None:
    good = load_hardware("l4").to_json()
    p = tmp_path / "x.json"
    p.write_text(json.dumps(good))
    assert load_hardware(p) == load_hardware("l4")
    bad = dict(good, hbm_bytes_per_s={"value": -1, "source": "typo"})
    with pytest.raises(PlannerError, match="hbm_bytes_per_s must be a positive"):
        hardware_from_json(bad, "x.json")
    bad = dict(good, peak_flops_per_s=5e12)
    with pytest.raises(PlannerError, match="'peak_flops_per_s' must be"):
        hardware_from_json(bad, "x.json")
    bad = {k: v for k, v in good.items() if k != "hbm_bytes"}
    with pytest.raises(PlannerError, match="missing field 'hbm_bytes'"):
        hardware_from_json(bad, "x.json")
    p.write_text("{not json")
    with pytest.raises(PlannerError, match="not valid JSON"):
        load_hardware(p)
    with pytest.raises(PlannerError, match="not found"):
        load_hardware(tmp_path / "missing.json")
    with pytest.raises(ValueError):
        HardwareSpec("x", 1e12, 1e9, 1e9, flops_efficiency=1.5)


def test_overrides_record_source() -> None:
    hw = load_hardware("h100-sxm").with_overrides(usd_per_hour=2.0)
    assert hw.usd_per_hour == 2.0 and hw.sources["usd_per_hour"] == "overridden by the user"
    with pytest.raises(PlannerError):
        load_hardware("h100-sxm").with_overrides(usd_per_hour=-1.0)


def test_shipped_models_match_stated_counts() -> None:
    assert {"llama-3.1-8b", "llama-3.1-70b", "qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-72b"} <= set(
        known_models()
    )
    root = Path(__file__).resolve().parents[3] / "data" / "models"
    for n in known_models():
        doc = json.loads((root / f"{n}.json").read_text())
        spec = load_model(n)
        assert spec.sources["n_params"] and spec.sources["pretrain_tokens"]
        # The shapes give the stated parameter count within 1%.
        assert params_from_config(doc["config"]) == pytest.approx(
            doc["n_params"]["value"], rel=0.01
        )
        assert spec.pretrain_tokens >= 15e12
    l8 = load_model("llama-3.1-8b")
    assert (l8.n_layers, l8.n_kv_heads, l8.head_dim, l8.d_attn) == (32, 8, 128, 4096)
    with pytest.raises(PlannerError, match=r"unknown model 'gpt-5'.*llama-3\.1-8b"):
        load_model("gpt-5")


def _save_hf(model, folder: Path) -> None:
    folder.mkdir(parents=True)
    model.config.to_json_file(str(folder / "config.json"))


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_params_match_transformers(tmp_path: Path, arch: str) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if arch == "llama":
        cfg = transformers.LlamaConfig(
            vocab_size=97,
            hidden_size=64,
            intermediate_size=160,
            num_hidden_layers=3,
            num_attention_heads=8,
            num_key_value_heads=2,
            tie_word_embeddings=False,
        )
        model = transformers.LlamaForCausalLM(cfg)
    elif arch == "qwen2":
        cfg = transformers.Qwen2Config(
            vocab_size=101,
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
        )
        model = transformers.Qwen2ForCausalLM(cfg)
    else:
        cfg = transformers.GPT2Config(vocab_size=89, n_embd=32, n_layer=2, n_head=4, n_positions=64)
        model = transformers.GPT2LMHeadModel(cfg)
    real = sum(p.numel() for p in model.parameters())  # tied weights counted once
    folder = tmp_path / arch
    _save_hf(model, folder)
    spec = read_hf_config(folder)
    assert spec.n_params == real
    assert spec.n_layers == cfg.num_hidden_layers
    # FLOPs per token for a short context match torch's counter on one decode-free forward.
    from torch.utils.flop_counter import FlopCounterMode

    ids = torch.randint(0, cfg.vocab_size, (1, 8))
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(ids)
    counted = fc.get_total_flops()
    # 8 tokens: 2·P_matmul·8 (our P_matmul keeps norm and bias weights: a few % of a tiny model)
    # plus attention, which the counter may skip (fused SDPA) or count without the causal mask.
    expect_lo = 8 * spec.flops_per_token(0)
    expect_hi = 8 * spec.flops_per_token(0) + 4 * spec.n_layers * spec.d_attn * 64
    assert expect_lo * 0.95 <= counted <= expect_hi * 1.01


def test_safetensors_header_count(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    folder = tmp_path / "m"
    folder.mkdir()
    cfg = {
        "model_type": "llama",
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "vocab_size": 50,
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    st.save_file(
        {"a": np.zeros((3, 7), np.float32), "b": np.zeros(5, np.float32)},
        str(folder / "model.safetensors"),
    )
    assert read_hf_config(folder).n_params == 26  # the header wins over the formula
    assert read_hf_config(folder / "config.json").hidden_size == 16


def test_modelspec_checks() -> None:
    with pytest.raises(ValueError):
        ModelSpec(
            "x",
            n_params=0,
            n_layers=1,
            hidden_size=8,
            n_heads=2,
            n_kv_heads=1,
            head_dim=4,
            vocab_size=10,
        )
    with pytest.raises(ValueError):
        ModelSpec(
            "x",
            n_params=10,
            n_layers=1,
            hidden_size=8,
            n_heads=3,
            n_kv_heads=2,
            head_dim=4,
            vocab_size=10,
        )
    spec = load_model("qwen2.5-7b")
    assert spec.flops_per_token(1000) > spec.flops_per_token(0) == 2 * spec.matmul_params


def test_shipped_data_kind_unknown_is_clear() -> None:
    from planner.data import shipped_dir, shipped_names

    assert "h100-sxm" in shipped_names("hardware", ".json")
    with pytest.raises(PlannerError, match="unknown kind of shipped data 'weights'"):
        shipped_dir("weights")
