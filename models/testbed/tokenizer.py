"""Character-level tokenizer shared by every testbed model (policy, larger LM, PRM, reviser).

Built with `tokenizers` (a BPE model with no merges, so every character is one token) and wrapped
in `PreTrainedTokenizerFast`, so it is saved beside each model and loaded with
`AutoTokenizer.from_pretrained(dir)` like any hub tokenizer. Encoding prepends `<bos>`.
The PRM's step tag and its good/bad label tokens are single special tokens (Math-Shepherd style).
"""

from __future__ import annotations

import re
import string

from tokenizers import Tokenizer, decoders, models, processors
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
STEP_TAG = "<step>"
GOOD_TOKEN = "<good>"
BAD_TOKEN = "<bad>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, STEP_TAG, GOOD_TOKEN, BAD_TOKEN)
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")
# Newline plus printable ASCII (space .. ~): enough for questions, steps, answers, reviser prompts.
CHARACTERS = "\n" + "".join(chr(c) for c in range(32, 127))
assert set(string.digits + "+-*=>") <= set(CHARACTERS)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The testbed tokenizer; ids are fixed: specials 0..6 in SPECIAL_TOKENS order, then chars."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARACTERS:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK_TOKEN))
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    tok.decoder = decoders.Fuse()
    bos_id = vocab[BOS_TOKEN]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B", special_tokens=[(BOS_TOKEN, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        additional_special_tokens=[STEP_TAG, GOOD_TOKEN, BAD_TOKEN],
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    fast.model_max_length = 4096
    return fast


class CharCodec:
    """Fast pure-Python encode/decode with the same ids as `build_tokenizer()` (no specials added).

    Training and rollouts encode millions of characters; a dict lookup per character is far
    faster than a tokenizer call per string and gives the same ids (checked in the tests).
    """

    def __init__(self) -> None:
        self.ids = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
        for ch in CHARACTERS:
            self.ids[ch] = len(self.ids)
        self.tokens = {i: t for t, i in self.ids.items()}
        self.pad_id = self.ids[PAD_TOKEN]
        self.bos_id = self.ids[BOS_TOKEN]
        self.eos_id = self.ids[EOS_TOKEN]
        self.unk_id = self.ids[UNK_TOKEN]
        self.tag_id = self.ids[STEP_TAG]
        self.good_id = self.ids[GOOD_TOKEN]
        self.bad_id = self.ids[BAD_TOKEN]
        self.newline_id = self.ids["\n"]
        self.vocab_size = len(self.ids)

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; special-token strings in it (``<eos>``) become their ids, as the HF
        tokenizer does (the reviser's prompt separates earlier attempts with <eos>)."""
        unk = self.unk_id
        if "<" not in text:
            return [self.ids.get(ch, unk) for ch in text]
        out: list[int] = []
        for part in _SPECIAL_RE.split(text):
            if part in self.ids and len(part) > 1:
                out.append(self.ids[part])
            else:
                out += [self.ids.get(ch, unk) for ch in part]
        return out

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        out = []
        for i in ids:
            if i < len(SPECIAL_TOKENS) and skip_special:
                continue
            out.append(self.tokens.get(i, UNK_TOKEN))
        return "".join(out)
