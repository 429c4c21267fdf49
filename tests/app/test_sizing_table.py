"""The README's 1B sizing table is the index's own rules applied to ray.json's measurements."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ray_scaleout():
    spec = importlib.util.spec_from_file_location(
        "ray_scaleout", ROOT / "benchmarks" / "ray_scaleout.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_sizing_table_follows_the_ivf_rule():
    bench = _ray_scaleout()
    rep = json.loads((ROOT / "benchmarks" / "results" / "ray.json").read_text())
    rep["sizing_1b"] = bench.sizing_plan(
        rep["index_memory"], rep["cpu_items_per_s_per_core"], rep["sizing_1b"]["shard_budget_gib"]
    )
    table = "\n".join(bench.readme_sizing_table(rep))
    assert table in (ROOT / "README.md").read_text(), (
        "README's 1B table drifted from the code: run "
        "python benchmarks/ray_scaleout.py --sizing-only --write-readme README.md"
    )
    from riskrank.index.vectors.faiss_index import ivf_nlist

    assert f"IVF{ivf_nlist(10**9)},SQ8" in table
