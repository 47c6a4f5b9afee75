"""The usage a search or revision decision charges its request, from the strategy's rows: each
prompt the model prefilled once (rows hold their whole prompt, shared or not), and the verifier
the prompt and candidate of every row it scored."""

from __future__ import annotations

from pathlib import Path

import profiling_tiny as T
import pytest
from profiling_tiny import single_thread  # noqa: F401  (autouse fixture)

from profiling.backend import TransformersBackend
from profiling.gateway.choose import Spend
from profiling.gateway.work import strategy_rows
from profiling.verifiers import LMCandidatePRM


class SentBackend(TransformersBackend):
    """The real backend, keeping every batch of prompts it was sent."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.batches: list[list[tuple[int, ...]]] = []

    def start_batch(self, prompts):
        self.batches.append([tuple(p) for p in prompts])
        return super().start_batch(prompts)

    def sample(self, prompts, n, **kw):
        self.batches.append([tuple(p) for p in prompts])
        return super().sample(prompts, n, **kw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[SentBackend, LMCandidatePRM]:
    root: Path = tmp_path_factory.mktemp("usage")
    policy = TransformersBackend.load(T.save_policy(root / "policy"), batch_size=16)
    prm = LMCandidatePRM.load(
        T.save_lm_prm(root / "prm"), step_tag="<step>", good_token="<good>", bad_token="<bad>"
    )
    return SentBackend(policy.config, policy.model, policy.tokenizer), prm


@pytest.mark.parametrize(
    ("strategy", "config"),
    [
        ("beam", {"n": 4, "m": 2, "max_step_tokens": 8, "max_new_tokens": 40, "max_rounds": 4}),
        ("dvts", {"n": 4, "m": 2, "max_step_tokens": 8, "max_new_tokens": 40, "max_rounds": 4}),
        ("revisions", {"chains": 3, "length": 3, "max_new_tokens": 16}),
    ],
)
def test_usage_charges_each_prefilled_prompt_once(
    tiny: tuple[SentBackend, LMCandidatePRM], strategy: str, config: dict
) -> None:
    backend, prm = tiny
    for p in T.problems(2):
        spend = Spend()
        backend.batches.clear()
        (mine,) = strategy_rows(
            strategy,
            {**config, "seed": 3},
            prm.verifier_id,
            prm.verifier_id,
            backend,
            {prm.verifier_id: prm},
            [p],
            [spend],
        )
        plen, gen = len(backend.prompt_ids(p)), sum(m.gen_tokens for m in mine)
        assert len(mine) > 1 and spend.candidate_tokens >= gen > 0
        # what the model was sent, identical prompts of one batch read once (the chains'
        # first answers)
        assert spend.prompt_tokens == sum(len(q) for b in backend.batches for q in set(b))
        if strategy == "revisions":
            assert spend.prompt_tokens > 3 * plen
            # the verifier read every answer with its own prompt
            every = sum(len(q) for b in backend.batches for q in b)
            assert spend.verifier_tokens == every + gen
        else:
            assert spend.prompt_tokens == plen  # a search reads its prompt once
            # the verifier read every final candidate with the whole prompt
            assert spend.verifier_tokens == len(mine) * plen + gen
