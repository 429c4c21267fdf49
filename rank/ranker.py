"""RiskRanker: LightGBM lambdarank over recall evidence, calibrated and explained.

Shaped like a scikit-learn estimator: ``__init__`` stores parameters, ``fit`` learns from
reviewed candidates, ``predict``/``predict_proba``/``explain`` use what was learned, ``save``/
``load`` use LightGBM's text model + JSON (no pickle).

Up to three boosters are learned: one on all evidence (``full``); a *cold-start* one on the
seed evidence that transfers between policies (``is_policy_relative``: z-scores, ranks,
self-trained probes; not raw similarities), used for policies that have no review history of
their own; and a ``transfer`` one on that seed evidence plus the history evidence, used for a
policy with fewer than ``min_policy_reviews`` reviews of its own and fewer than the other
policies have, whose raw similarities would otherwise be read through cuts learned mostly on
other policies' rows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow as pa

from riskrank.index.tables import SchemaError, TableLike, as_table, check_columns
from riskrank.rank.calibration import (
    ActionThreshold,
    ScoreCalibrator,
    absent_prior,
    choose_threshold,
    em_supported,
    fit_offset,
    shift_prior,
    shift_threshold,
)
from riskrank.rank.coverage import WARN_SHARE, fit_coverage, unlike_reviews
from riskrank.recall.candidates import (
    CANDIDATE_KEY_SCHEMA,
    describe_feature,
    evidence_feature_columns,
    is_history_feature,
    is_policy_relative,
    monotone_direction,
)
from riskrank.recall.history import HISTORY_SCHEMA, POSITIVE_VERDICT, UNNAMED_SWEEP

MIN_COVERED = 50  # rows like a policy's reviews needed to estimate its base rate on them
MODEL_FILES = {
    "full": "booster_full.txt",
    "cold": "booster_cold.txt",
    "transfer": "booster_transfer.txt",
}
# Variants learned for policies with reviews of their own: calibrated per policy.
OWN_HISTORY = ("full", "transfer")
# Below this many reviewed rows of its own (and outnumbered by other policies' rows) a policy is
# scored by the ``transfer`` booster. Measured on the replay (a new policy reviewed 100 items a
# round next to another policy's history; RESULTS.md): on the same unreviewed Insults items the
# transfer booster ranked above the full one at all 8 retrained rounds (0.689 vs 0.588 AP after
# the first 100 reviews, 0.214 vs 0.197 after 800), and the loop needed fewer reviews to 80%
# (Insults 854 vs 880, SpamAssassin 1,141 vs 1,163; trial 0). The 2,000: above the replay's
# largest young history (~1,300), below the smallest warm one (3,250). A policy alone keeps the
# full booster: there the two were level (a one-off check on quality.py's warm sets, trials 0-1,
# raw seed columns dropped: Insults 0.838/0.836 full vs 0.835/0.836, SpamAssassin 0.998 both).
MIN_POLICY_REVIEWS = 2000
MAX_GROUP_ROWS = 10_000
# What fit needs: candidates that carry their review verdict.
TRAINING_SCHEMA = pa.schema(
    [
        CANDIDATE_KEY_SCHEMA.field("item_id"),
        CANDIDATE_KEY_SCHEMA.field("policy"),
        HISTORY_SCHEMA.field("verdict"),
    ]
)
FORMAT = "riskrank.RiskRanker/2"  # /2: per-policy calibration and action thresholds
POOLED = "*"  # calibrator fitted on every policy's held-out rows


@dataclass(frozen=True)
class Calibrated:
    """Per row: ``proba`` P(violating); ``calibration`` how it was obtained (``policy_history``:
    on this policy's held-out reviews; ``policy_reviews``: a young policy, the pooled
    calibrator moved to its held-out reviews; ``transferred``: another calibrator with the base
    rate re-estimated on these rows; ``none``: an order only); ``action_threshold`` the
    probability from which the policy's suggested action is automatic (NaN: never).
    ``base_rates``: each policy's base rate on these rows (re-estimated by EM; the mean
    probability for ``policy_reviews`` and a kept level; with known verdicts, that of the rows
    still to decide: ``RiskRanker.calibrate``)."""

    proba: np.ndarray
    calibration: np.ndarray
    action_threshold: np.ndarray
    base_rates: dict[str, float]


def _mean(values: np.ndarray) -> float:
    """Mean of ``values`` summed in sorted order: the same float whatever the rows' order."""
    return float(np.sort(values).sum() / len(values)) if len(values) else float("nan")


