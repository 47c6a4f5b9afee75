"""PRMs read through a vLLM server's pooling endpoint (`POST /pooling`, task `token_classify`).

A pooling server runs the verifier once over a whole sequence and returns its classifier's output
at every token (`tok_pooling_type` ALL, vLLM's default) or only where the token is the pooler's
`step_tag_id` (STEP); the adapters read the rows at their read positions, so one request scores
every step of a candidate. They build exactly the token ids of their in-process twins and ask
for raw logits (`use_activation: false`), applying the twin's statistic here (so a checkpoint's
`problem_type`, which picks vLLM's activation, cannot change it):

- `ServerTokenClassPRM` (`TokenClassPRM`): a `…ForTokenClassification` checkpoint read at each
  step's end after the separator; 1 label: sigmoid, 2 labels: softmax at `positive_label`.
  Served by `vllm serve DIR` (the architecture selects `--runner pooling --convert classify`
  and the token_classify task).
- `ServerPooledStepTagPRM` (`LMCandidatePRM`): a Math-Shepherd causal LM that vLLM converts into
  a 1-label token classifier whose logit is logit(good) - logit(bad) (`method:
  from_2_way_softmax`), so its sigmoid is P(good) over {good, bad} at each step tag: one
  request per candidate instead of two prompts per tag (`ServerStepTagPRM`). Serve it with
  `step_tag_command` (add `"pooling_type": "STEP", "step_tag_id": ID` to `--pooler-config` to
  have the tag rows only). vLLM 0.32's `returned_token_ids` is no way to read it: the STEP
  pooler then slices hidden-state columns before the classifier, which fails (`shape '[-1, H]'
  is invalid`) and takes the engine down.

FLOPs are the twins' (one forward over the sequence; the step-tag reader in `incremental()`:
the new tokens only, as `LMCandidatePRM`), so tables from either backend compare. A pooling
request does not read vLLM's prefix cache (token-wise tasks skip it), so served wall time does
include the prefix again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from planner.errors import PlannerError
from profiling.flops import forward_flops, shape_from_config
from profiling.openai.client import OpenAIClient
from profiling.openai.identity import PROBE_TEXT
from profiling.openai.server import identify
from profiling.openai.verifiers import ServerStepTagPRM, _LocalScorer
from profiling.problems import Problem
from profiling.verifiers.base import Candidate, Scored, check_agg_mode, meta_for, step_texts
from profiling.verifiers.token_class import check_labels

Built = tuple[list[int], list[int]]  # a sequence's token ids and its read positions

# a two-step candidate scored once when an adapter opens (`_PooledScorer.probe`)
PROBE = Candidate(Problem("probe", PROBE_TEXT, ""), ["1+1=2\n", "2+2=4"])


def step_tag_command(model_dir: str | Path, good_token_str: str, bad_token_str: str) -> str:
    """The `vllm serve` line that serves a step-tag PRM for `ServerPooledStepTagPRM` (the labels
    as the tokenizer's vocabulary spells them, `convert_ids_to_tokens`)."""
    # the score head is row[1] - row[0] of the LM head: logit(good) - logit(bad)
    overrides = {
        "classifier_from_token": [bad_token_str, good_token_str],
        "method": "from_2_way_softmax",
    }
    return (
        f"vllm serve {model_dir} --runner pooling --convert classify --hf-overrides "
        f"'{json.dumps(overrides)}' --pooler-config '{json.dumps({'task': 'token_classify'})}'"
    )


class _PooledScorer(_LocalScorer):
    """A verifier model's tokenizer and shape, its head read through `/pooling`."""

    logprobs = False

    def configure(self, *, width: int, start: str) -> None:
        """`width`: values per token the PRM needs; `start`: how to serve it (for errors)."""
        self.width, self.start = width, start

    def probe(self, seq: list[int], reads: list[int]) -> None:
        """One request up front, so a server that cannot score fails before any work; then
        the local folder against the served model (`identify`)."""
        body = self._body([seq])
        status, answer = self.client.post_status("/pooling", body)
        where = f"server {self.client.root}"
        if status in (404, 501):  # vLLM registers /pooling only for a pooling model
            raise PlannerError(
                f"verifier: {where} has no /pooling endpoint for {self.served_model!r} (it "
                f"serves it as a generator); start the server with: {self.start}"
            )
        if status >= 400:
            raise PlannerError(
                f"verifier: {where} refused a token_classify /pooling request for "
                f"{self.served_model!r} (HTTP {status}: {answer}); start the server with: "
                f"{self.start}"
            )
        self._rows(answer, [(seq, reads)])
        # the folder is compared with the served model once the server is known to pool it
        self.info = identify(
            self.client,
            self.info,
            self.tokenizer,
            self.model_config,
            self.hf_config,
            what="verifier",
            logprobs=False,
        )

    def _body(self, seqs: Sequence[Sequence[int]]) -> dict[str, Any]:
        return {
            "model": self.served_model,
            "input": [[int(t) for t in s] for s in seqs],
            "task": "token_classify",
            "use_activation": False,
            "add_special_tokens": False,
        }

    def read(self, built: Sequence[Built]) -> list[list[list[float]]]:
        """The head's raw output at each sequence's read positions ([reads][width])."""
        for seq, _ in built:
            if len(seq) > self.info.max_model_len:
                raise PlannerError(
                    f"verifier {self.served_model}: a sequence of {len(seq)} tokens does not "
                    f"fit the served model's max_model_len of {self.info.max_model_len}"
                )
        chunks = [built[i : i + self.batch_size] for i in range(0, len(built), self.batch_size)]
        answers = self.client.post_many(
            "/pooling", [self._body([seq for seq, _ in c]) for c in chunks]
        )
        return [row for a, c in zip(answers, chunks, strict=True) for row in self._rows(a, c)]

    def _rows(self, answer: Any, chunk: Sequence[Built]) -> list[list[list[float]]]:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != len(chunk):
            raise PlannerError(
                f"verifier: server {self.client.root} answered /pooling without one result "
                f"per input ({str(answer)[:200]})"
            )
        out = []
        for item, (seq, reads) in zip(sorted(data, key=lambda d: d["index"]), chunk, strict=True):
            rows = item.get("data")
            if not isinstance(rows, list) or any(
                not isinstance(r, list) or len(r) != self.width for r in rows
            ):
                got = len(rows[0]) if rows and isinstance(rows[0], list) else "no"
                raise PlannerError(
                    f"verifier: server {self.client.root} returns {got} values per token for "
                    f"{self.served_model!r}, the PRM needs {self.width}; start the server "
                    f"with: {self.start}"
                )
            out.append(self._at(rows, seq, reads))
        return out

    def _at(self, rows: list[list[float]], seq: list[int], reads: list[int]) -> list[list[float]]:
        if len(rows) == len(seq):  # ALL: a row per token
            return [[float(x) for x in rows[t]] for t in reads]
        # STEP: rows only where the token is the pooler's step_tag_id, which must be the token
        # every read position holds
        tag = seq[reads[-1]] if reads else -1
        where = {p: k for k, p in enumerate(i for i, t in enumerate(seq) if t == tag)}
        if len(rows) == len(where) and all(t in where for t in reads):
            return [[float(x) for x in rows[where[t]]] for t in reads]
        raise PlannerError(
            f"verifier: server {self.client.root} returned {len(rows)} rows for a sequence of "
            f"{len(seq)} tokens with {len(reads)} read positions; serve it with the default "
            f"token pooling (ALL), or STEP with step_tag_id {tag} (the read token): {self.start}"
        )


def _token_class_params(hf_config: Any) -> int:
    """Parameters of a token-classification model from its config alone (meta device)."""
    from transformers import AutoModelForTokenClassification

    with torch.device("meta"):
        model = AutoModelForTokenClassification.from_config(hf_config)
    return int(sum(p.numel() for p in model.parameters()))


class ServerTokenClassPRM:
    """A token-classification PRM served for pooling, read at each step's end (`TokenClassPRM`)."""

    def __init__(
        self,
        client: OpenAIClient,
        served_model: str,
        model_config: str | Path,
        *,
        name: str | None = None,
        separator: str = "\n",
        positive_label: int = 1,
        template: str = "{prompt}",
        delimiter: str = "\n",
        agg: str = "last",
        mode: str = "process",
        add_special_tokens: bool = True,
        batch_size: int = 16,
    ) -> None:
        check_agg_mode(agg, mode)
        self.s = _PooledScorer(
            client,
            served_model,
            model_config,
            template=template,
            delimiter=delimiter,
            add_special_tokens=add_special_tokens,
            batch_size=batch_size,
        )
        hf_config = self.s.hf_config
        n_labels = check_labels(served_model, int(hf_config.num_labels), positive_label)
        self.n_labels, self.positive = n_labels, positive_label
        self.s.shape = shape_from_config(hf_config, head_out=n_labels)
        self.s.n_params = _token_class_params(hf_config)
        self.s.configure(width=n_labels, start=f"vllm serve {model_config} --runner pooling")
        self.sep_ids = self.s.enc(separator) if separator else []
        self.agg, self.mode = agg, mode
        suffix = "" if mode == "process" else ":outcome"
        self.verifier_id = f"prm:{name or Path(model_config).name}{suffix}"
        self.s.probe(*self._build(PROBE))

    def _build(self, c: Candidate) -> Built:
        ids = self.s.prompt_ids(c)
        ends: list[int] = []
        for step in step_texts(c, self.s.delimiter, self.mode):
            ids += self.s.enc(step) + self.sep_ids
            ends.append(len(ids) - 1)
        return ids, ends

    def score(self, candidates: Sequence[Candidate]) -> list[Scored]:
        built = [self._build(c) for c in candidates]
        todo = [i for i, (_, ends) in enumerate(built) if ends]
        rows = dict(zip(todo, self.s.read([built[i] for i in todo]), strict=True))
        out = []
        for i, (seq, _) in enumerate(built):
            if i not in rows:
                out.append(Scored([], 0.0))
                continue
            logits = torch.tensor(rows[i], dtype=torch.float32)  # (steps, labels)
            if self.n_labels == 1:
                scores = torch.sigmoid(logits[:, 0])
            else:
                scores = logits.softmax(-1)[:, self.positive]
            # the classifier head runs at every position of the sequence
            flops = forward_flops(self.s.shape, len(seq), 0)
            out.append(Scored([float(x) for x in scores.tolist()], flops))
        return out


class ServerPooledStepTagPRM(ServerStepTagPRM):
    """A Math-Shepherd PRM served as a 1-label token classifier: P(good) at each step tag,
    every tag of a candidate in one `/pooling` request (see the module docstring)."""

    scorer = _PooledScorer

    def __init__(
        self, client: OpenAIClient, served_model: str, model_config: str | Path, **kwargs: Any
    ) -> None:
        super().__init__(client, served_model, model_config, **kwargs)
        s = self.s
        assert isinstance(s, _PooledScorer)
        good, bad = s.tokenizer.convert_ids_to_tokens([self.good, self.bad])
        s.configure(width=1, start=step_tag_command(model_config, good, bad))
        s.probe(*self._build(PROBE))

    def _read_tags(
        self, built: list[Built], memo: dict[tuple[int, ...], float]
    ) -> dict[tuple[int, ...], float]:
        todo: dict[tuple[int, ...], list[int]] = {}
        for ids, tags in built:
            if any(tuple(ids[: t + 1]) not in memo for t in tags):
                todo[tuple(ids)] = tags
        s = self.s
        assert isinstance(s, _PooledScorer)
        seqs = [(list(ids), tags) for ids, tags in todo.items()]
        fresh: dict[tuple[int, ...], float] = {}
        for (ids, tags), rows in zip(seqs, s.read(seqs), strict=True):
            # the logit is logit(good) - logit(bad): its sigmoid is the two-way softmax
            p_good = torch.sigmoid(torch.tensor(rows, dtype=torch.float32)[:, 0]).tolist()
            for t, p in zip(tags, p_good, strict=True):
                fresh.setdefault(tuple(ids[: t + 1]), float(p))
        return fresh


_META_KEYS = {
    "token_class": ("separator", "positive_label", "template"),
    # the tag and label tokens are read by `ServerStepTagPRM` itself
    "step_tag": ("separator", "template"),
}


def served_prm_meta(model_dir: str | Path, fmt: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A served PRM's kwargs with its `verifier.json` keys filled in, as its twin's `load`."""
    return meta_for(Path(model_dir), _META_KEYS.get(fmt, ()), kwargs)


def serves_pooling(client: OpenAIClient, served_model: str) -> bool:
    """Whether the server answers `/pooling` for `served_model` (a pooling runner) rather than
    having no such route (a generator, HTTP 404)."""
    body = {"model": served_model, "input": [0], "task": "token_classify", "use_activation": False}
    status, _ = client.post_status("/pooling", body)
    return status == 200
