#!/usr/bin/env python3
"""ASR benchmark for `make bench`: scamscreen's whisper (f16 and q8_0) against faster-whisper
int8 on the same CTranslate2 tiny.en model, measured in the same run on the same clips.

For 3 s, 6 s and 10 s telephone-band clips (espeak-ng, 8 kHz µ-law, 300-3400 Hz) it reports
the median and p95 transcription time, real-time factor, each process's peak RSS and WER.
WER is also measured on the test sets in tests/data/asr. Results replace the ASR section of
BENCHMARKS.md (between its markers); other sections are kept."""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEGIN, END = "<!-- asr-bench:begin -->", "<!-- asr-bench:end -->"

# Three texts per length; spoken at 140 wpm with a 40 ms word gap they last about 3, 6, 10 s.
TEXTS = {
    3: ["This is the pharmacy.",
        "Your computer has a virus.",
        "Hi, please call me back."],
    6: ["This is Microsoft technical support, we found errors on your computer today.",
        "Hello, I am calling from the school about the football practice on Monday.",
        "Your parcel could not be delivered, we will try again on Friday morning."],
    10: ["Hello, I am calling from Windows headquarters, we received error messages "
         "from your computer and need you to install a remote program.",
         "Good afternoon, this is the dental practice, I am calling to move your "
         "appointment from Tuesday to Thursday afternoon.",
         "This is the tax office, you owe three hundred dollars in back taxes and "
         "must pay today with gift cards."],
}
ROUNDS = 3  # the systems take turns this many times, so drift on a shared box hits all alike
RUNS = 3  # timed runs per clip, system and round


