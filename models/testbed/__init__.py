"""The CPU testbed: a synthetic step-by-step reasoning task and tiny Llama models trained here.

`train_testbed(out_dir, quick=..., scale=..., seed=...)` trains (or fetches from the cache) the
policy LM, a larger LM, a PRM and a reviser, and returns the manifest; `ensure_testbed` returns the
cached run directory. Task, grader and step checker live in `models.testbed.task`.

Modules, leaves first (each imports only modules to its left):
`task`, `tokenizer`, `metrics` (estimators) -> `modeling` (shapes, training loop), `checkpoints`
(save/load), `generation` (sampling), `verifiers` -> `settings` (per scale; cache keys) ->
`prm`, `reviser` (its prompt and data in `revision_data`, its figures in `reviser_eval`) ->
`quality` -> `stages` -> `train` (cache, manifest).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.testbed.train import cache_root, ensure_testbed, train_testbed

# Loaded on first use (PEP 562): the task, its grader and tokenizer are read without torch.
_LAZY = {"cache_root", "ensure_testbed", "train_testbed"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("models.testbed.train"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["cache_root", "ensure_testbed", "train_testbed"]
