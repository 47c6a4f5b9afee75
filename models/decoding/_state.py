"""`DecodeState`: a batched KV cache that search strategies step through, and `Generation`.

Prefill a prompt once, copy its KV rows (`select`), sample one step for many prefixes (`decode`),
teacher-force extra tokens (`extend`), so the shared prefix is never re-encoded.

Rows may contain holes (positions with attention mask 0) where a row had finished its step while
others were still decoding; position ids are tracked per row, so a hole changes nothing in the
maths, only wastes a little compute (`compact_holes` squeezes them out).

Log-probs are always the model's log-softmax of the raw logits (before temperature or top-p),
in float32, so they can serve as a likelihood verifier's statistic.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

from models.decoding._runners import HFRunner, model_device, pick_runner


@dataclass
class Generation:
    """One sampled continuation.

    `finish` is "stop" (a stop token was drawn; it is the last of `token_ids`), "eos" (the
    end-of-sequence token was drawn; also included) or "length" (max_new_tokens reached).
    """

    token_ids: list[int]
    logprobs: list[float]
    finish: str


class DecodeState:
    """Batched KV cache plus, per row, the attention mask, next position and next-token logits."""

    def __init__(
        self,
        model: torch.nn.Module,
        cache,
        mask: torch.Tensor,
        next_pos: torch.Tensor,
        last_logits: torch.Tensor,
        pad_token_id: int = 0,
        runner=None,
    ) -> None:
        self.model = model
        self.runner = runner if runner is not None else HFRunner(model)
        self.cache = cache
        self.mask = mask  # [B, T] long, 1 = real token in the cache
        self.next_pos = next_pos  # [B] long, position id of the next token
        self.last_logits = last_logits  # [B, V] float32 logits for the next token
        self.pad_token_id = pad_token_id

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def device(self) -> torch.device:
        return self.mask.device

    def lengths(self) -> list[int]:
        """Real tokens (context length) of each row."""
        return self.mask.sum(dim=1).tolist()

    # ------------------------------------------------------------------------------------------
    @classmethod
    @torch.no_grad()
    def prefill(
        cls,
        model: torch.nn.Module,
        prompts: Sequence[Sequence[int]],
        *,
        pad_token_id: int = 0,
        lean: bool | None = None,
    ) -> DecodeState:
        """Encode left-padded prompts and keep the logits for each row's next token.

        lean: use the lean Llama-family decoder (`models.lean`; default: when the model is
        supported), False for the model's own forward.
        """
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("prefill needs at least one prompt, each with at least one token")
        device = model_device(model)
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(dim=1) - 1).clamp_min(0)
        runner = pick_runner(model, lean)
        cache = runner.new_cache(len(prompts))
        logits = runner.forward(cache, ids, pos, mask, keep_all=False)
        return cls(
            model, cache, mask, pos[:, -1] + 1, logits[:, -1, :].float(), pad_token_id, runner
        )

    def select(self, indices: Sequence[int] | torch.Tensor) -> DecodeState:
        """Keep (reorder, duplicate) rows in place: row i of the result is row indices[i]."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        self.cache.select(idx)
        self.mask = self.mask.index_select(0, idx)
        self.next_pos = self.next_pos.index_select(0, idx)
        self.last_logits = self.last_logits.index_select(0, idx)
        return self

    def compact_holes(self, min_waste: float = 0.25) -> bool:
        """Squeeze out hole columns (right-aligning each row's real tokens) when more than
        `min_waste` of the cache is holes; positions are per row, so nothing else changes."""
        width = self.mask.shape[1]
        n_real = self.mask.sum(dim=1)
        keep = int(n_real.max()) if width else 0
        if width == 0 or width - keep <= min_waste * width:
            return False
        cols = torch.arange(width, device=self.device)
        key = torch.where(self.mask.bool(), cols, -1)
        idx = key.sort(dim=1).values[:, width - keep :]  # holes (-1) sort first
        self.mask = (idx >= 0).long()
        self.cache.gather_columns(idx.clamp_min(0))
        return True

    def fork(self, indices: Sequence[int] | torch.Tensor) -> DecodeState:
        """A new state holding copies of the given rows; this state is left untouched."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        return DecodeState(
            self.model,
            self.cache.fork(idx),
            self.mask.index_select(0, idx),
            self.next_pos.index_select(0, idx),
            self.last_logits.index_select(0, idx),
            self.pad_token_id,
            self.runner,
        )

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _forward(
        self, ids: torch.Tensor, real: torch.Tensor, keep_all: bool = False
    ) -> torch.Tensor:
        """Feed ids [B, L] (real [B, L] marks real tokens; padding gets mask 0)."""
        real_l = real.long()
        pos = self.next_pos[:, None] + (real_l.cumsum(dim=1) - real_l)
        self.mask = torch.cat([self.mask, real_l], dim=1)
        logits = self.runner.forward(self.cache, ids, pos, self.mask, keep_all)
        self.next_pos = self.next_pos + real_l.sum(dim=1)
        return logits

    @torch.no_grad()
    def _forward1(self, tok: torch.Tensor, feed: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (rows with feed False get a hole); next-token logits [B, V]."""
        f = feed.long()
        self.mask = torch.cat([self.mask, f[:, None]], dim=1)
        logits = self.runner.forward(
            self.cache, tok[:, None], self.next_pos[:, None], self.mask, False
        )
        self.next_pos = self.next_pos + f
        return logits[:, -1, :].float()

    @torch.no_grad()
    def extend(self, tokens: Sequence[Sequence[int]]) -> list[list[float]]:
        """Teacher-force tokens[i] onto row i; returns the log-probs of those tokens.

        Rows with no tokens are left unchanged (they get a hole). Afterwards each row's next-token
        logits follow its last real token.
        """
        if len(tokens) != self.batch_size:
            raise ValueError(f"extend got {len(tokens)} rows for a batch of {self.batch_size}")
        width = max((len(t) for t in tokens), default=0)
        if width == 0:
            return [[] for _ in tokens]
        ids = torch.full((self.batch_size, width), self.pad_token_id, dtype=torch.long)
        real = torch.zeros((self.batch_size, width), dtype=torch.bool)
        for i, t in enumerate(tokens):
            if t:
                ids[i, : len(t)] = torch.as_tensor(list(t), dtype=torch.long)
                real[i, : len(t)] = True
        ids, real = ids.to(self.device), real.to(self.device)
        first_logits = self.last_logits
        logits = self._forward(ids, real, keep_all=True).float()
        # log-prob of token j comes from the logits before it: first_logits for j=0.
        prev = torch.cat([first_logits[:, None, :], logits[:, :-1, :]], dim=1)
        lp = torch.log_softmax(prev, dim=-1).gather(2, ids[:, :, None]).squeeze(2)
        n = real.sum(dim=1)
        has = n > 0
        last_idx = (n - 1).clamp_min(0)
        new_last = logits[torch.arange(self.batch_size, device=self.device), last_idx]
        self.last_logits = torch.where(has[:, None], new_last, self.last_logits)
        lp_list = lp.tolist()
        return [lp_list[i][: len(t)] for i, t in enumerate(tokens)]

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop_token_ids: Collection[int] = (),
        eos_token_id: int | None = None,
        generator: torch.Generator | None = None,
        ingest_last: bool = True,
        compact: bool = False,
        rows: Sequence[int] | None = None,
    ) -> list[Generation]:
        """Sample until every row drew a stop/eos token or max_new_tokens.

        ingest_last: feed the final sampled tokens too, so the state can be continued (search);
        compact: drop finished rows from the batch as they finish (the state cannot be continued
        afterwards; used for whole-solution sampling, where it saves the finished rows' compute).
        rows: only these rows decode (others get holes); default all rows.
        """
        if max_new_tokens < 0:
            raise ValueError("max_new_tokens must be >= 0")
        b = self.batch_size
        device = self.device
        out_tokens: list[list[int]] = [[] for _ in range(b)]
        out_lps: list[list[float]] = [[] for _ in range(b)]
        finish = ["length"] * b
        if max_new_tokens == 0 or b == 0:
            return [
                Generation(t, lp, f) for t, lp, f in zip(out_tokens, out_lps, finish, strict=True)
            ]
        vocab = self.last_logits.shape[-1]
        # per-token finish code: 1 stop, 2 eos (one table lookup per step instead of compares)
        code_tab = torch.zeros(max(vocab, 1), dtype=torch.long, device=device)
        stops = [int(t) for t in stop_token_ids if 0 <= int(t) < vocab]
        if stops:
            code_tab[torch.as_tensor(stops, dtype=torch.long, device=device)] = 1
        if eos_token_id is not None and 0 <= int(eos_token_id) < vocab:
            code_tab[int(eos_token_id)] = 2
        # Which original row each current batch row is (compaction removes rows).
        orig = torch.arange(b, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        if rows is not None:
            done[:] = True
            done[torch.as_tensor(list(rows), dtype=torch.long, device=device)] = False
        # per step: (rows, tokens, log-probs, code: -1 inactive, 0 going on, 1 stop, 2 eos);
        # read back to the host once at the end
        record: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        sync_every = 1 if device.type == "cpu" else 8
        for step in range(max_new_tokens):
            active = ~done
            tok, lp = _sample(self.last_logits, temperature, top_p, generator)
            code = torch.where(active, code_tab[tok], -1)
            record.append((orig, tok, lp, code))
            new_done = done | (code > 0)
            last_step = step == max_new_tokens - 1
            check = last_step or (step + 1) % sync_every == 0
            all_done = bool(new_done.all()) if check else False
            if (all_done or last_step) and not ingest_last:
                break
            # Without ingest_last, a row's final token is never fed (it would be wasted compute);
            # rows not fed get a hole (mask 0), whatever token they carry.
            feed = active if ingest_last else ~new_done
            new_logits = self._forward1(tok, feed)
            self.last_logits = torch.where(feed[:, None], new_logits, self.last_logits)
            done = new_done
            if all_done:
                break
            if compact and check:
                n_done = int(done.sum())
                if n_done and n_done * 4 >= done.numel():
                    keep = torch.nonzero(~done).squeeze(1)
                    self.select(keep)
                    orig = orig.index_select(0, keep)
                    done = done.index_select(0, keep)
        rows_l = torch.cat([r[0] for r in record]).tolist()
        toks = torch.cat([r[1] for r in record]).tolist()
        lps = torch.cat([r[2] for r in record]).tolist()
        codes = torch.cat([r[3] for r in record]).tolist()
        for i, t, lp, c in zip(rows_l, toks, lps, codes, strict=True):
            if c < 0:
                continue
            out_tokens[i].append(t)
            out_lps[i].append(lp)
            if c:
                finish[i] = "stop" if c == 1 else "eos"
        return [Generation(t, lp, f) for t, lp, f in zip(out_tokens, out_lps, finish, strict=True)]


def _sample(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens and their log-probs under the raw distribution (before temperature/top-p)."""
    if temperature <= 0:
        tok = logits.argmax(dim=-1)
    else:
        scaled = logits if temperature == 1.0 else logits / temperature
        if top_p < 1.0:
            sorted_l, sorted_i = scaled.sort(dim=-1, descending=True)
            probs = sorted_l.softmax(dim=-1)
            # drop a token when the mass before it already reaches top_p (keeps at least one)
            drop = (probs.cumsum(dim=-1) - probs) >= top_p
            sorted_l = sorted_l.masked_fill(drop, float("-inf"))
            scaled = torch.full_like(scaled, float("-inf")).scatter(1, sorted_i, sorted_l)
        probs = scaled.softmax(dim=-1)
        # exponential race: argmax p_i / E_i with E_i ~ Exp(1) samples i with probability p_i,
        # needs no host sync and is deterministic for a seeded generator.
        noise = torch.empty_like(probs).exponential_(generator=generator)
        tok = (probs / noise).argmax(dim=-1)
    lp = logits.gather(1, tok[:, None]).squeeze(1) - logits.logsumexp(dim=-1)
    return tok, lp
