"""The profiling harness on the quick CPU testbed's trained models (policy, larger LM, PRM,
reviser).

Cross-checks the adapters against the testbed's own verifier code, then runs every strategy.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from profiling_tiny import single_thread  # noqa: F401  (autouse fixture)

import profiling
from models.decoding import Generation
from planner.tables import SAMPLES, validate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tb(quick_testbed):
    from models.testbed.task import generate_problems
    from profiling.backend import TransformersBackend
    from profiling.problems import testbed_problems
    from profiling.verifiers import LikelihoodVerifier, SelfLikelihood, load_prm

    policy = TransformersBackend.load(quick_testbed / "policy", batch_size=32)
    prm = load_prm(quick_testbed / "prm")  # tag tokens from the testbed manifest
    large = LikelihoodVerifier.load(quick_testbed / "large", stat="mean")
    problems = testbed_problems(generate_problems(4, seed=7))
    return {
        "dir": quick_testbed,
        "policy": policy,
        "prm": prm,
        "large": large,
        "self": SelfLikelihood(stat="min"),
        "problems": problems,
    }


def _answer(g: Generation) -> list[int]:
    """An answer's tokens without the eos that ended it (decoded text keeps special tokens)."""
    return g.token_ids[:-1] if g.finish == "eos" else g.token_ids


def test_adapters_agree_with_the_testbed_verifiers(tb) -> None:
    from models.testbed.verifiers import likelihood_line_scores, prm_line_scores

    backend, problems = tb["policy"], tb["problems"]
    rows = profiling.run(
        "sample",
        problems,
        backend,
        [tb["prm"], tb["large"]],
        {"n": 4, "max_new_tokens": 60, "seed": 1},
    )
    df = validate(pd.DataFrame(rows), SAMPLES, "testbed")
    assert tb["prm"].verifier_id == "prm:prm"
    pools = backend.sample(
        [backend.prompt_ids(p) for p in problems], 4, max_new_tokens=60, temperature=0.8, seed=1
    )
    questions, texts = [], []
    for p, pool in zip(problems, pools, strict=True):
        for g in pool:
            text = backend.decode(_answer(g))
            # the testbed's reference drops blank lines and a final newline; compare the rest
            if (
                "\n\n" not in text
                and text.strip()
                and not text.startswith("\n")
                and not text.endswith("\n")
            ):
                questions.append(p.meta["question"])
                texts.append(text)
    assert texts
    ref_prm = prm_line_scores(tb["prm"].s.model, questions, texts)
    ref_lik = likelihood_line_scores(tb["large"].s.model, questions, texts)
    got = {}
    for _, r in df.iterrows():
        got[(r.verifier, r.problem_id, r.position)] = list(r.step_scores)
    i = 0
    for p, pool in zip(problems, pools, strict=True):
        for pos, g in enumerate(pool):
            text = backend.decode(_answer(g))
            if text not in texts[i : i + 1]:
                continue
            assert got[("prm:prm", p.problem_id, pos)] == pytest.approx(ref_prm[i], abs=1e-4)
            lik = got[("lik:large:mean", p.problem_id, pos)]
            assert lik == pytest.approx([math.exp(x) for x in ref_lik[i]], rel=1e-3)
            i += 1
    assert i == len(texts)


@pytest.mark.parametrize(
    "strategy,config",
    [
        ("sample", {"n": 8, "max_new_tokens": 60}),
        ("beam", {"n": 8, "m": 2, "max_rounds": 8, "max_step_tokens": 24, "max_new_tokens": 60}),
        (
            "lookahead",
            {"n": 4, "m": 2, "k": 1, "max_rounds": 8, "max_step_tokens": 24, "max_new_tokens": 60},
        ),
        ("dvts", {"n": 8, "m": 4, "max_rounds": 8, "max_step_tokens": 24, "max_new_tokens": 60}),
    ],
)
def test_strategies_on_the_testbed(tb, strategy: str, config: dict) -> None:
    rows = profiling.run(
        strategy, tb["problems"][:2], tb["policy"], [tb["prm"], tb["self"]], config
    )
    df = validate(pd.DataFrame(rows), SAMPLES, strategy)
    assert set(df.verifier) == {"prm:prm", "self:min"}
    assert (df.gen_tokens.groupby([df.problem_id, df.verifier]).sum() > 0).all()
    assert df.score.between(0, 1).all()
    prm = df[df.verifier == "prm:prm"]
    scored = prm.step_scores.map(len) > 0
    if strategy == "sample":  # a candidate without any step costs the PRM nothing
        assert (prm[scored].verifier_flops > 0).all() and (prm[~scored].verifier_flops == 0).all()
    else:  # a search's verifier cost is spread over its final rows
        assert (prm.verifier_flops > 0).all()


def test_revisions_with_the_testbed_reviser(tb) -> None:
    from profiling.backend import TransformersBackend

    reviser = TransformersBackend.load(tb["dir"] / "reviser", batch_size=32)
    rows = profiling.run(
        "revisions",
        tb["problems"][:2],
        reviser,
        tb["prm"],
        {"chains": 2, "length": 3, "max_new_tokens": 60},
    )
    df = validate(pd.DataFrame(rows), SAMPLES, "revisions")
    assert len(df) == 2 * 2 * 3
    assert df.groupby("position").prompt_tokens.mean().is_monotonic_increasing
