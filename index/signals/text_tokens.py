"""Token ids for ``encode_padded`` straight from the ``tokenizers`` library.

``SentenceTransformer.preprocess`` calls transformers' tokenizer wrapper, which turns every
encoding into Python lists (one per field) and the lists into tensors. On a GPU machine that
wrapper, not the model, was the text encoder's ceiling: 3,051 texts/s tokenised on 16 cores
against 31,948 texts/s for the model alone (benchmarks/results/gpu.md). On this 2-core CPU, one
thread, the Rust tokenizer took 690 us per SpamAssassin mail and the wrapper about 300 us more,
single-threaded. ``FastTokenizer`` asks the same Rust tokenizer (the model's own, with the
model's truncation) for the ids and lays them into NumPy arrays itself (~12 us per text).

It is used only where it gives ``preprocess``'s features exactly: ``for_model`` checks the
model's first module is a plain text ``Transformer`` without prompts, and then compares its
output with ``preprocess`` on ``PROBES`` (blank edges, accents, CJK, emoji, controls, long
texts); anything else falls back to ``preprocess``. tests/index/test_text_encoder.py compares
the two on real mails and insults.

``cut``: tokenising reads a whole text before truncating it to ``max_seq_length`` tokens, so
a long text is cut first, at the last whitespace before ``max_seq_length * CHARS_PER_TOKEN``
characters. Where the tokenizer splits words at whitespace before anything else
(``CUTTABLE``) and normalises character by character, the cut text's tokens are the first
tokens of the whole text's; if the cut text still fills ``max_seq_length`` the truncated ids
are the same, and if it does not, the whole text is tokenised again. No other tokenizer is cut.
"""

from __future__ import annotations

import numpy as np

# Cut at 8 characters a token: of 1,024 SpamAssassin mails, a cut at 4 a token left 209 short of
# max_seq_length that the whole mail fills, a cut at 8 none. A cut that falls short is
# tokenised whole again (correct, only slower).
CHARS_PER_TOKEN = 8
# Pre-tokenizers that split at whitespace first, so a cut at whitespace keeps the words before it.
CUTTABLE = ("BertPreTokenizer", "Whitespace", "WhitespaceSplit")
PROBES = (
    "win a free iPhone",
    "  leading and trailing blanks \n\t ",
    "",
    "Crème brûlée, naïve café: ÀÉÎÕÜ",
    "中文广告 テスト 한국어",
    "emoji 🎉🔥 and symbols ©®™ ½",
    "control\x00chars\x07 and\u200b zero width",
    "URGENT!!! $$$ http://example.com/?a=1&b=2 <b>bold</b>",
    "word " * 400,
    "longwordwithoutspaces" * 40,
    ("Dear friend, " + "you have won a prize of $1,000,000. " * 80).strip(),
)


class FastTokenizer:
    """``preprocess(texts)``'s input_ids, token_type_ids and attention_mask from the Rust
    tokenizer (see the module docstring). Build it with ``for_model``."""

    def __init__(self, st, *, cut: bool = True) -> None:
        from tokenizers import Tokenizer

        wrapper = st.tokenizer
        self.max_length = int(st.max_seq_length)
        # A copy: the wrapper sets truncation and padding on its own before each call.
        self.tokenizer = Tokenizer.from_str(wrapper.backend_tokenizer.to_str())
        self.tokenizer.enable_truncation(self.max_length, strategy="longest_first")
        self.tokenizer.no_padding()
        self.pad_id = int(wrapper.pad_token_id or 0)
        self.constants: dict = {}  # non-tensor features preprocess adds (e.g. modality)
        self.fields = ("input_ids", "token_type_ids", "attention_mask")
        pre = type(self.tokenizer.pre_tokenizer).__name__
        self.cut = cut and pre in CUTTABLE
        self.max_chars = self.max_length * CHARS_PER_TOKEN

    @classmethod
    def for_model(cls, st, *, cut: bool = True) -> FastTokenizer | None:
        """A ``FastTokenizer`` for ``st`` if it reproduces ``st.preprocess`` on ``PROBES``
        exactly, else None (use ``preprocess``)."""
        first = st[0] if len(st) else None
        kind = type(first)  # sentence-transformers' text Transformer module (its path moves)
        if kind.__name__ != "Transformer" or not kind.__module__.startswith("sentence_trans"):
            return None
        if getattr(first, "do_lower_case", False):
            return None
        if getattr(st, "default_prompt_name", None) or any(
            (getattr(st, "prompts", {}) or {}).values()
        ):
            return None
        if not getattr(st.tokenizer, "is_fast", False):
            return None
        try:
            fast = cls(st, cut=cut)
            preprocess = getattr(st, "preprocess", None) or st.tokenize
            want = preprocess(list(PROBES))
            fast.constants = {k: v for k, v in want.items() if not hasattr(v, "shape")}
            fast.fields = tuple(k for k in fast.fields if k in want)
            got = fast(list(PROBES))
        except Exception:  # noqa: BLE001 - any surprise: the wrapper stays the tokenizer
            return None
        return fast if same_features(got, want) else None

    def _encode(self, texts: list[str]):
        return self.tokenizer.encode_batch_fast([t.strip() for t in texts])

    def __call__(self, texts: list[str]) -> dict:
        import torch

        if self.cut:
            short = [self._cut(t) for t in texts]
            encodings = self._encode(short)
            again = [
                i
                for i, (t, s, e) in enumerate(zip(texts, short, encodings))
                if s is not t and len(e.ids) < self.max_length
            ]
            if again:  # the cut text did not fill max_length: the whole text decides
                for i, e in zip(again, self._encode([texts[i] for i in again])):
                    encodings[i] = e
        else:
            encodings = self._encode(texts)
        n = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
        width = int(n.max()) if len(n) else 0
        ids = np.full((len(encodings), width), self.pad_id, np.int64)
        types = np.zeros((len(encodings), width), np.int64)
        for row, e in enumerate(encodings):
            ids[row, : n[row]] = e.ids
            types[row, : n[row]] = e.type_ids
        mask = (np.arange(width)[None, :] < n[:, None]).astype(np.int64)
        out = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
        return {**{k: torch.from_numpy(out[k]) for k in self.fields}, **self.constants}

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        at = max(text.rfind(c, 0, self.max_chars) for c in " \n\t\r")
        return text[:at] if at > 0 else text


def same_features(got: dict, want: dict) -> bool:
    """The same keys, and the same values (tensors: same shape and every element)."""
    if set(got) != set(want):
        return False
    for name, w in want.items():
        g = got[name]
        if hasattr(w, "shape"):
            if tuple(g.shape) != tuple(w.shape) or not bool((g == w).all()):
                return False
        elif g != w:
            return False
    return True