def run_measured(cmd, env=None):
    """Run a command to completion; exit with its stderr if it fails."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = p.communicate()
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err.decode()[-2000:]}")
    return out.decode(), err.decode()


def timed(cmd, env=None):
    """Run under /usr/bin/time to get the peak RSS (KB) of exactly this process."""
    with tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as rss:
        out, _ = run_measured(["/usr/bin/time", "-f", "%M", "-o", rss.name] + cmd, env)
        kb = int(rss.read().strip().splitlines()[-1])
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")], kb / 1024


def make_clips(tmp):
    clips = []
    tsv = os.path.join(tmp, "clips.tsv")
    with open(tsv, "w") as refs:
        for secs, texts in TEXTS.items():
            for i, text in enumerate(texts):
                raw = os.path.join(tmp, "raw.wav")
                wav = os.path.join(tmp, f"clip-{secs}s-{i}.wav")
                subprocess.run(["espeak-ng", "-g", "4", "-v", "en-us+f2", "-s", "140", "-w", raw, text], check=True)
                subprocess.run(["sox", raw, "-r", "8000", "-c", "1", "-e", "u-law", wav,
                                "sinc", "300-3400", "norm", "-3"], check=True)
                dur = float(subprocess.check_output(["soxi", "-D", wav]).decode())
                clips.append((secs, wav, dur))
                refs.write(f"{os.path.basename(wav)}\t{text}\n")
    return clips, tsv


def wer(bin_, refs, rows, tmp):
    hyp = os.path.join(tmp, "hyp.jsonl")
    with open(hyp, "w") as f:
        for r in rows:
            f.write(json.dumps({"file": r["file"], "text": r["text"]}) + "\n")
    out = subprocess.check_output([bin_, "wer", "--json", refs, hyp]).decode()
    return json.loads(out)["wer"] * 100


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/scamscreen")
    ap.add_argument("--models", default="models")
    ap.add_argument("--out", default="BENCHMARKS.md")
    a = ap.parse_args()
    os.chdir(ROOT)
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        print("installing faster-whisper (the benchmark reference) with pip")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "faster-whisper"], check=True)
    ct2 = os.path.join(a.models, "ct2-tiny.en")
    systems = {
        "scamscreen f16": lambda files: [a.bin, "transcribe", "--json", "--threads", "2",
                                         "--model", os.path.join(a.models, "ggml-tiny.en.bin")] + files,
        "scamscreen q8_0": lambda files: [a.bin, "transcribe", "--json", "--threads", "2",
                                          "--model", os.path.join(a.models, "ggml-tiny.en-q8_0.bin")] + files,
        "faster-whisper int8": lambda files: [sys.executable, os.path.join(HERE, "fw_transcribe.py"), ct2] + files,
    }
    env = dict(os.environ, HF_HUB_OFFLINE="1")

    with tempfile.TemporaryDirectory() as tmp:
        clips, refs = make_clips(tmp)
        # Timing: in each round every system runs every clip RUNS times in one process.
        files = [w for _ in range(RUNS) for (_, w, _) in clips]
        results = {name: {"rows": [], "rss": 0.0} for name in systems}
        for rnd in range(ROUNDS):
            for name, cmd in systems.items():
                print(f"timing {name} (round {rnd + 1}/{ROUNDS}) …", flush=True)
                rows, rss = timed(cmd(files), env)
                results[name]["rows"] += rows
                results[name]["rss"] = max(results[name]["rss"], rss)
        # WER on the same clips (first run of each) and on the test sets.
        sets = {"bench clips": (refs, [w for (_, w, _) in clips])}
        for s in ("main", "hard"):
            d = os.path.join("tests/data/asr", s)
            names = [l.split("\t")[0] for l in open(os.path.join(d, "clips.tsv")) if l.strip()]
            sets[f"test set `{s}`"] = (os.path.join(d, "clips.tsv"), [os.path.join(d, n) for n in names])
        wers = {}
        for name, cmd in systems.items():
            for set_name, (tsv, wavs) in sets.items():
                if set_name == "bench clips":
                    rows = results[name]["rows"][: len(clips)]
                else:
                    print(f"WER {name} on {set_name} …", flush=True)
                    rows, _ = timed(cmd(wavs), env)
                wers[(name, set_name)] = wer(a.bin, tsv, rows, tmp)

    lines = []
    cpu = "unknown CPU"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    fw_version = subprocess.check_output([sys.executable, "-c", "import faster_whisper, ctranslate2; print(faster_whisper.__version__, ctranslate2.__version__)"]).decode().split()
    lines += [BEGIN, "## Speech recognition (issue 2)", "",
              f"- Command: `make bench` (bench/asr_bench.py), {datetime.date.today().isoformat()}",
              f"- Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
              f"- Model: whisper tiny.en; scamscreen = whisper-rs 0.16 (whisper.cpp), greedy, audio_ctx ≥ 768, "
              f"2 threads; reference = faster-whisper {fw_version[0]} (CTranslate2 {fw_version[1]}) int8, beam 1, 2 threads, same CTranslate2 model",
              f"- Clips: espeak-ng en-us+f2, 140 wpm, 8 kHz µ-law, 300–3400 Hz; 3 texts per length, each timed "
              f"{ROUNDS * RUNS}× per system ({ROUNDS} rounds in which the systems take turns); "
              "time = transcription only (audio decoded first, model loaded once); RTF = time / audio length; "
              "peak RSS = the whole process (/usr/bin/time %M)",
              "",
              "| clip | system | median s | p95 s | RTF (median) | vs faster-whisper (median) |",
              "|---|---|---|---|---|---|"]
    medians = {}
    for secs in TEXTS:
        for name in systems:
            rows = [r for r in results[name]["rows"] if f"clip-{secs}s-" in r["file"]]
            t = [r["elapsed_ms"] / 1000 for r in rows]
            audio = statistics.mean(r["audio_ms"] / 1000 for r in rows)
            medians[(secs, name)] = statistics.median(t)
            ratio = medians[(secs, name)] / medians[(secs, "faster-whisper int8")] if (secs, "faster-whisper int8") in medians else None
            lines.append(f"| {secs} s ({audio:.1f} s) | {name} | {statistics.median(t):.3f} | {p95(t):.3f} | "
                         f"{statistics.median(t) / audio:.3f} | {'' if ratio is None else f'{ratio:.2f}×'} |")
    # Ratios need the reference median first: fill them in now.
    fixed = []
    for l in lines:
        if l.startswith("| ") and "scamscreen" in l and l.endswith("|  |"):
            secs = int(l.split("|")[1].strip().split()[0])
            name = l.split("|")[2].strip()
            ratio = medians[(secs, name)] / medians[(secs, "faster-whisper int8")]
            l = l[: -len("|  |")] + f"| {ratio:.2f}× |"
        fixed.append(l)
    lines = fixed
    lines += ["", "| system | peak RSS MB | WER bench clips | WER test set `main` | WER test set `hard` |", "|---|---|---|---|---|"]
    for name in systems:
        lines.append(f"| {name} | {results[name]['rss']:.0f} | {wers[(name, 'bench clips')]:.1f}% | "
                     f"{wers[(name, 'test set `main`')]:.1f}% | {wers[(name, 'test set `hard`')]:.1f}% |")
    lines += ["", "Targets (issue 2): scamscreen q8_0 median ≤ faster-whisper's, WER within 2 points, peak RSS ≤ 150 MB.",
              "Run-to-run spread on this shared 2-core box is large: on 2026-11-24 four runs with systems timed "
              "in blocks gave q8_0 / faster-whisper median ratios of 0.84–0.88, 0.75–0.83, 1.08–1.11 and 0.83–0.86; "
              "the rounds above interleave the systems to spread such drift evenly.",
              "Test set `main`: 3 female espeak voices, 40 ms word gap (gated at 20% in `make test`); "
              "`hard`: male voices, no word gap, up to 165 wpm (regression guard only).", END]
    section = "\n".join(lines) + "\n"

    old = open(a.out).read() if os.path.exists(a.out) else "# Benchmarks\n\nEach section is written by `make bench`; numbers are from the machine and date it names.\n\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + section.rstrip("\n") + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    open(a.out, "w").write(new)
    print(section)


if __name__ == "__main__":
    main()
