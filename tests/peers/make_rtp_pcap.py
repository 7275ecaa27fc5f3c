#!/usr/bin/env python3
"""Turn a WAV file into a pcap of RTP/PCMU packets for sipp's play_pcap_audio.

    sox in.wav -r 8000 -c 1 -e u-law speech.wav        # any WAV -> 8 kHz mono mu-law
    python3 make_rtp_pcap.py speech.wav speech.pcap [--lead-silence-ms 5200]

Input: a WAV file that is 8 kHz mono, either mu-law (format 7, what the sox line above
writes) or 16-bit linear PCM (format 1, encoded to mu-law here). Output: a classic libpcap
file (Ethernet / IPv4 / UDP / RTP), one packet per 20 ms: PT 0 (PCMU), 160-byte payloads,
sequence numbers +1 and timestamps +160 per packet, pcap timestamps 20 ms apart.

sipp replays the payloads with the pcap's timing and rewrites addresses and ports itself
(to [media_ip]:[media_port] -> the remote SDP address), so the addresses written here are
placeholders. --lead-silence-ms prepends mu-law silence (0xFF), e.g. to wait out a greeting.
Standard library only.
"""

import argparse
import struct
import sys

FRAME = 160  # 20 ms at 8 kHz
SILENCE = 0xFF  # mu-law zero


def ulaw_encode(sample: int) -> int:
    """G.711 mu-law encoding of one signed 16-bit sample."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def read_wav_ulaw(path: str) -> bytes:
    """Mu-law bytes of an 8 kHz mono WAV (mu-law or 16-bit PCM)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        sys.exit(f"{path}: not a RIFF/WAVE file")
    pos, fmt, samples = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
        elif cid == b"data":
            samples = body
        pos += 8 + size + (size & 1)
    if fmt is None or samples is None:
        sys.exit(f"{path}: no fmt or data chunk")
    tag, channels, rate, _, _, bits = fmt
    if channels != 1 or rate != 8000:
        sys.exit(f"{path}: need 8 kHz mono, got {rate} Hz x {channels} "
                 f"(convert: sox in.wav -r 8000 -c 1 -e u-law out.wav)")
    if tag == 7 and bits == 8:
        return samples
    if tag == 1 and bits == 16:
        n = len(samples) // 2
        return bytes(ulaw_encode(s) for s in struct.unpack(f"<{n}h", samples[:2 * n]))
    if tag == 0xFFFE:
        sys.exit(f"{path}: WAVE_FORMAT_EXTENSIBLE is not supported; use the sox line")
    sys.exit(f"{path}: unsupported format tag {tag} / {bits} bits")


def checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def packet(payload: bytes, seq: int, ts: int, ssrc: int, src, dst) -> bytes:
    rtp = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(rtp), 0) + rtp  # checksum 0 = none
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), seq & 0xFFFF, 0x4000, 64, 17, 0,
                     bytes(map(int, src[0].split("."))), bytes(map(int, dst[0].split("."))))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + udp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("wav", help="8 kHz mono WAV, mu-law or 16-bit PCM")
    ap.add_argument("pcap", help="output pcap")
    ap.add_argument("--lead-silence-ms", type=int, default=0,
                    help="mu-law silence before the audio (rounded up to 20 ms)")
    ap.add_argument("--trail-silence-ms", type=int, default=0,
                    help="mu-law silence after the audio")
    ap.add_argument("--ssrc", type=lambda s: int(s, 0), default=0x5C5C5C01)
    args = ap.parse_args()

    audio = read_wav_ulaw(args.wav)
    lead = -(-args.lead_silence_ms * 8 // FRAME) * FRAME
    trail = -(-args.trail_silence_ms * 8 // FRAME) * FRAME
    audio = bytes([SILENCE]) * lead + audio + bytes([SILENCE]) * trail
    if len(audio) % FRAME:
        audio += bytes([SILENCE]) * (FRAME - len(audio) % FRAME)

    src, dst = ("10.0.0.1", 40000), ("10.0.0.2", 40002)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # LINKTYPE_ETHERNET
    start_us = 1_000_000_000 * 1_000_000
    for i in range(len(audio) // FRAME):
        pkt = packet(audio[i * FRAME:(i + 1) * FRAME], 1 + i, i * FRAME, args.ssrc, src, dst)
        t = start_us + i * 20_000
        out += struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(pkt), len(pkt)) + pkt
    with open(args.pcap, "wb") as f:
        f.write(out)
    n = len(audio) // FRAME
    print(f"{args.pcap}: {n} RTP packets, {n * 20 / 1000:.2f} s")


if __name__ == "__main__":
    main()
