"""Write BENCHMARKS.md from the stored results in bench/results/*.json: `python bench/report.py`.

Every figure in BENCHMARKS.md comes from a JSON file that a committed bench script wrote; nothing is
typed by hand. Each section names its command, its result file, the date and the load average the
script recorded (or says that the run did not record one). Prose here only reads the numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
OUT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def table(header: list[str], rows: list[list]) -> str:
    right = ["---:" if any(isinstance(r[i], (int, float)) for r in rows) else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(right) + " |"]
    lines += ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(v) -> str:
    if v is None:
        return "not recorded"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
    return str(v)


def load_note(load_avg) -> str:
    if not load_avg:
        return "load average: not recorded by this run (the machine was shared; treat times as noisy)"
    one = load_avg[0]
    verdict = "idle" if one < 1 else "busy: times are pessimistic, ratios measured side by side are the reliable part"
    return f"load average at start: {one:.2f} ({verdict})"


def provenance(command: str, result: str, date: str | None, load_avg=None) -> str:
    return f"Command: `{command}` → `bench/results/{result}`. Date: {date or 'not recorded'}; {load_note(load_avg)}."


# ---- sections ------------------------------------------------------------------------------------


def section_prep() -> str:
    d = load("prep_stream.json")
    if d is None:
        return ""
    base = d.get("baseline", {})
    rows = []
    for r in d["runs"]:
        engine = r.get("engine", "pandas")
        before = base.get(r["format"], {})
        same = [o for o in d["runs"] if o["format"] == r["format"] and o["file_gb"] == r["file_gb"]
                and o.get("engine") == "pandas"]
        rows.append([f"{r['format'].upper()} {r['file_gb']:.2f} GB", engine, r["rows_read"], round(r["seconds"]),
                     round(r["rows_per_second"]),
                     f"{r['rows_per_second'] / same[0]['rows_per_second']:.1f}x" if same and engine != "pandas" else "",
                     f"{r['rows_per_second'] / before['rows_per_second']:.1f}x" if before and r["file_gb"] >= 1 else "",
                     f"{r['peak_rss_mib']:.0f} MiB", round(r["peak_rss_over_file_size"], 2)])
    targets = []
    for fmt, before in base.items():
        big = [r for r in d["runs"] if r["format"] == fmt and r.get("engine") == "polars" and r["file_gb"] >= 1]
        if big:
            r = big[0]
            ratio = r["rows_per_second"] / before["rows_per_second"]
            targets.append(f"{fmt.upper()} 2 GB, polars: {ratio:.1f}x the pandas-only pipeline's "
                           f"{before['rows_per_second']:,} rows/s (target 10x: {'met' if ratio >= 10 else 'missed'}); "
                           f"peak RSS {r['peak_rss_mib']:.0f} MiB against {before['peak_rss_mib']} MiB "
                           f"(target no higher: {'met' if r['peak_rss_mib'] <= before['peak_rss_mib'] else 'missed'}).")
    return "\n\n".join([
        "## Data preparation",
        "Throughput and peak memory of `genlab data prepare`'s engines on generated CSV and JSONL files (synthetic "
        "reviews with missing values, duplicates and empty texts), each in a fresh process running:\n\n"
        f"`{d['command']}`",
        table(["input", "engine", "rows", "wall s", "rows/s", "vs pandas, same file", "vs pandas-only pipeline (2 GB)",
               "peak RSS", "peak RSS / file size"], rows),
        "\n".join(f"- {t}" for t in targets),
        f"The pandas-only pipeline is the one before the Polars engine (stored 2026-11-23, 2 GB CSV "
        f"{base.get('csv', {}).get('rows_per_second', 0):,} rows/s and JSONL {base.get('jsonl', {}).get('rows_per_second', 0):,}"
        " rows/s). Today's pandas engine shares the vectorized augmentation and hashing, so it runs faster than that. "
        f"RSS after the imports: {d['runs'][0]['rss_after_imports_mib']:.0f} MiB. Memory grows with the number of "
        "rows (a content hash and a label code per record, for dedupe and the exact stratified split), not with "
        "the file: records are streamed in chunks. All engines write the same bytes (tests/test_prep_engines.py).",
        provenance("python bench/prep_stream.py", "prep_stream.json", d.get("date"), d.get("load_avg_at_start")),
        *allocator_note(d),
    ])


def allocator_note(stream: dict) -> list[str]:
    """How far the 2 GB CSV figure moves between runs, and what genlab's allocator setting does to it."""
    d = load("prep_allocator_ab.json")
    if d is None:
        return []
    base = stream.get("baseline", {}).get("csv", {}).get("rows_per_second")
    walls = {s: [t["wall_s"] for t in d["turns"] if t["setting"] == s] for s in ("new", "old")}
    sys_s = {s: [t["sys_s"] for t in d["turns"] if t["setting"] == s] for s in ("new", "old")}
    ratio = lambda wall: d["rows"] / wall / base  # noqa: E731
    return [
        "### The 2 GB CSV, run again: how firm the 10x is",
        f"Four more runs of the 2 GB CSV, taking turns: with genlab's setting for Polars' allocator (freed pages kept "
        f"10 s) {', '.join(f'{w:.1f}' for w in walls['new'])} s, with Polars' own (0.5 s) "
        f"{', '.join(f'{w:.1f}' for w in walls['old'])} s; kernel time {', '.join(f'{s:.1f}' for s in sys_s['new'])} s "
        f"against {', '.join(f'{s:.1f}' for s in sys_s['old'])} s. Against the pandas-only pipeline that is "
        f"{min(map(ratio, walls['new'])):.1f}x to {max(map(ratio, walls['new'])):.1f}x with the setting: the 10x target "
        "is met in the bench's run and in one of these two, so it is borderline on this machine. On the 0.2 GB CSV the "
        "setting halved the page faults and took 7-15 % off the time; at 2 GB the gain is within the runs' spread.",
        f"Command: {d['command']}. Date: {d['date']}; load average at start: {d['load_avg_at_start'][0]:.2f} "
        "(each run's own threads keep it near 2).",
    ]


