"""The sweep's one seam onto the profiling API: strategy registry, model and verifier loading.

Everything the sweep needs from `profiling` (strategies by name and the keys they accept, the
transformers backend, the verifier adapters, `profiling.run`) goes through here, so the runner,
the config parser and the Ray workers agree on one spelling.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

# Keys the sweep sets itself (never the user): per-problem seeds and the data set's grader.
SWEEP_KEYS = ("seed", "grader")


def _registry() -> dict[str, Any]:
    mod = importlib.import_module("profiling.strategies")
    reg = getattr(mod, "STRATEGIES", None)
    if reg is None:  # pragma: no cover - older layout: one module per strategy
        reg = {}
        for name in ("sample", "beam", "lookahead", "dvts", "revisions"):
            try:
                m = importlib.import_module(f"profiling.strategies.{name}")
            except ImportError:
                continue
            reg[name] = getattr(m, name)
    return dict(reg)


def config_class(name: str) -> type | None:
    """The frozen config dataclass of strategy `name` (found beside its function)."""
    mod = importlib.import_module("profiling.strategies")
    classes = getattr(mod, "CONFIGS", None)
    if classes and name in classes:
        return classes[name]
    fn = _registry()[name]
    m = importlib.import_module(fn.__module__)
    found = [obj for obj in vars(m).values()
             if isinstance(obj, type) and dataclasses.is_dataclass(obj)
             and obj.__module__ == m.__name__ and obj.__name__.endswith("Config")]
    exact = [c for c in found if c.__name__.lower() == f"{name}config"]
    if exact:
        return exact[0]
    return found[0] if len(found) == 1 else None


def strategy_keys() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name in sorted(_registry()):
        cls = config_class(name)
        if cls is None:
            out[name] = ()
            continue
        out[name] = tuple(f.name for f in dataclasses.fields(cls) if f.name not in SWEEP_KEYS)
    return out


SEARCH = ("beam", "lookahead", "dvts")


def check_strategy_config(name: str, config: Mapping[str, Any], n_verifiers: int) -> None:
    """Build the strategy's config dataclass once, so a bad value fails before any model loads.

    Also the cross-checks the strategy functions make at call time (a search needs a verifier;
    `k` belongs to lookahead only), so they fail here and not after hours of other work.
    """
    cls = config_class(name)
    if cls is not None:
        cls(**dict(config))
    if name in SEARCH and n_verifiers == 0:
        raise ValueError(f"{name} needs a verifier to guide the search (add [[verifiers]])")
    k = int(config.get("k", 0))
    if name == "lookahead" and k < 1:
        raise ValueError("lookahead: k must be >= 1 (k = 0 is beam search)")
    if name in ("beam", "dvts") and k:
        raise ValueError(f"{name}: k (lookahead steps) only applies to 'lookahead'")


def run_strategy(name: str, problems: Sequence[Any], backend: Any, verifiers: Sequence[Any],
                 config: Mapping[str, Any]) -> list[dict]:
    import profiling

    if hasattr(profiling, "run"):
        return profiling.run(name, list(problems), backend, list(verifiers), dict(config))
    return _registry()[name](list(problems), backend, list(verifiers), dict(config))
