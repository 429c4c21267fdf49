"""RiskModel: a trained ranker plus what a sweep needs, saved as a directory (no pickle).

The directory is saved as a whole and checksummed (rank/model_store.py): a load verifies
every file before reading any, and refuses a half-written or altered model naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from riskrank.index.signals.base import Signal
from riskrank.index.signals.registry import signal_from_manifest
from riskrank.index.store import IndexMismatchError
from riskrank.index.tables import write_parquet
from riskrank.rank.model_store import (
    MODEL_JSON,
    check_target,
    read_sealed,
    seal,
    staged_directory,
)
from riskrank.rank.ranker import RiskRanker
from riskrank.rank.reviewed import REVIEWED_TABLE
from riskrank.recall.history import ReviewedExemplars
from riskrank.recall.lexical import LexicalProbe

# Caches inside a model directory that are not part of the model (train's resumable index of
# the reviewed items): carried across saves, never loaded by ``RiskModel.load``.
CACHES = ("history_index",)

__all__ = ["MODEL_JSON", "RiskModel", "check_model_dir", "check_not_in_model"]


def check_model_dir(path: str | Path) -> None:
    """Refuse, before any work, a ``path`` that holds something other than a model."""
    check_target(path, CACHES)


def check_not_in_model(
    path: str | Path,
    what: str,
    because: str = "a model's own history index is not an inventory index",
) -> None:
    """Refuse ``path`` (a sweep's ``--index`` or ``--out``, an index update's) inside a model
    directory: a model's ``history_index`` is its own, sealed with it, and is not an inventory
    index; a sweep's outputs beside a model's files made it neither (an outsider's report)."""
    here = Path(path).resolve()
    for directory in (here, *here.parents):
        if (directory / MODEL_JSON).is_file():
            raise ValueError(
                f"{what} {path} is inside the model directory {directory}: {because}; name a "
                "directory of its own"
            )


@dataclass
class RiskModel:
    """A trained ranker plus what it needs at sweep time: the signals and the exemplars.

    ``reviewed``: the reviews with the content digest of what the reviewer saw
    (``rank/reviewed.py``); None for models trained before digests were kept. ``path``: the
    directory it was loaded from or last saved to (None for a model only in memory).
    """

    ranker: RiskRanker
    signals: list[Signal]
    exemplars: dict[str, ReviewedExemplars]
    info: dict = field(default_factory=dict)
    lexical: LexicalProbe | None = None
    reviewed: pa.Table | None = None
    path: Path | None = None

    def save(self, path: str | Path, *, tables: dict[str, pa.Table] | None = None) -> Path:
        """Write the model to ``path`` atomically; ``tables`` (name -> table) are saved and
        checksummed with it as ``<name>.parquet`` (e.g. the history quarantine)."""
        path = Path(path)
        with staged_directory(path, keep=CACHES) as stage:
            self.ranker.save(stage / "ranker")
            for name, ex in self.exemplars.items():
                ex.save(stage / "exemplars" / name)
            if self.lexical is not None:
                self.lexical.save(stage / "lexical")
            if self.reviewed is not None:
                write_parquet(self.reviewed, stage / f"{REVIEWED_TABLE}.parquet")
            for name, table in (tables or {}).items():
                write_parquet(table, stage / f"{name}.parquet")
            meta = {
                **{k: v for k, v in self.info.items() if k != "checksums"},
                "signals": [s.describe() for s in self.signals],
                "exemplars": sorted(self.exemplars),
                "lexical": self.lexical is not None,
                "reviewed": self.reviewed is not None,
            }
            seal(stage, meta, unchecked=CACHES)
        # What a loaded copy would carry: the saved files' checksums are the model's identity
        # (the reasons cache, rank/reasons_cache.py, keys on them).
        self.info["checksums"] = json.loads((path / MODEL_JSON).read_text())["checksums"]
        self.path = path.resolve()
        return path

    @classmethod
    def load(cls, path: str | Path) -> RiskModel:
        """Open a saved model: every file's checksum is verified first, and each signal must
        still encode as it did at training time (same weights fingerprint)."""
        path = Path(path)
        meta = read_sealed(path)
        signals = [signal_from_manifest(e) for e in meta["signals"]]
        for signal, entry in zip(signals, meta["signals"]):
            why = signal.compatible_with(entry)
            if why:
                raise IndexMismatchError(
                    f"{path}: signal '{signal.name}' no longer encodes as at training time "
                    f"({why}); the model's exemplars and ranker belong to the old encoder"
                )
        exemplars = {n: ReviewedExemplars.load(path / "exemplars" / n) for n in meta["exemplars"]}
        lexical = LexicalProbe.load(path / "lexical") if meta.get("lexical") else None
        reviewed = (
            pq.read_table(path / f"{REVIEWED_TABLE}.parquet") if meta.get("reviewed") else None
        )
        ranker = RiskRanker.load(path / "ranker")
        return cls(ranker, signals, exemplars, meta, lexical, reviewed, path.resolve())


def with_image_base_dir(model: RiskModel, base_dir: str | Path | None) -> RiskModel:
    """``model`` for one sweep whose relative ``image_path`` values live in ``base_dir``: a
    copy whose image-reading signals read there (each a shallow copy, sharing its loaded
    encoder); the caller's model and its signals are left as they are. Setting the folder on
    the caller's model made a later sweep that named none read the earlier one's folder, and
    two sweeps sharing a model read each other's (outsiders' and a reviewer's reports).
    ``None``: the model itself."""
    if base_dir is None or not any("base_dir" in s.runtime_options for s in model.signals):
        return model
    signals = [
        s.with_runtime_options(base_dir=base_dir) if "base_dir" in s.runtime_options else s
        for s in model.signals
    ]
    return replace(model, signals=signals)
