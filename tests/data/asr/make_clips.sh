#!/usr/bin/env bash
# Regenerates the ASR test clips from sentences.tsv: espeak-ng speech in several voices and
# speeds, band-limited to 300-3400 Hz and stored as 8 kHz G.711 µ-law WAV, as a phone line
# carries it. The clips are committed so tests do not depend on the espeak-ng version; run
# this only to change the sets.   Needs: espeak-ng, sox.
#
#   main set (tests/data/asr/main, WER gated at 20%): three female US voices at 140 wpm with
#     a 40 ms gap between words, the clearest espeak-ng speech over a phone band;
#   hard set (tests/data/asr/hard, regression guard): male voices, no word gap, faster.
set -euo pipefail
cd "$(dirname "$0")"
make_set() { # dir "voice:speed …" extra-espeak-flags
  local dir=$1 voices=$2 extra=$3 tmp
  mkdir -p "$dir"; rm -f "$dir"/clip-*.wav "$dir"/clips.tsv
  tmp=$(mktemp -d)
  while IFS=$'\t' read -r id text; do
    for vs in $voices; do
      local voice=${vs%%:*} speed=${vs##*:}
      local name="clip-${id}-${voice//+/_}-${speed}.wav"
      # shellcheck disable=SC2086
      espeak-ng $extra -v "$voice" -s "$speed" -w "$tmp/raw.wav" "$text"
      sox "$tmp/raw.wav" -r 8000 -c 1 -e u-law "$dir/$name" sinc 300-3400 norm -3
      printf '%s\t%s\n' "$name" "$text" >> "$dir/clips.tsv"
    done
  done < sentences.tsv
  rm -rf "$tmp"
  echo "$dir: $(wc -l < "$dir/clips.tsv") clips"
}
make_set main "en-us+f2:140 en-us+f3:140 en-us+f5:140" "-g 4"
make_set hard "en-us:150 en-us+m1:130 en:165" ""
