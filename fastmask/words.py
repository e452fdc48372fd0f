"""Words for whole-word masking (docs/masking.md#whole-word-masking): the per-vocabulary table of
`word_start_table`, and the normalization of the three word sources into one per-token code that
every backend of mask_tokens consumes.

The per-token codes (uint8 [B, L]):

    CONTINUES = 0   the token continues the word of the token before it
    STARTS = 1      the token starts a new word
    NO_WORD = 2     the token belongs to no word and is never selected (word_ids < 0)

A token that continues a word whose previous token is not eligible (special, padding) starts a
new word anyway: the kernels apply that rule, since only they know eligibility.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["word_start_table", "SCHEMES"]

CONTINUES, STARTS, NO_WORD = 0, 1, 2

# scheme -> (marker, whether the marker starts a word (True) or continues one (False))
SCHEMES = {
    "wordpiece": ("##", False),  # BERT: "##ing" continues the word before it
    "sentencepiece": ("\u2581", True),  # T5, ALBERT, XLM-R, LLaMA: "\u2581the" starts a word
    "bytelevel": ("\u0120", True),  # GPT-2, RoBERTa: "\u0120the" (a byte-level space) starts a word
}


def word_start_table(tokenizer, scheme: Optional[str] = None) -> torch.Tensor:
    """bool [len(tokenizer)]: True where token id `i` starts a word, False where it continues the
    word of the token before it. Pass it to `mask_tokens(..., word_table=table)`.

    Args:
        tokenizer: a Hugging Face tokenizer (anything with `convert_ids_to_tokens` and `len`), or the
            vocabulary itself as a sequence of token strings in id order.
        scheme: "wordpiece" (a token continues a word when it starts with the tokenizer's
            continuing-subword prefix, "##" by default), "sentencepiece" (a token starts a word when
            it starts with "\u2581") or "bytelevel" (when it starts with "\u0120"). None: a fast tokenizer's
            WordPiece model says "wordpiece"; otherwise the marker that most tokens start with.

    Special and added tokens ([CLS], <s>, <extra_id_0>, ...) start a word (they are never
    selected themselves; the token after one always starts a word). Build the table once per
    tokenizer: it reads every token string.
    """
    tokens = _vocabulary(tokenizer)
    prefix = None
    if scheme is None:
        scheme, prefix = _detect(tokenizer, tokens)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: expected one of {', '.join(SCHEMES)} or None, got {scheme!r}")
    marker, marks_start = SCHEMES[scheme]
    if scheme == "wordpiece":
        marker = prefix or _wordpiece_prefix(tokenizer) or marker
    starts = [True if t is None else t.startswith(marker) == marks_start for t in tokens]
    for token_id in _added_ids(tokenizer):
        if 0 <= token_id < len(starts):
            starts[token_id] = True
    return torch.tensor(starts, dtype=torch.bool)


def _vocabulary(tokenizer) -> list:
    if isinstance(tokenizer, (list, tuple)):
        return list(tokenizer)
    if not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise ValueError(f"tokenizer: expected a tokenizer or a sequence of token strings, got {type(tokenizer).__name__}")
    return list(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))


def _wordpiece_prefix(tokenizer) -> Optional[str]:
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    if type(model).__name__ == "WordPiece":
        return model.continuing_subword_prefix
    return None


def _detect(tokenizer, tokens: Sequence) -> tuple[str, Optional[str]]:
    prefix = _wordpiece_prefix(tokenizer)
    if prefix:
        return "wordpiece", prefix
    counts = {name: sum(1 for t in tokens if t is not None and t.startswith(marker)) for name, (marker, _) in SCHEMES.items()}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        raise ValueError(
            "tokenizer: no token starts with '##', '\u2581' or '\u0120'; pass scheme= to say how its tokens mark words"
        )
    return best, None


def _added_ids(tokenizer) -> list[int]:
    ids = set(getattr(tokenizer, "all_special_ids", None) or ())
    ids.update(getattr(tokenizer, "added_tokens_decoder", None) or {})
    return sorted(int(i) for i in ids)


# --- normalization of the word sources (the reference and Triton backends of mask_tokens; the C++
# kernel reads the sources themselves) ------------------------------------------------------------


def _starts(changed: torch.Tensor, shape) -> torch.Tensor:
    """uint8 [B, L]: 1 at position 0 (a word always starts there), then `changed` ([B, L - 1])."""
    codes = torch.ones(shape, dtype=torch.uint8, device=changed.device)
    codes[:, 1:] = changed  # few ops: this runs on every call, beside a kernel of ~10 ns a token
    return codes


def codes_from_word_ids(word_ids: torch.Tensor) -> torch.Tensor:
    """A word is a run of equal ids (so ids that restart in the second sequence of a pair still
    split words); a negative id (special tokens, padding) is in no word."""
    codes = _starts(word_ids[:, 1:] != word_ids[:, :-1], word_ids.shape)
    return codes.masked_fill_(word_ids < 0, NO_WORD)


def codes_from_offsets(offset_mapping: torch.Tensor) -> torch.Tensor:
    """HF's rule: a token continues the word when its start equals the previous token's end."""
    return _starts(offset_mapping[:, 1:, 0] != offset_mapping[:, :-1, 1], offset_mapping.shape[:2])


def word_codes(ids: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """The codes of the mask_tokens op's `words` argument, which holds one source, told apart by its
    form: uint8 [B, L] codes as they are, int32/int64 [B, L] word ids, [B, L, 2] offsets, a 1-D
    table over the vocabulary."""
    if words.dim() == 1:
        return codes_from_table(ids, words)
    if words.dim() == 3:
        return codes_from_offsets(words)
    if words.dtype == torch.uint8:
        return words
    return codes_from_word_ids(words)


def codes_from_table(ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """table[id] != 0: the token starts a word. Ids outside the table are clamped here (never an
    out-of-bounds read) and reported by the id check against the vocabulary."""
    index = ids.clamp(0, table.shape[0] - 1)
    return (table[index] != 0).to(torch.uint8)
