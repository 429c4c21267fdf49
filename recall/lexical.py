"""A lexical probe: a linear model over hashed word and character n-grams of reviewed text.

Embeddings blur the exact wording that often gives abuse away (slurs, misspelt insults,
"100% guaranteed"); a bag-of-n-grams classifier trained on the review history catches it.
Hashing keeps it stateless (no vocabulary to store); the model is one coefficient vector
per policy, saved as ``.npy`` + JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from riskrank.index.content_digest import key_digest
from riskrank.recall.candidates import history_evidence_name

N_FEATURES = 2**19  # per analyzer; collisions cost little at this size (2 x 2 MB of float32)
FEATURE = history_evidence_name("lexical", "probe_score")
# The probe, and the reasons after it (rank/phrases.py), read a text's first READ_CHARS
# characters. Its n-grams took ~330 bytes of memory per byte of text: one 5.7 MB text (a
# landing page pasted into an ad) peaked a 200-item sweep at 2.3 GB. The encoder reads a
# text's first 256 tokens (~1,000 characters) in any case; no text of the shipped data sets
# comes near the limit (SpamAssassin <= 5,000 characters, Insults <= 17,325).
READ_CHARS = 100_000


def probe_text(text: str | None) -> str:
    """What the probe and the reasons read of ``text``: its first ``READ_CHARS`` characters."""
    return (text or "")[:READ_CHARS]


def lexical_features(texts: Sequence[str | None]) -> sp.csr_matrix:
    """Sublinear tf, L2-normalised, word 1-2 grams + char 2-5 grams, hashed, of each text's
    first ``READ_CHARS`` characters."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    texts = [probe_text(t) for t in texts]
    words = HashingVectorizer(
        n_features=N_FEATURES, ngram_range=(1, 2), alternate_sign=False, norm=None
    )
    chars = HashingVectorizer(
        n_features=N_FEATURES,
        analyzer="char_wb",
        ngram_range=(2, 5),
        alternate_sign=False,
        norm=None,
    )
    m = sp.hstack([words.transform(texts), chars.transform(texts)]).tocsr()
    m.data = 1.0 + np.log(m.data)
    return normalize(m)


# Characters vectorized at a time: the n-gram matrix of a whole policy's candidates was the
# peak of a sweep of real mails (150,000 ads: 2.0 of 3.7 GB, in recall). Each row is its own
# text's, so the scores are the same however the texts are cut.
BATCH_CHARS = 4_000_000


def _batches(texts: Sequence[str | None]) -> list[tuple[int, int]]:
    """(start, end) runs of ``texts`` holding about ``BATCH_CHARS`` characters as read."""
    out, start, held = [], 0, 0
    for i, t in enumerate(texts):
        held += min(len(t or ""), READ_CHARS)
        if held >= BATCH_CHARS:
            out.append((start, i + 1))
            start, held = i + 1, 0
    if start < len(texts):
        out.append((start, len(texts)))
    return out


def score_key(policy: str, text: str) -> str:
    """The key of ``text``'s probe score under ``policy`` in ``LexicalProbe.memo``."""
    return key_digest(policy, text)


def _logreg(C: float):
    from sklearn.linear_model import LogisticRegression

    # liblinear shuffles with numpy's global generator unless seeded: the coefficients then
    # moved by ~1e-5 with whatever else had drawn from it (a replay's arms changed each
    # other's results through it).
    return LogisticRegression(C=C, solver="liblinear", dual=True, max_iter=1000, random_state=0)


