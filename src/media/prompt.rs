//! The prompt player: plays 8 kHz PCM (the greeting, the warning, the block announcement)
//! to one leg as 20 ms G.711 packets, paced by the clock it is told.
//!
//! Packet `i` is due at `start + i × 20 ms`; the runtime calls [`PromptPlayer::poll_transmit`]
//! until it returns `None`, then sleeps until [`PromptPlayer::poll_timeout`]. If the runtime
//! was late, the player catches up by at most [`MAX_BURST_PACKETS`] packets and shifts the
//! rest of its schedule instead of bursting (a phone's jitter buffer would drop a burst); no
//! audio is skipped, the prompt just ends a little later. RTP timestamps rise by 160 per
//! packet whatever the pacing, and the first packet carries the marker bit (RFC 3551 §4.1),
//! both through the leg's [`RtpSender`] so the prompt continues that leg's stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::g711::{Codec, CLOCK_RATE};
use super::rtp::RtpSender;

/// Samples per packet (20 ms at 8 kHz).
pub const PACKET_SAMPLES: usize = 160;
/// Time between packets.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Most packets sent at one instant when catching up.
pub const MAX_BURST_PACKETS: u32 = 3;

/// Plays one prompt.
#[derive(Debug, Clone)]
pub struct PromptPlayer {
    pcm: Arc<[i16]>,
    codec: Codec,
    payload_type: u8,
    /// When packet 0 is (or was, after catching up) due.
    anchor: Instant,
    next_packet: usize,
    total_packets: usize,
}

impl PromptPlayer {
    /// A player for 8 kHz mono `pcm`, sending `codec` under `payload_type`, its first
    /// packet due at `start`. The last packet is padded with silence.
    pub fn new(pcm: Arc<[i16]>, codec: Codec, payload_type: u8, start: Instant) -> Self {
        let total_packets = pcm.len().div_ceil(PACKET_SAMPLES);
        PromptPlayer {
            pcm,
            codec,
            payload_type,
            anchor: start,
            next_packet: 0,
            total_packets,
        }
    }

    fn due(&self, packet: usize) -> Instant {
        self.anchor + PACKET_INTERVAL * packet as u32
    }

    /// The next packet if it is due at `now`, stamped by `sender`.
    pub fn poll_transmit(&mut self, now: Instant, sender: &mut RtpSender) -> Option<Vec<u8>> {
        if self.is_done() || now < self.due(self.next_packet) {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.anchor);
        let due_count = (elapsed.as_micros() / PACKET_INTERVAL.as_micros()) as usize + 1;
        let behind = due_count.saturating_sub(self.next_packet);
        let burst = MAX_BURST_PACKETS as usize;
        if behind > burst {
            // Late: keep only a small burst due now, push the rest of the schedule back.
            self.anchor += PACKET_INTERVAL * (behind - burst) as u32;
        }
        let start = self.next_packet * PACKET_SAMPLES;
        let end = (start + PACKET_SAMPLES).min(self.pcm.len());
        let mut payload = self.codec.encode(self.pcm.get(start..end).unwrap_or(&[]));
        payload.resize(PACKET_SAMPLES, self.codec.silence_byte());
        let first = self.next_packet == 0;
        self.next_packet += 1;
        Some(sender.send_local(
            now,
            self.payload_type,
            &payload,
            PACKET_SAMPLES as u32,
            first,
        ))
    }

    /// When the next packet is due; `None` once the prompt is done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_done()).then(|| self.due(self.next_packet))
    }

    /// Every packet sent.
    /// The clip this player plays (to loop it with a new player).
    pub fn pcm(&self) -> Arc<[i16]> {
        self.pcm.clone()
    }

    pub fn is_done(&self) -> bool {
        self.next_packet >= self.total_packets
    }

    /// Length of the prompt audio.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.pcm.len() as u64 * 1_000_000 / u64::from(CLOCK_RATE))
    }

    pub fn packets_sent(&self) -> usize {
        self.next_packet
    }

    pub fn packets_total(&self) -> usize {
        self.total_packets
    }
}

