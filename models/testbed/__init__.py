"""The CPU testbed: a synthetic step-by-step reasoning task and tiny Llama models trained here.

`train_testbed(out_dir, quick=..., scale=..., seed=...)` trains (or fetches from the cache) the
policy LM, a larger LM, a PRM and a reviser, and returns the manifest; `ensure_testbed` returns the
cached run directory. Task, grader and step checker live in `models.testbed.task`.

Modules, leaves first (each imports only modules to its left):
`task`, `tokenizer`, `metrics` (estimators) -> `modeling` (shapes, training loop), `checkpoints`
(save/load), `generation` (sampling), `verifiers` -> `settings` (per scale; cache keys) ->
`prm`, `reviser` -> `quality` -> `stages` -> `train` (cache, manifest).
"""

from models.testbed.train import cache_root, ensure_testbed, train_testbed

__all__ = ["cache_root", "ensure_testbed", "train_testbed"]
