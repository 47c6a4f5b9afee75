"""Model backends: a small Protocol and the transformers implementation.

A backend turns problems into token ids (prompt templates), samples whole solutions in batches,
and opens `SearchState`s for step-wise search: the prompt is encoded once, rows (partial
solutions) are copied, pruned and extended one step at a time on the same KV cache, so no
expansion re-encodes its prefix. Every forward pass is metered (analytic FLOPs of real tokens,
see `profiling.flops`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from models.decoding import DecodeState, Generation, make_generator, sample_batch
from profiling.flops import ModelShape, forward_flops, shape_from_config
from profiling.problems import Problem

_DECODE_CACHE_MAX = 200_000  # entries (token groups); cleared when full
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class PromptTemplate:
    """How a problem's prompt becomes the model's input text.

    template: format string with `{prompt}` (the problem's prompt text);
    few_shot: (prompt, completion) pairs rendered with the same template, each followed by its
    completion and joined by `shot_separator`, before the problem;
    chat: render through the tokenizer's chat template instead (user turn = the rendered prompt,
    few-shot pairs become earlier user/assistant turns), with an optional system message.
    """

    template: str = "{prompt}"
    few_shot: tuple[tuple[str, str], ...] = ()
    shot_separator: str = "\n\n"
    chat: bool = False
    system: str | None = None
    add_special_tokens: bool = True

    def __post_init__(self) -> None:
        if "{prompt}" not in self.template:
            raise ValueError("PromptTemplate.template must contain '{prompt}'")
        if self.system is not None and not self.chat:
            raise ValueError("PromptTemplate.system needs chat=True")

    def render(self, prompt: str, tokenizer: Any = None) -> str:
        if self.chat:
            msgs: list[dict[str, str]] = []
            if self.system:
                msgs.append({"role": "system", "content": self.system})
            for q, a in self.few_shot:
                msgs.append({"role": "user", "content": self.template.format(prompt=q)})
                msgs.append({"role": "assistant", "content": a})
            msgs.append({"role": "user", "content": self.template.format(prompt=prompt)})
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        shots = [self.template.format(prompt=q) + a for q, a in self.few_shot]
        return self.shot_separator.join([*shots, self.template.format(prompt=prompt)])


@dataclass(frozen=True)
class BackendConfig:
    model_dir: str
    device: str = "cpu"
    dtype: str = "float32"
    trust_remote_code: bool = False
    step_delimiter: str = "\n"
    batch_size: int = 64
    template: PromptTemplate = field(default_factory=PromptTemplate)
    # CPU threads for torch (None: leave torch's setting). Tiny models decode many times faster
    # on one thread than on several contended ones (per-op overhead dominates).
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ValueError(f"device must be cpu, cuda[:i] or mps, got {self.device!r}")
        if not self.step_delimiter:
            raise ValueError("step_delimiter must not be empty")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")


class Backend(Protocol):
    """What strategies use of a model: tokenising, whole-solution sampling, step-wise search.

    `shape` meters FLOPs; `batch_size` is how many rows one forward batch holds (a search packs
    as many problems as fit).
    """

    model_id: str
    n_params: int
    shape: ModelShape
    step_delimiter: str
    eos_token_id: int | None

    @property
    def batch_size(self) -> int: ...

    def prompt_ids(self, problem: Problem) -> list[int]: ...

    def text_ids(self, prompt_text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def sample(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        stop_at_step: bool = False,
    ) -> list[list[Generation]]: ...

    def start(self, prompt: Sequence[int]) -> SearchState: ...

    def start_batch(self, prompts: Sequence[Sequence[int]]) -> SearchState: ...

    def split_steps(self, token_ids: Sequence[int]) -> list[list[int]]: ...


class OwnerMeter:
    """The costs a search state keeps per owner (prompt index), and their totals: every search
    state (in-process or over a server) counts the same way, so budgets audit both alike."""

    flops_by: dict[int, float]
    generated_by: dict[int, int]
    step_rows_by: dict[int, list[int]]

    def _init_meter(self, owners: Sequence[int]) -> None:
        self.flops_by = dict.fromkeys(owners, 0.0)
        self.generated_by = dict.fromkeys(owners, 0)
        self.step_rows_by = {o: [] for o in owners}

    @property
    def flops(self) -> float:
        return sum(self.flops_by.values())

    @property
    def generated(self) -> int:
        return sum(self.generated_by.values())

    @property
    def step_rows(self) -> list[int]:
        """Rows (all owners) that produced tokens at each step() call."""
        steps = max((len(v) for v in self.step_rows_by.values()), default=0)
        return [sum(v[i] for v in self.step_rows_by.values() if i < len(v)) for i in range(steps)]


class SearchState(OwnerMeter):
    """Partial solutions sharing one KV cache, with metered forward passes.

    Each row has an owner (the index of the prompt it grew from, so several problems can be
    searched in one batch); costs are kept per owner. flops count every real token fed to the
    model (each prompt once, each generated token, rollouts and pruned branches included);
    `generated` counts sampled tokens; `step_rows` the rows that produced tokens at each step.
    """

    def __init__(
        self, backend: TransformersBackend, state: DecodeState, owners: Sequence[int]
    ) -> None:
        self.backend = backend
        self.state = state
        self.owners = list(owners)
        self._init_meter(sorted(set(self.owners)))
        # forks made from this state (lookahead rollouts): budget tests audit them too
        self.children: list[SearchState] = []

    @property
    def rows(self) -> int:
        return self.state.batch_size

    @property
    def device(self) -> torch.device:
        return self.state.device

    def select(self, indices: Sequence[int]) -> None:
        self.state.select(list(indices))
        self.owners = [self.owners[i] for i in indices]

    def fork(self, indices: Sequence[int]) -> SearchState:
        """Copies of some rows (for lookahead rollouts); this state is left untouched."""
        child = SearchState(
            self.backend, self.state.fork(list(indices)), [self.owners[i] for i in indices]
        )
        self.children.append(child)
        return child

    def step(
        self,
        *,
        temperature: float,
        top_p: float = 1.0,
        max_step_tokens: int = 256,
        generator: torch.Generator | None = None,
        rows: Sequence[int] | None = None,
    ) -> list[Generation]:
        """Sample one step (up to and including the step delimiter, or eos) for every row."""
        # rows finish a step at different lengths, leaving holes; squeeze them out when they
        # pile up, so attention does not run over them
        self.state.compact_holes()
        before = self.state.lengths()
        gens = self.state.decode(
            max_new_tokens=max_step_tokens,
            temperature=temperature,
            top_p=top_p,
            stop_token_ids=self.backend.step_stop_ids,
            eos_token_id=self.backend.eos_token_id,
            generator=generator,
            ingest_last=True,
            rows=rows,
        )
        shape = self.backend.shape
        counts = dict.fromkeys(set(self.owners), 0)
        for owner, past, g in zip(self.owners, before, gens, strict=True):
            if g.token_ids:
                # each sampled token is fed back (for the next step), computing its logits
                self.flops_by[owner] += forward_flops(shape, len(g.token_ids), past)
                self.generated_by[owner] += len(g.token_ids)
                counts[owner] += 1
        for owner, c in counts.items():
            self.step_rows_by[owner].append(c)
        return gens


class TransformersBackend:
    """A causal LM and its tokenizer loaded from a local directory."""

    def __init__(self, config: BackendConfig, model: Any, tokenizer: Any) -> None:
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = Path(config.model_dir).name or str(config.model_dir)
        self.n_params = int(sum(p.numel() for p in model.parameters()))
        self.shape = shape_from_config(model.config)
        self.step_delimiter = config.step_delimiter
        self.eos_token_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else (self.eos_token_id or 0))
        self.step_stop_ids = self._delimiter_ids(config.step_delimiter)
        self.device = torch.device(config.device)
        self.dtype = config.dtype
        self._decode_cache: dict[tuple[int, ...], str] = {}

    @classmethod
    def load(cls, model_dir: str | Path, **kwargs: Any) -> TransformersBackend:
        """Load from a local directory (safetensors); kwargs are BackendConfig fields."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = BackendConfig(model_dir=str(model_dir), **kwargs)
        path = Path(config.model_dir)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path}: no config.json (expected a Hugging Face model dir)")
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        model = (
            AutoModelForCausalLM.from_pretrained(
                path,
                dtype=_DTYPES[config.dtype],
                trust_remote_code=config.trust_remote_code,
                use_safetensors=True,
            )
            .to(config.device)
            .eval()
        )
        return cls(config, model, tok)

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    # ------------------------------------------------------------------------------------------
    def _delimiter_ids(self, delimiter: str) -> list[int]:
        """Token ids whose text contains the delimiter: drawing one ends a step."""
        vocab = self.tokenizer.get_vocab()
        special = set(self.tokenizer.all_special_ids)
        ids = []
        for i in sorted(set(vocab.values())):
            if i in special:
                continue
            text = self.tokenizer.decode([i])
            if delimiter in text:
                ids.append(i)
        if not ids:
            raise ValueError(
                f"no token of the vocabulary contains the step delimiter {delimiter!r}"
            )
        return ids

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def prompt_ids(self, problem: Problem) -> list[int]:
        return self.text_ids(problem.prompt)

    def text_ids(self, prompt_text: str) -> list[int]:
        """Token ids of a prompt text after the prompt template (few-shot or chat)."""
        tpl = self.config.template
        return self.encode(
            tpl.render(prompt_text, self.tokenizer),
            add_special_tokens=tpl.add_special_tokens and not tpl.chat,
        )

    def decode(self, ids: Sequence[int]) -> str:
        # Special tokens stay in the text (a model may sample <unk> or a tag mid-step): the text
        # then encodes back to the very ids that were generated, so a verifier scores, and a
        # reader of the rows counts, what the policy produced. The eos that ends an answer is
        # not part of it (`split_steps`).
        # Search decodes every path's steps again each round (to build verifier candidates);
        # steps repeat across rounds and rows, and a tokenizer call is slow next to a tiny model.
        key = tuple(int(t) for t in ids)
        text = self._decode_cache.get(key)
        if text is None:
            if len(self._decode_cache) >= _DECODE_CACHE_MAX:
                self._decode_cache.clear()
            text = self._decode_cache[key] = self.tokenizer.decode(
                list(key), skip_special_tokens=False
            )
        return text

    def split_steps(self, token_ids: Sequence[int]) -> list[list[int]]:
        """Token groups, each ending with a delimiter token (the last may not); eos dropped."""
        stops = set(self.step_stop_ids)
        groups: list[list[int]] = [[]]
        for t in token_ids:
            if t == self.eos_token_id:
                break
            groups[-1].append(int(t))
            if t in stops:
                groups.append([])
        return [g for g in groups if g]

    # ------------------------------------------------------------------------------------------
    def sample(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        stop_at_step: bool = False,
    ) -> list[list[Generation]]:
        """n independent samples per prompt, batched across prompts up to `batch_size` rows.

        Each prompt is encoded once per batch it appears in, and a prompt with n > batch_size
        is prefilled once and its KV rows copied, so prefill work is one per prompt.
        """
        if n < 1:
            raise ValueError("n must be >= 1")
        bs = self.config.batch_size
        stop = self.step_stop_ids if stop_at_step else ()
        out: list[list[Generation]] = [[] for _ in prompts]
        kw = dict(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop_token_ids=stop,
            eos_token_id=self.eos_token_id,
        )
        if n >= bs:
            for pi, p in enumerate(prompts):
                base = DecodeState.prefill(self.model, [list(p)], pad_token_id=self.pad_token_id)
                for ci, start in enumerate(range(0, n, bs)):
                    rows = min(bs, n - start)
                    st = base.fork([0] * rows)
                    gen = make_generator(_mix(seed, pi, ci), st.device)
                    out[pi].extend(st.decode(generator=gen, ingest_last=False, compact=True, **kw))
            return out
        per = max(1, bs // n)
        for ci, start in enumerate(range(0, len(prompts), per)):
            chunk = list(range(start, min(len(prompts), start + per)))
            flat = [list(prompts[i]) for i in chunk for _ in range(n)]
            gens = sample_batch(
                self.model, flat, seed=_mix(seed, ci, 0), pad_token_id=self.pad_token_id, **kw
            )
            for j, i in enumerate(chunk):
                out[i] = gens[j * n : (j + 1) * n]
        return out

    def start(self, prompt: Sequence[int]) -> SearchState:
        """Encode the prompt once; the state has one row (select([0]*k) to branch)."""
        return self.start_batch([prompt])

    def start_batch(self, prompts: Sequence[Sequence[int]]) -> SearchState:
        """Encode several prompts once each; row i (owner i) holds prompt i."""
        st = SearchState(
            self,
            DecodeState.prefill(
                self.model, [list(p) for p in prompts], pad_token_id=self.pad_token_id
            ),
            range(len(prompts)),
        )
        for i, p in enumerate(prompts):
            st.flops_by[i] += forward_flops(self.shape, len(p), 0, logits=1)
        return st

    def metadata(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_params": self.n_params,
            "device": self.config.device,
            "dtype": self.config.dtype,
            "step_delimiter": self.step_delimiter,
        }


def _mix(seed: int, a: int, b: int) -> int:
    """A deterministic per-chunk seed (no Python hash randomisation)."""
    return (int(seed) * 1_000_003 + a * 7919 + b * 104_729) % (2**63 - 1)
