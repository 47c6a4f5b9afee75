"""Loading what the gateway serves with: the policy file and the models its decisions run on.

The models are named as `ttc profile` names them (a run config's [model], [reviser] and
[[verifiers]], or the same flags), so a policy is served with the very verifiers that scored its
profile: the probe features depend on the verifier's own aggregation (`agg`), which the policy
file does not repeat. The backend is the run config's: in-process transformers, or
`backend = "openai"` (a vLLM / SGLang server, `profiling.openai`) for the upstream mode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.policy import Policy
from planner.policy.file import read_policy
from profiling.gateway.engine import Engine


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy, its id (the file's SHA-256, 12 hex digits), version (1 at start,
    one more per successful reload) and the prompt tokens it allows at each budget (the last
    entry: the fallback's; empty: unchecked, no engine was given)."""

    policy: Policy
    policy_id: str
    version: int
    path: str
    room: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.policy_id}/v{self.version}"

    def room_for(self, budget: float) -> int | None:
        """The most prompt tokens a request at `budget` may send (None: no limit known)."""
        if not self.room:
            return None
        i = int(self.policy.budget_index(budget)[0])
        return self.room[i] if i >= 0 else self.room[-1]


def load_policy(path: str | Path, version: int, engine: Engine | None = None) -> LoadedPolicy:
    """Read, validate and check a policy file against the engine (PlannerError otherwise)."""
    p = Path(path)
    doc = read_policy(p)
    policy = Policy.from_dict(doc, str(p))
    room: tuple[int, ...] = ()
    if engine is not None:
        engine.check(policy)
        room = tuple(engine.room(policy))
        if max(room) < 1:
            raise PlannerError(
                f"{p}: the policy generates more tokens than the model's context holds"
            )
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
    return LoadedPolicy(policy, digest, version, str(p), room)


def load_engine(
    config_path: str | None,
    flags: dict[str, Any],
    grader: str = "testbed",
    threads: int | None = None,
) -> Engine:
    """The engine from a run config and/or `ttc profile`-style flag values (keyed by flag)."""
    from profiling.sweep.config import config_from_dict, read_toml
    from profiling.sweep.flags import apply_flags
    from profiling.sweep.resolve import resolve
    from profiling.sweep.units import SweepModels

    where = "flags" if config_path is None else str(Path(config_path))
    raw = apply_flags(read_toml(config_path) if config_path else {}, flags, where)
    if "model" not in raw:
        raise PlannerError("no policy model: pass --model DIR or --config with a [model] section")
    # The run config's strategies are the sweep's; the gateway runs the policy's (a placeholder
    # satisfies the config's check when the file has none).
    raw.setdefault("strategies", [{"name": "sample", "n": 1}])
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    cfg = resolve(config_from_dict(raw, where))
    models = SweepModels(cfg)
    return Engine(models.backend, models.verifiers, models.reviser, grader)
