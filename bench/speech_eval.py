#!/usr/bin/env python3
"""Detection through audio with the speech models of issue 12, for `make bench`:

- held-out English (espeak-ng + MBROLA voices → 8 kHz µ-law) heard by tiny.en alone and with the
  second pass (base hears the open verdicts again in the call's language), in the same run: recall,
  legitimate calls flagged, the share of calls heard twice and the recogniser time per call;
- held-out German (four MBROLA German voices → 8 kHz µ-law) heard by base, scored by the
  German rules.

Nothing here tunes anything: it only reads `scamscreen eval --json` on the held-out split.
Writes the section between its markers in BENCHMARKS.md."""
import argparse
import datetime
import os
import platform

import detect_bench

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEGIN, END = "<!-- speech-eval:begin -->", "<!-- speech-eval:end -->"


def pct(v):
    return f"{v * 100:.1f}%"


def row(label, r):
    return (f"| {label} | {r['items']} | {pct(r['recall'])} | {pct(r['legit_diverted'])} | "
            f"{pct(r['legit_warned'])} | {pct(r['hard_diverted'])} | {pct(r['hard_warned'])} |")


def per_type(a, b, names):
    key = "scam_recall_by_category"
    cats = sorted(a[key])
    lines = [f"| scam type | n | {names[0]} | {names[1]} |", "|---|---|---|---|"]
    for c in cats:
        k1, t = a[key][c]
        k2, _ = b[key].get(c, (0, 0))
        lines.append(f"| {c} | {t} | {pct(k1 / t) if t else '-'} | {pct(k2 / t) if t else '-'} |")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/scamscreen")
    ap.add_argument("--models", default="models")
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--limit", type=int, default=0, help="at most this many items per language (0: all)")
    a = ap.parse_args()
    os.chdir(ROOT)
    tiny = os.path.join(a.models, "ggml-tiny.en-q8_0.bin")
    base = os.path.join(a.models, "ggml-base-q8_0.bin")
    ev = [a.bin, "eval", "--split", "test", "--audio", "--json"]
    if a.limit:
        ev += ["--limit", str(a.limit)]
    print("English through audio: tiny.en, then base on open verdicts", flush=True)
    en = detect_bench.run_json(ev + ["--model", tiny, "--second-model", base])
    print("German through audio: base", flush=True)
    de = detect_bench.run_json(ev + ["--lang", "de", "--model", base])
    first, both, tp = en["combined_first_pass_only"], en["combined"], en["two_pass"]
    cpu = "unknown CPU"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [BEGIN, "## Detection through audio: second pass and German (issue 12)", "",
             f"- Command: `make bench` (bench/speech_eval.py: `scamscreen eval --split test --audio "
             f"--second-model …` and `--lang de --model …`), {datetime.date.today().isoformat()}",
             f"- Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}; "
             "threads `auto`",
             "- Held-out authors only; nothing was tuned on them. English voices: espeak-ng en-us+f2, "
             "en-us+m1, MBROLA us1, us2; German: MBROLA de2, de5, de6, de7; all 8 kHz µ-law, "
             "300–3400 Hz, whole call.",
             "- Second pass as `scamscreen run` does it: when the combined verdict on tiny.en's "
             "transcript is open (a warning, or more speech could change it), whisper base q8_0 hears "
             "the same audio again in the call's language (English), and the rules score it again.", "",
             "| set | items | scam caught | legit diverted | legit warned | hard neg. diverted | hard neg. warned |",
             "|---|---|---|---|---|---|---|",
             row("English, tiny.en alone", first),
             row("English, tiny.en + second pass (base)", both),
             row("German, base", de["combined"]),
             "",
             f"Second pass: {tp['second_pass_items']} of {tp['items']} English calls heard again "
             f"({tp['second_pass_items'] / max(tp['items'], 1) * 100:.0f}%). Recogniser time per call "
             f"p50 / p95: tiny.en alone {tp['first_ms_p50']} / {tp['first_ms_p95']} ms, with the second "
             f"pass {tp['two_pass_ms_p50']} / {tp['two_pass_ms_p95']} ms (whole calls up to ~30 s; "
             "in a call the second pass only starts with ≥ 1 s left of `screening_timeout_ms`, and a "
             "late one leaves the first verdict).",
             "", "### English scam caught by type", ""]
    lines += per_type(first, both, ("tiny.en alone", "with the second pass"))
    lines += ["", "### German (base): scam caught by type", ""]
    key = "scam_recall_by_category"
    lines += ["| scam type | n | caught |", "|---|---|---|"]
    for c in sorted(de["combined"][key]):
        k, t = de["combined"][key][c]
        lines.append(f"| {c} | {t} | {pct(k / t) if t else '-'} |")
    lines.append(END)
    section = "\n".join(lines) + "\n"
    old = open(a.out).read() if os.path.exists(a.out) else "# Benchmarks\n\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + section.rstrip("\n") + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    open(a.out, "w").write(new)
    print(section)


if __name__ == "__main__":
    main()
