"""Resolving a run config before anything is written or loaded.

`resolve` makes model paths absolute (filling in `testbed:<name>` from the testbed directory,
training the quick or default testbed once when named), checks that every model directory holds
a Hugging Face model, fills a step-tag PRM's tag and label tokens from its `verifier.json` or the
testbed manifest (and checks each is one token of its tokenizer), and builds every strategy's
config once, so a bad value fails before any model loads.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from profiling.sweep.config import ModelConfig, RunConfig, VerifierSpec, check_strategy
from profiling.verifiers import prm_format


def _testbed_dir(cfg: RunConfig) -> Path | None:
    if cfg.testbed is None:
        return None
    if cfg.testbed in ("quick", "default", "paper"):
        from models.testbed import ensure_testbed

        quick = cfg.testbed == "quick"
        return ensure_testbed(
            quick=quick,
            scale="default" if quick else cfg.testbed,
            seed=0,
            progress=True,  # a bar on a terminal, else a line every 30 s: never silent
        )
    p = Path(cfg.testbed).expanduser()
    if not (p / "manifest.json").is_file():
        raise PlannerError(
            f"testbed {p}: no manifest.json (train one with: ttc testbed train --out {p})"
        )
    return p


def _resolve(path: str, testbed: Path | None, what: str) -> str:
    if path.startswith("testbed:"):
        if testbed is None:
            raise PlannerError(
                f'{what} = {path!r} needs testbed = "quick", "default" or a directory'
            )
        return str(testbed / path.removeprefix("testbed:"))
    return str(Path(path).expanduser().resolve())


def _check_model_dir(path: str, what: str) -> None:
    p = Path(path)
    if not p.is_dir():
        raise PlannerError(f"{what}: model directory {p} not found")
    if not (p / "config.json").is_file():
        raise PlannerError(
            f"{what}: {p} has no config.json (expected a Hugging Face model directory)"
        )


def _check_step_tag(
    spec: VerifierSpec, names: tuple[str, ...] = ("step_tag", "good_token", "bad_token")
) -> None:
    """A tag PRM needs its step tag and label tokens to be single tokens of its tokenizer."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(spec.path)
    except Exception as exc:  # transformers raises many types for a broken tokenizer
        raise PlannerError(
            f"verifier {spec.path}: cannot load its tokenizer ({' '.join(str(exc).split())})"
        ) from None
    for field_name in names:
        text = getattr(spec, field_name)
        ids = tok.encode(text, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == tok.unk_token_id:
            raise PlannerError(
                f"verifier {spec.path}: the tokenizer has no single token for the PRM {field_name} "
                f"{text!r} (it encodes to {len(ids)} tokens {ids[:8]}); set {field_name} in "
                "[[verifiers]] to the tag the PRM was trained with"
            )


def resolve(cfg: RunConfig) -> RunConfig:
    """Absolute model paths, testbed paths filled in, PRM tag defaults; checks every model dir."""
    testbed = _testbed_dir(cfg)
    manifest = json.loads((testbed / "manifest.json").read_text()) if testbed else {}
    model = _resolve_model(cfg.model, testbed, "model")
    reviser = None
    if cfg.reviser is not None:
        reviser = _resolve_model(cfg.reviser, testbed, "reviser")
    verifiers = []
    for i, v in enumerate(cfg.verifiers):
        if v.path is not None:
            from_testbed = v.path.startswith("testbed:")
            v = replace(v, path=_resolve(v.path, testbed, f"verifiers #{i + 1} path"))
            _check_model_dir(v.path, f"verifiers #{i + 1} path")
            if v.kind == "prm":
                v = _prm_defaults(v, manifest.get("prm", {}) if from_testbed else {})
        verifiers.append(v)
    for s in cfg.strategies:
        try:
            check_strategy(s, len(cfg.verifiers))
        except (TypeError, ValueError) as exc:
            raise PlannerError(f"strategy {s.key}: {exc}") from None
    return replace(
        cfg,
        model=model,
        reviser=reviser,
        verifiers=tuple(verifiers),
        testbed=None if testbed is None else str(testbed),
    )


def _resolve_model(m: ModelConfig, testbed: Path | None, what: str) -> ModelConfig:
    """Absolute paths (model_config too); a served model needs its server and name."""
    m = replace(m, path=_resolve(m.path, testbed, f"{what}.path"))
    if m.model_config:
        m = replace(m, model_config=_resolve(m.model_config, testbed, f"{what}.model_config"))
        _check_model_dir(m.model_config, f"{what}.model_config")
    else:
        _check_model_dir(m.path, f"{what}.path")
    if m.backend == "openai" and not (m.base_url and m.served_model):
        raise PlannerError(
            f"{what}: the openai backend needs base_url and served_model "
            "(--base-url URL --served-model NAME)"
        )
    return m


def _prm_defaults(v: VerifierSpec, manifest_prm: dict[str, Any]) -> VerifierSpec:
    path = Path(v.path or "")
    meta: dict[str, Any] = {}
    if (path / "verifier.json").is_file():
        meta = json.loads((path / "verifier.json").read_text())
    fmt = prm_format(path, v.format)
    if fmt == "token_class":
        return v
    if fmt == "rlhflow":
        # Chat turns, the assistant answering good/bad: no step tag to check.
        v = replace(
            v,
            good_token=v.good_token or meta.get("good_token", "+"),
            bad_token=v.bad_token or meta.get("bad_token", "-"),
        )
        _check_step_tag(v, ("good_token", "bad_token"))
        return v
    fill = {}
    for k in ("step_tag", "good_token", "bad_token"):
        if getattr(v, k) is None:
            fill[k] = meta.get(k, manifest_prm.get(k))
    v = replace(v, **{k: x for k, x in fill.items() if x is not None})
    missing = [k for k in ("step_tag", "good_token", "bad_token") if getattr(v, k) is None]
    if missing:
        raise PlannerError(
            f"verifier {path}: a step-tag PRM needs {', '.join(missing)} "
            "(set them in [[verifiers]] or ship a verifier.json beside the model)"
        )
    _check_step_tag(v)
    return v
