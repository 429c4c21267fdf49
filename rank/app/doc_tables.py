"""The README's tables of columns, generated from the schemas and the signal registry.

The README holds each table between ``<!-- columns:NAME -->`` and ``<!-- /columns:NAME -->``;
``tests/app/test_doc_tables.py`` fails when they differ from what the code declares.

    python -m riskrank.rank.app.doc_tables                 # print the tables
    python -m riskrank.rank.app.doc_tables --write README.md
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pyarrow as pa

from riskrank.index.schema import INVENTORY_SCHEMA, QUARANTINE_SCHEMA
from riskrank.index.signals import registered_signals
from riskrank.index.tables import field_family
from riskrank.rank.queue import QUEUE_SCHEMA
from riskrank.recall.candidates import (
    BENIGN_EVIDENCE,
    BEST_SEED,
    CANDIDATE_KEY_SCHEMA,
    HISTORY_EVIDENCE,
    HISTORY_NEAREST,
    MATCH_EVIDENCE,
    NEIGHBOURHOOD_EVIDENCE,
    describe_feature,
)
from riskrank.recall.history import HISTORY_SCHEMA
from riskrank.recall.lexical import FEATURE as LEXICAL_FEATURE
from riskrank.recall.seeds import SEED_SCHEMA

SCHEMAS = {
    "inventory": INVENTORY_SCHEMA,
    "seeds": SEED_SCHEMA,
    "history": HISTORY_SCHEMA,
    "candidates": CANDIDATE_KEY_SCHEMA,
    "queue": QUEUE_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
}
DIRECTION = {1: "up", -1: "down", 0: "either"}


def _type(typ: pa.DataType) -> str:
    if pa.types.is_list(typ):
        return f"list<{_type(typ.value_type)}>"
    return {"float": "float32", "double": "float64"}.get(str(typ), str(typ))


def schema_table(schema: pa.Schema) -> str:
    """A schema as a markdown table: column, type, required, meaning (the field's ``doc``)."""
    lines = ["| column | type | required | meaning |", "| --- | --- | --- | --- |"]
    for f in schema:
        doc = (f.metadata or {}).get(b"doc", b"").decode()
        typ = "string or integer" if field_family(f) == "id" else _type(f.type)
        lines.append(f"| `{f.name}` | {typ} | {'yes' if not f.nullable else ''} | {doc} |")
    return "\n".join(lines)


def evidence_table() -> str:
    """Every evidence column: recall's own, each registered signal's, and review history's."""
    lines = [
        "| column | type | signals | moves risk | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]

    def row(column: str, col, signals: str) -> None:
        lines.append(
            f"| `{column}` | {_type(col.dtype)} | {signals} | {DIRECTION[col.direction]} "
            f"| {col.documented} |"
        )

    for col in MATCH_EVIDENCE:
        row(f"<signal>_{col.suffix}", col, "all")
    declared: dict[str, tuple[object, list[str]]] = {}
    for cls in registered_signals().values():
        for col in cls.evidence_columns:
            declared.setdefault(col.suffix, (col, []))[1].append(cls.name)
    for suffix, (col, names) in declared.items():
        row(f"<signal>_{suffix}", col, ", ".join(dict.fromkeys(names)))
    for col in NEIGHBOURHOOD_EVIDENCE:
        row(f"<signal>_{col.suffix}", col, "all")
    lines.append(f"| `<signal>_{BEST_SEED.suffix}` | string | all | | {BEST_SEED.meaning} |")
    for col in BENIGN_EVIDENCE:
        row(f"<signal>_{col.suffix}", col, "all, NaN without benign seeds")
    for col in HISTORY_EVIDENCE:
        row(f"hist_<signal>_{col.suffix}", col, "all, with review history")
    for col in HISTORY_NEAREST:  # for reasons, not ranking features
        lines.append(
            f"| `hist_<signal>_{col.suffix}` | {_type(col.dtype)} | all, with review history "
            f"| not a feature | {col.documented} |"
        )
    lines.append(
        f"| `{LEXICAL_FEATURE}` | float32 | text history | up | "
        f"{describe_feature(LEXICAL_FEATURE)}: n-grams of the reviewed text |"
    )
    return "\n".join(lines)


def tables() -> dict[str, str]:
    """Every generated table, by the name its README markers use."""
    out = {name: schema_table(schema) for name, schema in SCHEMAS.items()}
    out["evidence"] = evidence_table()
    return out


def render(readme: str) -> str:
    """``readme`` with every marked table replaced by the generated one."""
    for name, table in tables().items():
        pattern = re.compile(
            rf"(<!-- columns:{name} -->\n)(?:.*?\n)?(<!-- /columns:{name} -->)", flags=re.DOTALL
        )
        if not pattern.search(readme):
            raise ValueError(f"README has no <!-- columns:{name} --> ... block")
        readme = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", metavar="README", help="rewrite the marked tables in this file")
    args = p.parse_args(argv)
    if args.write:
        path = Path(args.write)
        path.write_text(render(path.read_text()))
        return 0
    for name, table in tables().items():
        print(f"<!-- columns:{name} -->\n{table}\n<!-- /columns:{name} -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
