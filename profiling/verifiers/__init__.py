"""Verifiers: score each step of a candidate solution.

Kinds, one interface (`score(candidates) -> list[Scored]`, `profiling.verifiers.base`):

- `LMCandidatePRM` (Math-Shepherd step tags) and `RLHFlowPRM` (RLHFlow chat turns): a causal-LM
  PRM, P(good) over the {good, bad} token logits where a step's label is predicted
  (`profiling.verifiers.prm`); `load_prm` picks the adapter (see its docstring for pointing them
  at Math-Shepherd, RLHFlow and Qwen2.5-Math-PRM checkpoints).
- `TokenClassPRM`: an AutoModelForTokenClassification read at each step's end.
- `LikelihoodVerifier`: no training; exp(mean or min token log-prob) of each step under the
  policy itself (`SelfLikelihood`, free) or any other local LM.

`mode="outcome"` scores only the whole solution (one score, at its end). Step scores lie in
[0, 1] (PRMs) or (0, 1] (likelihood); `planner.strategies.aggregate` turns them into one
score (`agg`, `last` by default).
"""

from profiling.verifiers.base import MODES, Candidate, Scored, Verifier, incremental
from profiling.verifiers.likelihood import LikelihoodVerifier, SelfLikelihood
from profiling.verifiers.prm import PRM_FORMATS, LMCandidatePRM, RLHFlowPRM, load_prm, prm_format
from profiling.verifiers.token_class import TokenClassPRM

__all__ = [
    "MODES",
    "PRM_FORMATS",
    "Candidate",
    "LMCandidatePRM",
    "LikelihoodVerifier",
    "RLHFlowPRM",
    "Scored",
    "SelfLikelihood",
    "TokenClassPRM",
    "Verifier",
    "incremental",
    "load_prm",
    "prm_format",
]
