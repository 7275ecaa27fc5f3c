#!/usr/bin/env python3
"""Detection benchmark for `make bench`: the rule engine on the labelled corpus, as text and
through audio (espeak-ng → 8 kHz G.711 → whisper), and the time of one scoring update.
Writes the detection section of BENCHMARKS.md (between its markers)."""
import argparse
import datetime
import json
import os
import platform
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEGIN, END = "<!-- detect-bench:begin -->", "<!-- detect-bench:end -->"
CORPUS = "tests/corpus/openings.jsonl"


def run_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout.decode()
    return json.loads(out)


def row(name, r):
    c = r["confusion"]
    g = lambda l, a: c.get(l, {}).get(a, 0)
    return (f"| {name} | {r['items']} | {r['recall'] * 100:.1f}% | {r['precision'] * 100:.1f}% | "
            f"{r['f1']:.3f} | {r['legit_diverted'] * 100:.1f}% | {r['legit_warned'] * 100:.1f}% | "
            f"{g('scam', 'allow')}/{g('scam', 'warn')}/{g('scam', 'divert')} | "
            f"{g('legit', 'allow')}/{g('legit', 'warn')}/{g('legit', 'divert')} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/scamscreen")
    ap.add_argument("--out", default="BENCHMARKS.md")
    a = ap.parse_args()
    os.chdir(ROOT)
    rows = []
    for split in ("all", "train", "test"):
        print(f"eval text {split} …", flush=True)
        rows.append(row(f"text, {split}", run_json([a.bin, "eval", "--json", "--split", split, CORPUS])))
    for split in ("all", "test"):
        print(f"eval audio {split} …", flush=True)
        rows.append(row(f"audio espeak-ng (English), {split}", run_json([a.bin, "eval", "--json", "--audio", "--split", split, CORPUS])))
    festival = "festival/cmu_us_slt_arctic_hts:160,festival/kal_diphone:160"
    for split in ("all", "test"):
        print(f"eval audio festival {split} …", flush=True)
        rows.append(row(f"audio Festival (English), {split}", run_json([a.bin, "eval", "--json", "--audio", "--voices", festival, "--split", split, CORPUS])))
    print("scoring speed …", flush=True)
    speed = run_json([a.bin, "bench", "detect", CORPUS])
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
    lines = [BEGIN, "## Scam-phrase detection (issue 3)", "",
             f"- Command: `make bench` (bench/detect_bench.py), {datetime.date.today().isoformat()}",
             f"- Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
             "- Corpus: tests/corpus/openings.jsonl (English and German; split = held-out fifth). "
             "A scam counts as caught when warned or diverted. Thresholds: warn 0.5, divert 0.85.",
             "- Audio: each English item spoken by espeak-ng (5 voices/speeds in rotation: en-us+f2/f3/f5 "
             "with a 40 ms word gap, en-us+m1, en-us) or by Festival (cmu_us_slt_arctic_hts, kal_diphone), "
             "8 kHz µ-law 300–3400 Hz, transcribed by whisper tiny.en q8_0 with the screening vocabulary "
             "prompt, then scored; German items are text-only (the model is English-only).",
             "",
             "| set | items | scam recall | precision | F1 | legit diverted | legit warned | scam allow/warn/divert | legit allow/warn/divert |",
             "|---|---|---|---|---|---|---|---|---|"] + rows + [
             "",
             "Targets (issue 3): held-out text recall ≥ 95%, legit diverted ≤ 1%, warned ≤ 5%; "
             "audio recall ≥ 90%, legit diverted ≤ 2%.",
             "",
             f"Scoring one transcript update (`scamscreen bench detect`, {speed['words_per_update']} words per update, "
             f"{speed['updates']} updates, transcripts up to {speed['longest_transcript_words']} words): "
             f"p50 {speed['p50_us']:.0f} µs, p99 {speed['p99_us']:.0f} µs, max {speed['max_us']:.0f} µs.",
             END]
    section = "\n".join(lines)
    old = open(a.out).read() if os.path.exists(a.out) else "# Benchmarks\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + section + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    open(a.out, "w").write(new)
    print(section)


if __name__ == "__main__":
    main()