def section_compare() -> str:
    d = load("compare_families.json")
    if d is None:
        return ""
    rows = [[r["name"], r["family"], r["params"], round(r["val_loss"], 3), round(r["val_bits_per_unit"], 3),
             r.get("train_tokens_per_s"), r.get("sample_tokens_per_s"), r["wall_s"]] for r in d["rows"]]
    best = min(d["rows"], key=lambda r: r["val_loss"])
    return "\n\n".join([
        f"### Every text family, the same wall-clock budget ({d['seconds_each']:.0f} s each, {d['threads']} thread)",
        table(["recipe", "family", "params", "val loss", "val bits/char", "train tok/s", "sample tok/s (batch 1)", "wall s"], rows),
        f"Lowest val loss at this budget: {best['name']} ({best['val_loss']:.3f} nats/char). Val loss is over the whole val "
        "split of genlab's seeded chunk split of Tiny Shakespeare; the val-loss-against-time plot is "
        "`bench/results/compare_families.png`.",
        provenance(f"python bench/compare_families.py --threads {d['threads']} --seconds {d['seconds_each']:.0f}",
                   "compare_families.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_variants() -> str:
    d = load("sequence_variants.json")
    if d is None:
        return ""
    by = {r["name"]: r for r in d["rows"]}
    rows = [[r["name"], r["family"], r["params"], round(r["val_loss"], 3), round(r["val_bits_per_unit"], 3),
             r.get("train_tokens_per_s"), r["wall_s"]] for r in d["rows"]]
    notes = []
    for base, variant, what in (("lstm", "lstm-carry", "carrying the LSTM's state across consecutive windows"),
                                ("fnet-learned", "fnet-fourier", "FNet's parameter-free Fourier mixing instead of the learned convolution")):
        if base in by and variant in by:
            delta = by[variant]["val_loss"] - by[base]["val_loss"]
            notes.append(f"{what}: val loss {by[base]['val_loss']:.3f} -> {by[variant]['val_loss']:.3f} ({delta:+.3f} nats/char)")
    return "\n\n".join([
        f"### Variants beside their baselines ({d['seconds_each']:.0f} s each, {d['threads']} threads)",
        "`train.carry_state = true` (truncated backprop through time over consecutive windows, as char-rnn) against "
        "the default zero-state random windows; `model.mixing = \"fourier\"` (FNet's own DFT mixing, causal, no "
        "weights) against the default learned causal convolution. Same recipe, data, seed and split within a pair; "
        "val loss over the whole val split, every row from zero-state windows of the recipe's block size.",
        table(["variant", "family", "params", "val loss", "val bits/char", "train tok/s", "wall s"], rows),
        "; ".join(notes) + "." if notes else "",
        provenance(d.get("command", "python bench/sequence_variants.py"), "sequence_variants.json", d.get("date"),
                   d.get("load_avg_at_start")),
    ])


def section_text_train() -> str:
    d = load("text_train.json")
    if d is None:
        return ""
    runs = [("genlab `gpt`, nanoGPT's CPU config (4x128, block 64, batch 12, 2000 it)", d["nanogpt_config"])]
    runs += [(f"recipes/{name}.toml", r) for name, r in d["recipes"].items()]
    rows = [[name, r["params"], r["steps"], round(r["train_seconds"]), round(r["val_loss"], 3), round(r["val_bits_per_char"], 3),
             r["median_tokens_per_s"]] for name, r in runs]
    parts = [
        "### Quality at 10 minutes of training (1 thread)",
        table(["run", "params", "steps", "train s", "val loss (whole split)", "bits/char", "median tok/s"], rows),
        "Curves (training seconds, val loss on 10 eval batches): " + "; ".join(
            f"{name.split('/')[-1]}: " + ", ".join(f"{t:.0f} s {v:.2f}" for t, v in r["curve"]) for name, r in runs) + ".",
        provenance("python bench/text_train.py --threads 1", "text_train.json", d.get("date"),
                   d.get("machine", {}).get("load_avg_at_start")),
        "### Training efficiency: MFU of the `gpt` training step (1 and 2 threads)",
        "Full step as the trainer takes it = forward, backward, clip, AdamW on random tokens; FLOPs = 6N + attention "
        "per token. Each variant takes turns with the fp32 1024³ matmul that sets the peak, 5 steps a turn, 8 rounds, "
        "best turn of each: every MFU is a step rate over the peak of the same moments.",
    ]
    rows = []
    for key in sorted(k for k in d if k.startswith("mfu_turns_threads")):
        run = d[key]
        for name, m in run["rows"].items():
            rows.append([f"{run['date']}, load {run['machine']['load_avg_at_start'][0]:.1f}", run["machine"]["threads"],
                         name, m["params"], round(m["tokens_per_s"]), round(m["gflops"]), round(run["peak_gflops"]),
                         f"{m['mfu']:.0%}"])
    parts.append(table(["run", "threads", "shape and variant", "params", "tok/s", "GFLOP/s", "peak GFLOP/s", "MFU"], rows))
    verdicts = []
    for key in sorted(k for k in d if k.startswith("mfu_turns_threads")):
        run = d[key]
        best = {}
        for name, m in run["rows"].items():
            shape = name.rsplit(" ", 2)[0]
            best[shape] = max(best.get(shape, 0.0), m["mfu"])
        verdicts.append(f"{run['machine']['threads']} thread(s): " + ", ".join(
            f"{shape} {v:.0%} ({'met' if v >= 0.55 else 'missed'})" for shape, v in best.items()))
    parts.append("Best variant per shape against the 55 % target: " + "; ".join(verdicts) + ". At 2 threads the "
                 "matmuls of this small model scale 1.5x, not 2x, inside the step (1.5-2x each alone), and the elementwise "
                 "and attention kernels, bound by memory, less; a fixed 3-5 ms of dispatch per step does not scale at all.")
    parts.append("Command: `python bench/text_train.py --threads N --parts mfu` (N = 1, 2).")
    parts.append("Before (eager, AdamW's foreach kernels; the peak timed once before and once after all steps, MFU "
                 "against the higher one):")
    rows = []
    for label, key in (("before", "mfu_before_threads1"), ("before", "mfu_before_threads2"), ("run 1", "mfu_run1"),
                       ("run 2", "mfu_run2")):
        run = d.get(key)
        if not run:
            continue
        peak = max(run["peak_gflops"], run["peak_gflops_after"])  # the conservative reading
        for shape, m in run["mfu"].items():
            rows.append([f"{label} ({run['date']}, peak {run['peak_gflops']:.0f} → {run['peak_gflops_after']:.0f} GFLOP/s, "
                         f"load {run['machine']['load_avg_at_start'][0]:.1f})", run["machine"]["threads"], shape, m["params"],
                         round(m["tokens_per_s"]), round(m["gflops"]), f"{m['gflops'] / peak:.0%}"])
    parts.append(table(["run", "threads", "shape", "params", "tok/s", "GFLOP/s", "MFU (vs the higher peak)"], rows))
    if d.get("mfu_run1", {}).get("note"):
        parts.append(f"Note on run 1: {d['mfu_run1']['note']}.")
    parts.append("Runs 1 and 2 were taken on a busy machine and understate MFU (the peak itself moved between the "
                 "timings).")
    return "\n\n".join(parts)


def section_text_sample() -> str:
    d = load("text_sample.json")
    if d is None:
        return ""
    rows = [[name, f["params"], round(f["batch1_tokens_per_s"]), round(f["batch8_tokens_per_s"]),
             round(f["batch1_recompute_tokens_per_s"]) if "batch1_recompute_tokens_per_s" in f else "-",
             f"{f['cache_speedup_batch1']:.1f}x" if "cache_speedup_batch1" in f else "-"] for name, f in d["families"].items()]
    hf = d.get("hf_gpt2")
    parts = [f"### Sampling speed ({d['threads']} thread{'s' if d['threads'] > 1 else ''}, {d['new_tokens']} new tokens, temperature 1)",
             table(["family", "params", "batch 1 tok/s", "batch 8 tok/s", "batch 1 recomputing the context", "cache speed-up"], rows)]
    if hf and "rows" in hf:
        rows = [[r["threads"], r["batch"], r["decoding"], round(r["genlab_tokens_per_s"]), round(r["transformers_tokens_per_s"]),
                 f"**{r['ratio']:.2f}x**"] for r in hf["rows"]]
        worst = min(r["ratio"] for r in hf["rows"])
        parts += [f"Against Hugging Face `GPT2LMHeadModel.generate` with the same 4x128 weights (max logit difference "
                  f"{hf['max_logit_difference']}), taking turns round by round in one process (best round each):",
                  table(["threads", "batch", "decoding", "genlab tok/s", "transformers tok/s", "genlab / transformers"], rows),
                  f"Lowest ratio: {worst:.2f}x (target: at least 2x at every batch size: "
                  f"{'**met**' if worst >= 2 else '**missed**'})."]
    parts.append(provenance(f"python bench/text_sample.py --threads {d['threads']}", "text_sample.json", d.get("date"),
                            d.get("load_avg_at_start")))
    return "\n\n".join(parts)


def section_music() -> str:
    d = load("music_families.json")
    t = load("music_throughput.json")
    if d is None:
        return ""
    metrics = ["pitch_class_distance", "pitch_range", "note_density", "polyphony", "scale_consistency", "empty_bar_rate", "notes_per_piece"]
    rows = [[f, r["params"], r["steps"], round(r["val_loss"], 3), *(round(r["generated"][m], 2) for m in metrics)]
            for f, r in d["results"].items()]
    ref = next(iter(d["results"].values()))["heldout"]
    rows.append(["**held-out chorales (reference)**", "", "", "", *(round(ref[m], 2) for m in metrics)])
    speed = [[f, r["train_tokens_per_s"], round(r["sample_tokens_per_s"]), round(r["music_seconds_per_compute_second"], 1)]
             for f, r in d["results"].items()]
    parts = [
        "## Music: every sequence family on the Bach chorales",
        f"Each family trained for {d['seconds_per_family']:.0f} s of wall clock on `bach` (REMI tokens), then val loss over "
        f"the whole val split and the music metrics (docs/music.md) of {d['samples']} pieces of {d['sample_tokens']} tokens "
        "sampled from scratch, beside the same metrics for held-out real pieces of the same length.",
        table(["family", "params", "steps", "val loss", *(m.replace("_", " ") for m in metrics)], rows),
        table(["family", "train tok/s", "sample tok/s (32 pieces)", "seconds of music per second of sampling"], speed),
        "Dates: " + ", ".join(f"{f} {r['date']}" for f, r in d["results"].items()) + f"; machine: {d['machine']}; "
        + load_note(None) + ".",
        "Command: `python bench/music_families.py --families gpt --seconds 240` (then fnet, lstm, gru; results merge by "
        "family) → `bench/results/music_families.json`.",
    ]
    if t:
        cols = ["train", "sample_1_threads_1", "sample_1_threads_2", "sample_32_threads_1", "sample_32_threads_2"]
        rows = [[f, *(round(v[c]) for c in cols)] for f, v in t["tokens_per_s"].items()]
        parts += [f"Speed side by side (families take turns, {t['rounds']} rounds, median; tokens/s):",
                  table(["family", f"train ({t['train_threads']} threads)", "sample 1 piece, 1 thread", "1 piece, 2 threads",
                         "32 pieces, 1 thread", "32 pieces, 2 threads"], rows),
                  provenance("python bench/music_throughput.py", "music_throughput.json", t.get("date"), t.get("load_avg_at_start"))]
    return "\n\n".join(parts)


def section_code() -> str:
    d = load("code_families.json")
    s = load("code_sandbox.json")
    parts = ["## Code"]
    if d:
        rows = [[f, r["params"] or "counts", r["steps"] or "—", round(r["train_seconds"], 1), round(r["val_bits_per_byte"], 3),
                 f"{r['syntax_valid']:.0%}"] for f, r in d["results"].items()]
        tok = d["tokenizer"]
        parts += [
            f"Every sequence family on `python-stdlib`, {d['steps_per_family']} optimizer steps of {d['tokens_per_step']} "
            f"tokens each; val bits per byte over the whole val split; syntax-valid = share of {d['functions']} functions "
            f"sampled from `def ` (≤ {d['function_tokens']} tokens) that `ast.parse` accepts.",
            table(["family", "params", "steps", "train s", "val bits/byte", "syntax-valid"], rows),
            f"Code tokenizer (vocab {tok['vocab_size']}): decode(encode(x)) == x for all {tok['files']} stdlib modules "
            f"({tok['bytes'] / 1e6:.1f} MB), {len(tok['round_trip_failures'])} failures, {tok['round_trip_seconds']} s; bytes "
            f"per token {tok['code_bytes_per_token']:.3f} (code pre-tokenizer) vs {tok['bpe_bytes_per_token']:.3f} (plain "
            "byte-level BPE).",
            "Dates: " + ", ".join(f"{f} {r['date']}" for f, r in d["results"].items()) + f"; machine: {d['machine']}; "
            + load_note(None) + ".",
            "Command: `python bench/code_families.py --families gpt --steps 100` (then lstm, gru, fnet, ngram) → "
            "`bench/results/code_families.json`.",
        ]
    if s:
        iso = ", ".join(f"{k} {v}" for k, v in s["isolation"].items())
        rows = [["in-process `exec` of the same program (no isolation)", f"{s['in_process_ms']:.3f} ms"],
                ["bare `python -I -B` subprocess (median)", f"{s['bare_subprocess_ms_median']:.1f} ms"],
                ["sandbox, one at a time (median)", f"{s['sandbox_ms_median_workers_1']:.1f} ms"],
                ["of which the sandbox beyond a bare interpreter", f"{s['guard_ms_per_candidate']:.1f} ms"],
                ["candidates per second, 1 worker", f"{s['candidates_per_s_workers_1']:.0f}"],
                ["candidates per second, 2 workers", f"{s['candidates_per_s_workers_2']:.0f}"]]
        parts += [f"Sandbox throughput ({s['candidates']} trivial passing candidates; isolation: {iso}):",
                  table(["measure", "value"], rows),
                  provenance(f"python bench/code_sandbox.py --candidates {s['candidates']}", "code_sandbox.json",
                             s.get("date"), s.get("load_avg_at_start"))]
    return "\n\n".join(parts)


def _image_rows(d: dict) -> tuple[list, list]:
    fams, sweep = [], []
    for family, r in d["families"].items():
        best = r["samplers"]["ddim50"] if "samplers" in r else r
        # Older runs stored the sampler's step count under "steps" for ddpm; only "train_steps" is trusted there.
        steps = r.get("train_steps", None if family == "ddpm" else r.get("steps"))
        fams.append([family, steps, r.get("train_images_per_s"), round(best["fid"], 1), round(best["kid"]),
                     round(best["precision"], 2), round(best["recall"], 2), round(best["sampling_images_per_s"], 1)])
        for name, s in r.get("samplers", {}).items():
            sweep.append([name, round(s["fid"], 1), round(s["kid"]), round(s["precision"], 2), round(s["recall"], 2),
                          round(s["sampling_images_per_s"], 2)])
    return fams, sweep


def section_images() -> str:
    parts = ["## Images (GAN, DCGAN, VAE, DDPM/DDIM)",
             "Each family trained from scratch for the same wall-clock budget with its defaults, then "
             "`ImageGenerator.evaluate`: **FID (genlab features)**, KID, precision and recall on the features of genlab's "
             "own small classifier trained on the data set (docs/images.md) — comparable within a table, never with "
             "published Inception FIDs. DDPM rows use DDIM 50 steps unless named."]
    for name, label in (("image_families_digits.json", "digits"), ("image_families_mnist.json", "MNIST (local IDX files)")):
        d = load(name)
        if d is None:
            continue
        fams, sweep = _image_rows(d)
        acc = next(iter(d["families"].values())).get("feature_extractor_accuracy")
        parts += [f"**{label}**, {d['seconds']:.0f} s of training each, {d['n']} generated images, {d['threads']} thread "
                  f"(feature classifier held-out accuracy {acc}):",
                  table(["family", "train steps", "train img/s", "FID (genlab features)", "KID (genlab features)", "precision",
                         "recall", "sampling img/s"], fams),
                  table(["ddpm sampler", "FID (genlab features)", "KID (genlab features)", "precision", "recall",
                         "sampling img/s"], sweep),
                  provenance(f"python bench/image_families.py --data {d['data']} --seconds {d['seconds']:.0f} --n {d['n']}",
                             name, d.get("date"), d.get("load_avg_at_start"))]
    u = load("image_diffusers.json")
    if u:
        parts += [f"**Training step of genlab's U-Net against diffusers `UNet2DModel`** (closest layout, {u['side']}x{u['side']}, "
                  f"batch {u['batch']}, {u['threads']} thread, rounds alternating in one process):",
                  table(["model", "params", "median step s", "img/s"],
                        [["genlab UNet", u["params"]["genlab"], round(u["genlab"]["median_step_s"], 3), round(u["genlab"]["images_per_s_median"])],
                         ["diffusers UNet2DModel", u["params"]["diffusers"], round(u["diffusers"]["median_step_s"], 3),
                          round(u["diffusers"]["images_per_s_median"])]]),
                  f"genlab's step is {u['genlab_speedup_median']:.2f}x faster (median).",
                  provenance(f"python bench/image_diffusers.py --side {u['side']} --batch {u['batch']}", "image_diffusers.json",
                             u.get("date"), u.get("load_avg_at_start"))]
    return "\n\n".join(parts)


def section_serve() -> str:
    d = load("serve_load.json")
    if d is None:
        return ""
    ms = lambda v: None if v is None else round(1000 * v, 1)  # noqa: E731
    rows = [[name, r["clients"], round(r["tokens_per_s"]), ms(r["ttft_p50_s"]), ms(r["ttft_p99_s"]), ms(r["token_gap_p50_s"]),
             ms(r["token_gap_p99_s"]), r["errors"]] for name, runs in d["servers"].items() for r in runs]
    batched = {r["clients"]: r for r in d["servers"].get("continuous batching", [])}
    single = {r["clients"]: r for r in d["servers"].get("one at a time", [])}
    in_process = {r["clients"]: r for r in d["servers"].get("continuous batching, in-process", [])}
    notes = [f"at {c} clients continuous batching serves {batched[c]['tokens_per_s'] / single[c]['tokens_per_s']:.1f}x the "
             "tokens/s of the one-at-a-time server" + (f" ({batched[c]['tokens_per_s'] / in_process[c]['tokens_per_s']:.2f}x "
                                                      "the same decoding inside the server process, --in-process)" if c in in_process else "")
             for c in sorted(batched) if c in single and single[c]["tokens_per_s"]]
    taking_turns = d.get("sixteen_clients_turns_tokens_per_s")
    if taking_turns:
        both, lone = taking_turns["continuous batching"], taking_turns["one at a time"]
        ratio = both / lone
        notes.append(f"target at 16 clients >= 6x: {'met' if ratio >= 6 else '**missed**'} ({ratio:.1f}x: {both:,.0f} against "
                     f"{lone:,.0f} tokens/s, the two servers taking turns three times)")
        through_httpx = d.get("sixteen_clients_turns_httpx_tokens_per_s")
        if through_httpx:
            both, lone = through_httpx["continuous batching"], through_httpx["one at a time"]
            cores = d["sixteen_clients_client_cores"]
            notes.append(f"with httpx as the load generator (it takes {cores['httpx']:.2f} of the 2 cores at 16 clients, the "
                         f"bare client {cores['bare']:.2f}) it is {both / lone:.1f}x ({both:,.0f} against {lone:,.0f} tokens/s)")
    elif 16 in batched and 16 in single:
        ratio = batched[16]["tokens_per_s"] / single[16]["tokens_per_s"]
        notes.append(f"target at 16 clients >= 6x: {'met' if ratio >= 6 else '**missed**'} ({ratio:.1f}x)")
    one = batched.get(1)
    engine, turns = d.get("engine_batch1_tokens_per_s"), d.get("one_client_turns_tokens_per_s")
    if one and engine and turns:
        ratio = turns / engine
        notes.append(f"at one client: time to first token p50 {1000 * one['ttft_p50_s']:.1f} ms (target <= 5); streaming, "
                     f"taking turns with the engine alone in one process, {turns:.0f} tokens/s = {ratio:.2f}x the "
                     f"engine's own batch-1 {engine:.0f} tokens/s (target >= 0.8x: {'met' if ratio >= 0.8 else '**missed**'}; "
                     "the client shares the 2 cores)")
        if d.get("one_client_turns_in_process_tokens_per_s"):
            inside = d["one_client_turns_in_process_tokens_per_s"]
            notes.append(f"decoding in the server's own process (--in-process) it streams {inside:.0f} tokens/s = "
                         f"{inside / engine:.2f}x the engine")
    if d.get("keepalive_get_models_ms_p50") is not None:
        notes.append(f"a keep-alive GET /v1/models takes {d['keepalive_get_models_ms_p50']:.2f} ms (p50 of 200; target <= 2)")
    return "\n\n".join([
        "## Serving",
        f"`genlab serve` under load: N asyncio clients stream /v1/completions requests ({d['new_tokens_per_request']} new "
        f"tokens each) back to back on loopback against {d['model']}, each on a keep-alive connection of a bare HTTP/1.1 "
        "client that leaves the cores to the server; the server is a separate process with "
        f"{d['server_threads']} torch thread, with continuous batching (--max-batch 64) decoding in an engine process of "
        "its own (the default), the same in the server's process (--in-process), and decoding one request at a time "
        "(--max-batch 1). Times in milliseconds.",
        table(["server", "clients", "tokens/s", "TTFT p50", "TTFT p99", "token gap p50", "token gap p99", "errors"], rows),
        ("; ".join(notes) + ".") if notes else "",
        provenance(d["command"], "serve_load.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_serve_constraints() -> str:
    d = load("serve_constraints.json")
    if d is None:
        return ""
    plain = {r["clients"]: r["tokens_per_s"] for r in d["rows"] if r["kind"] == "plain"}
    rows = []
    for r in d["rows"]:
        relative = r["tokens_per_s"] / plain[r["clients"]] if plain.get(r["clients"]) else None
        valid = f"{r['valid']}/{r['valid'] + r['invalid']}" if r["kind"] == "json schema" else "-"
        rows.append([r["kind"], r["clients"], round(r["tokens_per_s"]), f"{relative:.2f}x" if relative else "-", valid, r["errors"]])
    return "\n\n".join([
        "### Logprobs and structured output under load",
        f"One server (continuous batching, 1 torch thread) over {d['model']}; N clients send /v1/completions requests "
        f"({d['new_tokens']} new tokens, temperature 0.8) back to back: plain, with `logprobs: 5`, and under a JSON schema "
        "(an object with a string, an integer and a boolean). Tokens/s from `usage`; valid = answers that parse and validate "
        "with jsonschema. Targets: at most 20 % slower than plain; every schema answer valid.",
        table(["requests", "clients", "tokens/s", "vs plain", "valid", "errors"], rows),
        provenance(d["command"], "serve_constraints.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_constraint_engines() -> str:
    d = load("constraint_engines.json")
    if d is None:
        return ""
    rows = []
    for r in d["rows"]:
        o, g = r["outlines_core"], r["llguidance"]
        compiled = lambda e: f"over {e['compile_s']:.0f} s (gave up)" if "error" in e else f"{1000 * e['compile_s']:.1f} ms"  # noqa: E731
        rows.append([r["tokenizer"], r["case"], compiled(o), o.get("mask_us_per_token"), o.get("held_mb"), compiled(g),
                     g.get("mask_us_per_token"), g.get("held_mb")])
    return "\n\n".join([
        "### Structured-output engines",
        "The same patterns (JSON schemas through genlab's schema check, and regexes) compiled for two tokenizers built "
        "on python-docs (characters; a 2,048-token byte-level BPE) by outlines-core (a whole automaton, in genlab's "
        "bounded compiler process) and by llguidance (a lazy matcher); mask = microseconds to compute one token's "
        "mask, walking a valid answer; held = MB the compiled form keeps (outlines-core: its transitions; llguidance: "
        "resident growth). llguidance builds every case in about a millisecond and masks faster; outlines-core alone "
        "knows how many tokens an answer still needs (so answers always complete within max_tokens): genlab builds "
        "the automaton within `--constraint-timeout` and falls back to llguidance past it.",
        table(["tokenizer", "pattern", "outlines-core build", "mask µs", "held MB", "llguidance build", "mask µs", "held MB"], rows),
        provenance(d["command"], "constraint_engines.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_serve_fuzz() -> str:
    d = load("serve_fuzz.json")
    if d is None:
        return ""
    found = d["findings"]
    return "\n\n".join([
        "### Fuzzing the server",
        f"schemathesis cases from the server's own OpenAPI description, {d['examples_per_endpoint']:,} per endpoint "
        f"({', '.join(d['endpoints'])}), against a real server with a key: {len(found)} findings (5xx, hangs, dropped "
        f"connections) in {d['seconds']:.0f} s; answers by status: "
        f"{', '.join(f'{k}: {v:,}' for k, v in d.get('statuses', {}).items())}; /health answered afterwards: {d['health_after']}."
        + ("" if not found else " Findings: " + "; ".join(" ".join(f) for f in found[:5])),
        provenance(d["command"], "serve_fuzz.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_threads() -> str:
    d = load("threads_busy.json")
    if d is None:
        return ""
    rows = [[r["scenario"], r["threads"], r["train"]["threads_used"], r["train"]["steps"], round(r["sample"]["seconds"], 2)]
            for r in d["rows"]]
    notes = []
    for scenario in ("idle", "busy"):
        by = {r["threads"]: r for r in d["rows"] if r["scenario"] == scenario}
        if {"1", "2", "auto"} <= set(by):
            best_steps = max(by["1"]["train"]["steps"], by["2"]["train"]["steps"])
            best_sample = min(by["1"]["sample"]["seconds"], by["2"]["sample"]["seconds"])
            notes.append(f"{scenario}: the default trains {best_steps / max(by['auto']['train']['steps'], 1):.2f}x slower and "
                         f"samples {by['auto']['sample']['seconds'] / best_sample:.2f}x slower than the better of 1 and 2 "
                         "threads (target: within 1.2x)")
    return "\n\n".join([
        "## Threads on a busy machine",
        f"Fresh processes on this {d['cores']}-core machine, idle and beside two spinning processes (busy): training a "
        "char GPT of the default size on 1 MB of python-docs for the same training time (steps made), and sampling "
        "200 characters (seconds). `auto` counts the cores idle when the command starts.",
        table(["machine", "--threads", "threads used", "training steps", "sample s"], rows),
        "; ".join(notes) + ". OpenMP's PASSIVE wait policy made training and sampling slower on the idle machine, so "
        "genlab leaves the policy alone: under load `auto` runs one thread, and one thread has no OpenMP workers to spin.",
        provenance(d["command"], "threads_busy.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_short_budget() -> str:
    d = load("short_budget.json")
    if d is None:
        return ""
    rows = [[r["family"], r["steps"], r["planned_steps"] if r["planned_steps"] is not None else "-", f"{r['wall_seconds']:.0f} s",
             f"{r['score']:.3f}" + ("" if r["whole_val_split"] else " (periodic eval)"), f"{r['unigram']:.3f}", r["unit"],
             "yes" if r["beats_unigram"] else "**no (missed)**",
             f"{r.get('date', d['date'])}, load {r.get('load_avg_at_start', d['load_avg_at_start'])[0]:.2f}"] for r in d["rows"]]
    return "\n\n".join([
        "## Every family in a short budget",
        f"Each family's defaults for {d['seconds']:g} s (`--max-time`, nothing else set; wall is the whole `genlab.train` "
        "call, data preparation included): text families on Tiny Shakespeare, scored in bits per char at the last eval "
        "(its `eval_batches` batches of the val split; the budget left no room for the whole split) beside the val "
        "split's unigram entropy; PixelCNN on the MNIST test set in bits per dimension beside the pixel histogram's entropy; "
        "WaveNet on Bach chorales rendered by FluidSynth (`bach-audio`: no speech is on this machine; `--audio FOLDER` "
        "takes any) in bits per sample beside the val split's mu-law histogram. Warmup is at most 5 % of a budget's "
        "planned steps. Target (issue 36): below the unigram.",
        table(["family", "steps", "planned", "wall", "score", "unigram", "unit", "beats the unigram", "measured"], rows),
        provenance(d["command"], "short_budget.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_export() -> str:
    d = load("export_formats.json")
    if d is None:
        return ""
    parts = ["## Export",
             f"Each run in each form it exports to, every folder loaded back with `genlab.load`, measured in one process "
             f"with {d['threads']} thread, the forms timed in turn over interleaved rounds (best of {d['rounds']}): file size; "
             f"text: tokens/s decoding {d['new_tokens']} new tokens through genlab's step engine and val loss over the whole val split; images: images/s (DDIM, {d['ddim_steps']} steps) and "
             f"FID (genlab features) of {d['fid_images']:,} images. PyTorch int8 is `--format int8 --backend torch`; ONNX int8 "
             "is onnxruntime's dynamic quantization for text and static (calibrated on the run's data) for the U-Net."]
    for m in d["models"]:
        text = m["unit"] == "tokens"
        quality = "val_loss" if text else "fid_genlab_features"
        rows = [[r["form"], f"{r['bytes'] / 1e6:.2f} MB", round(r["batch1_per_s"], 1), round(r["batch8_per_s"], 1),
                 round(r[quality], 4 if text else 2)] for r in m["rows"]]
        by = {r["form"]: r for r in m["rows"]}
        notes = []
        for fp32, int8 in (("pytorch fp32", "pytorch int8"), ("onnx fp32", "onnx int8")):
            if fp32 in by and int8 in by:
                f, q = by[fp32], by[int8]
                change = f"{q[quality] - f[quality]:+.4f} nats" if text else f"{q[quality] - f[quality]:+.2f}"
                notes.append(f"{int8} is {q['bytes'] / f['bytes']:.0%} of the {fp32} size, "
                             f"{q['batch1_per_s'] / f['batch1_per_s']:.2f}x as fast at batch 1, and moves the "
                             f"{'val loss' if text else 'FID'} by {change}")
        if "onnx fp32" in by:
            notes.append(f"ONNX fp32 runs {by['onnx fp32']['batch1_per_s'] / by['pytorch fp32']['batch1_per_s']:.2f}x "
                         "as fast as PyTorch at batch 1")
        unit = "tok/s" if text else "images/s"
        parts += [f"**{m['model']}**",
                  table(["form", "size", f"{unit} batch 1", f"{unit} batch 8", "val loss" if text else "FID (genlab features)"], rows),
                  "; ".join(notes) + "."]
    parts.append(provenance(d["command"], "export_formats.json", d.get("date"), d.get("load_avg_at_start")))
    return "\n\n".join(parts)


def section_word_vs_char() -> str:
    d = load("word_vs_char.json")
    if d is None:
        return ""
    rows = [[r["recipe"].removesuffix(".toml"), r["tokenizer"], r["steps"], round(r["val_bits_per_char"], 3),
             f"{r['unknown_share']:.1%}" if r["tokenizer"] == "word" else "-",
             round(r["train_tokens_per_s"]) if r["train_tokens_per_s"] else "-"] for r in d["rows"]]
    return "\n\n".join([
        "### Words against characters, the same wall clock",
        "Each recipe trained on characters and on words (`--tokenizer word`, up to 8,192 pieces), `data.split = tail`; "
        "val loss of the kept weights over the whole val split in bits per character (a word token's loss divided by "
        "the characters it stands for), so the two read on one scale — except that a word outside the vocabulary is "
        "predicted as `<unk>` and counted as five characters, which flatters the word runs by about their unknown share.",
        table(["recipe", "tokens", "steps", "val bits/char", "unknown words", "train tokens/s"], rows),
        provenance(d["command"], "word_vs_char.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_profile() -> str:
    d, before = load("train_profile.json"), load("train_profile_before.json")
    if d is None:
        return ""
    runs = [("now", d)] + ([("before", before)] if before else [])
    buckets = []
    for _, run in runs:
        for r in run["rows"]:
            for name in r["buckets_ms"]:
                if name not in buckets:
                    buckets.append(name)
    rows = []
    for label, run in runs:
        for r in run["rows"]:
            total = r["profiled_step_ms"]
            shares = [f"{r['buckets_ms'].get(b, 0.0) / total:.0%}" for b in buckets]
            rows.append([f"{label}: {r['family']} ({r['params']:,} params)", round(r["step_ms"], 1), *shares,
                         f"{r['python_and_dispatch_ms'] / total:.0%}"])
    parts = [
        f"### Where a training step's time goes ({d['threads']} thread, batch {d['batch']}, context {d['context']})",
        "torch.profiler over the full step (forward, loss, backward, clipping, AdamW) at the tinyshakespeare recipes' "
        "shapes; each operator's self CPU time in one bucket, shares of the profiled step; the remainder is Python "
        "and dispatch overhead. Now: the trainer's fused AdamW, the GPT with RoPE as its recipe trains it (one "
        "rotation of queries and keys together). Before: AdamW's foreach kernels, the GPT with learned positions. "
        "The LSTM's time is one fused oneDNN kernel per layer (`mkldnn_rnn_layer`); torch has no such kernel for the "
        "GRU on CPU, which runs as small matrix products and gate ops per time step (hence its dispatch share). "
        "The GPT's elementwise share is mostly RoPE's rotation; `--compile` fuses it (the MFU table).",
        table(["family", "step ms (not profiled)", *buckets, "Python and dispatch"], rows),
        provenance(d["command"], "train_profile.json", d.get("date"), d.get("load_avg_at_start")),
    ]
    if before:
        parts.append(provenance(before["command"], "train_profile_before.json", before.get("date"),
                                before.get("load_avg_at_start")))
    return "\n\n".join(parts)


def section_demo() -> str:
    d = load("demo.json")
    if d is None:
        return ""
    t, i, m = d.get("text", {}), d.get("image", {}), d.get("music", {})
    below = 1 - t["val_bits_per_char_after"] / t["unigram_bits_per_char"]
    rows = [["whole demo (3 parts)", f"{d['wall_seconds']:.0f} s", (f"{d['seconds_per_part']:g} s of wall time per part" if d.get("bounded") else
                                                                        f"{d['seconds_per_part']:g} s of training per part")],
            ["text (LSTM 2x256, python-docs)", f"{t['steps']} steps",
             f"val {t['val_bits_per_char_before']:.2f} -> {t['val_bits_per_char_after']:.2f} bits/char; unigram entropy "
             f"{t['unigram_bits_per_char']:.2f} ({below:.0%} below it)"],
            ["image (DDPM, digits)", f"{i['steps']} steps",
             f"FID (genlab features) {i['fid_genlab_features_before']:.1f} -> {i['fid_genlab_features_after']:.1f}"],
            ["music (GPT, Bach chorales)", f"{m['steps']} steps", f"val loss {m['val_loss']:.3f}"]]
    return "\n\n".join([
        "## Demo (first impression)",
        f"`genlab demo` end to end, {d['threads']} threads; its pictures are the README's (`docs/img/`). Targets: under "
        "5 minutes on 2 cores; the text part's val bits per char at least 30 % below the unigram entropy of its val split.",
        table(["part", "work", "result"], rows),
        provenance(d["command"], "demo.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_memory() -> str:
    d = load("token_store_memory.json")
    if d is None:
        return ""
    rows = [[f"{r['corpus_mb']:.0f} MB", f"{r['peak_rss_mb']:.0f} MB", r["wall_s"], r.get("date"),
             load_note(r.get("load_avg_at_start")).removeprefix("load average at start: ")] for r in d["runs"]]
    return "\n\n".join([
        "## Flat memory while tokenizing a large corpus",
        f"`{d.get('child', 'genlab train text')}` on an N MB generated text file (tokenize, then 20 steps of a 2x64 GPT), "
        "peak RSS of the child:",
        table(["corpus", "peak RSS", "wall s (tokenize + 20 steps)", "date", "load average at start"], rows),
        *([f"Tokenizing into the token store (read, encode, write, split; the tokenizer trained beforehand) on 1 and 2 "
            "processes, the same store either way (`data.tokenize_workers`; tests/test_text_data.py checks it byte for byte), "
            "best of two turns each:",
            table(["corpus", "tokenizer", "tokens", "tokens/s, 1 process", "tokens/s, 2 processes", "speedup", "date",
                   "load average at start"],
                  [[f"{r['corpus_mb']:.0f} MB", r["tokenizer"], f"{r['tokens']:,}", f"{r['tokens_per_s']['1']:,}",
                    f"{r['tokens_per_s']['2']:,}", f"{r['speedup_2_vs_1']}x", r["date"],
                    load_note(r["load_avg_at_start"]).removeprefix("load average at start: ")] for r in d["tokenizing"]])]
          if d.get("tokenizing") else []),
        f"Command: `{d['command']}` → `bench/results/token_store_memory.json`.",
    ])


def section_audio() -> str:
    d = load("audio_wavenet.json")
    if d is None:
        return ""
    g = d["generate_samples_per_s"]
    rows = [["after ~10 min", d["at_10_min"]["step"], f"{d['at_10_min']['elapsed'] / 60:.1f} min", d["at_10_min"]["val_bits_per_sample"]],
            ["at the end (periodic eval)", d["at_end"]["step"], f"{d['at_end']['elapsed'] / 60:.1f} min", d["at_end"]["val_bits_per_sample"]],
            ["kept weights, whole val split", "-", "-", d["final_val_bits_per_sample"]],
            ["sample histogram (unigram entropy)", "-", "-", d["unigram_bits_per_sample"]]]
    speed = [["fast (a ring buffer per layer)", g["cached"], d["generate_seconds_of_sound_per_s"]["cached"]],
             ["naive (the receptive field recomputed per sample)", g["naive"], d["generate_seconds_of_sound_per_s"]["naive"]]]
    return "\n\n".join([
        "## Audio: WaveNet on bach-audio",
        f"The default WaveNet ({d['parameters']:,} parameters, receptive field {d['receptive_field']:,} samples) on "
        f"`bach-audio` ({d['train_samples'] / d['sample_rate'] / 60:.0f} minutes of training sound at {d['sample_rate']:,} Hz, "
        f"8-bit mu-law), {d['threads']} thread (wall minutes are CPU minutes), one run of {d['at_end']['elapsed'] / 60:.0f} "
        "minutes: the 10-minute figure is the periodic eval nearest 10 minutes of that run (under its learning-rate "
        f"schedule, not a run of its own). Training: {fmt(d['train_samples_per_s'])} samples/s.",
        table(["when", "step", "elapsed", "val bits/sample"], rows),
        f"Generation, one stream from a one-second held-out prime; target: fast at least 20x naive. Measured: "
        f"**{d['speedup']}x**.",
        table(["generation", "samples/s", "seconds of sound per second"], speed),
        provenance(d["command"], "audio_wavenet.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_pixelcnn() -> str:
    d = load("pixelcnn_mnist.json")
    if d is None:
        return ""
    rows = []
    for name, r in d["rows"].items():
        key = "val_nats_per_image" if r["levels"] == 2 else "val_bits_per_dim"
        unit = "nats/image" if r["levels"] == 2 else "bits/dim"
        rows.append([f"{r['levels']} levels", f"{r['minutes']:g} min", r["steps"], f"{r['at_10_min'][key]:.3f} {unit}",
                     f"{r['at_end'][key]:.3f} {unit}", f"{r['final_all_2000'].get(key, float('nan')):.3f} {unit}",
                     r["train_images_per_s"], r["sampling_images_per_s"]])
    return "\n\n".join([
        "## Images: PixelCNN on MNIST",
        "The default Gated PixelCNN on the 10,000 MNIST test images of `../shared/data/mnist`: trained on 8,000, scored "
        "on the other 2,000 (`data.val_fraction = 0.2`), one thread. The 10-minute figure is the periodic eval nearest "
        "10 minutes of the same run. Published figures for comparison (different protocol: 60,000 training images, "
        "days of GPU): Gated PixelCNN 3.03 bits/dim on CIFAR-10, PixelCNN 81.3 nats per image on binarized MNIST "
        "(van den Oord et al. 2016); ours binarizes by a fixed threshold at mid-grey, theirs by sampling each pixel, "
        "which adds noise no model can predict: our nats per image are not comparable with 81.3, and lower here does not "
        "mean better than the paper.",
        table(["PixelCNN", "budget", "steps", "val at ~10 min", "val at the end", "kept weights, all 2,000",
               "train images/s", "sampling images/s"], rows),
        provenance(d["command"], "pixelcnn_mnist.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def stylegan_verdict(rows: dict) -> str:
    """The issue's targets, each said met or missed with the figures: StyleGAN's FID below DCGAN's at equal wall time
    (20 minutes on MNIST, 5 on digits) with recall at least 0.6."""
    lines = []
    for data in ("mnist", "digits"):
        style, dc = rows.get(f"stylegan_{data}"), rows.get(f"dcgan_{data}")
        if not style or not dc:
            continue
        met = style["fid"] < dc["fid"] and style["recall"] >= 0.6
        lines.append(f"{data} at {style['minutes']:g} minutes: **{'met' if met else 'missed'}** — StyleGAN FID "
                     f"{style['fid']:.2f} (recall {style['recall']:.2f}) against DCGAN {dc['fid']:.2f} (recall "
                     f"{dc['recall']:.2f}); StyleGAN saw {style['steps'] * 32:,} images to DCGAN's {dc['steps'] * 64:,} "
                     "(its modulated, grouped convolutions and R1 cost more per image on a CPU).")
    return "Targets (FID below DCGAN's, recall ≥ 0.6): " + " ".join(lines) + (
        " Truncation lowers variety, which FID counts against it." if lines else "")


def section_stylegan() -> str:
    d = load("stylegan_vs_dcgan.json")
    if d is None:
        return ""
    rows = []
    for name, r in d["rows"].items():
        family, data = name.split("_")
        rows.append([data, family, f"{r['minutes']:g} min", r["steps"], r["parameters"], r["fid"],
                     r.get("fid_truncation_0.7", "-"), r.get("fid_truncation_0.5", "-"), r["precision"], r["recall"],
                     r["train_images_per_s"], r["sampling_images_per_s"],
                     f"{r['date']}, load {r['load_avg_at_start'][0]:.2f}" if r.get("date") else "-"])
    return "\n\n".join([
        "## Images: StyleGAN against DCGAN, the same wall clock",
        "Each family with its defaults, one thread, for the same minutes; FID on genlab's classifier features (not "
        "comparable with published Inception FIDs) of 2,000 generated images against the data set; StyleGAN also at "
        "truncation 0.7 and 0.5. One run after the other on the same machine.",
        table(["data", "family", "budget", "steps", "params", "FID", "FID psi 0.7", "FID psi 0.5", "precision", "recall",
               "train images/s", "sampling images/s", "measured"], rows),
        stylegan_verdict(d["rows"]),
        provenance(d["command"], "stylegan_vs_dcgan.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_stylegan_options() -> str:
    d = load("stylegan_options.json")
    if d is None:
        return ""
    base = next((r for r in d["rows"] if r["variant"] == "base"), None)
    rows = [[r["variant"], ", ".join(f"{k} = {v}" for k, v in r["model"].items()) or "defaults", r["steps"], r["fid"],
             r["precision"], r["recall"], f"{r['fid'] - base['fid']:+.2f}" if base else "-",
             f"{r['date']}, load {r['load_avg_at_start'][0]:.2f}"] for r in d["rows"]]
    return "\n\n".join([
        "### StyleGAN's optional regularizers at small scale",
        f"Each variant of StyleGAN for {d['minutes']:g} minutes on `{d['data']}` (1,797 images), one thread, one run after "
        "the other; FID (genlab's classifier features, 2,000 images), precision and recall of the kept EMA weights. "
        "DiffAugment and path-length regularization are in the model (`model.augment`, `model.pl_weight`) and off by "
        "default: these rows are why.",
        table(["variant", "model", "steps", "FID", "precision", "recall", "FID vs defaults", "measured"], rows),
        provenance(d["command"], "stylegan_options.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def distill_part(d: dict, student: str, result: str) -> list[str]:
    rows = [[r["run"], r["params"], r["val_loss"], r["val_bits_per_unit"], r["distinct_2"], r["sample_tokens_per_s"],
             r["train_tokens_per_s"], r["wall_s"]] for r in d["rows"]]
    by = {r["run"]: r for r in d["rows"]}
    plain = [name for name in by if name.startswith("distilled") and "critic" not in name]
    best = min(plain, key=lambda name: by[name]["val_loss"])
    gain = by["scratch"]["val_loss"] - by[best]["val_loss"]
    speed = by[best]["sample_tokens_per_s"] / by["teacher"]["sample_tokens_per_s"]
    critic = by["distilled + critic"]["val_loss"] - by["distilled"]["val_loss"]
    return [
        f"### Student: {student}",
        table(["run", "params", "val loss", "val bits/char", "distinct-2", "sample tok/s", "train tok/s", "train wall s"], rows),
        f"Targets: the distilled student at least 0.05 nats better than from scratch — measured {gain:.3f} for the "
        f"best distilled row ({best}) "
        f"({'met' if gain >= 0.05 else 'missed'}); at least 3x the teacher's sampling speed — measured {speed:.1f}x "
        f"({'met' if speed >= 3 else 'missed'}). The critic (weight 0.1) moved the distilled student's val loss by "
        f"{critic:+.3f}.",
        provenance(d["command"], result, d.get("date"), d.get("load_avg_at_start")),
    ]


def distill_c2st_part(d: dict) -> list[str]:
    """The run judged by what a loss cannot show: a two-sample test of each model's continuations."""
    def interval(r):
        low, high = r["c2st_interval"]
        return f"{r['c2st_accuracy']:.3f} ({low:.2f}-{high:.2f})"

    rows = [[r["run"], r["params"], r["val_loss"], r["val_bits_per_unit"], interval(r), r["generated_distinct_2"],
             r["generated_repetition"], r["wall_s"]] for r in d["rows"]]
    by = {r["run"]: r for r in d["rows"]}
    plain = [name for name in by if name.startswith("distilled") and "critic" not in name]
    best = min(plain, key=lambda name: by[name]["val_loss"])
    gain = by["scratch"]["val_loss"] - by[best]["val_loss"]
    base = by["distilled, alpha 0, T 1"]
    verdicts = []
    for name in (n for n in by if "critic" in n):
        r = by[name]
        fools = r["c2st_accuracy"] < base["c2st_accuracy"]
        close = r["val_loss"] - base["val_loss"] <= 0.05
        verdicts.append(f"{name}: two-sample accuracy {r['c2st_accuracy']:.3f} against {base['c2st_accuracy']:.3f} without the "
                        f"critic ({'lower: fools it more often' if fools else 'not lower'}), val loss {r['val_loss'] - base['val_loss']:+.3f} "
                        f"nats ({'within' if close else 'outside'} 0.05) — {'met' if fools and close else 'missed'}")
    real = d["rows"][0]
    teacher = by["teacher"]["val_loss"]
    return [
        f"### Judged by a two-sample test: {d['student_family'].upper()} student, teacher from {Path(d['teacher_recipe']).stem} "
        f"(val loss {teacher:.3f})",
        f"Each run's continuations of {real['c2st_texts'] * 2} held-out windows (16 characters of real text, then 128 drawn at "
        "temperature 1) against the real continuations: the accuracy of a fresh classifier (character 1-4-grams) on the "
        "held-out half, with its 95 % interval; 0.5 means it cannot tell them apart. The real text's own distinct-2 is "
        f"{real['real_distinct_2']:.3f} and its repetition rate {real['real_repetition']:.3f}.",
        table(["run", "params", "val loss", "val bits/char", "two-sample accuracy (95 %)", "distinct-2", "repetition",
               "train wall s"], rows),
        f"Targets: the distilled student at least 0.05 nats better than from scratch — measured {gain:.3f} for the best "
        f"distilled row ({best}) ({'met' if gain >= 0.05 else 'missed'}). The critic: " + "; ".join(verdicts) + ". "
        f"With the critic the samples' distinct-2 moves away from the real text's ({real['real_distinct_2']:.3f}): "
        + ", ".join(f"{by[n]['generated_distinct_2']:.3f} ({n.rsplit('+ ', 1)[-1]})" for n in by if "critic" in n)
        + f" against {base['generated_distinct_2']:.3f} without it.",
        provenance(d["command"], "distill_c2st.json", d.get("date"), d.get("load_avg_at_start")),
    ]


def section_distill() -> str:
    gpt, lstm, c2st = load("distill.json"), load("distill_lstm.json"), load("distill_c2st.json")
    if gpt is None and lstm is None and c2st is None:
        return ""
    parts = [
        "## Distillation on Tiny Shakespeare",
        "The teacher is the tinyshakespeare GPT recipe (4x128) trained 20 minutes; a student of about 1/8 of its "
        "parameters is trained for the same steps: from scratch, distilled (alpha 0.5, T 2), distilled with the critic "
        "(adv weight 0.1) and, for the LSTM, distilled from the soft targets alone (alpha 0, T 1); tail split, one thread. Val loss in nats/char over the whole val split; "
        "sampling tokens/s at batch 1 (the GPT student's run: one draw, other benches sharing the 2 cores; the LSTM "
        "student's run: the best of 5 draws, the teacher measured again beside it).",
    ]
    if gpt is not None:
        parts += distill_part(gpt, "a 2x64 GPT (the teacher's family)", "distill.json")
    if lstm is not None:
        parts += distill_part(lstm, "a 1x108 LSTM (another family, the same characters)", "distill_lstm.json")
    if c2st is not None:
        parts += distill_c2st_part(c2st)
    return "\n\n".join(parts)


def section_multimodal() -> str:
    d = load("multimodal.json")
    if d is None:
        return ""
    c = d["clip"]
    clip_rows = [[f"{c['zero_shot_accuracy']:.1%}", f"{c['image_to_text_recall@1']:.1%}", f"{c['image_to_text_recall@5']:.1%}",
                  f"{c['text_to_image_recall@1']:.1%}", f"{c['text_to_image_recall@5']:.1%}", c["images"]]]
    t2i = [[r["guidance"], f"{r['prompted_class_accuracy']:.1%}", r["fid"], r["images_per_s"]] for r in d["text_to_image"]]
    return "\n\n".join([
        "## Image and text on MNIST",
        "A clip run on the MNIST images of `../shared/data/mnist` with captions made from the labels, measured on its "
        "val split (recall counts a retrieved item of the right class). Target: zero-shot accuracy at least 80 %.",
        table(["zero-shot accuracy", "image->text R@1", "image->text R@5", "text->image R@1", "text->image R@5", "val images"], clip_rows)
        + (" The clip run is a finished one (`--clip`, trained 5 minutes by an earlier run of this bench), evaluated "
           "again in this run." if d.get("clip_reused") else ""),
        f"Text to image: a DDPM conditioned on that clip run's caption embeddings ({d.get('image_size', 28)}x"
        f"{d.get('image_size', 28)} images, {fmt(d.get('diffusion_steps'))} training steps, {d.get('threads', 1)} thread(s)), "
        "then the class prompts in turn at each "
        f"guidance; an independent classifier (held-out accuracy {d['classifier_held_out_accuracy']:.1%} on real images) "
        "names the class of each generated image. Target: at least 90 % of the prompted class at guidance 3.",
        table(["guidance", "prompted class recognised", "FID (genlab features)", "images/s"], t2i),
        provenance(d["command"], "multimodal.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_rl_code() -> str:
    d = load("rl_code.json")
    if d is None:
        return ""
    rows = [[f"{d['syntax_valid_before']:.0%}", f"{d['syntax_valid_after']:.0%}", d["reward_first"], d["reward_last"],
             d["kl_last"], d["rl_steps"], d["rl_seconds"]]]
    return "\n\n".join([
        "## Reinforcement learning for syntax",
        "A 4x128 code GPT on `python-stdlib`, then `genlab rl --reward code-parses --kl 0.05` (8 draws per step from `def `); "
        "the share of 100 sampled functions (temperature 1, no truncation) that `ast.parse` accepts, before and after. "
        "Target: at least doubled." + (" With no draw rewarded at the start, REINFORCE has no signal to follow."
                                       if d["syntax_valid_before"] == 0 else
                                       f" Measured: {d['syntax_valid_after'] / d['syntax_valid_before']:.0f}x; the KL to the start "
                                       "model shows how far the policy moved to get there."),
        table(["syntax-valid before", "after", "mean reward, first steps", "last steps", "KL at the end", "RL steps", "RL s"], rows),
        provenance(d["command"], "rl_code.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_cartpole() -> str:
    d = load("cartpole.json")
    if d is None:
        return ""
    rows = [[r["algo"], r["episodes_trained"], r["greedy_mean_return"], r["greedy_min_return"], r["last_100_training_mean"],
             r["training_episodes_to_solved_window"] or "never", "yes" if r["solved"] else "no", r["wall_s"]] for r in d["rows"]]
    return "\n\n".join([
        "## Reinforcement learning: CartPole-v1",
        "`genlab rl cartpole` with each algorithm, seed 0, one thread: the mean and lowest return over 100 greedy episodes on "
        "seeds training never saw (500 is the limit; 475 is Gymnasium's 'solved'), the mean of the last 100 training "
        "episodes (with exploration), and the first training episode whose last-100 mean reached 475.",
        table(["algorithm", "episodes", "greedy mean", "greedy min", "last 100 training", "training window solved at",
               "solved", "wall s"], rows),
        provenance(d["command"], "cartpole.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_budget_sweep() -> str:
    d = load("budget_sweep.json")
    if d is None:
        return ""
    rows, best = [], {}
    for name, r in d["runs"].items():
        budget = r["budget_s"]
        if budget not in best or r["val_loss"] < d["runs"][best[budget]]["val_loss"]:
            best[budget] = name
    for name, r in sorted(d["runs"].items(), key=lambda kv: (kv[1]["budget_s"], kv[1]["val_loss"])):
        rows.append([name + (" **(best)**" if best[r["budget_s"]] == name else ""), r["params"], r["steps"],
                     round(r["val_loss"], 3), r["median_tokens_per_s"]])
    return "\n\n".join([
        "### The sweep behind the budget recipes",
        (f"Tiny Shakespeare, `data.split = \"tail\"` (nanoGPT's cut), one `genlab sweep --sampler grid` per budget, "
         "trials one after another on the whole machine, "
         if d.get("method") == "genlab sweep" else
         f"Tiny Shakespeare, `data.split = \"tail\"` (nanoGPT's cut), measured with the earlier form of the script: "
         f"each candidate on 1 thread with {d['parallel']} candidates side by side on the 2 cores, ") +
        "scored on the whole val split with the weights it kept (best val). "
        "Names: budget, family, layers x width, dropout (d), weight decay (wd, 0.1 where not named).",
        table(["candidate", "params", "steps", "val loss (whole split)", "median tok/s"], rows),
        provenance("python bench/budget_sweep.py", "budget_sweep.json", d.get("date"), d.get("load_avg_at_start")),
    ])


def section_vs_nanogpt() -> str:
    d = load("vs_nanogpt.json")
    if d is None:
        return ""
    rows, verdicts = [], []
    budgets = sorted(d["budgets"], key=int)
    for b in budgets:
        row = d["budgets"][b]
        nano, best, gpt = row.get("nanogpt"), row.get("genlab_best"), row.get("genlab_gpt")
        rows.append([int(b), f"{nano['val_loss']:.3f} ({nano['iters']:,} it, best at {nano['iter_saved']:,})" if nano else "not run",
                     f"{best['val_loss']:.3f} ({best['train_seconds']:.0f} s)" if best else "not run",
                     f"{gpt['val_loss']:.3f} ({gpt['train_seconds']:.0f} s)" if gpt else "not run",
                     (f"{nano['val_loss'] - best['val_loss']:+.3f}" if nano and best else "-"),
                     f"{row['date']}, load {row['load_avg_at_start'][0]:.2f}" if "date" in row else "-"])
    measured = [(int(b), d["budgets"][b]) for b in budgets]
    with_both = [(b, r) for b, r in measured if "nanogpt" in r and "genlab_best" in r]
    if with_both:
        ahead = all(r["genlab_best"]["val_loss"] < r["nanogpt"]["val_loss"] for _, r in with_both)
        verdicts.append(f"genlab's best recipe ahead of nanoGPT at every budget measured: **{'yes' if ahead else 'no'}**.")
    bests = [r["genlab_best"]["val_loss"] for _, r in measured if "genlab_best" in r]
    if len(bests) > 1:
        monotone = all(later <= earlier for earlier, later in zip(bests, bests[1:]))
        verdicts.append(f"Never worse at a longer budget: **{'yes' if monotone else 'no'}**.")
    if "600" in d["budgets"] and "genlab_best" in d["budgets"]["600"]:
        v = d["budgets"]["600"]["genlab_best"]["val_loss"]
        verdicts.append(f"At 600 s: {v:.3f} (target ≤ 1.45: **{'met' if v <= 1.45 else 'missed'}**; stretch ≤ 1.40: "
                        f"{'met' if v <= 1.40 else 'missed'}).")
    if "1200" in d["budgets"] and {"genlab_best", "genlab_gpt"} <= set(d["budgets"]["1200"]):
        r = d["budgets"]["1200"]
        gap = r["genlab_gpt"]["val_loss"] - r["genlab_best"]["val_loss"]
        verdicts.append(f"GPT recipe at 1,200 s: {gap:+.3f} from the best family (target within 0.05: "
                        f"**{'met' if gap <= 0.05 else 'missed'}**).")
    else:
        verdicts.append("The 1,200 s budget (`--long`) has not been run: the GPT-within-0.05 target is not measured.")
    return "\n\n".join(part for part in [
        "## genlab against nanoGPT at equal wall-clock budgets",
        "Tiny Shakespeare on nanoGPT's own split (train: the first 90 % of the file, val: the last 10 %, the whole "
        "split scored). nanoGPT: its own train.py with its README's CPU config (4x128, context 64, batch 12, no "
        "dropout, fp32), iterations set so that its schedule ends at the budget; the checkpoint it saved (its best "
        "val estimate) is scored. genlab: `recipes/budgets/tinyshakespeare-{lstm,gpt}-<budget>.toml`. Each model is "
        "scored by non-overlapping windows of its own context, every val character predicted once. Val loss in "
        f"nats/char; {d['threads']} threads each, one run after another.",
        table(["budget (s)", "nanoGPT", "genlab best recipe (LSTM)", "genlab GPT recipe", "genlab ahead by", "run (load average at start)"], rows),
        " ".join(verdicts),
        "![val loss against training seconds](bench/results/vs_nanogpt.png)" if (RESULTS / "vs_nanogpt.png").is_file() else "",
        provenance("python bench/vs_nanogpt.py; python bench/vs_nanogpt.py --budgets 1200", "vs_nanogpt.json", d.get("date"),
                   d.get("load_avg_at_start")),
    ] if part)


SECTIONS = [section_prep, lambda: "## Sequence model zoo (text)", section_compare, section_variants, section_text_train,
            section_vs_nanogpt, section_budget_sweep, section_profile, section_text_sample, section_word_vs_char,
            section_music, section_audio, section_code, section_images, section_pixelcnn, section_stylegan, section_stylegan_options, section_serve, section_serve_constraints, section_constraint_engines, section_serve_fuzz, section_threads, section_short_budget, section_export,
            section_distill, section_rl_code, section_cartpole, section_multimodal, section_demo, section_memory]


def render() -> str:
    head = ("# Benchmarks\n\nGenerated by `python bench/report.py` from `bench/results/*.json`; do not edit by hand. "
            "Each bench script writes its JSON; rerun a script, then this one. Machine: the 2-core, 24 GiB development "
            "box without a GPU unless a section says otherwise.")
    return "\n\n".join([head, *(s for s in (f() for f in SECTIONS) if s)]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if BENCHMARKS.md differs from what the results give")
    args = ap.parse_args()
    text = render()
    if args.check:
        raise SystemExit(0 if OUT.read_text() == text else 1)
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
