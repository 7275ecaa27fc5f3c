#!/usr/bin/env bash
# Regenerates the bundled sample calls (committed): each NAME.txt is spoken by espeak-ng and
# stored as 8 kHz G.711 µ-law WAV, band-limited to 300-3400 Hz like a phone line.
# The scam call follows the first-hand accounts in shared/seeds/ (Windows "headquarters",
# error messages, customer license ID, remote access tool).   Needs: espeak-ng, sox.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for txt in *.txt; do
  name=${txt%.txt}
  espeak-ng -g 4 -v en-us+f2 -s 140 -w "$tmp/raw.wav" -f "$txt"
  sox "$tmp/raw.wav" -r 8000 -c 1 -e u-law "$name.wav" sinc 300-3400 norm -3
  echo "$name.wav: $(soxi -D "$name.wav") s"
done
