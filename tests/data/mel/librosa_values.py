# Prints reference values of whisper's mel filter bank for src/model/mel.rs's test.
# Run once: python3 librosa_values.py > librosa_values.tsv   (librosa 0.11, numpy 2)
# For a spread of rows: the peak, both neighbours of the peak and one zero far away.
import librosa
m = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)
print("row\tcol\tvalue")
for r in [0, 1, 7, 15, 23, 31, 40, 52, 64, 71, 79]:
    c = int(m[r].argmax())
    for cc in sorted({c - 1, c, min(c + 1, 200), (c + 100) % 201}):
        if cc >= 0:
            print(f"{r}\t{cc}\t{float(m[r, cc])!r}")
