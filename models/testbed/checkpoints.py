"""Saving and loading the testbed's models in Hugging Face format (weights and tokenizer)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, PreTrainedModel
from transformers.utils import logging as hf_logging

from models.testbed.tokenizer import build_tokenizer


@contextlib.contextmanager
def _no_hf_bars() -> Iterator[None]:
    """transformers' per-file bars ("Loading weights", "Writing model shards") would print under
    the testbed's own progress (and with --no-progress too)."""
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def save_model(model: PreTrainedModel, out: Path) -> None:
    """Write the model and the testbed's tokenizer to `out` (loadable with `from_pretrained`)."""
    out.mkdir(parents=True, exist_ok=True)
    with _no_hf_bars():
        model.save_pretrained(out)
    build_tokenizer().save_pretrained(out)


def load_hf_model(path: Path) -> PreTrainedModel:
    """The model in eval mode: `AutoModelForCausalLM`, or `AutoModelForTokenClassification` for
    a PRM with a value head."""
    config = json.loads((Path(path) / "config.json").read_text())
    token_class = any(
        a.endswith("ForTokenClassification") for a in config.get("architectures") or []
    )
    auto = AutoModelForTokenClassification if token_class else AutoModelForCausalLM
    with _no_hf_bars():
        model = auto.from_pretrained(path)
    model.eval()
    return model


def load_model(stage_dir: Path) -> PreTrainedModel:
    """The model a finished stage wrote (``stage_dir/model``)."""
    return load_hf_model(stage_dir / "model")