/// Convert mono f32 audio at any rate (as [`crate::asr::audio::read_wav`] returns it) into
/// the 8 kHz i16 PCM a prompt plays.
pub fn to_8k_mono(samples: &[f32], rate: u32) -> Result<Vec<i16>, crate::asr::AsrError> {
    let resampled = crate::asr::resample::resample(samples, rate, CLOCK_RATE)?;
    Ok(resampled
        .iter()
        .map(|&v| (v.clamp(-1.0, 1.0) * 32767.0).round() as i16)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{parse, RtpHeader};

    fn ramp(n: usize) -> Arc<[i16]> {
        (0..n).map(|i| ((i % 200) as i16 - 100) * 100).collect()
    }

    /// Drive the player on a virtual clock, waking every `tick` (or at its deadline when
    /// `tick` is None). Returns the packets with the time each was sent.
    fn drive(
        player: &mut PromptPlayer,
        sender: &mut RtpSender,
        t0: Instant,
        tick: Option<Duration>,
    ) -> Vec<(Instant, RtpHeader, Vec<u8>)> {
        let mut out = Vec::new();
        let mut now = t0;
        while !player.is_done() {
            let mut burst = 0;
            while let Some(p) = player.poll_transmit(now, sender) {
                let (h, payload) = parse(&p).expect("our packets parse");
                out.push((now, h, payload.to_vec()));
                burst += 1;
                assert!(burst <= MAX_BURST_PACKETS, "burst at {now:?}");
            }
            now = match tick {
                Some(t) => now + t,
                None => player.poll_timeout().unwrap_or(now),
            };
            assert!(out.len() < 10_000);
        }
        out
    }

    fn assert_continuous(packets: &[(Instant, RtpHeader, Vec<u8>)]) {
        for (i, w) in packets.windows(2).enumerate() {
            assert_eq!(
                w[1].1.sequence,
                w[0].1.sequence.wrapping_add(1),
                "seq at {i}"
            );
            assert_eq!(
                w[1].1.timestamp,
                w[0].1.timestamp.wrapping_add(160),
                "ts at {i}"
            );
            assert!(!w[1].1.marker, "marker only on the first packet");
        }
        assert!(packets[0].1.marker);
    }

    #[test]
    fn eight_seconds_is_400_paced_packets() {
        let t0 = Instant::now();
        let pcm = ramp(64_000);
        let mut player = PromptPlayer::new(pcm.clone(), Codec::Pcmu, 0, t0);
        assert_eq!(player.duration(), Duration::from_secs(8));
        assert_eq!(player.poll_timeout(), Some(t0));
        let mut sender = RtpSender::new(5, 65_500, u32::MAX - 1000);
        let packets = drive(&mut player, &mut sender, t0, None);
        assert_eq!(packets.len(), 400);
        assert_continuous(&packets);
        for (i, (at, h, payload)) in packets.iter().enumerate() {
            assert_eq!(*at, t0 + PACKET_INTERVAL * i as u32, "packet {i} on time");
            assert_eq!(h.payload_type, 0);
            assert_eq!(h.ssrc, 5);
            assert_eq!(payload.len(), 160);
        }
        // The audio is the prompt, in order.
        let decoded: Vec<i16> = packets
            .iter()
            .flat_map(|p| Codec::Pcmu.decode(&p.2))
            .collect();
        for (a, b) in decoded.iter().zip(pcm.iter()) {
            assert!((i32::from(*a) - i32::from(*b)).abs() <= 400, "{a} vs {b}");
        }
        assert!(player.is_done());
        assert_eq!(player.poll_timeout(), None);
        assert_eq!(
            player.poll_transmit(t0 + Duration::from_secs(60), &mut sender),
            None
        );
    }

    #[test]
    fn coarse_ticks_and_stalls_never_burst() {
        let t0 = Instant::now();
        // A 50 ms timer still gives 400 packets, 2 or 3 at a time.
        let mut player = PromptPlayer::new(ramp(64_000), Codec::Pcma, 8, t0);
        let mut sender = RtpSender::new(1, 0, 0);
        let packets = drive(
            &mut player,
            &mut sender,
            t0,
            Some(Duration::from_millis(50)),
        );
        assert_eq!(packets.len(), 400);
        assert_continuous(&packets);
        // A 1 s stall: three packets at once, then back on a 20 ms pace, nothing skipped.
        let mut player = PromptPlayer::new(ramp(1600), Codec::Pcmu, 0, t0);
        let mut sender = RtpSender::new(1, 0, 0);
        assert!(player.poll_transmit(t0, &mut sender).is_some());
        let late = t0 + Duration::from_secs(1);
        let burst = std::iter::from_fn(|| player.poll_transmit(late, &mut sender)).count();
        assert_eq!(burst, MAX_BURST_PACKETS as usize);
        assert_eq!(player.poll_timeout(), Some(late + PACKET_INTERVAL));
        assert_eq!(player.packets_sent(), 4);
        let rest = drive(&mut player, &mut sender, late + PACKET_INTERVAL, None);
        assert_eq!(rest.len(), 6);
    }

    #[test]
    fn short_and_empty_prompts() {
        let t0 = Instant::now();
        let mut sender = RtpSender::new(1, 0, 0);
        let mut player = PromptPlayer::new(ramp(161), Codec::Pcma, 8, t0);
        assert_eq!(player.packets_total(), 2);
        let packets = drive(&mut player, &mut sender, t0, None);
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[1].2[1..], [Codec::Pcma.silence_byte(); 159]);
        let empty = PromptPlayer::new(Arc::from(Vec::new()), Codec::Pcmu, 0, t0);
        assert!(empty.is_done());
        assert_eq!(empty.poll_timeout(), None);
        // Before the start nothing is sent.
        let mut later = PromptPlayer::new(ramp(160), Codec::Pcmu, 0, t0 + PACKET_INTERVAL);
        assert_eq!(later.poll_transmit(t0, &mut sender), None);
    }

    #[test]
    fn a_second_prompt_continues_the_stream() {
        let t0 = Instant::now();
        let mut sender = RtpSender::new(1, 10, 1000);
        let mut first = PromptPlayer::new(ramp(1600), Codec::Pcmu, 0, t0);
        let a = drive(&mut first, &mut sender, t0, None);
        let t1 = a.last().map(|p| p.0).unwrap_or(t0) + Duration::from_millis(500);
        let mut second = PromptPlayer::new(ramp(1600), Codec::Pcmu, 0, t1);
        let b = drive(&mut second, &mut sender, t1, None);
        assert_eq!(b[0].1.sequence, a[9].1.sequence + 1);
        assert!(b[0].1.marker);
        assert_eq!(b[0].1.timestamp, a[9].1.timestamp + 4000, "500 ms later");
    }

    #[test]
    fn resampled_prompt_audio() {
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin() * 0.5)
            .collect();
        let pcm = to_8k_mono(&tone, 16_000).expect("resample");
        assert_eq!(pcm.len(), 8000);
        let peak = pcm[1000..7000]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!((15_500..=17_000).contains(&peak), "{peak}");
        assert!(to_8k_mono(&[2.0, -2.0], 8000).expect("same rate") == vec![32767, -32767]);
    }
}
