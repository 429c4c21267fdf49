#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv OUTSIDE the checkout and use the public API
# from a directory that also holds a user's own rank.py and index.py (they must not shadow
# ours), as a new user would. Catches a sub-package missing from the wheel.
#
# The fresh venv takes its third-party dependencies (torch, faiss, ...) from the project's
# .venv through a .pth line instead of downloading them again; riskrank itself comes only
# from the wheel (the .venv's editable finder is not activated by a .pth path entry).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
deps_python="${1:-$root/.venv/bin/python}"
work="$(mktemp -d /tmp/riskrank-wheel-XXXXXX)"
trap 'rm -rf "$work"' EXIT

"$deps_python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$root"
python3 -m venv "$work/venv"
site="$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$deps_python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/_deps.pth"
"$work/venv/bin/python" -m pip install -q --no-deps "$work"/dist/riskrank-*.whl

mkdir "$work/user"
cd "$work/user"
echo 'raise ImportError("this is the user own rank.py")' > rank.py
echo 'raise ImportError("this is the user own index.py")' > index.py
"$work/venv/bin/python" - <<'PY'
import importlib.util
import sys
import tempfile

import pyarrow as pa

import riskrank as rr

assert "/user" not in rr.__file__ and "site-packages" in rr.__file__, rr.__file__
# The bare names are the user's files here, never ours.
for bare in ("rank", "index", "recall"):
    spec = importlib.util.find_spec(bare)
    assert spec is None or "site-packages" not in (spec.origin or ""), (bare, spec)
for sub in ("index.signals", "index.vectors", "index.ray_engine", "rank.app",
            "rank.evaluation", "recall"):
    __import__(f"riskrank.{sub}")

scam = ["Guaranteed loan approval, no credit check, apply now {}",
        "You won a prize, pay a small shipping fee to claim it {}"]
benign = ["Team meeting moved to Monday at {} pm", "Roast the chicken for {} minutes"]
texts = [t.format(i) for i in range(12) for t in scam + benign]
labels = [2, 2, 0, 0] * 12
history = pa.table({"item_id": [f"h{i}" for i in range(48)], "policy": ["scam"] * 48,
                    "verdict": labels, "text": texts})
seeds = rr.SeedSet.from_texts({"scam": ["loan approval guaranteed, no credit check"]})
inventory = pa.table({"item_id": [f"i{i}" for i in range(48)], "text": texts[::-1]})
with tempfile.TemporaryDirectory() as tmp:
    model = rr.train(history, seeds, f"{tmp}/model", show_progress=False, k=50)
    result = rr.sweep(inventory, seeds, model, out_dir=f"{tmp}/sweep", budget=10,
                      show_progress=False, k=50)
    queue = result.queue.to_pandas()
    # One slot in ten goes to exploration by default (issue 13): only exploit rows must be scams.
    exploit = queue[queue["slot"] == "exploit"]
    assert len(queue) == 10 and len(exploit) >= 9, queue
    assert exploit["text"].str.contains("loan|prize").all(), exploit
from importlib import resources

template = resources.files("riskrank.rank.evaluation") / "templates" / "report.html.j2"
assert template.is_file(), "report.html template missing from the wheel"
print(f"wheel check: riskrank {rr.__version__} from {rr.__file__}; sweep queued {len(queue)}")
PY