class LexicalProbe:
    """Per-policy n-gram logistic regression on reviewed items.

    >>> probe = LexicalProbe.fit(texts, policies, verdicts, item_ids)   # doctest: +SKIP
    >>> probe.evidence("insult", ids, texts, exclude_self=False)         # doctest: +SKIP
    """

    def __init__(self, coefs: dict[str, tuple[np.ndarray, float]], C: float = 4.0) -> None:
        self.coefs = coefs
        self.C = C
        self._oof: dict[str, dict[str, float]] = {}
        # Scores of texts met before, by ``score_key`` (a standing index's last sweep fills
        # it: rank/sweep_cache.py). A hit is the float32 score the n-grams would give again,
        # so the vectorizer, most of recall's time on long texts, only sees new texts.
        self.memo: dict[str, float] = {}

    @classmethod
    def fit(
        cls,
        texts: Sequence[str | None],
        policies: Sequence[str],
        verdicts: Sequence[int],
        item_ids: Sequence[str],
        *,
        positive: int = 2,
        C: float = 4.0,
        folds: int = 5,
    ) -> LexicalProbe:
        """Fit one probe per policy, plus out-of-fold scores for the reviewed items.

        liblinear's dual coordinate descent: with 2 x 2**19 hashed features and a few thousand
        texts, the dual has one variable per text and touches only non-zero features. The
        default lbfgs solver updated dense million-wide vectors every iteration and spent 237 of
        311 s in L-BFGS bookkeeping on Insults' 3,947 comments (benchmarks/lexical_fit.py);
        the same objective, out-of-fold AP 0.787 both ways.
        """
        from sklearn.model_selection import StratifiedKFold

        X = lexical_features(texts)
        pols = np.asarray(policies, dtype=object)
        y_all = np.asarray(verdicts) >= positive
        ids = np.asarray(item_ids, dtype=object)
        out = cls({}, C)
        for policy in sorted(set(pols)):
            rows = np.flatnonzero(pols == policy)
            y = y_all[rows]
            if y.sum() < folds or (~y).sum() < folds:
                continue
            full = _logreg(C).fit(X[rows], y)
            out.coefs[policy] = (full.coef_[0].astype(np.float32), float(full.intercept_[0]))
            oof = np.zeros(len(rows))
            for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(rows, y):
                m = _logreg(C).fit(X[rows[tr]], y[tr])
                oof[te] = m.decision_function(X[rows[te]])
            out._oof[policy] = dict(zip(ids[rows], oof))
        return out

    @property
    def policies(self) -> list[str]:
        return sorted(self.coefs)

    def evidence(
        self,
        policy: str,
        item_ids: Sequence[str],
        texts: Sequence[str | None],
        *,
        exclude_self: bool,
        scores: ProbeScores | None = None,
    ) -> dict[str, np.ndarray]:
        """``hist_lexical_probe_score`` per item (NaN when the policy has no probe or no text).

        ``exclude_self``: reviewed items get the score of the fold model that never saw them.
        ``scores``: the texts already scored by this call's recall (``ProbeScores``), under
        every policy it recalls: each distinct text is vectorized once, not once per policy
        and copy.
        """
        n = len(item_ids)
        score = np.full(n, np.nan, np.float32)
        if policy in self.coefs and n:
            coef, intercept = self.coefs[policy]
            # What the probe reads decides "no text": a text whose first READ_CHARS are blank
            # scored the intercept (a reviewer's note).
            todo = np.array([bool(probe_text(t).strip()) for t in texts])
            if self.memo:
                for i in np.flatnonzero(todo):
                    hit = self.memo.get(score_key(policy, texts[i]))
                    if hit is not None:
                        score[i], todo[i] = hit, False
            rows = np.flatnonzero(todo)
            shared = scores if scores is not None else ProbeScores(self, [policy])
            score[rows] = shared.of(policy, [texts[i] for i in rows])
            if exclude_self and policy in self._oof:
                oof = self._oof[policy]
                for i, item_id in enumerate(item_ids):
                    if item_id in oof:
                        score[i] = oof[item_id]
        return {FEATURE: score}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"C": self.C, "n_features": N_FEATURES, "policies": {}}
        for i, (policy, (coef, intercept)) in enumerate(sorted(self.coefs.items())):
            np.save(path / f"coef-{i}.npy", coef)
            meta["policies"][policy] = {"file": f"coef-{i}.npy", "intercept": intercept}
        (path / "lexical.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> LexicalProbe:
        path = Path(path)
        meta = json.loads((path / "lexical.json").read_text())
        if meta["n_features"] != N_FEATURES:
            raise ValueError(
                f"{path}: lexical probe hashed to {meta['n_features']} features, "
                f"this version uses {N_FEATURES}; retrain the model"
            )
        coefs = {
            p: (np.load(path / e["file"], allow_pickle=False), float(e["intercept"]))
            for p, e in meta["policies"].items()
        }
        return cls(coefs, meta["C"])


class ProbeScores:
    """The probe's scores of the texts one recall vectorized, under each of ``policies``.

    The n-grams of a text (most of recall's time on long texts) do not depend on the policy,
    and an inventory holds exact copies: each distinct text is vectorized once, when a policy
    first needs it, and scored for every policy then (a sparse dot product per policy, the
    same arithmetic as one policy's, so the same values). Held per distinct text: a digest
    and one float per policy."""

    def __init__(self, probe: LexicalProbe, policies: Sequence[str]) -> None:
        scored = [p for p in dict.fromkeys(policies) if p in probe.coefs]
        self.coefs = [probe.coefs[p] for p in scored]
        self.column = {p: j for j, p in enumerate(scored)}
        self.by_text: dict[str, np.ndarray] = {}

    def of(self, policy: str, texts: Sequence[str | None]) -> np.ndarray:
        """``policy``'s score of each of ``texts`` (float64, as the dot product gives it)."""
        keys = [_text_key(t) for t in texts]
        new = {k: t for k, t in zip(keys, texts) if k not in self.by_text}
        order = list(new)
        for a, b in _batches([new[k] for k in order]):
            X = lexical_features([new[k] for k in order[a:b]])
            per_policy = np.column_stack([X @ coef + intercept for coef, intercept in self.coefs])
            self.by_text.update(zip(order[a:b], per_policy))
        j = self.column[policy]
        return np.array([self.by_text[k][j] for k in keys], np.float64)


def _text_key(text: str | None) -> str:
    """What the probe reads of ``text``, as a digest (``key_digest``, as ``score_key``)."""
    return key_digest(probe_text(text))
