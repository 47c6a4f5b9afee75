"""Is the local `model_config` folder the served model? Checked once when a backend opens.

The harness sends token ids it made with the local tokenizer and meters FLOPs from the local
config, so a folder that differs from the served model gives wrong rows without any error. Each
check below stops the run with one line naming what differs:

- `check_vocabulary`: every id of the local tokenizer decodes to the same text on the server
  (vLLM's `/detokenize`, `VOCAB_CHUNK` ids a request, all in flight at once; a chunk that differs
  is read id by id to name the first id), that text encodes to the same ids (`/tokenize`: merges,
  special tokens), and a prompt gets the same special tokens added.
- `check_model`: the vocabulary size (the server refuses the first id past it as out of
  vocabulary and accepts the last), `max_model_len` within the config's positions, the config
  itself where the server's model folder (`root` in `/v1/models`) is readable here, and, where the
  local folder holds weights small enough to load, the log-probs of a probe text in-process
  against the server's `prompt_logprobs`. What could not be checked is said in the returned
  `ModelCheck` (the run's metadata; `ttc profile` warns when neither the config nor the
  log-probs could be compared).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from profiling.openai.client import OpenAIClient

# Text with digits, operators, letters and the step delimiter: the testbed's alphabet and the
# usual pieces of math prompts, encoded on both sides (with and without special tokens) and
# scored for the log-prob spot check.
PROBE_TEXT = "Q: 12+7*3=?\nA: 7*3=21\n12+21=33\nThe answer is 33.\n"
# Ids per /detokenize and /tokenize request: a 150k vocabulary is ~300 requests of each.
VOCAB_CHUNK = 512
# Mean |log-prob difference| per token above which the served model is another model. The same
# weights give ~1e-6 in float32 (bf16 serving ~1e-2); the testbed's other models differ by >= 1.3.
LIKELIHOOD_TOL = 0.05
# Local weights larger than this are not loaded for the spot check (it would need their RAM).
MAX_CHECK_WEIGHTS_BYTES = 2 * 2**30
# config.json keys that do not change the model (where and how it was saved, how it is loaded).
CONFIG_NOISE = frozenset(
    {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache", "_commit_hash"}
)


@dataclass(frozen=True)
class ModelCheck:
    """What was compared between the local folder and the served model (each a sentence)."""

    tokenizer: str
    config: str
    likelihood: str
    verified: bool  # the config or the log-probs were compared (not only the tokenizer)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer,
            "config": self.config,
            "likelihood": self.likelihood,
            "verified": self.verified,
        }


def _mismatch(what: str, served_model: str, detail: str) -> PlannerError:
    return PlannerError(
        f"{what}: the local tokenizer does not match the served model {served_model!r}: "
        f"{detail}; point model_config at the served model's folder"
    )


def check_vocabulary(client: OpenAIClient, served_model: str, tokenizer: Any, what: str) -> str:
    """Compare every id's text, its re-encoding and the special tokens with the server's."""
    size = len(tokenizer)
    chunks = [list(range(i, min(i + VOCAB_CHUNK, size))) for i in range(0, size, VOCAB_CHUNK)]
    texts = [tokenizer.decode(c) for c in chunks]
    bodies = [{"model": served_model, "tokens": c} for c in chunks]
    remote = [
        _field(a, "prompt", client, "/detokenize") for a in _post(client, "/detokenize", bodies)
    ]
    for c, text, got in zip(chunks, texts, remote, strict=True):
        if got != text:
            raise _mismatch(what, served_model, _first_id(client, served_model, tokenizer, c))
    bodies = [{"model": served_model, "prompt": t, "add_special_tokens": False} for t in texts]
    answers = _post(client, "/tokenize", bodies)
    for c, text, answer in zip(chunks, texts, answers, strict=True):
        got = [int(t) for t in _field(answer, "tokens", client, "/tokenize")]
        want = list(tokenizer.encode(text, add_special_tokens=False))
        if got != want:
            i = _first_difference(want, got)
            raise _mismatch(
                what,
                served_model,
                f"the text of ids {c[0]}..{c[-1]} encodes to {len(want)} tokens here and "
                f"{len(got)} on the server, first difference at token {i} (local "
                f"{want[i : i + 4]}, server {got[i : i + 4]})",
            )
    for special in (False, True):
        answer = client.post_json(
            "/tokenize",
            {"model": served_model, "prompt": PROBE_TEXT, "add_special_tokens": special},
        )
        got = [int(t) for t in _field(answer, "tokens", client, "/tokenize")]
        want = list(tokenizer.encode(PROBE_TEXT, add_special_tokens=special))
        if got != want:
            i = _first_difference(want, got)
            raise _mismatch(
                what,
                served_model,
                f"{PROBE_TEXT!r} encodes to {len(want)} tokens here and {len(got)} on the "
                f"server (add_special_tokens={special}), first difference at token {i} (local "
                f"{want[i : i + 4]}, server {got[i : i + 4]})",
            )
    specials = len(tokenizer.all_special_ids)
    return f"all {size} ids ({specials} special) decode and encode as on the server"


def _first_difference(a: list[int], b: list[int]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def _post(client: OpenAIClient, path: str, bodies: list[dict[str, Any]]) -> list[Any]:
    statuses = [client.post_status(path, bodies[0])] if bodies else []
    if statuses and statuses[0][0] >= 400:
        raise PlannerError(
            f"server {client.root} has no {path} answer (HTTP {statuses[0][0]}: "
            f"{statuses[0][1]}); cannot check the local tokenizer against the served model's "
            "(a vLLM server answers it)"
        )
    return [statuses[0][1], *client.post_many(path, bodies[1:])] if bodies else []


def _field(answer: Any, key: str, client: OpenAIClient, path: str) -> Any:
    value = answer.get(key) if isinstance(answer, dict) else None
    if value is None:
        raise PlannerError(f"server {client.root}: {path} answered without {key!r} ({answer})")
    return value


def _first_id(client: OpenAIClient, served_model: str, tokenizer: Any, ids: list[int]) -> str:
    """The first id of `ids` whose own text differs (the chunk's text as a whole did)."""
    bodies = [{"model": served_model, "tokens": [i]} for i in ids]
    remote = [
        _field(a, "prompt", client, "/detokenize") for a in client.post_many("/detokenize", bodies)
    ]
    for i, got in zip(ids, remote, strict=True):
        want = tokenizer.decode([i])
        if got != want:
            return (
                f"id {i} is {want!r} here and {got!r} on the server (the first of the "
                f"vocabulary's {len(tokenizer)} ids that differs)"
            )
    return f"ids {ids[0]}..{ids[-1]} decode to different text together, though each alone agrees"


# ----------------------------------------------------------------------------------------------
# The model behind the tokenizer


def check_model(
    client: OpenAIClient,
    served_model: str,
    entry: dict[str, Any],
    model_config: str | Path,
    hf_config: Any,
    tokenizer: Any,
    *,
    what: str,
    logprobs: bool,
) -> tuple[str, str, bool]:
    """(config sentence, likelihood sentence, verified); raises on a mismatch. `entry` is the
    server's `/v1/models` entry of `served_model`."""
    if logprobs:
        _check_vocab_size(client, served_model, hf_config, tokenizer, what)
    limit, positions = entry.get("max_model_len"), getattr(hf_config, "max_position_embeddings", 0)
    scaled = getattr(hf_config, "rope_scaling", None) or getattr(hf_config, "rope_parameters", {})
    if isinstance(scaled, dict) and scaled.get("rope_type", "default") not in ("default", None):
        positions = 0  # a scaled rope serves past max_position_embeddings
    if isinstance(limit, int) and positions and limit > positions:
        raise PlannerError(
            f"{what}: the served model {served_model!r} takes {limit} tokens (max_model_len) "
            f"and model_config {model_config} only {positions} (max_position_embeddings): "
            "model_config is another model; point it at the served model's folder"
        )
    config, checked = _compare_config(entry.get("root"), Path(model_config), served_model, what)
    if not logprobs:
        return config, "not checked: the server returns no log-probs (a pooling server)", checked
    lik, lik_checked = _likelihood(client, served_model, Path(model_config), tokenizer, what)
    return config, lik, checked or lik_checked


def _check_vocab_size(
    client: OpenAIClient, served_model: str, hf_config: Any, tokenizer: Any, what: str
) -> None:
    size = max(len(tokenizer), int(getattr(hf_config, "vocab_size", 0) or 0))
    refused = []
    for token in (size - 1, size):
        status, body = client.post_status(
            "/v1/completions",
            {"model": served_model, "prompt": [token], "max_tokens": 1, "temperature": 0.0},
        )
        refused.append(status == 400 and "out of vocabulary" in str(body))
    if refused != [False, True]:
        side = "fewer" if refused[0] else "more"
        raise PlannerError(
            f"{what}: the served model {served_model!r} has {side} than the {size} token ids "
            f"of model_config (its vocab_size and tokenizer): id {size - 1 if refused[0] else size}"
            f" is {'refused' if refused[0] else 'accepted'} by the server; point model_config "
            "at the served model's folder"
        )


def config_digest(config: dict[str, Any]) -> str:
    """sha256 (12 hex digits) of a config.json without the keys that do not change the model."""
    kept = {k: v for k, v in config.items() if k not in CONFIG_NOISE}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def _compare_config(root: Any, local: Path, served_model: str, what: str) -> tuple[str, bool]:
    mine = json.loads((local / "config.json").read_text())
    theirs_path = Path(str(root)) / "config.json" if root else None
    if theirs_path is None or not theirs_path.is_file():
        return f"not checked: the served model's folder {root!r} is not readable here", False
    theirs = json.loads(theirs_path.read_text())
    if config_digest(mine) != config_digest(theirs):
        keys = sorted((set(mine) | set(theirs)) - CONFIG_NOISE)
        key = next(k for k in keys if mine.get(k) != theirs.get(k))
        raise PlannerError(
            f"{what}: model_config {local} is not the served model {served_model!r} "
            f"({theirs_path.parent}): its config.json says {key}={mine.get(key)!r}, the served "
            f"one {theirs.get(key)!r}; point model_config at the served model's folder"
        )
    return f"equal to the served folder's config.json (sha256 {config_digest(mine)})", True


def _weights_bytes(folder: Path) -> int:
    files = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]
    return sum(f.stat().st_size for f in files)


