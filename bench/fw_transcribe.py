"""faster-whisper reference for the ASR benchmark: transcribes WAV files with the same
CTranslate2 tiny.en model scamscreen converts, int8, 2 threads, greedy (beam 1), no
temperature fallback, no context carried over, no VAD filter. Audio is decoded before the
clock starts; the printed elapsed_ms is transcription only, as scamscreen's is.
Prints one JSON object per file, like `scamscreen transcribe --json`."""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from faster_whisper import WhisperModel, decode_audio  # noqa: E402

model_dir, files = sys.argv[1], sys.argv[2:]
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
for f in files:
    audio = decode_audio(f, sampling_rate=16000)
    t0 = time.perf_counter()
    segments, _ = model.transcribe(
        audio, language="en", beam_size=1, temperature=0.0,
        condition_on_previous_text=False, vad_filter=False)
    text = " ".join(s.text.strip() for s in segments)
    ms = (time.perf_counter() - t0) * 1000
    print(json.dumps({"file": f, "text": text, "elapsed_ms": ms, "audio_ms": len(audio) / 16}), flush=True)
