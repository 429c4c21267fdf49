"""Raw ranking scores -> probabilities that mean what they say, and when an action may be automatic.

Three pieces, each fitted on held-out review history (rows the booster never trained on):

* ``ScoreCalibrator``: Platt scaling on standardised scores with a capped slope, squeezed so
  that it is strictly increasing everywhere: two distinct raw scores never share a probability
  (a steep fit used to push hundreds of items to exactly 1.0, and a queue ordered by
  probability then lost its order). Probabilities stay within ``sigmoid(+-LOGIT_BOUND)``: a
  held-out set of a few hundred reviews cannot vouch for more confidence than that anyway.
* ``shift_prior``: a sweep's base rate is not its history's (SpamAssassin: 14% spam held out,
  50% in the sweep), and a policy without history of its own borrows a calibrator fitted on
  other policies' history, whose base rate must not come with it. The base rate is
  re-estimated on the sweep's own scores by EM (Saerens, Latinne & Decaestecker 2002,
  "Adjusting the outputs of a classifier to new a priori probabilities").
* ``shift_threshold``: an action threshold moved with the base rate: the same raw-score cut,
  kept only while its held-out precision bound, re-weighted to the new base rate, holds.
* ``choose_threshold``: the lowest probability at which a suggested action's precision on the
  held-out history is at least the target by a one-sided 95% Clopper-Pearson lower bound, not
  the point estimate (60 held-out hits in a row are needed before 0.95 can be claimed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

MAX_SLOPE = 4.0  # per standard deviation of held-out scores
MIN_SLOPE = 1e-3  # strictly increasing even when the fit finds no signal
LOGIT_BOUND = 9.0  # probabilities within (1.2e-4, 1 - 1.2e-4)
# The calibrator's own base rate counts as this many rows of evidence when the base rate is
# re-estimated, so that a sweep with a handful of a policy's candidates cannot swing it.
PRIOR_ROWS = 20
MIN_HELDOUT = 20  # held-out rows of a policy needed to fit its own calibrator ...
MIN_PER_CLASS = 5  # ... with at least this many violating and benign ones
# Held-out rows of each class a policy's own calibrator needs before a sweep re-estimates its
# base rate by EM (``shift_prior``, ``em_supported``); below it the calibrator's own level is
# kept. EM takes each class's score distribution among the held-out reviews for the sweep's;
# from a few dozen it did not transfer: a history's violations sit near the seeds drawn from
# them and its features are read against the history's items, not the inventory's. With 18
# held-out insults EM put insult's share at 0.03-0.06 where it was 0.175 (the calibrator
# alone: 0.164; an outsider's mixed inventory), and with about 15 (300 comments reviewed) at
# 0.11 for 0.27 on comments alone (benchmarks/coverage.py); with 96 and 218 it found 0.50 for
# 0.50 and 0.23 for 0.26 (benchmarks/calibration.py). A cliff, not a cure: reviewer BZ's weak-
# signal synthetic policy read 0.21 (ECE 0.29) kept at 48 violations and 0.53 (0.05) by EM at
# 50, for a true 0.50, and at 53 EM itself read 0.67.
MIN_EM_PER_CLASS = 50
CONFIDENCE = 0.95
MAX_CUTS = 200  # held-out cuts kept per threshold (evenly spaced; the chosen one always)
# A young policy's level (``fit_offset``): a Normal(0, this) prior, in log-odds, on how far its
# held-out reviews move the pooled calibrator. On the replay (benchmarks/young_calibration.py)
# 1.0 beat 0.5 and 2.0 on both sets.
YOUNG_PRIOR_SD = 1.0
# No automatic action below it, whatever a slice's held-out precision: an item the model
# itself calls more likely benign than not is a reviewer's. A day's threshold fell to P 0.279
# just after the first verdicts were imported; 1,823 ads were suggested for removal at 91.2%
# precision (369 with P < 0.5, 97 of them benign) against a 0.95 target (an outsider's week;
# above 0.5 the same day held 95.6%).
ACTION_FLOOR = 0.5
CALIBRATION_KINDS = ("policy_history", "policy_reviews", "transferred", "none")


def _squeeze(logit: np.ndarray) -> np.ndarray:
    # tanh keeps the map strictly increasing while bounding it; float64 still separates
    # logits far past the bound (derivative 8e-9 at ten times the bound).
    return LOGIT_BOUND * np.tanh(np.asarray(logit, float) / LOGIT_BOUND)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _unsqueeze(logit: float) -> float:
    return float(LOGIT_BOUND * np.arctanh(np.clip(logit / LOGIT_BOUND, -1 + 1e-15, 1 - 1e-15)))


@dataclass(frozen=True)
class ScoreCalibrator:
    """P(violating | raw score) = sigmoid(squeeze(slope * (score - center) / scale + intercept)).

    ``base_rate``: share of violations in the rows it was fitted on (the prior it carries).

    >>> cal = ScoreCalibrator.fit(np.array([0.1, 0.5, 2.0] * 20), np.array([0, 0, 1] * 20))
    >>> bool(cal.predict(np.array([2.0]))[0] > 0.9)
    True
    """

    center: float
    scale: float
    slope: float
    intercept: float
    base_rate: float
    n: int

    @classmethod
    def fit(cls, scores: np.ndarray, y: np.ndarray) -> ScoreCalibrator | None:
        """None when there are too few rows of either class to fit one."""
        from riskrank.index.cpu_math import logistic_fit

        scores, y = np.asarray(scores, float), np.asarray(y).astype(bool)
        if len(scores) < MIN_HELDOUT or min(y.sum(), (~y).sum()) < MIN_PER_CLASS:
            return None
        center, scale = float(np.median(scores)), float(np.std(scores))
        scale = scale if scale > 0 else 1.0
        z = ((scores - center) / scale).reshape(-1, 1)
        # C=1 on standardised scores: a mild prior against the extreme slopes that separable
        # held-out sets produce; the cap below is the hard guarantee.
        # scikit-learn's LogisticRegression(C=1) objective, summed the same on any thread count
        # (a BLAS dot over more than 10,000 held-out scores is split among threads).
        coef, intercept = logistic_fit(z, y, C=1.0, max_iter=100)
        slope = float(np.clip(coef[0], MIN_SLOPE, MAX_SLOPE))
        if slope != coef[0]:  # refit the intercept alone for the capped slope
            intercept = _refit_intercept(slope * z[:, 0], y)
        return cls(center, scale, slope, intercept, float(y.mean()), len(y))

    @classmethod
    def uninformed(cls, scores: np.ndarray) -> ScoreCalibrator:
        """Standardise and squeeze only (``calibration == "none"``): an order, not a probability."""
        scores = np.asarray(scores, float)
        scale = float(np.std(scores)) if len(scores) > 1 and np.std(scores) > 0 else 1.0
        center = float(np.median(scores)) if len(scores) else 0.0
        return cls(center, scale, 1.0, 0.0, 0.5, 0)

    def logit(self, scores: np.ndarray, shift: float = 0.0) -> np.ndarray:
        """Unsqueezed log-odds, plus ``shift`` (a change of prior)."""
        z = (np.asarray(scores, float) - self.center) / self.scale
        return self.slope * z + self.intercept + shift

    def predict(self, scores: np.ndarray, shift: float = 0.0) -> np.ndarray:
        return _sigmoid(_squeeze(self.logit(scores, shift)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ScoreCalibrator:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _refit_intercept(x: np.ndarray, y: np.ndarray) -> float:
    """Maximum-likelihood intercept for fixed log-odds ``x`` (1-D Newton steps)."""
    b = 0.0
    for _ in range(50):
        p = _sigmoid(x + b)
        step = (y.sum() - p.sum()) / max(float((p * (1 - p)).sum()), 1e-9)
        b += step
        if abs(step) < 1e-10:
            break
    return float(b)


def shift_prior(
    cal: ScoreCalibrator,
    scores: np.ndarray,
    *,
    known: np.ndarray | None = None,
    max_iter: int = 200,
    tol: float = 1e-7,
) -> tuple[float, float]:
    """(log-odds shift, estimated base rate) of the population ``scores`` came from.

    EM of Saerens et al. (2002): posteriors under the calibrator's prior are re-weighted to a
    candidate prior, whose new estimate is their mean, until it settles. Assumes the score
    distribution within each class transfers; the base rate is what it re-learns. The
    calibrator's base rate enters as ``PRIOR_ROWS`` extra rows (a Beta prior; MAP, not ML).

    ``known`` (per row, optional): 1 where the row's verdict is known violating, 0 known
    benign, NaN not known. A known row counts as its verdict, not its posterior (the items a
    review loop has decided are its queues' tops: left out, the violations left score below
    the held-out ones and EM reads them as benign; a reviewer's synthetic loop had 0.002 for a
    true 0.062, and all rows with the known verdicts 0.069).
    """
    scores = np.asarray(scores, float)
    if len(scores) == 0:
        return 0.0, cal.base_rate
    known = np.full(len(scores), np.nan) if known is None else np.asarray(known, float)
    decided = ~np.isnan(known)
    hits_known = float(known[decided].sum())
    # Sorted: the sums below then do not depend on the candidates' order (an export listing
    # its rows otherwise moved a probability in its last bit).
    free = np.sort(scores[~decided])
    train_prior = float(np.clip(cal.base_rate, 1e-4, 1 - 1e-4))
    base = cal.logit(free)
    prior = train_prior
    shift = 0.0
    for _ in range(max_iter):
        shift = _logit(prior) - _logit(train_prior)
        hits = _sigmoid(base + shift).sum() + hits_known + PRIOR_ROWS * train_prior
        new = float(np.clip(hits / (len(scores) + PRIOR_ROWS), 1e-4, 1 - 1e-4))
        if abs(new - prior) < tol:
            prior = new
            break
        prior = new
    return _logit(prior) - _logit(train_prior), prior


def em_supported(cal: ScoreCalibrator) -> bool:
    """Whether ``cal`` was fitted on at least ``MIN_EM_PER_CLASS`` held-out rows of each class
    (its ``n`` and ``base_rate``), as re-estimating its base rate by EM needs.

    >>> em_supported(ScoreCalibrator(0.0, 1.0, 1.0, 0.0, 0.25, 72))  # 18 violating
    False
    >>> em_supported(ScoreCalibrator(0.0, 1.0, 1.0, 0.0, 0.25, 400))
    True
    """
    violating = round(cal.n * cal.base_rate)
    return min(violating, cal.n - violating) >= MIN_EM_PER_CLASS


def fit_offset(
    cal: ScoreCalibrator, scores: np.ndarray, y: np.ndarray, *, prior_sd: float = YOUNG_PRIOR_SD
) -> ScoreCalibrator:
    """``cal`` with its intercept moved to fit ``(scores, y)``: the maximum a posteriori move
    under a Normal(0, ``prior_sd``) prior in log-odds. No rows: ``cal`` unmoved.

    For a policy whose reviews came from its own queues: they were chosen by score, which
    leaves P(violating | score) as it is in the population (what this fits) but not the
    score's distribution within each class (what ``shift_prior``'s EM assumes). The shape
    (slope) is ``cal``'s, learned where reviews are many; the prior keeps a few lopsided
    reviews (all violating, from the top of a queue) from moving it without bound.

    >>> cal = ScoreCalibrator(0.0, 1.0, 1.0, 0.0, 0.5, 100)
    >>> moved = fit_offset(cal, np.zeros(40), np.ones(40))
    >>> 0 < moved.intercept - cal.intercept < 9
    True
    """
    from scipy.optimize import minimize_scalar

    scores, y = np.asarray(scores, float), np.asarray(y, float)
    if len(scores) == 0:
        return cal
    base = cal.logit(scores)

    def cost(b: float) -> float:
        z = _squeeze(base + b)
        # -log-likelihood of Bernoulli(sigmoid(z)), stably: log(1 + e^z) - y z
        return float(np.logaddexp(0.0, z).sum() - (y * z).sum() + 0.5 * (b / prior_sd) ** 2)

    bound = 2 * LOGIT_BOUND
    b = float(minimize_scalar(cost, bounds=(-bound, bound), method="bounded").x)
    return ScoreCalibrator(
        cal.center, cal.scale, cal.slope, cal.intercept + b, float(y.mean()), len(y)
    )


def absent_prior(cal: ScoreCalibrator, n: int) -> tuple[float, float]:
    """(log-odds shift, base rate) of a policy taken as absent from a sweep of ``n``
    candidates: the rate of one violation among them, ``1 / (n + 1)``."""
    train_prior = float(np.clip(cal.base_rate, 1e-4, 1 - 1e-4))
    rate = float(np.clip(1.0 / (n + 1), 1e-4, 1 - 1e-4))
    return _logit(rate) - _logit(train_prior), rate


@dataclass(frozen=True)
class ActionThreshold:
    """Where automatic action starts for one policy, and what held-out history said about it.

    ``threshold`` None: the history cannot support ``precision_target``; every row escalates,
    and ``n_selected`` / ``precision`` / ``precision_lcb`` describe the best cut there was.
    ``cuts``: ``[probability, violating, rows]`` of held-out cuts from the top down to the
    threshold (at most ``MAX_CUTS``), so a sweep whose base rate fell can pick a higher one
    (``shift_threshold``); empty in models saved before it was kept.
    """

    precision_target: float
    threshold: float | None
    n_heldout: int
    n_violating: int
    n_selected: int = 0
    precision: float | None = None
    precision_lcb: float | None = None
    cuts: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ActionThreshold:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def precision_lower_bound(hits: np.ndarray, n: np.ndarray, confidence: float = CONFIDENCE):
    """One-sided Clopper-Pearson lower bound on a precision of ``hits`` out of ``n``."""
    from scipy.stats import beta

    hits, n = np.asarray(hits, float), np.asarray(n, float)
    lcb = beta.ppf(1.0 - confidence, hits, n - hits + 1)
    return np.where(hits > 0, np.nan_to_num(lcb, nan=0.0), 0.0)


def choose_threshold(proba: np.ndarray, y: np.ndarray, precision_target: float) -> ActionThreshold:
    """Lowest held-out probability whose top slice meets ``precision_target`` at 95% confidence.

    Candidate cut points are the distinct probabilities (a cut never splits tied items); the
    deepest one whose lower bound reaches the target wins.
    """
    if not 0 < precision_target <= 1:
        raise ValueError(f"precision_target={precision_target!r}: expected a value in (0, 1]")
    proba, y = np.asarray(proba, float), np.asarray(y).astype(bool)
    none = ActionThreshold(precision_target, None, len(y), int(y.sum()))
    if len(y) == 0 or not y.any():
        return none
    order = np.argsort(-proba, kind="stable")
    p, hits = proba[order], np.cumsum(y[order])
    n = np.arange(1, len(p) + 1)
    last_of_tie = np.append(p[1:] != p[:-1], True)
    lcb = precision_lower_bound(hits, n)
    ok = np.flatnonzero(last_of_tie & (lcb >= precision_target))
    # Without a threshold, the record keeps the best cut there was, to say how far off it is.
    i = ok[-1] if len(ok) else int(np.argmax(np.where(last_of_tie, lcb, -1.0)))
    ends = np.flatnonzero(last_of_tie[: i + 1]) if len(ok) else np.zeros(0, int)
    keep = np.linspace(0, len(ends) - 1, min(len(ends), MAX_CUTS)).round().astype(int)
    ends = ends[np.unique(keep)]
    return ActionThreshold(
        precision_target,
        float(p[i]) if len(ok) else None,
        len(y),
        int(y.sum()),
        int(n[i]),
        float(hits[i] / n[i]),
        float(lcb[i]),
        [[float(p[j]), int(hits[j]), int(n[j])] for j in ends],
    )


def shift_threshold(t: ActionThreshold, shift: float) -> float | None:
    """``t`` (chosen on a calibrator's held-out rows) for a population ``shift`` log-odds of base
    rate away from them; None: no automatic action there.

    Where the base rate rose, the raw-score cut stays where held-out history put it:
    ``predict(scores, shift) >=`` the returned value exactly where ``predict(scores) >=
    t.threshold``; precision there can only rise (the cut is not lowered: the held-out rows
    that could justify a deeper one are not kept). Where it fell, precision falls with it: a
    cut's precision odds scale with the base rate's odds, so each kept cut's held-out lower
    bound moves by ``shift`` in log-odds, and the deepest cut that still reaches the target
    is used; None when none does. Never below ``ACTION_FLOOR``.
    """
    if t.threshold is None:
        return None
    cut = t.threshold
    if shift < 0:
        cuts = np.array(t.cuts or [[t.threshold, t.precision * t.n_selected, t.n_selected]])
        lcb = np.clip(precision_lower_bound(cuts[:, 1], cuts[:, 2]), 1e-12, 1 - 1e-12)
        holds = np.flatnonzero(_sigmoid(np.log(lcb / (1 - lcb)) + shift) >= t.precision_target)
        if not len(holds):
            return None
        cut = float(cuts[holds[-1], 0])  # the deepest cut that still holds
    return max(float(_sigmoid(_squeeze(_unsqueeze(_logit(cut)) + shift))), ACTION_FLOOR)
