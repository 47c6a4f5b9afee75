"""A lean batched KV-cache sampler and scorer for Hugging Face causal LMs.

- `sample_batch`: one sampled completion per prompt (left padding, explicit position ids, a KV
  cache, finished rows dropped from the batch); `make_generator` seeds its randomness.
- `score_tokens`: teacher-forced per-token log-probs.
- `DecodeState`: the same machinery for search strategies (prefill a prompt once, copy its KV
  rows, sample one step for many prefixes, teacher-force extra tokens); `Generation` is one
  sampled continuation.

Llama-family models (Llama, Qwen2, Mistral) run through `models.lean` (same maths, far fewer
Python-level operations per step, a preallocated KV buffer); any other model through its own
forward with a transformers DynamicCache. `lean=False` (or env TTC_LEAN_DECODE=0) forces the
latter. Log-probs are the model's log-softmax of the raw logits (before temperature or top-p),
in float32.
"""

from models.decoding._sampling import make_generator, sample_batch
from models.decoding._scoring import score_tokens
from models.decoding._state import DecodeState, Generation

__all__ = ["DecodeState", "Generation", "make_generator", "sample_batch", "score_tokens"]
