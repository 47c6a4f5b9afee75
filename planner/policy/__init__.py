"""Policy: the deployable file a router loads, and deciding with it.

The end of the flow: a plan on predicted bins becomes a pure-JSON policy (`build`), whose format
is `file` (schema version, the one byte spelling, validation) and which `runtime` loads to decide
per prompt; `evaluate` checks a policy's promise on held-out problems.

This package's surface is the file format and the runtime, which need numpy and jsonschema only:
a serving team loads a policy without pandas, scikit-learn or torch. `build` and `evaluate` read
plan and samples tables (pandas) and are imported by their module path.

May import: numpy, jsonschema, `planner.errors`, the probe arithmetic of `planner.estimate` and
the strategy kinds of `planner.tables` (runtime and file); pandas, `planner.tables` and
`planner.estimate` in full (build, evaluate).
"""

from planner.policy.file import (
    POLICY_KIND,
    POLICY_SCHEMA_VERSION,
    dumps_policy,
    policy_schema,
    read_policy,
    validate_policy,
)
from planner.policy.runtime import Decision, Decisions, Policy

__all__ = [
    "POLICY_KIND",
    "POLICY_SCHEMA_VERSION",
    "Decision",
    "Decisions",
    "Policy",
    "dumps_policy",
    "policy_schema",
    "read_policy",
    "validate_policy",
]
