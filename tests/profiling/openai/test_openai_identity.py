"""A local `--model-config` folder that is not the served model stops the run with one line before
anything is written (`profiling.openai.identity`): a tokenizer that differs in two ids or two
special tokens, a config of another architecture, another vocabulary size or length, other
weights; what could not be compared is in the run's metadata and `ttc profile` warns."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from vllm_servers import Served

from planner.cli import main
from planner.errors import PlannerError
from profiling.openai import make_client, open_backend, open_verifier
from profiling.openai.backend import load_local
from profiling.openai.identity import check_model

pytestmark = pytest.mark.slow


def _copy(src: Path, dst: Path, *, weights: bool = True) -> Path:
    shutil.copytree(src, dst, ignore=None if weights else shutil.ignore_patterns("*.safetensors"))
    return dst


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _profile(served: Served, model_config: Path, out: Path, *extra: str) -> list[str]:
    args = ["profile", "--backend", "openai", "--base-url", served.url, "--served-model"]
    args += [served.name, "--model-config", str(model_config), "--data", "testbed", "--n", "2"]
    args += ["--strategy", "sample:n=2,max_new_tokens=16", "--out", str(out), *extra]
    return args


def test_a_tokenizer_that_differs_in_two_ids_names_the_first(
    vllm_policy: Served, tmp_path: Path
) -> None:
    # "4" and "5" appear in no probe text: only a check over the whole vocabulary sees them
    other = _copy(vllm_policy.model_dir, tmp_path / "swapped")

    def swap(tok: dict) -> None:
        vocab = tok["model"]["vocab"]
        vocab["4"], vocab["5"] = vocab["5"], vocab["4"]

    _edit_json(other / "tokenizer.json", swap)
    four = load_local(vllm_policy.model_dir)[0].convert_tokens_to_ids("4")
    want = (
        f"model: the local tokenizer does not match the served model 'policy': id {four} is "
        f"'5' here and '4' on the server (the first of the vocabulary's 103 ids that differs)"
    )
    with pytest.raises(PlannerError) as err:
        open_backend(vllm_policy.url, "policy", other)
    assert want in str(err.value)
    out = tmp_path / "run"
    res = CliRunner().invoke(main, _profile(vllm_policy, other, out))
    assert res.exit_code != 0 and want in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_swapped_special_tokens_are_caught(vllm_policy: Served, tmp_path: Path) -> None:
    # the PRM's good and bad labels trade ids: no text a user writes holds them
    other = _copy(vllm_policy.model_dir, tmp_path / "specials")

    def swap(tok: dict) -> None:
        added = {t["content"]: t for t in tok["added_tokens"]}
        good, bad = added["<good>"], added["<bad>"]
        good["id"], bad["id"] = bad["id"], good["id"]
        vocab = tok["model"]["vocab"]
        vocab["<good>"], vocab["<bad>"] = vocab["<bad>"], vocab["<good>"]

    _edit_json(other / "tokenizer.json", swap)
    with pytest.raises(PlannerError, match=r"id 5 is '<bad>' here and '<good>' on the server"):
        open_backend(vllm_policy.url, "policy", other)


def test_a_model_config_of_another_architecture_stops_the_run(
    vllm_policy: Served, quick_testbed: Path, tmp_path: Path
) -> None:
    # the testbed's larger LM: the same tokenizer, another shape (FLOPs and parameters)
    large = quick_testbed / "large"
    want = (
        f"model: model_config {large} is not the served model 'policy' "
        f"({vllm_policy.model_dir}): its config.json says hidden_size=96, the served one 64"
    )
    with pytest.raises(PlannerError) as err:
        open_backend(vllm_policy.url, "policy", large)
    assert want in str(err.value)
    out = tmp_path / "run"
    res = CliRunner().invoke(main, _profile(vllm_policy, large, out))
    assert res.exit_code != 0 and want in res.output and not out.exists()
    # a served verifier's folder is checked the same way
    with pytest.raises(PlannerError, match=r"verifier: model_config .* is not the served model"):
        open_verifier("likelihood", vllm_policy.url, "policy", large)


def test_the_same_config_with_other_weights_fails_the_log_prob_check(
    vllm_policy: Served, quick_testbed: Path
) -> None:
    # the testbed's reviser has the policy's very config.json; only its weights differ
    reviser = quick_testbed / "reviser"
    assert json.loads((reviser / "config.json").read_text()) == json.loads(
        (vllm_policy.model_dir / "config.json").read_text()
    )
    with pytest.raises(PlannerError, match=r"the log-probs of a probe text differ by \d"):
        open_backend(vllm_policy.url, "policy", reviser)


def test_vocabulary_size_and_length_are_compared(vllm_policy: Served, tmp_path: Path) -> None:
    bigger = _copy(vllm_policy.model_dir, tmp_path / "vocab", weights=False)
    _edit_json(bigger / "config.json", lambda c: c.update(vocab_size=128))
    with pytest.raises(PlannerError, match="has fewer than the 128 token ids of model_config"):
        open_backend(vllm_policy.url, "policy", bigger)
    short = _copy(vllm_policy.model_dir, tmp_path / "short", weights=False)
    _edit_json(short / "config.json", lambda c: c.update(max_position_embeddings=512))
    with pytest.raises(PlannerError, match=r"takes 1024 tokens \(max_model_len\) .* only 512"):
        open_backend(vllm_policy.url, "policy", short)


def test_where_the_served_folder_is_not_readable_the_log_probs_decide(
    vllm_policy: Served, quick_testbed: Path, tmp_path: Path
) -> None:
    # a server elsewhere: its root names a folder this machine does not have
    client = make_client(vllm_policy.url)
    entry = {"root": "/models/elsewhere/policy", "max_model_len": 1024}

    def check(folder: Path) -> tuple[str, str, bool]:
        tok, cfg = load_local(folder)
        return check_model(client, "policy", entry, folder, cfg, tok, what="model", logprobs=True)

    config, lik, verified = check(vllm_policy.model_dir)
    assert (
        config
        == "not checked: the served model's folder '/models/elsewhere/policy' is not readable here"
    )
    assert lik.startswith("probe log-probs equal in-process (mean |diff|") and verified
    bare = _copy(vllm_policy.model_dir, tmp_path / "bare", weights=False)
    assert check(bare)[1:] == (f"not checked: no weights in {bare}", False)
    with pytest.raises(PlannerError, match="log-probs of a probe text differ"):
        check(quick_testbed / "reviser")


def test_an_unverified_served_model_is_in_the_metadata_and_warned(
    vllm_policy: Served, vllm_value: Served, tmp_path: Path
) -> None:
    # The pooling server serves a copy of the PRM removed once it started (its root is not
    # readable here) and returns no log-probs: only the tokenizer can be compared.
    verified = open_backend(vllm_policy.url, "policy", vllm_policy.model_dir).metadata()
    assert verified["model_check"]["verified"] is True
    assert verified["model_check"]["tokenizer"] == (
        "all 103 ids (7 special) decode and encode as on the server"
    )
    prm = open_verifier("prm", vllm_value.url, vllm_value.name, vllm_value.model_dir)
    check = prm.s.info.check.as_dict()
    assert check["verified"] is False and check["config"].startswith("not checked: the served")
    out = tmp_path / "run"
    args = _profile(vllm_policy, vllm_policy.model_dir, out)
    served = f"path={vllm_value.model_dir},base_url={vllm_value.url},served_model=value"
    args += ["--verifier", f"prm:{served}", "--verifier", "self"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "run.json").read_text())["metadata"]["model_checks"]
    assert set(meta) == {"policy", "prm:value"}
    assert meta["policy"]["verified"] and not meta["prm:value"]["verified"]
    assert "warning: prm:value: model_config was not compared with the served model" in res.output
    assert "warning: policy" not in res.output
