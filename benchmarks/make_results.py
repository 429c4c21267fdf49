"""Assemble benchmarks/RESULTS.md from the per-benchmark markdown files in results/."""

from pathlib import Path

HERE = Path(__file__).parent
PARTS = [
    ("quality.md", "Quality on real data (issue: core engine)"),
    ("quality_n5_final.md", "Quality at n=5 on the final code of 2026-12-02, 3 trials (issue 9)"),
    (
        "quality_history_exact_paired.md",
        "Quality with the closest review of each kind searched exactly, paired (n=5, 5 trials)",
    ),
    ("cpu_index.md", "CPU index build and search, 100k and 1M items (issue: core engine)"),
    ("gpu.md", "GPU paths on an H200: fp16 text encoder, exact top-k (issue 15)"),
    ("gpu_quoted.md", "GPU rates the sizing plan quotes (H100, not measured here)"),
    ("demo_and_loop.md", "make demo and the README's review loop, in fresh clones"),
    ("tokenizer_speed.md", "Tokenising on the CPU: the wrapper vs the Rust tokenizer (issue 15)"),
    ("images.md", "Images: PDQ near-duplicate recall and CPU throughput (issue: images)"),
    ("ray.md", "Ray engine vs single machine (issue: scale-out)"),
    ("kill.md", "kill -9 trials: retrain, sweep and standing-index update (issues 10, 12)"),
    ("incremental.md", "Daily sweeps: standing index vs from-scratch sweeps (issue 12)"),
    ("incremental_head.md", "Daily sweeps: a whole new run at 7c298de (issue 12)"),
    ("incremental_20261205.md", "Daily sweeps: a whole new run at 153ae8b (issue 12)"),
    ("incremental_amx.md", "Daily sweeps on an AMX Xeon, MKL in strict mode (issue 12)"),
    ("incremental_42k.md", "Daily sweeps at 42,000 items on the AMX Xeon (issue 12)"),
    ("incremental_100k.md", "Daily sweeps at 100,000 items on a shared AMX Xeon (issue 12)"),
    ("incremental_amx_head.md", "Daily sweeps on the AMX Xeon after cutting per-row costs (12)"),
    ("incremental_openvino.md", "Daily sweeps with the OpenVINO bf16 encoder (issue 12)"),
    (
        "incremental_openvino_avx2.md",
        "Daily sweeps with the OpenVINO encoder, its sweeps without torch (issue 12)",
    ),
    (
        "incremental_auto_epyc.md",
        "Daily sweeps with the new default encoder (auto: OpenVINO bf16) on an EPYC (12)",
    ),
    (
        "incremental_auto_epyc_s46.md",
        "Daily sweeps again after cutting per-item costs, OpenVINO bf16 on the EPYC (12)",
    ),
    (
        "incremental_auto_epyc_s47.md",
        "Daily sweeps at 2fc5205 (spans version 2, picture fixes), under load: equality (12)",
    ),
    (
        "incremental_auto_epyc_s49.md",
        "Daily sweeps at 4278408 (new items scored only near a stored list's level), idle (12)",
    ),
    (
        "incremental_auto_epyc_s49b.md",
        "Daily sweeps at f87cb73 (evidence exact on any thread count), idle (12)",
    ),
    (
        "incremental_auto_epyc_s50.md",
        "Daily sweeps at 347f1cd (the small fits without threadpoolctl), idle (12)",
    ),
    (
        "incremental_auto_epyc_s51.md",
        "Daily sweeps at df5a8a7 on an EPYC of family 26 (Zen 5), idle (12)",
    ),
    (
        "incremental_auto_epyc_s52.md",
        "Daily sweeps at 6fe1ff5 on the Zen 5 EPYC, beside other work (12)",
    ),
    (
        "incremental_auto_epyc_s53a.md",
        "Daily sweeps at 7fb93d8 on the Zen 5 EPYC, idle: before the policies cache (12)",
    ),
    (
        "incremental_auto_epyc_s53b.md",
        "Daily sweeps at 36861b0 on the Zen 5 EPYC: with the policies cache (12)",
    ),
    (
        "incremental_auto_epyc_s54.md",
        "Daily sweeps at b1bca6b on the Zen 5 EPYC: campaign ids kept from day to day (12)",
    ),
    (
        "incremental_auto_epyc_s55.md",
        "Daily sweeps at 862587c on the Zen 5 EPYC: the stop of 2026-12-07 afternoon (12)",
    ),
    (
        "incremental_auto_epyc_s56.md",
        "Daily sweeps at 6c8db2f on the Zen 5 EPYC: each text vectorized once (12, 15)",
    ),
    (
        "incremental_auto_epyc_s58.md",
        "Daily sweeps at ee3430a on the Zen 5 EPYC: a kept policy's reasons reused (12)",
    ),
    (
        "incremental_auto_epyc_s53_120k.md",
        "Daily sweeps at 120,000 items on an IVF index, MiniLM, Zen 5 EPYC (12)",
    ),
    ("incremental_ivf.md", "Daily sweeps: an IVF index updated in place vs a rebuild (issue 12)"),
    (
        "incremental_ivf_200k_noise10_rs.md",
        "Daily sweeps, IVF in place vs rebuild: neighbourhoods spread by noise (12)",
    ),
    (
        "incremental_ivf_50k_ivf256_noise05_stale10.md",
        "Daily sweeps, IVF in place vs rebuild: a key forced below its size (12)",
    ),
    (
        "incremental_ivf_8000_ivf128_rs.md",
        "Daily sweeps, IVF in place vs rebuild: 8,000 items in IVF128 (12)",
    ),
    (
        "incremental_ivf_50k_rule4.md",
        "Daily sweeps, IVF in place: the sampled-recall retrain rule against held-out queries (12)",
    ),
    (
        "incremental_images.md",
        "Daily updates of ads with pictures: what each signal embeds (issue 12)",
    ),
    ("calibration.md", "Decisions: calibration and automatic actions (issue 11)"),
    ("lexical_fit.md", "Training the lexical probe (issue 11, item 5)"),
    ("faithfulness.md", "Faithfulness of the highlighted phrases (issue 14)"),
    ("campaigns.md", "Campaigns: threshold and purity (issue 13)"),
    ("cli_scale.md", "The whole CLI sweep at 300,000 items, stand-in encoder (issues 13, 15)"),
    ("campaign_links.md", "Campaign components: every link vs a cover (issues 13, 15)"),
    ("replay.md", "Replay of the review loop (issue 13)"),
    ("replay_auto_epyc.md", "Replay again with the default encoder, OpenVINO bf16 (issue 13)"),
    ("replay_s51.md", "Replay at df5a8a7, the code of 2026-12-07 (issue 13)"),
    ("coverage.md", "Candidates unlike a policy's reviews: two domains, two policies (issue 13)"),
    ("presence.md", "When a cold policy is taken as absent: the presence threshold (issue 13)"),
    ("replay_embeddings_only.md", "Replay without the lexical probe (the earlier replay)"),
    ("replay_notes.md", "Replay: what changed and why (issue 13)"),
    ("replay_young.md", "Replay: which model ranks a young policy (issue 13)"),
    ("young_calibration.md", "Replay: a young policy's probabilities, three ways (issue 13)"),
    ("replay_campaign_split.md", "Replay: cutting campaigns where the ranker disagrees (13)"),
    ("replay_insults_hashsplit.md", "Replay on Insults re-split by id hash, via --data (13)"),
    ("encoder.md", "Text encoder: PyTorch fp32 vs ONNX Runtime int8 (issue: speed and memory)"),
    ("encoder_settings.md", "Text encoder: int8 batch size and threads (issue: speed and memory)"),
    ("quality_int8.md", "Quality with the int8 text encoder vs fp32, Insults (issue 15)"),
    ("encoder_candidates.md", "Text encoder candidates side by side, with a profile (issue 15)"),
    ("encoder_small_batches.md", "Text encoder: smaller batches and 224 tokens (issue 15)"),
    ("encoder_batch1.md", "Text encoder: int8 one text per batch, after the padding change (15)"),
    ("quality_fp32_n5.md", "Quality at n=5, PyTorch fp32 at 256 tokens, 5 trials (issue 15)"),
    ("quality_int8_n5.md", "Quality at n=5, int8 at 256 tokens vs fp32, paired (issue 15)"),
    ("quality_int8_b1_n5.md", "Quality at n=5, int8 one text per batch vs fp32, paired (issue 15)"),
    ("quality_int8_192_n5.md", "Quality at n=5, int8 at 192 tokens vs fp32, paired (issue 15)"),
    ("encoder_openvino.md", "Text encoder: the OpenVINO backends side by side (issue 15)"),
    ("openvino_settings.md", "Text encoder: OpenVINO hint, threads, precision (issue 15)"),
    ("quality_fp32_ov_n5.md", "Quality at n=5, PyTorch fp32 on the OpenVINO branch (issue 15)"),
    ("quality_openvino_n5.md", "Quality at n=5, OpenVINO bf16 (issue 15)"),
    ("quality_openvino_int8w_n5.md", "Quality at n=5, OpenVINO int8 weights (issue 15)"),
    ("quality_openvino_paired.md", "Quality at n=5, OpenVINO vs fp32 on the same code (15)"),
    ("encoder_openvino_int8.md", "Text encoder: OpenVINO full int8, quiet machine (issue 15)"),
    ("encoder_openvino_int8_loaded.md", "Text encoder: OpenVINO full int8 under load (issue 15)"),
    ("encoder_avx2.md", "Text encoder on an AVX2-only CPU: OpenVINO f32 and full int8 (15)"),
    ("encoder_avx2_onnx.md", "Text encoder on an AVX2-only CPU: ONNX Runtime int8 (issue 15)"),
    ("encoder_amx.md", "Text encoder on an AMX Xeon: OpenVINO bf16 meets 3x (issue 15)"),
    ("mkl_mode.md", "MKL's strict reproducible mode: speed and batch independence (12, 15)"),
    ("mkl_mode_loaded.md", "MKL's strict reproducible mode, under load (issues 12, 15)"),
    ("encoder_amx_loaded.md", "Text encoder on an AMX Xeon, under load (issue 15)"),
    ("quality_openvino_amx_paired.md", "Quality at n=5 on an AMX Xeon: OpenVINO bf16 vs fp32 (15)"),
    ("encoder_auto_epyc.md", "Text encoder: the new default (auto) on an AVX512-BF16 EPYC (15)"),
    ("quality_auto_paired_epyc.md", "Quality at n=5: the default (auto) vs PyTorch fp32 (15)"),
    ("encoder_zen5.md", "Text encoder: the default (auto) on an EPYC of family 26, Zen 5 (15)"),
    ("quality_auto_paired_zen5.md", "Quality at n=5 on the Zen 5 EPYC: auto vs PyTorch fp32 (15)"),
    (
        "quality_background_paired.md",
        "Quality with the z-scores' background by id, then every item",
    ),
    ("replay_background.md", "The replay with the similarity background drawn three ways"),
    ("long_texts.md", "Long texts through the text encoder: read whole vs in part (15)"),
    ("encoder_layers.md", "Text encoder: MiniLM cut to 3 layers, int8 and centred (issue 15)"),
    ("encoder_distil.md", "Text encoder: a 3-layer MiniLM distilled from the full one (issue 15)"),
    ("encoder_distil_speed.md", "Text encoder: the distilled student timed beside the others (15)"),
    (
        "encoder_distil_relational.md",
        "Text encoder: the 3-layer student with a loss on pairwise cosines (issue 15)",
    ),
    ("int8_scope.md", "Text encoder: which MatMuls full int8 keeps float (issue 15)"),
    ("int8_precision.md", "Text encoder: full int8 with bf16 or f32 float ops (issue 15)"),
    ("quality_openvino_int8_n5.md", "Quality at n=5, OpenVINO full int8 (issue 15)"),
    ("quality_openvino_int8_paired.md", "Quality at n=5, full int8 vs fp32 on later code (15)"),
    ("quality_openvino_int8_sq08_n5.md", "Quality at n=5, full int8 with SmoothQuant 0.8 (15)"),
    ("quality_openvino_int8_n5_fresh.md", "Quality at n=5, full int8, fresh caches (issue 15)"),
    ("quality_openvino_int8_paired_fresh.md", "Quality n=5, full int8 vs fresh fp32, paired (15)"),
    ("ivf_build.md", "IVF build, old rule vs new (issue: speed and memory)"),
    ("ivf_build_1m.md", "IVF build at 1M items, old rule vs new (issue 15)"),
    ("scale.md", "Scaling of a first sweep (issue: speed and memory)"),
]
INTRO = """# riskrank results

Every figure below was measured on the machine named in its section by the command given
there; nothing is copied from elsewhere unless marked QUOTED. The development machine has
2 CPU cores shared with other jobs during these runs (load averages are recorded), so
timings are pessimistic; compare rows within one table, not across tables.

**GPU:** one session's H200 figures (2026-12-04), in "GPU paths on an H200"; everything else
ran on CPUs: AMD EPYCs (AVX512-BF16, later AVX2-only) and, from 2026-12-05, an Intel Xeon with
AMX, each section naming its own.
"""


def main() -> None:
    out = [INTRO]
    for name, title in PARTS:
        path = HERE / "results" / name
        if not path.exists():
            continue
        body = path.read_text().splitlines()
        if body and body[0].startswith("# "):
            body = body[1:]
        body = ["#" + line if line.startswith("#") else line for line in body]
        out += [f"## {title}", "", *body, ""]
    (HERE / "RESULTS.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
