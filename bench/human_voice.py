#!/usr/bin/env python3
"""Word error rate on real recorded human speech: Asterisk's core prompts (Debian's
asterisk-core-sounds-<lang>-wav, read by a professional voice) with the transcripts the
packages ship (/usr/share/doc/asterisk-core-sounds-<lang>/core-sounds-<lang>.txt.gz).

  python3 bench/human_voice.py prepare --out DIR [--lang en] [--max-clips 60]
      builds DIR/<lang>-<prompt>.wav (8 kHz G.711 µ-law, as a phone line carries it) and
      DIR/clips.tsv (`file<TAB>text`, like tests/data/asr/*/clips.tsv), prints a summary.
  python3 bench/human_voice.py wer --bin target/release/scamscreen \\
          --model models/ggml-tiny.en-q8_0.bin [--language en] [--clips DIR] --out-json FILE
      transcribes the clips in one `scamscreen transcribe --json` process (model loaded
      once) under /usr/bin/time and scores them with `scamscreen wer`: corpus WER, median
      and p95 time per clip, real-time factor, peak RSS, and the worst clips.

Clip selection is deterministic: prompts sorted by name, kept if the transcript has at least
--min-words words, the recording lasts --min-secs to --max-secs, and the transcript can be
scored fairly (no annotations in brackets such as "[beep tone]" or "(10 seconds of
silence)", no spoken symbols such as "*", "#" or "@", no merged or annotated entries with a
colon, no letters spelled one by one ("M I S D N"), no lists of digits only, no numbers of
three or more digits, which may be read as digits or as a number); if more remain than --max-clips, every k-th is taken (even stride
over the sorted list). Outside English, transcripts with any digit are skipped too: the WER
normaliser spells digits out in English. References are written as the packages give them
(ellipses turned into spaces); case, punctuation, numbers and abbreviations are left to
`scamscreen wer` (src/asr/wer.rs), so prepared references and hypotheses are normalised alike.
That normaliser keeps contractions ("I'm" vs "I am" is two errors), so for English a second
WER is printed with contractions expanded on both sides, as whisper's English normaliser does."""
import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

NUMBER_WORDS = {
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy",
    "eighty", "ninety", "hundred", "thousand", "million", "oh",
}
ANNOTATION = re.compile(r"[\[\]<>(){}]")  # "[ascending tones]", "<beep>", "(1 second of silence)"
SYMBOL = re.compile(r"[*#@=+/$&%~|^_\\]")  # spoken as "star", "pound", "at", ... or not at all
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
LETTERS = re.compile(r"\b[A-Z]\b[ .,-]+\b[A-Z]\b")  # "M I S D N": spelled, written as one word
# whisper's EnglishTextNormalizer expands these (on both sides); `scamscreen wer` does not.
CONTRACTIONS = [(r"\bwon't\b", "will not"), (r"\bcan't\b", "can not"), (r"\blet's\b", "let us"),
                (r"n't\b", " not"), (r"'re\b", " are"), (r"'s\b", " is"), (r"'d\b", " would"),
                (r"'ll\b", " will"), (r"'ve\b", " have"), (r"'m\b", " am")]