def _groups(
    keys: list[tuple], max_group: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row order and group sizes: one group per key, split to stay under ``max_group`` rows."""
    by_key: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    order, sizes = [], []
    for key in sorted(by_key):
        rows = np.array(by_key[key])
        rng.shuffle(rows)
        for part in np.array_split(rows, int(np.ceil(len(rows) / max_group))):
            order.extend(part.tolist())
            sizes.append(len(part))
    return np.array(order, dtype=np.int64), np.array(sizes, dtype=np.int64)


@dataclass
class ScoredCandidates:
    """What ranking says of each candidate row, in row order (``RiskRanker.score``).

    ``calibration``, ``action_threshold``, ``base_rates``: see ``RiskRanker.calibrate``; before
    calibration (``score(..., calibrate=False)``, a slice of a sweep's candidates) ``proba``
    and ``action_threshold`` are NaN and ``calibration`` is ``"none"``.
    """

    scores: np.ndarray  # raw ranking score (higher = riskier; comparable within one variant)
    proba: np.ndarray  # P(violating)
    reasons: list[str]  # the evidence that pushed the score up, in words
    variant: np.ndarray  # "full", or "cold" for a policy without review history
    calibration: np.ndarray
    action_threshold: np.ndarray
    base_rates: dict[str, float]
    # Per row, its contribution to its score per feature of ``RiskRanker.features_``
    # (``RiskRanker.contributions``): kept so the reasons step need not run LightGBM's
    # ``pred_contrib`` over the queue again (the costliest call of ranking).
    contributions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def uncalibrated(
        cls,
        scores: np.ndarray,
        reasons: list[str],
        variant: np.ndarray,
        contributions: np.ndarray | None = None,
    ) -> ScoredCandidates:
        n = len(scores)
        nan = np.full(n, np.nan)
        none = np.full(n, "none", dtype=object)
        return cls(scores, nan, reasons, variant, none, nan, {}, contributions)

    @classmethod
    def concat(cls, parts: list[ScoredCandidates]) -> ScoredCandidates:
        """Consecutive slices of one candidate table, uncalibrated, as one (calibrate it
        afterwards, over all rows: ``RiskRanker.calibrate_scored``)."""
        if not parts:
            return cls.uncalibrated(np.zeros(0), [], np.zeros(0, dtype=object))
        contrib = [p.contributions for p in parts]
        return cls.uncalibrated(
            np.concatenate([p.scores for p in parts]),
            [r for p in parts for r in p.reasons],
            np.concatenate([p.variant for p in parts]),
            None if any(c is None for c in contrib) else np.concatenate(contrib),
        )


def seed_matched(
    candidates: pa.Table,
    described: Collection[str] = (),
    levels: Mapping[str, float] | None = None,
) -> np.ndarray | None:
    """Per row: whether some seed of its policy is as close to it as items of the seeds' kind
    come: ``<signal>_best_sim`` at the signal's ``levels`` (``presence_levels``: each signal's
    ``presence_threshold``), or where no level is given, at its weak match threshold (any
    ``<signal>_n_seeds_lo`` above 0; recall/recaller.py), what a reason calls a match. None
    where a table has no such column (not known). Rows of the ``described`` policies (those
    with a ``description`` seed) count as matched: a policy in words lies farther from its
    items than an example does (an insult description: cosine 0.455 at most to 600 Insults
    comments, a quarter of them insults), so closeness says nothing there."""
    cols = candidates.column_names
    if levels:  # the model's signals: metadata kept as meta_text_n_seeds_lo is not evidence
        names = [f"{s}_n_seeds_lo" for s in levels if f"{s}_n_seeds_lo" in cols]
    else:
        names = [c for c in cols if c.endswith("_n_seeds_lo") and not is_history_feature(c)]
    if not names:
        return None
    out = np.zeros(candidates.num_rows, bool)
    if described:
        out |= np.isin(np.asarray(candidates.column("policy").to_pylist(), object), list(described))
    levels = levels or {}
    for name in names:
        signal = name[: -len("_n_seeds_lo")]
        best = f"{signal}_best_sim"
        if signal in levels and best in cols:
            values = candidates.column(best).to_numpy(zero_copy_only=False)
            out |= np.nan_to_num(np.asarray(values, float), nan=-np.inf) >= levels[signal]
            continue
        values = candidates.column(name).to_numpy(zero_copy_only=False)
        out |= np.nan_to_num(np.asarray(values, float), nan=0.0) > 0
    return out


def presence_levels(signals) -> dict[str, float]:
    """By signal name, the similarity ``seed_matched`` asks of some candidate of a cold policy
    before the policy is taken as present (``Signal.presence_threshold``)."""
    return {s.name: s.presence_level() for s in signals}


def _reason(feature: str, value: float, monotone: bool = True) -> str:
    """One feature that raised a row's score, in words. A feature whose higher values lower
    the risk raised it by being low: said so ("similarity to the closest item reviewers found
    benign = 0.254" read as a reason the risk rose because it resembles a benign item: an
    outsider's week of sweeps). A negative value of one whose higher values raise it (a
    log-odds, a z-score, a margin) raised it by being less negative than the model's usual:
    said too ("log-odds of a linear classifier trained on the reviewed items (text) = -1.23"
    read as the classifier leaning benign, in 563 rows of an outsider's queue). That holds
    where the boosters are ``monotone`` in each feature's direction (the default)."""
    said = f"{describe_feature(feature)} = {value:.3g}"
    direction = monotone_direction(feature)
    if direction < 0:
        return f"{said} (low)"
    if direction > 0 and value < 0 and monotone:
        return f"{said} (negative, yet higher than usual)"
    return said


class RiskRanker:
    """Learning-to-rank risk model.

    Groups are sweep x policy, cut at random into lists of ``max_group_size`` rows (LightGBM
    allows at most 10,000 per group) and ranked over their whole length
    (``truncation_level``): a sweep's queue is worked deep, not only its top 100, and
    lambdarank truncated at 100 measured 0.975 AP on SpamAssassin against 0.992 untruncated
    (benchmarks/RESULTS.md). Random sub-lists keep the cost linear in the history size.
    Small trees, many of them, slowly: the evidence is a handful of strong, nearly monotone
    scores, and deeper trees overfit the history (Insults: 0.773 AP with 15 leaves, 0.790
    with 4).

    Decisions (``rank/calibration.py``): ``calibration_fraction`` of the history is held out;
    on it each policy gets its own calibrator and the probability from which its suggested
    action is automatic: precision >= ``precision_target`` (per policy:
    ``policy_precision_targets``) by a 95% lower confidence bound. A policy whose held-out
    history cannot show that, or that has no history (cold start), always escalates.

    >>> ranker = RiskRanker().fit(train_candidates)          # doctest: +SKIP
    >>> ranker.predict_proba(sweep_candidates)[:3]           # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        n_estimators: int = 500,
        learning_rate: float = 0.03,
        num_leaves: int = 4,
        min_child_samples: int = 50,
        label_gain: tuple[float, ...] = (0, 1, 3, 7),
        max_group_size: int = 512,
        calibration_fraction: float = 0.2,
        metadata_features: tuple[str, ...] = (),
        cold_start: bool = True,
        objective: str = "lambdarank",
        monotone: bool = True,
        truncation_level: int = 512,
        random_state: int = 0,
        n_jobs: int = 2,
        precision_target: float = 0.95,
        policy_precision_targets: dict[str, float] | None = None,
        min_policy_reviews: int = MIN_POLICY_REVIEWS,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.label_gain = label_gain
        self.max_group_size = max_group_size
        self.calibration_fraction = calibration_fraction
        self.metadata_features = metadata_features
        self.cold_start = cold_start
        self.objective = objective
        self.monotone = monotone
        self.truncation_level = truncation_level
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.precision_target = precision_target
        self.policy_precision_targets = policy_precision_targets
        self.min_policy_reviews = min_policy_reviews

    def _check_params(self) -> None:
        """scikit-learn style: ``__init__`` stores, ``fit`` validates (naming the argument)."""
        checks = [
            ("n_estimators", self.n_estimators >= 1, "an integer >= 1"),
            ("learning_rate", 0 < self.learning_rate <= 1, "in (0, 1]"),
            ("num_leaves", self.num_leaves >= 2, "an integer >= 2"),
            ("min_child_samples", self.min_child_samples >= 1, "an integer >= 1"),
            ("label_gain", len(self.label_gain) >= 4, "4 gains, one per verdict 0-3"),
            # LightGBM refuses query groups over 10,000 rows.
            (
                "max_group_size",
                2 <= self.max_group_size <= MAX_GROUP_ROWS,
                f"between 2 and {MAX_GROUP_ROWS:,} (LightGBM's limit per group)",
            ),
            ("calibration_fraction", 0 < self.calibration_fraction < 1, "in (0, 1)"),
            (
                "objective",
                self.objective in ("lambdarank", "rank_xendcg"),
                "'lambdarank' or 'rank_xendcg'",
            ),
            ("truncation_level", self.truncation_level >= 1, "an integer >= 1"),
            ("n_jobs", self.n_jobs == -1 or self.n_jobs >= 1, "-1 (all cores) or >= 1"),
            ("precision_target", 0 < self.precision_target <= 1, "in (0, 1]"),
            ("min_policy_reviews", self.min_policy_reviews >= 0, "an integer >= 0 (0: never)"),
            (
                "policy_precision_targets",
                all(0 < v <= 1 for v in (self.policy_precision_targets or {}).values()),
                "a dict {policy: target in (0, 1]}",
            ),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(
                    f"RiskRanker: {name}={getattr(self, name)!r} is invalid; expected {expected}"
                )

    # -- fitting --------------------------------------------------------------------------
    def _params(self, n_rows: int, features: list[str]) -> dict:
        return {
            "objective": self.objective,
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            # Small histories (a new policy's first reviews) would get no split at all.
            "min_child_samples": min(self.min_child_samples, max(5, n_rows // 20)),
            "label_gain": list(self.label_gain),
            "lambdarank_truncation_level": self.truncation_level,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "random_state": self.random_state,
            "monotone_constraints": [
                monotone_direction(f) if self.monotone else 0 for f in features
            ],
            "monotone_constraints_method": "advanced",
            "verbose": -1,
            # Deliberate: on small shared machines OpenMP's spin-waiting over every core
            # slows fits several-fold; the caller chooses (-1 = all cores).
            "n_jobs": self.n_jobs,
        }

    def _matrix(self, table: pa.Table, features: list[str]) -> np.ndarray:
        missing = [f for f in features if f not in table.column_names]
        if missing:
            raise SchemaError(
                f"candidates: missing feature columns {missing}; the model was trained on "
                f"{features} (was recall run with the same signals and history?)"
            )
        cols = []
        for f in features:
            arr = table.column(f).to_numpy(zero_copy_only=False)
            cols.append(np.asarray(arr, dtype=np.float64))
        X = np.column_stack(cols) if cols else np.zeros((table.num_rows, 0))
        X[~np.isfinite(X)] = np.nan  # LightGBM's missing value; inf has no meaning here
        return X

    def fit(self, candidates: TableLike, history: TableLike | None = None) -> RiskRanker:
        """Learn from reviewed candidates.

        ``candidates`` must carry ``verdict`` (0-3), or ``history`` (item_id, policy, verdict,
        optional sweep_id) is joined onto it. Rows without a verdict are an error: every
        training row must be a reviewed one.
        """
        self._check_params()
        table = as_table(candidates, what="training candidates")
        if history is not None:
            table = _attach_verdicts(table, as_table(history, what="history"))
        check_columns(table, TRAINING_SCHEMA, what="training candidates")
        y = np.asarray(table.column("verdict").to_numpy(zero_copy_only=False), dtype=np.float64)
        if np.isnan(y).any():
            raise SchemaError(f"training candidates: {int(np.isnan(y).sum())} rows have no verdict")
        y = y.astype(int)
        if (y >= POSITIVE_VERDICT).sum() == 0 or (y < POSITIVE_VERDICT).sum() == 0:
            raise SchemaError(
                "training candidates: need both violating (verdict>=2) and benign rows"
            )
        evidence = evidence_feature_columns(table)
        self.features_ = evidence + [f for f in self.metadata_features if f not in evidence]
        self.cold_features_ = _cold_features(self.features_)
        self.transfer_features_ = _transfer_features(self.features_, self.cold_features_)
        sweeps = (
            table.column("sweep_id").to_pylist()
            if "sweep_id" in table.column_names
            else ["history"] * table.num_rows
        )
        policies = np.asarray(table.column("policy").to_pylist(), dtype=object)
        self.policy_reviews_ = {str(p): int((policies == p).sum()) for p in sorted(set(policies))}
        keys = list(zip(sweeps, policies.tolist()))

        rng = np.random.default_rng(self.random_state)
        calib = rng.random(table.num_rows) < self.calibration_fraction
        held = np.flatnonzero(calib)
        self._fit_variants(table, y, keys, calib, rng)
        held_table = table.take(pa.array(held))
        self.thresholds_ = self._fit_thresholds(
            {n: self._predict_variant(held_table, n) for n in OWN_HISTORY if n in self.models_},
            y[held] >= POSITIVE_VERDICT,
            policies[held],
            sorted(self.policy_reviews_),
        )
        self.n_train_ = int((~calib).sum())
        self.n_calibration_ = int(calib.sum())
        # How alike the reviews are (rank/coverage.py): a sweep says where it is not.
        self.coverage_ = fit_coverage(table, policies)
        return self

    def _fit_variants(
        self,
        table: pa.Table,
        y: np.ndarray,
        keys: list[tuple],
        calib: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """One booster per variant on the rows not held out, and its calibrators on those held
        out. ``transfer`` comes last so the others' random draws do not depend on it."""
        self.models_, self.calibration_ = {}, {}
        variants = {"full": self.features_}
        if self.cold_start and self.cold_features_ != self.features_:
            variants["cold"] = self.cold_features_
        young = [p for p in self.policy_reviews_ if self._is_young(p)]
        hist = any(is_history_feature(f) for f in self.features_)
        if young and hist and self.transfer_features_ != self.features_:
            variants["transfer"] = self.transfer_features_
        held = np.flatnonzero(calib)
        held_policies = np.asarray(table.column("policy").to_pylist(), dtype=object)[held]
        self.young_calibration_ = {}
        for name, feats in variants.items():
            X = self._matrix(table, feats)
            tr = np.flatnonzero(~calib)
            X_fit, y_fit, k_fit = X[tr], y[tr], [keys[i] for i in tr]
            if name == "cold":  # (none where one signal holds all seed evidence)
                extra = _one_signal_copies(table, feats, X, y, keys, tr, self.random_state)
                X_fit = np.vstack([X_fit, extra[0]])
                y_fit = np.concatenate([y_fit, extra[1]])
                k_fit = k_fit + extra[2]
            order, sizes = _groups(k_fit, self.max_group_size, rng)
            model = lgb.LGBMRanker(**self._params(len(order), feats))
            model.fit(X_fit[order], y_fit[order], group=sizes)
            self.models_[name] = model.booster_
            held_scores = model.booster_.predict(X[held])
            self.calibration_[name] = _fit_calibrators(
                held_scores,
                y[held] >= POSITIVE_VERDICT,
                held_policies if name in OWN_HISTORY else None,
            )
            if name == "transfer":
                # A young policy's reviews came from its own queues, chosen by score: its own
                # calibrator (fitted on them) and EM's re-estimated base rate both assume its
                # held-out rows are a sample of the population. On the replay's first ten
                # rounds EM put the estimate at 0.01-3.7x the true share of violations (mean
                # |log ratio| 1.4-2.6); this, 0.48-2.5x (0.20-0.32; young_calibration.md).
                # Its level needs both classes among its reviews: a team that imported only
                # its confirmed takedowns (390 insults, no benign review) had every item
                # moved to P 0.93 where none violated (an outsider's check); unmoved then.
                # Its held-out fifth alone may hold one class (all violating, early on):
                # requiring both there too kept SpamAssassin's level at 0.31-0.53x the true
                # share, and 5 of each among all its reviews cost most of what moving gains
                # (young_calibration.md).
                pooled = self.calibration_[name][POOLED]
                every_policy = np.asarray(table.column("policy").to_pylist(), dtype=object)
                # Only where at least half of its reviews came from queues (a named sweep; `review
                # import` writes the queue's): a training history given without sweeps is
                # read as a sample, as for any policy. An analyst's insult history of 700
                # random reviews turned young when 71 spam verdicts made spam's 771, and
                # its items at P >= 0.5 went from 167 to 344, precision 0.84 to 0.72.
                queued = _share_from_queues(keys)
                for p in young if pooled is not None else []:  # (None: too few held out)
                    if queued.get(p, 0.0) < 0.5:
                        continue
                    rows = held_policies == p
                    hit = y[held][rows] >= POSITIVE_VERDICT
                    ever = y[every_policy == p] >= POSITIVE_VERDICT
                    both = ever.any() and not ever.all()
                    self.young_calibration_[p] = (
                        fit_offset(pooled, held_scores[rows], hit) if both else pooled
                    )

    def _own_calibrator(self, variant: str, policy: str):
        """The calibrator fitted for ``policy`` under ``variant`` (None: none): a young
        policy's moved pooled one (``fit_offset``), else its own held-out reviews'."""
        if variant == "transfer" and policy in self.young_calibration_:
            return self.young_calibration_[policy]
        return self.calibration_[variant].get(policy) if variant in OWN_HISTORY else None

    def keeps_level(self, variant: str, policy: str) -> bool:
        """Whether ``calibrate`` keeps ``policy``'s own calibrator's level under ``variant``
        (too few held-out reviews for EM: ``em_supported``) rather than re-estimating it."""
        young = variant == "transfer" and policy in self.young_calibration_
        own = self._own_calibrator(variant, policy)
        return own is not None and not young and not em_supported(own)

    def _target(self, policy: str) -> float:
        return (self.policy_precision_targets or {}).get(policy, self.precision_target)

    def _fit_thresholds(
        self,
        scores: dict[str, np.ndarray],
        y: np.ndarray,
        policies: np.ndarray,
        all_policies: list[str],
    ) -> dict[str, ActionThreshold]:
        """Per policy, on its held-out rows scored by the variant that scores it
        (``scores[variant]``) and that variant's calibrator for it."""
        out = {}
        for policy in all_policies:
            rows = policies == policy
            variant = self._history_variant(policy)
            cal = self._own_calibrator(variant, policy)
            # A young policy's held-out reviews came from the tops of its queues: the
            # precision of a cut among them is not the sweep's above that cut. Acting on it,
            # 390 confirmed insults (no benign review) set a cut at 0.936 and the next queue
            # suggested removing 693 items, none of them insults (an outsider's check).
            # (No calibrator: too little held-out history to calibrate.)
            if cal is None or policy in self.young_calibration_:
                out[policy] = ActionThreshold(
                    self._target(policy), None, int(rows.sum()), int(y[rows].sum())
                )
                continue
            out[policy] = choose_threshold(
                cal.predict(scores[variant][rows]), y[rows], self._target(policy)
            )
        return out

    def _history_variant(self, policy: str) -> str:
        """The booster for a policy with history evidence: ``transfer`` while it is young
        (``_is_young``; and one was learned), else ``full``."""
        return "transfer" if "transfer" in self.models_ and self._is_young(policy) else "full"

    def _is_young(self, policy: str) -> bool:
        """Fewer than ``min_policy_reviews`` reviews of its own, outnumbered by other policies'
        reviews: the full booster's cuts on raw similarities were learned mostly on other
        policies' rows. (A model of one policy alone learns them from that policy: on Insults'
        3,947 reviews, 0.838 AP full vs 0.835 transfer.)"""
        counts = getattr(self, "policy_reviews_", {})
        own = counts.get(policy, 0)
        return own < self.min_policy_reviews and own < sum(counts.values()) - own

    def _features_of(self, variant: str) -> list[str]:
        return {"full": self.features_, "cold": self.cold_features_}.get(
            variant, getattr(self, "transfer_features_", [])
        )

    def _predict_variant(self, table: pa.Table, variant: str) -> np.ndarray:
        return self.models_[variant].predict(self._matrix(table, self._features_of(variant)))

    # -- inference ------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise RuntimeError("RiskRanker is not fitted: call fit() or RiskRanker.load()")

    def variants(self, candidates: TableLike) -> np.ndarray:
        """Per row, the booster that scores it: where the row's policy has history evidence
        among ``candidates``, ``"full"`` (or ``"transfer"`` while the policy has fewer than
        ``min_policy_reviews`` reviews), else ``"cold"``. Decided per policy over the whole
        table: score slices of a table with ``score(slice, variant=variants(table)[slice])``."""
        self._check_fitted()
        table = as_table(candidates, what="candidates")
        hist = [f for f in self.features_ if is_history_feature(f)]
        if not hist:
            return np.full(table.num_rows, "full", dtype=object)
        no_history = "cold" if "cold" in self.models_ else "full"
        if not all(f in table.column_names for f in hist):
            return np.full(table.num_rows, no_history, dtype=object)
        X = self._matrix(table, hist)
        pols = np.asarray(table.column("policy").to_pylist(), dtype=object)
        out = np.full(table.num_rows, "full", dtype=object)
        for p in set(pols):
            rows = pols == p
            out[rows] = no_history if np.isnan(X[rows]).all() else self._history_variant(p)
        return out

    def _variant_of(self, table: pa.Table, variant: np.ndarray | None) -> np.ndarray:
        if variant is None:
            return self.variants(table)
        variant = np.asarray(variant, dtype=object)
        if len(variant) != table.num_rows or not set(variant) <= set(self.models_):
            raise ValueError(
                f"variant: expected {table.num_rows} values of {sorted(self.models_)}, "
                f"got {len(variant)} of {sorted(set(variant))}"
            )
        return variant

    def score(
        self,
        candidates: TableLike,
        *,
        variant: np.ndarray | None = None,
        calibrate: bool = True,
        top: int = 3,
        matched: np.ndarray | None = None,
    ) -> ScoredCandidates:
        """Raw score, reasons, model variant and calibration (probability, how it was
        calibrated, action threshold) of every row: what the queue is built from.

        Calibration estimates each policy's base rate on its rows, so it needs all of a
        sweep's candidates. To score a sweep in slices (an engine's tasks), pass each slice
        its rows of ``variants(all candidates)`` and ``calibrate=False``, join the slices with
        ``ScoredCandidates.concat`` and calibrate once with ``calibrate_scored``.

        >>> scored = ranker.score(candidates)        # doctest: +SKIP
        >>> scored.proba[:3], scored.reasons[0]      # doctest: +SKIP
        """
        self._check_fitted()
        table = as_table(candidates, what="candidates")
        variant = self._variant_of(table, variant)
        raw = self._raw(table, variant) if table.num_rows else np.zeros(0)
        contrib = np.zeros((table.num_rows, len(self.features_)))
        reasons = self._reasons(table, variant, top, contrib) if table.num_rows else []
        scored = ScoredCandidates.uncalibrated(raw, reasons, variant, contrib)
        if not calibrate:
            return scored
        policies = table.column("policy").to_pylist() if table.num_rows else []
        return self.calibrate_scored(scored, policies, covered=self.covered(table), matched=matched)

    def covered(self, candidates: pa.Table) -> np.ndarray:
        """Per row: False where the item is unlike every review of its policy
        (rank/coverage.py), else True (also where that is not known)."""
        unlike = unlike_reviews(candidates, getattr(self, "coverage_", {})).to_pylist()
        return np.array([u is not True for u in unlike], bool)

    def calibrate_scored(
        self,
        scored: ScoredCandidates,
        policies,
        *,
        covered: np.ndarray | None = None,
        matched: np.ndarray | None = None,
        known: np.ndarray | None = None,
    ) -> ScoredCandidates:
        """``scored`` (all of a sweep's candidates, with their ``policies``) calibrated;
        ``covered``, ``matched``, ``known``: see ``calibrate``."""
        cal = self.calibrate(
            scored.scores,
            scored.variant,
            policies,
            covered=covered,
            matched=matched,
            known=known,
        )
        return dataclasses.replace(
            scored,
            proba=cal.proba,
            calibration=cal.calibration,
            action_threshold=cal.action_threshold,
            base_rates=cal.base_rates,
        )

    def _raw(self, table: pa.Table, variant: np.ndarray) -> np.ndarray:
        scores = np.zeros(table.num_rows)
        for name in set(variant):
            rows = variant == name
            scores[rows] = self._predict_variant(table.filter(pa.array(rows)), name)
        return scores

    def calibrate(
        self,
        scores: np.ndarray,
        variant: np.ndarray,
        policies,
        *,
        covered=None,
        matched=None,
        known=None,
    ) -> Calibrated:
        """Raw scores (``predict``) of one sweep's candidates -> ``Calibrated``.

        A young policy (scored by the ``transfer`` booster) uses the pooled calibrator moved
        to its own held-out reviews (``policy_reviews``, ``fit_offset``), as it is: its reviews
        came from its queues, chosen by score, so no base rate is re-estimated. Otherwise a
        policy with a calibrator of its own uses it (``policy_history``), and one without
        (cold start, or too little held-out history) the variant's pooled calibrator
        (``transferred``); for these the base rate is re-estimated on this policy's rows, so
        pass all of a policy's candidates at once (an own calibrator only where its
        held-out rows hold ``MIN_EM_PER_CLASS`` of each class, ``em_supported``; below it, its
        level is kept and the base rate is the rows' mean probability); an action threshold
        keeps its held-out raw-score cut and is dropped where the new base rate leaves its
        precision bound below the target (``shift_threshold``).

        ``covered`` (per row; ``covered()``): where more than ``WARN_SHARE`` of a policy's
        rows are unlike its reviews (the share a sweep warns at), the base rate is estimated
        on the rows that are like them. Its EM assumes each class scores as it did in the
        reviews, which fails on items unlike all of them: with spam reviewed on mails only
        and insult on comments only, a mixed inventory's mails took insult's estimate to
        0.027 (true share 0.135), and no real insult reached P(insult) 0.5; estimated on its
        covered rows, 0.060, and 76 of 189 did (benchmarks/coverage.py; its calibrators, 13-19
        held-out violations each, now keep their level: 0.118, and 119 did). With fewer than
        ``MIN_COVERED`` such rows, all rows.

        ``known`` (per row): the verdict already known for the row's policy, 1 violating or
        0 benign (a sweep's reviewed, unchanged items, ``mark_reviewed``), NaN where none is.
        EM counts a known row as its verdict (``shift_prior``), and a policy with known rows
        reports the base rate of the others, the items still to decide: their mean
        probability. Without: EM's estimate (or the mean probability where none is made).

        A policy whose own calibrator keeps its level (``keeps_level``) never acts
        automatically: whether its held-out cut holds its precision in this sweep depends on
        the sweep's base rate, which it does not estimate (with a 0.8 target and 48 held-out
        violations, a sweep 2% violating had 541 removals at precision 0.72; reviewer BZ).

        ``matched`` (per row; ``seed_matched``, which needs the seeds: the sweep passes it, a
        caller without it gets EM alone): whether some seed of the row's policy is as close to
        it as items of the seeds' kind come (``Signal.presence_threshold``). A cold policy none
        of whose rows is matched is taken as absent from the sweep: its base rate is one
        violation among its rows (``absent_prior``). Its booster reads only relative evidence
        (ranks, z-scores), by which the best of an inventory with nothing like the seeds looks
        like the best of any: an insult policy swept over e-mails (nearest seed at cosine 0.32)
        had EM estimate 0.32, put ham mails at P 0.976 beside "No seed is close" and took a
        queue's top 100 from real spam (an outsider's report). The rows' order within the policy
        is unchanged.
        """
        self._check_fitted()
        scores = np.asarray(scores, float)
        variant = np.asarray(variant, dtype=object)
        pols = np.asarray(policies, dtype=object)
        covered = np.ones(len(scores), bool) if covered is None else np.asarray(covered, bool)
        proba = np.zeros(len(scores))
        kind = np.full(len(scores), "none", dtype=object)
        threshold = np.full(len(scores), np.nan)
        base_rates = {}
        known = np.full(len(scores), np.nan) if known is None else np.asarray(known, float)
        decided = ~np.isnan(known)
        for name, policy in sorted(set(zip(variant, pols))):
            rows = (variant == name) & (pols == policy)
            # The base rate of what is left to decide (BW's F2: with the queue's confirmed
            # tops among all rows, spam's read 0.46-0.53 where 0.21-0.33 of its unreviewed
            # candidates were spam, and 0.50 where none was).
            todo = rows & ~decided
            left = todo if todo.any() else rows  # (every row known: all of them)
            prior_rows = rows
            like = rows & covered
            # Only where the policy's candidates are materially unlike its reviews (as the
            # sweep warns): elsewhere the few unlike rows moved exploration's weights and cost
            # campaign mode 8 decisions on the SpamAssassin replay (405.2 against 397.0).
            if (rows & ~covered).sum() > WARN_SHARE * rows.sum() and like.sum() >= MIN_COVERED:
                prior_rows = like
            cals = self.calibration_.get(name, {})
            young = self.young_calibration_.get(policy) if name == "transfer" else None
            if young is not None:
                # No EM: P(violating | score) is what the policy's reviews (chosen by score)
                # tell, and a sweep's population does not move it (``fit_offset``).
                proba[rows] = young.predict(scores[rows])
                kind[rows] = "policy_reviews"
                base_rates[policy] = _mean(proba[left])
                continue  # and no automatic action (``_fit_thresholds``)
            own = cals.get(policy) if name in OWN_HISTORY else None
            if own is not None:
                # Its own history's base rate is not this sweep's either (measured on
                # SpamAssassin: ECE 0.062 kept, 0.027 re-estimated; benchmarks/calibration.py),
                # where its held-out reviews are enough to read each class's scores from
                # (``em_supported``). Otherwise P(violating | score) is taken as the reviews
                # show it, and the base rate is the mean probability of the rows left.
                kept = self.keeps_level(name, policy)
                shift, base_rates[policy] = (
                    (0.0, np.nan)
                    if kept
                    else shift_prior(own, scores[prior_rows], known=known[prior_rows])
                )
                proba[rows] = own.predict(scores[rows], shift)
                kind[rows] = "policy_history"
                if kept or decided[rows].any():
                    base_rates[policy] = _mean(proba[left])
                t = None if kept else self.thresholds_.get(policy)
                moved = None if t is None else shift_threshold(t, shift)
                threshold[rows] = np.nan if moved is None else moved
                continue
            pooled = cals.get(POOLED)
            if pooled is None:
                proba[rows] = ScoreCalibrator.uninformed(scores[rows]).predict(scores[rows])
                continue
            if name == "cold" and matched is not None and not np.asarray(matched)[rows].any():
                shift, base_rates[policy] = absent_prior(pooled, int(rows.sum()))
            else:
                shift, base_rates[policy] = shift_prior(
                    pooled, scores[prior_rows], known=known[prior_rows]
                )
            proba[rows] = pooled.predict(scores[rows], shift)
            kind[rows] = "transferred"
            if decided[rows].any():
                base_rates[policy] = _mean(proba[left])
        return Calibrated(proba, kind, threshold, base_rates)

    def predict(self, candidates: TableLike) -> np.ndarray:
        """Raw ranking scores (higher = riskier; comparable within one model variant)."""
        self._check_fitted()
        table = as_table(candidates, what="candidates")
        return self._raw(table, self.variants(table))

    def predict_proba(self, candidates: TableLike) -> np.ndarray:
        """P(violating): see ``calibrate`` (each policy's base rate is estimated on these
        rows)."""
        self._check_fitted()
        table = as_table(candidates, what="candidates")
        variant = self.variants(table)
        policies = table.column("policy").to_pylist()
        raw = self._raw(table, variant)
        return self.calibrate(raw, variant, policies, covered=self.covered(table)).proba

    def explain(
        self, candidates: TableLike, *, top: int = 3
    ) -> list[list[tuple[str, float, float]]]:
        """Per row, the ``top`` features that pushed the score up: (name, value, contribution)."""
        table = as_table(candidates, what="candidates")
        self._check_fitted()
        return self._explain(table, self.variants(table), top)

    def _explain(
        self, table: pa.Table, variant: np.ndarray, top: int, matrix: np.ndarray | None = None
    ) -> list:
        """Per row, its ``top`` (feature, value, contribution); ``matrix`` (rows x
        ``features_``), where given, is filled with every contribution (``contributions``)."""
        out: list = [None] * table.num_rows
        for rows, feats, X, contrib in self._contributions(table, variant):
            if matrix is not None:
                matrix[np.ix_(rows, self._columns(feats))] = contrib
            # One sort for all rows; the lists are then plain lookups.
            order = np.argsort(-contrib, axis=1, kind="stable")[:, :top]
            for r, x, c, best in zip(rows, X, contrib, order):
                # A missing value (NaN: no review of that kind, no image) is no reason a
                # reviewer can check, whatever LightGBM's missing branch contributes.
                out[r] = [
                    (feats[j], float(x[j]), float(c[j]))
                    for j in best
                    if c[j] > 0 and np.isfinite(x[j])
                ]
        return out

    def _contributions(self, table: pa.Table, variant: np.ndarray):
        """Per model variant present: its rows, features, feature matrix and LightGBM's
        per-feature contributions (``pred_contrib``, the bias column dropped)."""
        for name in sorted(set(variant)):
            rows = np.flatnonzero(variant == name)
            feats = self._features_of(name)
            X = self._matrix(table.take(pa.array(rows)), feats)
            yield rows, feats, X, self.models_[name].predict(X, pred_contrib=True)[:, :-1]

    def contributions(self, candidates: TableLike) -> np.ndarray:
        """Each row's contribution to its score per feature of ``features_`` (0 where the
        row's model variant does not use the feature): ``explain`` as one matrix."""
        self._check_fitted()
        table = as_table(candidates, what="candidates")
        out = np.zeros((table.num_rows, len(self.features_)))
        for rows, feats, _, contrib in self._contributions(table, self.variants(table)):
            out[np.ix_(rows, self._columns(feats))] = contrib
        return out

    def _columns(self, feats: list[str]) -> list[int]:
        """Where each of ``feats`` is in ``features_``."""
        column = {f: j for j, f in enumerate(self.features_)}
        return [column[f] for f in feats]

    def reasons(self, candidates: TableLike, *, top: int = 3) -> list[str]:
        """``explain`` in words, e.g. ``"similarity to the closest seed (text) = 0.91"``."""
        self._check_fitted()
        table = as_table(candidates, what="candidates")
        return self._reasons(table, self.variants(table), top)

    def _reasons(
        self, table: pa.Table, variant: np.ndarray, top: int, matrix: np.ndarray | None = None
    ) -> list[str]:
        return [
            "; ".join(_reason(f, v, self.monotone) for f, v, _ in row)
            for row in self._explain(table, variant, top, matrix)
        ]

    def features_used(self) -> set[str]:
        """The features some booster splits on: the others (evidence the history never
        varied, as benign-seed columns of a model trained without benign seeds) move no
        score."""
        self._check_fitted()
        used: set[str] = set()
        for name, booster in self.models_.items():
            splits = booster.feature_importance("split")
            used |= {f for f, n in zip(self._features_of(name), splits) if n > 0}
        return used

    def feature_importance(self) -> dict[str, float]:
        self._check_fitted()
        gain = self.models_["full"].feature_importance("gain")
        return dict(sorted(zip(self.features_, map(float, gain)), key=lambda kv: -kv[1]))

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, booster in self.models_.items():
            booster.save_model(str(path / MODEL_FILES[name]))
        meta = {
            "format": FORMAT,
            "params": {k: v for k, v in vars(self).items() if not k.endswith("_")},
            "features": self.features_,
            "cold_features": self.cold_features_,
            "transfer_features": self.transfer_features_,
            "policy_reviews": self.policy_reviews_,
            "calibration": {
                variant: {p: c.to_dict() for p, c in cals.items() if c is not None}
                for variant, cals in self.calibration_.items()
            },
            "young_calibration": {p: c.to_dict() for p, c in self.young_calibration_.items()},
            "action_thresholds": {p: t.to_dict() for p, t in self.thresholds_.items()},
            "n_train": self.n_train_,
            "n_calibration": self.n_calibration_,
            "history_coverage": self.coverage_,
        }
        (path / "ranker.json").write_text(json.dumps(meta, indent=2, default=list))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RiskRanker:
        path = Path(path)
        meta = json.loads((path / "ranker.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"{path}: ranker saved as {meta.get('format')!r}, without per-policy calibration "
                f"and action thresholds ({FORMAT}); its probabilities and actions cannot be "
                "trusted: retrain the model (`riskrank train` or rank.pipeline.train)"
            )
        params = meta["params"]
        params["label_gain"] = tuple(params["label_gain"])
        params["metadata_features"] = tuple(params["metadata_features"])
        self = cls(**params)
        self.features_ = meta["features"]
        self.cold_features_ = meta["cold_features"]
        # Models saved before the transfer booster existed score every policy with history by
        # the full one (``_history_variant``: no "transfer" model).
        self.transfer_features_ = meta.get("transfer_features", [])
        self.policy_reviews_ = meta.get("policy_reviews", {})
        self.calibration_ = {
            variant: {p: ScoreCalibrator.from_dict(c) for p, c in cals.items()}
            for variant, cals in meta["calibration"].items()
        }
        # Models saved before it calibrate a young policy as before: its own held-out
        # reviews' calibrator, or the pooled one, with EM.
        self.young_calibration_ = {
            p: ScoreCalibrator.from_dict(c) for p, c in meta.get("young_calibration", {}).items()
        }
        self.thresholds_ = {
            p: ActionThreshold.from_dict(t) for p, t in meta["action_thresholds"].items()
        }
        self.models_ = {
            name: lgb.Booster(model_file=str(path / MODEL_FILES[name]))
            for name in self.calibration_
        }
        self.n_train_, self.n_calibration_ = meta["n_train"], meta["n_calibration"]
        self.coverage_ = meta.get("history_coverage", {})  # (none before it was kept)
        return self


STRONG_MATCHES = "_n_seeds_hi"  # per signal: seeds matched above its strong threshold


def _one_signal_copies(
    table: pa.Table,
    feats: list[str],
    X: np.ndarray,
    y: np.ndarray,
    keys: list[tuple],
    rows: np.ndarray,
    random_state: int,
) -> tuple[np.ndarray, np.ndarray, list[tuple]]:
    """Training rows for the cold booster that show one signal's strong seed match alone.

    A history whose violations match their seeds under every signal at once (a scam's text and
    its picture) taught the booster to add the signals up: a byte-exact copy of a new policy's
    seed picture under a benign text ranked 352nd of 500 (an outsider's week; the picture's
    evidence +4.8 against the text's -5.8). A match under any one signal is what a seed bank
    acts on, so for each violating training row with a strong match (``<signal>_n_seeds_hi``
    >= 1) under one of two or more signals, one row more: that signal's evidence from it, the
    other signals' from a benign row of its group (sweep x policy; drawn with
    ``random_state``), with its verdict. Nothing is added where one signal holds all the seed
    evidence (a text-only model trains as before)."""
    signals = sorted(
        c[: -len(STRONG_MATCHES)] for c in table.column_names if c.endswith(STRONG_MATCHES)
    )
    columns: dict[str, list[int]] = {s: [] for s in signals}
    for j, f in enumerate(feats):  # the longest signal name it starts with ("text_v2" > "text")
        owner = max((s for s in signals if f.startswith(s + "_")), key=len, default=None)
        if owner is not None:
            columns[owner].append(j)
    signals = [s for s in signals if columns[s]]
    none = (np.zeros((0, X.shape[1])), np.zeros(0, y.dtype), [])
    if len(signals) < 2:
        return none
    rng = np.random.default_rng(random_state)
    positive = y[rows] >= POSITIVE_VERDICT
    benign_of: dict[tuple, list[int]] = {}
    for i in rows[~positive]:
        benign_of.setdefault(keys[i], []).append(int(i))
    out_X, out_y, out_k = [], [], []
    for s in signals:
        strong = np.nan_to_num(
            np.asarray(table.column(s + STRONG_MATCHES).to_numpy(zero_copy_only=False), float)
        )
        for i in rows[positive]:
            donors = benign_of.get(keys[i])
            if strong[i] < 1 or not donors:
                continue
            row = X[donors[int(rng.integers(len(donors)))]].copy()
            row[columns[s]] = X[i, columns[s]]
            out_X.append(row)
            out_y.append(y[i])
            out_k.append(keys[i])
    if not out_X:
        return none
    return np.vstack(out_X), np.asarray(out_y, y.dtype), out_k


def _cold_features(features: list[str]) -> list[str]:
    """What the cold-start booster sees: it runs on another policy's history, so only seed
    evidence whose direction is known (undirected signals, density and metadata, did not
    transfer between data sets) and whose scale does not depend on which policy's seeds
    measured it (``is_policy_relative``)."""
    seed_evidence = [f for f in features if not is_history_feature(f) and monotone_direction(f)]
    # A table without relative evidence (hand-made candidates; recall always adds it) keeps a
    # cold booster on what it has rather than none.
    return [f for f in seed_evidence if is_policy_relative(f)] or seed_evidence


def _transfer_features(features: list[str], cold_features: list[str]) -> list[str]:
    """What the transfer booster sees: the cold booster's seed evidence and the history
    evidence (a policy's own reviews), in table order."""
    keep = set(cold_features)
    return [f for f in features if f in keep or is_history_feature(f)]


def _share_from_queues(keys: list[tuple]) -> dict[str, float]:
    """Per policy, the share of its reviews (``(sweep_id, policy)`` keys) from a named sweep,
    not the labelled history's unnamed one (``UNNAMED_SWEEP``, or none)."""
    named: dict[str, list[int]] = {}
    for sweep, policy in keys:
        counts = named.setdefault(str(policy), [0, 0])
        counts[0] += sweep not in (None, "", UNNAMED_SWEEP)
        counts[1] += 1
    return {p: a / b for p, (a, b) in named.items()}


def _fit_calibrators(
    scores: np.ndarray, y: np.ndarray, policies: np.ndarray | None
) -> dict[str, ScoreCalibrator | None]:
    """The pooled calibrator (``POOLED``) and, given ``policies``, one per policy."""
    out = {POOLED: ScoreCalibrator.fit(scores, y)}
    for policy in sorted(set(policies)) if policies is not None else []:
        rows = policies == policy
        out[policy] = ScoreCalibrator.fit(scores[rows], y[rows])
    return out


def _attach_verdicts(table: pa.Table, history: pa.Table) -> pa.Table:
    key = {
        (i, p): (v, s)
        for i, p, v, s in zip(
            history.column("item_id").to_pylist(),
            history.column("policy").to_pylist(),
            history.column("verdict").to_pylist(),
            history.column("sweep_id").to_pylist()
            if "sweep_id" in history.column_names
            else ["history"] * history.num_rows,
        )
    }
    pairs = list(zip(table.column("item_id").to_pylist(), table.column("policy").to_pylist()))
    found = [key.get(p) for p in pairs]
    keep = pa.array([f is not None for f in found])
    out = table.filter(keep)
    found = [f for f in found if f is not None]
    for col in ("verdict", "sweep_id"):
        if col in out.column_names:
            out = out.drop([col])
    out = out.append_column("verdict", pa.array([f[0] for f in found], pa.int8()))
    return out.append_column("sweep_id", pa.array([f[1] for f in found], pa.string()))