def _likelihood(
    client: OpenAIClient, served_model: str, folder: Path, tokenizer: Any, what: str
) -> tuple[str, bool]:
    """Log-probs of a probe text in-process against the server's, where the weights load."""
    size = _weights_bytes(folder)
    if size == 0:
        return f"not checked: no weights in {folder}", False
    if size > MAX_CHECK_WEIGHTS_BYTES:
        return (
            f"not checked: the weights in {folder} ({size / 2**30:.1f} GiB) are not loaded here",
            False,
        )
    import torch
    from transformers import AutoModelForCausalLM

    ids = list(tokenizer.encode(PROBE_TEXT, add_special_tokens=True))
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    except (OSError, ValueError) as exc:
        return f"not checked: {folder} does not load as a causal LM ({type(exc).__name__})", False
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()  # (T, V)
    local = torch.log_softmax(logits, -1)[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    body = {
        "model": served_model,
        "prompt": ids,
        "max_tokens": 1,
        "temperature": 0.0,
        "prompt_logprobs": 0,
    }
    answer = client.post_json("/v1/completions", body)
    served = torch.tensor(read_prompt_logprobs(answer, ids, client.root), dtype=torch.float64)
    diff = float((served - local.double()).abs().mean())
    if diff > LIKELIHOOD_TOL:
        raise PlannerError(
            f"{what}: model_config {folder} is not the served model {served_model!r}: the "
            f"log-probs of a probe text differ by {diff:.3g} nats per token on average "
            f"(more than {LIKELIHOOD_TOL}); point model_config at the served model's folder"
        )
    return (
        f"probe log-probs equal in-process (mean |diff| {diff:.1e} over {len(ids) - 1} tokens)",
        True,
    )


def read_prompt_logprobs(answer: dict[str, Any], seq: Sequence[int], root: str) -> list[float]:
    """The teacher-forced log-prob of every token of `seq` but the first, from a completion
    asked with `prompt_logprobs: 0` (the prompt's own token is always among the entries)."""
    plp = ((answer.get("choices") or [{}])[0]).get("prompt_logprobs")
    if not isinstance(plp, list) or len(plp) != len(seq):
        raise PlannerError(f"server {root} returned no prompt_logprobs for a verifier sequence")
    out = []
    for tok, entry in zip(seq[1:], plp[1:], strict=True):
        if not isinstance(entry, dict) or not entry:
            raise PlannerError(f"server {root}: a prompt log-prob is missing")
        hit = entry.get(str(tok), entry.get(f"token_id:{tok}"))
        if hit is None:
            raise PlannerError(f"server {root}: no prompt log-prob for token {tok}")
        out.append(float(hit["logprob"] if isinstance(hit, dict) else hit))
    return out