def run(cmd, **kw):
    """Run a command to completion; exit with its stderr if it fails."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr.decode()[-2000:]}")
    return p.stdout.decode()


def timed(cmd):
    """Run under /usr/bin/time to get the peak RSS (KB) of exactly this process."""
    with tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as rss:
        out = run(["/usr/bin/time", "-f", "%M", "-o", rss.name] + cmd)
        kb = int(rss.read().strip().splitlines()[-1])
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")], kb / 1024


def installed(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", pkg],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return p.returncode == 0 and p.stdout.decode().endswith(" installed")


def candidate(pkg):
    out = subprocess.run(["apt-cache", "policy", pkg], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout.decode()
    m = re.search(r"Candidate:\s*(\S+)", out)
    return m.group(1) if m and m.group(1) != "(none)" else None


def find_sounds(lang):
    """The folder of the <lang> recordings and their transcript file; installs the Debian
    packages with apt-get if they are missing."""
    wav_pkg, doc_pkg = f"asterisk-core-sounds-{lang}-wav", f"asterisk-core-sounds-{lang}"
    if not installed(wav_pkg):
        if os.geteuid() != 0:
            sys.exit(f"{wav_pkg} is not installed; run: apt-get install {wav_pkg}")
        if candidate(wav_pkg) is None:
            print(f"{wav_pkg} unknown to apt, running apt-get update", flush=True)
            run(["apt-get", "update", "-q"])
        if candidate(wav_pkg) is None:
            have = sorted(set(re.findall(r"asterisk-core-sounds-(\w+)-wav",
                                         run(["apt-cache", "search", "asterisk-core-sounds"]))))
            sys.exit(f"no package {wav_pkg} in this Debian release: there are no Asterisk core "
                     f"sounds for '{lang}' (available: {', '.join(have) or 'none'})")
        print(f"installing {wav_pkg} (Asterisk's recorded prompts and their transcripts) "
              "with apt-get", flush=True)
        run(["apt-get", "install", "-y", "-q", wav_pkg], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    wavs = [f for f in run(["dpkg", "-L", wav_pkg]).splitlines() if f.endswith(".wav")]
    if not wavs:
        sys.exit(f"{wav_pkg} is installed but lists no .wav files")
    sound_dir = os.path.commonpath(wavs)
    docs = run(["dpkg", "-L", doc_pkg]).splitlines() if installed(doc_pkg) else []
    txt = [f for f in docs if re.search(r"core-sounds-[\w-]+\.txt(\.gz)?$", f) and os.path.exists(f)]
    if not txt:
        sys.exit(f"no transcript (core-sounds-{lang}.txt.gz) from {doc_pkg}: is /usr/share/doc "
                 "excluded by dpkg (see /etc/dpkg/dpkg.cfg.d/)? Reinstall it with "
                 f"apt-get install --reinstall {doc_pkg} once the exclusion is lifted")
    return sound_dir, txt[0]


def read_transcripts(path):
    """`name: text` lines (name relative to the sound folder, no extension)."""
    opener = gzip.open if path.endswith(".gz") else open
    entries = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            entries[name.strip()] = text.strip()
    return entries


def duration(path):
    try:
        with wave.open(path) as w:
            return w.getnframes() / w.getframerate()
    except (wave.Error, EOFError):
        return float(run(["soxi", "-D", path]))


def clean(text):
    """What the reference needs beyond `scamscreen wer`'s normaliser: ellipses are pauses
    (which the normaliser would otherwise glue onto the next word); spaces collapsed."""
    return " ".join(re.sub(r"\.\.\.|…", " ", text).split())


def why_not(text, dur, lang, a):
    """The reason a prompt cannot be scored fairly, or None."""
    if ANNOTATION.search(text):
        return "annotation in brackets"
    if ":" in text:
        return "colon (merged or annotated entry)"
    if SYMBOL.search(text):
        return "spoken symbol (* # @ ...)"
    if LETTERS.search(text):
        return "spelled letters"
    words = WORD.findall(text.lower())
    if words and all(w.isdigit() or w in NUMBER_WORDS for w in words):
        return "digits only"
    if re.search(r"\d{3,}", text):
        return "number of 3+ digits"
    if lang != "en" and re.search(r"\d", text):
        return "digits (normaliser spells English)"
    if len(words) < a.min_words:
        return f"fewer than {a.min_words} words"
    if not a.min_secs <= dur <= a.max_secs:
        return f"not {a.min_secs:g}-{a.max_secs:g} s"
    return None


def select(lang, a):
    sound_dir, transcript = find_sounds(lang)
    entries = read_transcripts(transcript)
    kept, skipped = [], {}
    for name in sorted(entries):
        src = os.path.join(sound_dir, name + ".wav")
        if not os.path.exists(src):
            reason = "no recording"
        else:
            dur = duration(src)
            reason = why_not(entries[name], dur, lang, a)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            kept.append((name, src, clean(entries[name]), dur))
    eligible = len(kept)
    if len(kept) > a.max_clips:
        kept = [kept[i * len(kept) // a.max_clips] for i in range(a.max_clips)]
    return kept, {"sound_dir": sound_dir, "transcript": transcript, "entries": len(entries),
                  "eligible": eligible, "skipped": skipped}


def prepare(out, lang, a):
    """Build the µ-law clips and out/clips.tsv; return the TSV path and the clips."""
    kept, info = select(lang, a)
    if not kept:
        sys.exit(f"no {lang} prompt passes the selection rules")
    os.makedirs(out, exist_ok=True)
    tsv = os.path.join(out, "clips.tsv")
    clips = []
    with open(tsv, "w") as refs:
        for name, src, text, dur in kept:
            wav = os.path.join(out, f"{lang}-{name.replace('/', '-')}.wav")
            run(["sox", src, "-r", "8000", "-c", "1", "-e", "u-law", wav])
            refs.write(f"{os.path.basename(wav)}\t{text}\n")
            clips.append((wav, text, dur))
    words = sum(len(WORD.findall(t)) for _, t, _ in clips)
    secs = [d for _, _, d in clips]
    print(f"{lang}: {info['entries']} transcripts in {info['transcript']}")
    print(f"  recordings: {info['sound_dir']}")
    for reason, n in sorted(info["skipped"].items(), key=lambda kv: -kv[1]):
        print(f"  skipped {n:4d}: {reason}")
    print(f"  eligible {info['eligible']}, selected {len(clips)} (sorted, even stride, max {a.max_clips})")
    print(f"  {words} words, {sum(secs):.1f} s of audio, {min(secs):.1f}-{max(secs):.1f} s per clip "
          f"(median {statistics.median(secs):.1f} s)")
    print(f"  wrote {len(clips)} clips (8 kHz G.711 u-law) and {tsv}")
    return tsv, clips


def wer_json(bin_, tsv, hyp):
    return json.loads(run([bin_, "wer", "--json", tsv, hyp]))


def expand(text):
    """Contractions spelled out, as whisper's English normaliser does ("you're" → "you are")."""
    text = text.lower().replace("\u2019", "'")
    for pat, rep in CONTRACTIONS:
        text = re.sub(pat, rep, text)
    return text


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def score(a):
    help_text = run([a.bin, "transcribe", "--help"])
    lang_flag = "--language" in help_text
    if a.language != "en":
        if not lang_flag:
            sys.exit(f"{a.bin} transcribe has no --language flag (it decodes as English): "
                     f"cannot score '{a.language}'")
        if re.search(r"\.en[-.]", os.path.basename(a.model)):
            sys.exit(f"{a.model} is an English-only model: cannot score '{a.language}'")
    with tempfile.TemporaryDirectory() as tmp:
        if a.clips:
            tsv = os.path.join(a.clips, "clips.tsv")
            refs = dict(l.rstrip("\n").split("\t", 1) for l in open(tsv) if l.strip())
            wavs = [os.path.join(a.clips, f) for f in refs]
        else:
            tsv, clips = prepare(os.path.join(tmp, "clips"), a.language, a)
            refs = {os.path.basename(w): t for w, t, _ in clips}
            wavs = [w for w, _, _ in clips]
        cmd = [a.bin, "transcribe", "--json", "--threads", str(a.threads), "--model", a.model]
        if lang_flag:
            cmd += ["--language", a.language]
        print(f"transcribing {len(wavs)} clips with {a.model} …", flush=True)
        rows, rss = timed(cmd + wavs)
        hyp = os.path.join(tmp, "hyp.jsonl")
        with open(hyp, "w") as f:
            for r in rows:
                f.write(json.dumps({"file": r["file"], "text": r["text"]}) + "\n")
        total = wer_json(a.bin, tsv, hyp)
        english = a.language == "en"
        if english:
            tsv_x, hyp_x = os.path.join(tmp, "refs-expanded.tsv"), os.path.join(tmp, "hyp-expanded.jsonl")
            with open(tsv_x, "w") as f:
                f.writelines(f"{k}\t{expand(v)}\n" for k, v in refs.items())
            with open(hyp_x, "w") as f:
                f.writelines(json.dumps({"file": r["file"], "text": expand(r["text"])}) + "\n" for r in rows)
            expanded = wer_json(a.bin, tsv_x, hyp_x)
        per_clip = []
        one_ref, one_hyp = os.path.join(tmp, "one.tsv"), os.path.join(tmp, "one.jsonl")

        def one(base, ref, text):
            with open(one_ref, "w") as f:
                f.write(f"{base}\t{ref}\n")
            with open(one_hyp, "w") as f:
                f.write(json.dumps({"file": base, "text": text}) + "\n")
            return wer_json(a.bin, one_ref, one_hyp)

        for r in rows:
            base = os.path.basename(r["file"])
            w = one(base, refs[base], r["text"])
            c = {"file": base, "ref": refs[base], "hyp": r["text"].strip(),
                 "errors": w["errors"], "words": w["words"], "wer": w["wer"],
                 "audio_ms": r["audio_ms"], "elapsed_ms": r["elapsed_ms"]}
            if english:
                c["errors_contractions_expanded"] = one(base, expand(refs[base]), expand(r["text"]))["errors"]
            per_clip.append(c)
    t = [r["elapsed_ms"] / 1000 for r in rows]
    rtf = [r["elapsed_ms"] / r["audio_ms"] for r in rows if r["audio_ms"]]
    summary = {
        "model": a.model, "language": a.language, "language_flag_used": lang_flag,
        "clips": total["clips"], "words": total["words"], "errors": total["errors"],
        "wer": total["wer"], "audio_s": sum(r["audio_ms"] for r in rows) / 1000,
        "median_s_per_clip": statistics.median(t), "p95_s_per_clip": p95(t),
        "total_transcribe_s": sum(t), "median_rtf": statistics.median(rtf),
        "peak_rss_mb": rss, "threads": a.threads,
        "perfect_clips": sum(1 for c in per_clip if c["errors"] == 0),
    }
    if english:
        summary["wer_contractions_expanded"] = expanded["wer"]
        summary["errors_contractions_expanded"] = expanded["errors"]
    print(f"\n{a.model} ({a.language}), {summary['clips']} clips, {summary['audio_s']:.0f} s of audio")
    print(f"  WER {summary['wer'] * 100:.1f}% ({summary['errors']} errors in {summary['words']} words); "
          f"{summary['perfect_clips']} clips without error")
    if english:
        print(f"  WER {expanded['wer'] * 100:.1f}% ({expanded['errors']} errors in {expanded['words']} words) "
              "with contractions expanded on both sides, as whisper's English normaliser does")
    print(f"  time per clip: median {summary['median_s_per_clip']:.3f} s, p95 {summary['p95_s_per_clip']:.3f} s, "
          f"median RTF {summary['median_rtf']:.3f}; peak RSS {rss:.0f} MB")
    worst = sorted(per_clip, key=lambda c: (-c["errors"], c["file"]))[: a.show]
    if worst and worst[0]["errors"]:
        print(f"  most errors:")
        for c in worst:
            if c["errors"]:
                print(f"    {c['file']} ({c['errors']}/{c['words']})\n      ref: {c['ref']}\n      hyp: {c['hyp']}")
    if a.out_json:
        with open(a.out_json, "w") as f:
            json.dump({"summary": summary, "clips": per_clip}, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {a.out_json}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def selection(p):
        p.add_argument("--max-clips", type=int, default=60, help="clips per language (default 60)")
        p.add_argument("--min-words", type=int, default=5)
        p.add_argument("--min-secs", type=float, default=1.5)
        p.add_argument("--max-secs", type=float, default=12.0)

    p = sub.add_parser("prepare", help="build µ-law clips and DIR/clips.tsv")
    p.add_argument("--out", required=True)
    p.add_argument("--lang", default="en", help="Asterisk core sounds language (Debian bookworm: en, es, fr, it, ru)")
    selection(p)
    w = sub.add_parser("wer", help="transcribe the clips with scamscreen and score them")
    w.add_argument("--bin", default="target/release/scamscreen")
    w.add_argument("--model", default="models/ggml-tiny.en-q8_0.bin")
    w.add_argument("--language", default="en", help="language of the recordings (and of the decoder)")
    w.add_argument("--clips", help="a folder from `prepare` (default: prepare one in a temporary folder)")
    w.add_argument("--threads", type=int, default=2)
    w.add_argument("--show", type=int, default=10, help="clips with most errors to print")
    w.add_argument("--out-json", help="summary and per-clip ref/hyp/WER")
    selection(w)
    a = ap.parse_args()
    for tool in ("sox", "soxi"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install sox")
    if a.cmd == "prepare":
        prepare(a.out, a.lang, a)
    else:
        a.bin, a.model = os.path.abspath(a.bin), os.path.abspath(a.model)
        if a.out_json:
            a.out_json = os.path.abspath(a.out_json)
        if a.clips:
            a.clips = os.path.abspath(a.clips)
        os.chdir(ROOT)
        score(a)


if __name__ == "__main__":
    main()
