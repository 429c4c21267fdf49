"""RiskModel: a trained ranker plus what a sweep needs, saved as a directory (no pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from riskrank.index.signals.base import Signal
from riskrank.index.signals.registry import signal_from_manifest
from riskrank.rank.ranker import RiskRanker
from riskrank.recall.history import ReviewedExemplars
from riskrank.recall.lexical import LexicalProbe

MODEL_JSON = "model.json"


@dataclass
class RiskModel:
    """A trained ranker plus what it needs at sweep time: the signals and the exemplars."""

    ranker: RiskRanker
    signals: list[Signal]
    exemplars: dict[str, ReviewedExemplars]
    info: dict = field(default_factory=dict)
    lexical: LexicalProbe | None = None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.ranker.save(path / "ranker")
        for name, ex in self.exemplars.items():
            ex.save(path / "exemplars" / name)
        if self.lexical is not None:
            self.lexical.save(path / "lexical")
        meta = {
            **self.info,
            "signals": [s.describe() for s in self.signals],
            "exemplars": sorted(self.exemplars),
            "lexical": self.lexical is not None,
        }
        (path / MODEL_JSON).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RiskModel:
        path = Path(path)
        if not (path / MODEL_JSON).exists():
            raise FileNotFoundError(
                f"{path}: not a riskrank model (no {MODEL_JSON}); run `riskrank train`"
            )
        meta = json.loads((path / MODEL_JSON).read_text())
        signals = [signal_from_manifest(e) for e in meta["signals"]]
        exemplars = {n: ReviewedExemplars.load(path / "exemplars" / n) for n in meta["exemplars"]}
        lexical = LexicalProbe.load(path / "lexical") if meta.get("lexical") else None
        return cls(RiskRanker.load(path / "ranker"), signals, exemplars, meta, lexical)
