"""Forward runners behind `DecodeState`: the model's own forward with a transformers cache, or the
lean Llama-family forward of `models.lean`.

A runner has `new_cache(batch)` and `forward(cache, ids, pos, mask, keep_all) -> logits`; a cache
has `select(idx)`, `fork(idx)` and `gather_columns(idx)`.
"""

from __future__ import annotations

import copy
import inspect
import os

import torch

from models.lean import LeanRunner, lean_supported


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _new_cache(model: torch.nn.Module):
    # transformers is imported here, not at the top, so that importing the sampler stays light
    # for the lean path, which never builds a transformers cache.
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:  # older transformers
        return DynamicCache()


class HFCache:
    """A transformers DynamicCache behind the small interface DecodeState needs."""

    def __init__(self, cache) -> None:
        self.cache = cache

    def select(self, idx: torch.Tensor) -> None:
        self.cache.batch_select_indices(idx)

    def fork(self, idx: torch.Tensor) -> HFCache:
        cache = copy.copy(self.cache)
        cache.layers = [copy.copy(layer) for layer in self.cache.layers]
        for layer in cache.layers:
            # index_select allocates new tensors, so the copy never aliases this cache.
            layer.keys = layer.keys.index_select(0, idx)
            layer.values = layer.values.index_select(0, idx)
        return HFCache(cache)

    def gather_columns(self, idx: torch.Tensor) -> None:
        for layer in self.cache.layers:
            layer.keys = _gather_cols(layer.keys, idx)
            layer.values = _gather_cols(layer.values, idx)


def _gather_cols(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """t [B, H, T, D] -> [B, H, W, D] taking, per row, the columns idx [B, W]."""
    b, h, _, d = t.shape
    return torch.gather(t, 2, idx[:, None, :, None].expand(b, h, idx.shape[1], d))


def cache_argument(model: torch.nn.Module) -> str:
    """The name of the KV cache in the model's forward and in its output.

    Recent transformers call it `cache` and warn that `past_key_values` will be removed; the
    versions before take only `past_key_values`, and would pass an unknown `cache` on in **kwargs
    unused. The forward's signature says which one this install has.
    """
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class HFRunner:
    """Calls the model's own forward (any architecture transformers supports)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.cache_arg = cache_argument(model)

    def new_cache(self, batch: int) -> HFCache:
        return HFCache(_new_cache(self.model))

    def forward(
        self,
        cache: HFCache,
        ids: torch.Tensor,
        pos: torch.Tensor,
        mask: torch.Tensor,
        keep_all: bool,
    ) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            logits_to_keep=0 if keep_all else 1,
            **{self.cache_arg: cache.cache},
        )
        cache.cache = out[self.cache_arg]
        return out.logits


def pick_runner(model: torch.nn.Module, lean: bool | None) -> HFRunner | LeanRunner:
    """The lean Llama-family decoder when the model allows it (and lean is not False)."""
    if lean is False or os.environ.get("TTC_LEAN_DECODE", "1") == "0":
        return HFRunner(model)
    if lean_supported(model):
        return LeanRunner.for_model(model)
    if lean:
        raise ValueError(f"no lean decoder for model type {model.config.model_type!r}")
    return HFRunner(model)
