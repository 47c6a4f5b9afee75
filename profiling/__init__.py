"""The measuring side: problems and graders, model backends, verifiers, strategies, FLOPs.

    from profiling import LikelihoodVerifier, SelfLikelihood, TransformersBackend, load_prm, run

    policy = TransformersBackend.load("testbed/policy", threads=1)
    verifiers = [load_prm("testbed/prm"), LikelihoodVerifier.load("testbed/large", stat="mean"),
                 SelfLikelihood(stat="min")]
    rows = run("sample", problems, policy, verifiers, {"n": 16})           # one pool, all k <= n
    rows += run("beam", problems, policy, verifiers, {"n": 16, "m": 4})    # one run per budget

`run` returns rows of the samples table (`planner.tables.schema.SAMPLES`); strategies are registered
by name in `STRATEGIES` (each with its kind, function and config dataclass), the names and kinds
being those of the planner's table (`planner.strategies`).

Cost conventions (exact, from real token counts and the analytic FLOPs of `profiling.flops`):
- `gen_tokens` are sampled tokens; `gen_flops` every forward pass of the policy on real tokens
  (padding and holes of a batch are not counted). A prompt is encoded once per pool or search
  run (prefix sharing): its tokens and FLOPs are spread evenly over that pool's / run's rows.
- `sample`: each row carries its own decode cost; a pool's rows sum to its total.
- `beam`, `lookahead`, `dvts`: a run's whole cost (pruned branches and lookahead rollouts
  included) is spread evenly over its final rows, so a run's rows (per verifier) sum to it.
- `revisions`: each answer encodes its own prompt (with the previous answers) and decodes its
  tokens; identical prompts in one step share one prefill.
- `verifier_flops`: the forward passes of that row's verifier (0 for `self:*`, whose log-probs
  were kept while sampling); in a search, the guiding verifier's calls on every round.
- `wall_s`: measured seconds, generation split over candidates by tokens plus the verifier's
  own scoring time.
Several verifiers on one pool give one row per candidate and verifier, generation costs repeated.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from profiling.backend import Backend, TransformersBackend
    from profiling.problems import Problem
    from profiling.strategies import STRATEGIES, run
    from profiling.verifiers import LikelihoodVerifier, SelfLikelihood, Verifier, load_prm

# Public name -> the module that defines it. The names load on first use (PEP 562), so importing a
# light module of this package (a run config, `ttc profile --help`) does not load torch.
_LAZY = {
    "Backend": "profiling.backend",
    "TransformersBackend": "profiling.backend",
    "Problem": "profiling.problems",
    "STRATEGIES": "profiling.strategies",
    "run": "profiling.strategies",
    "LikelihoodVerifier": "profiling.verifiers",
    "SelfLikelihood": "profiling.verifiers",
    "Verifier": "profiling.verifiers",
    "load_prm": "profiling.verifiers",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "STRATEGIES",
    "Backend",
    "LikelihoodVerifier",
    "Problem",
    "SelfLikelihood",
    "TransformersBackend",
    "Verifier",
    "load_prm",
    "run",
]
