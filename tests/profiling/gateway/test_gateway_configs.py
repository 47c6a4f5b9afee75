"""The one translation from a profile's (or a policy's) config to a strategy's config, which the
sweep and the gateway share: the keys the curves and the search rows add are dropped, the
execution keys set, and what is left is a config the strategy's class accepts."""

from __future__ import annotations

import json

import pytest

from planner.tables import canonical_config
from profiling.strategies import STRATEGIES, strategy_config
from profiling.strategies.common import config_from, row_config

# Configs as the quick demo's policy writes them (beam's rows name the verifier that guided it;
# a revisions option names the run it was read from).
BEAM = (
    '{"agg":"last","k":0,"m":2,"max_new_tokens":96,"max_rounds":12,"max_step_tokens":32,"n":4,'
    '"search_verifier":"lik:large:mean","select":"best","temperature":0.8,"top_p":1.0,'
    '"verifier":"lik:large:mean"}'
)
REVISIONS = (
    '{"agg":"last","attempt_format":"{prompt}{attempt}<eos>","chains":1,"length":5,'
    '"max_new_tokens":64,"prompt_format":"{attempts}{prompt}","run_chains":1,"run_length":5,'
    '"select":"best","temperature":0.8,"top_p":1.0,"verifier":"lik:large:mean","window":4}'
)
POOL = (
    '{"agg":"mean","max_new_tokens":96,"n":64,"select":"weighted","temperature":0.8,'
    '"top_p":1.0,"verifier":"lik:large:mean"}'
)


@pytest.mark.parametrize(
    ("strategy", "config", "budget"),
    [("beam", BEAM, None), ("revisions", REVISIONS, None), ("sample", POOL, 2.0)],
)
def test_a_policy_config_becomes_a_config_the_strategy_accepts(strategy, config, budget) -> None:
    cfg = strategy_config(strategy, json.loads(config), seed=7, grader="testbed", budget=budget)
    assert not {"select", "agg", "verifier", "search_verifier", "run_chains"} & set(cfg)
    assert cfg["seed"] == 7 and cfg["grader"] == "testbed"
    built = STRATEGIES[strategy].config(**cfg)
    if strategy == "sample":
        assert built.n == 2  # a pool read at budget 2 draws 2 candidates
    else:
        # the strategy's own keys come back unchanged: what the rows of the profile were run with
        extra = {"search_verifier": "lik:large:mean"} if strategy == "beam" else {}
        want = {k: v for k, v in json.loads(config).items()
                if k not in ("select", "agg", "verifier", "run_chains", "run_length")}  # fmt: skip
        assert json.loads(row_config(built, extra)) == want


def test_the_sweep_passes_a_spec_through_unchanged() -> None:
    spec = {"n": 8, "max_new_tokens": 64}
    cfg = strategy_config("sample", spec, seed=3, grader="math")
    assert cfg == {"n": 8, "max_new_tokens": 64, "seed": 3, "grader": "math"}
    assert spec == {"n": 8, "max_new_tokens": 64}  # the input is not changed


def test_a_key_no_strategy_knows_is_still_refused() -> None:
    cfg = strategy_config("beam", {**json.loads(BEAM), "beam_width": 3}, seed=0, grader="")
    with pytest.raises(ValueError, match="beam_width"):
        config_from(STRATEGIES["beam"].config, cfg, "beam")
    assert canonical_config(json.loads(BEAM)) == BEAM
