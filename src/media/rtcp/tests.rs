use super::*;

fn ms(t0: Instant, m: u64) -> Instant {
    t0 + Duration::from_millis(m)
}

fn block() -> ReportBlock {
    ReportBlock {
        ssrc: 0x0A0B_0C0D,
        fraction_lost: 51,
        cumulative_lost: -1,
        extended_highest_seq: 0x0001_0002,
        jitter: 80,
        last_sr: 0x5678_9ABC,
        delay_since_last_sr: 98_304,
    }
}

#[test]
fn sender_report_layout() {
    let info = SenderInfo {
        ntp: NtpTimestamp(0x1122_3344_5566_7788),
        rtp_timestamp: 0x99AA_BBCC,
        packet_count: 7,
        octet_count: 1120,
    };
    let sr = sender_report(0xDEAD_BEEF, &info, Some(&block()));
    assert_eq!(sr.len(), 52);
    assert_eq!(&sr[..4], &[0x81, 200, 0, 12], "V=2, RC=1, 13 words");
    assert_eq!(&sr[4..8], &[0xDE, 0xAD, 0xBE, 0xEF]);
    assert_eq!(
        &sr[8..16],
        &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
    );
    assert_eq!(
        &sr[16..28],
        &[0x99, 0xAA, 0xBB, 0xCC, 0, 0, 0, 7, 0, 0, 4, 0x60]
    );
    assert_eq!(&sr[28..32], &[0x0A, 0x0B, 0x0C, 0x0D]);
    assert_eq!(
        &sr[32..36],
        &[51, 0xFF, 0xFF, 0xFF],
        "fraction, then -1 in 24 bits"
    );
    assert_eq!(&sr[36..40], &[0, 1, 0, 2]);
    assert_eq!(&sr[40..44], &[0, 0, 0, 80]);
    assert_eq!(&sr[44..48], &[0x56, 0x78, 0x9A, 0xBC]);
    assert_eq!(&sr[48..52], &[0, 1, 0x80, 0]);
    let bare = sender_report(1, &info, None);
    assert_eq!((bare.len(), &bare[..4]), (28, &[0x80, 200, 0, 6][..]));
}

#[test]
fn receiver_report_layout() {
    assert_eq!(
        receiver_report(0x0102_0304, None),
        [0x80, 201, 0, 1, 1, 2, 3, 4]
    );
    let rr = receiver_report(5, Some(&block()));
    assert_eq!(rr.len(), 32);
    assert_eq!(&rr[..8], &[0x81, 201, 0, 7, 0, 0, 0, 5]);
    assert_eq!(ReportBlock::read(&rr[8..]), Some(block()));
}

#[test]
fn cumulative_lost_is_24_bit_signed() {
    for (lost, wire) in [
        (-1, [0xFF, 0xFF, 0xFF]),
        (-0x80_0000, [0x80, 0, 0]),
        (-0x100_0000, [0x80, 0, 0]),
        (0x7F_FFFF, [0x7F, 0xFF, 0xFF]),
        (i32::MAX, [0x7F, 0xFF, 0xFF]),
        (2, [0, 0, 2]),
    ] {
        let b = ReportBlock {
            cumulative_lost: lost,
            ..block()
        };
        let mut out = Vec::new();
        b.write(&mut out);
        assert_eq!(&out[5..8], &wire, "{lost}");
        let back = ReportBlock::read(&out).expect("24 bytes");
        assert_eq!(back.cumulative_lost, lost.clamp(-0x80_0000, 0x7F_FFFF));
    }
}

#[test]
fn sdes_cname_layout_and_padding() {
    let sdes = sdes_cname(0x0102_0304, "ab");
    assert_eq!(
        sdes,
        [0x81, 202, 0, 3, 1, 2, 3, 4, 1, 2, b'a', b'b', 0, 0, 0, 0]
    );
    // Item (2 + n) plus at least one null, rounded up to a word.
    for n in 0..=12 {
        let cname = "x".repeat(n);
        let p = sdes_cname(7, &cname);
        let want = 8 + (2 + n + 1).div_ceil(4) * 4;
        assert_eq!(p.len(), want, "cname length {n}");
        assert_eq!(usize::from(p[3]), want / 4 - 1);
        assert_eq!(p[9], n as u8);
        assert!(p[10 + n..].iter().all(|&b| b == 0) && p.len() > 10 + n);
    }
    let long = sdes_cname(7, &"é".repeat(200));
    assert_eq!(long[9], 254, "cut at a character boundary below 255");
    assert_eq!(long.len() % 4, 0);
}

#[test]
fn bye_layout() {
    assert_eq!(bye(0x0102_0304, None), [0x81, 203, 0, 1, 1, 2, 3, 4]);
    assert_eq!(
        bye(9, Some("end")),
        [0x81, 203, 0, 2, 0, 0, 0, 9, 3, b'e', b'n', b'd']
    );
    assert_eq!(
        bye(9, Some("hangup")),
        [0x81, 203, 0, 3, 0, 0, 0, 9, 6, b'h', b'a', b'n', b'g', b'u', b'p', 0]
    );
}

#[test]
fn loss_with_gaps_and_duplicates() {
    let t0 = Instant::now();
    let mut r = ReceiverStats::new(8000);
    assert_eq!(r.report_block(t0), None);
    for seq in (1..=10).filter(|s| *s != 3 && *s != 7) {
        assert!(r.on_packet(ms(t0, u64::from(seq) * 20), seq, u32::from(seq) * 160, 42));
    }
    let b = r.report_block(ms(t0, 200)).expect("block");
    assert_eq!((b.ssrc, b.extended_highest_seq), (42, 10));
    assert_eq!(b.cumulative_lost, 2);
    assert_eq!(b.fraction_lost, 51, "2/10 of 256");
    assert_eq!((b.last_sr, b.delay_since_last_sr), (0, 0));
    // A clean interval: fraction back to 0, cumulative kept.
    for seq in 11..=20 {
        r.on_packet(ms(t0, u64::from(seq) * 20), seq, u32::from(seq) * 160, 42);
    }
    let b = r.report_block(ms(t0, 400)).expect("block");
    assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 2));
    // Duplicates are counted as received: more received than expected.
    for seq in [20, 20, 21, 19, 19] {
        assert!(r.on_packet(ms(t0, 420), seq, u32::from(seq) * 160, 42));
    }
    let b = r.report_block(ms(t0, 440)).expect("block");
    assert_eq!((b.fraction_lost, b.cumulative_lost), (0, -2));
    assert_eq!(b.extended_highest_seq, 21);
}

#[test]
fn cumulative_loss_clamps() {
    let t0 = Instant::now();
    let mut r = ReceiverStats::new(8000);
    let mut seq = 0u16;
    for _ in 0..3000 {
        r.on_packet(t0, seq, 0, 1);
        seq = seq.wrapping_add(MAX_DROPOUT - 1);
    }
    let b = r.report_block(t0).expect("block");
    assert_eq!(b.cumulative_lost, 0x7F_FFFF);
    assert_eq!(b.fraction_lost, 255);
}

#[test]
fn sequence_wraps_into_the_extended_number() {
    let t0 = Instant::now();
    let mut r = ReceiverStats::new(8000);
    for (i, seq) in [65533u16, 65534, 65535, 0, 1, 65535, 2]
        .into_iter()
        .enumerate()
    {
        assert!(r.on_packet(ms(t0, 20 * i as u64), seq, 0, 1));
    }
    let b = r.report_block(ms(t0, 200)).expect("block");
    assert_eq!(b.extended_highest_seq, 0x0001_0002);
    assert_eq!(
        b.cumulative_lost, -1,
        "6 expected, the late 65535 counted twice"
    );
}

#[test]
fn big_jump_is_a_restart_only_when_confirmed() {
    let t0 = Instant::now();
    let mut r = ReceiverStats::new(8000);
    assert!(r.on_packet(t0, 100, 0, 1));
    assert!(r.on_packet(t0, 101, 160, 1));
    assert!(!r.on_packet(t0, 30_000, 5, 1), "a lone jump is ignored");
    assert!(r.on_packet(t0, 102, 320, 1));
    assert!(!r.on_packet(t0, 40_000, 5, 1));
    assert!(r.on_packet(t0, 40_001, 165, 1), "confirmed: restart");
    assert_eq!(r.packets_received(), 1);
    let b = r.report_block(t0).expect("block");
    assert_eq!((b.extended_highest_seq, b.cumulative_lost), (40_001, 0));
    // A new SSRC replaces the source.
    assert!(r.on_packet(t0, 7, 0, 2));
    assert_eq!((r.source_ssrc(), r.packets_received()), (Some(2), 1));
}

#[test]
fn jitter_is_zero_at_constant_delay_and_tracks_variation() {
    let t0 = Instant::now();
    let mut steady = ReceiverStats::new(8000);
    let mut jittery = ReceiverStats::new(8000);
    for i in 0..500u32 {
        let ts = 1_000_000u32.wrapping_add(i * 160);
        steady.on_packet(ms(t0, 50 + 20 * u64::from(i)), i as u16, ts, 1);
        // Every other packet 10 ms late: |D| = 80 timestamp units each time.
        let late = if i % 2 == 0 { 0 } else { 10 };
        jittery.on_packet(ms(t0, 20 * u64::from(i) + late), i as u16, ts, 1);
    }
    assert_eq!(steady.jitter(), 0);
    assert!(
        (75..=80).contains(&jittery.jitter()),
        "{}",
        jittery.jitter()
    );
    assert_eq!(
        jittery.report_block(t0).map(|b| b.jitter),
        Some(jittery.jitter())
    );
}

#[test]
fn lsr_and_dlsr_echo_the_peers_sender_report() {
    let t0 = Instant::now();
    let mut r = ReceiverStats::new(8000);
    r.on_packet(t0, 1, 0, 42);
    r.on_sender_report(ms(t0, 100), 42, NtpTimestamp(0x1234_5678_9ABC_DEF0));
    let b = r.report_block(ms(t0, 1600)).expect("block");
    assert_eq!(b.last_sr, 0x5678_9ABC);
    assert_eq!(b.delay_since_last_sr, 98_304, "1.5 s in 1/65536 s");
    // An SR from another source is not echoed in this source's block.
    r.on_sender_report(ms(t0, 1700), 43, NtpTimestamp(u64::MAX));
    let b = r.report_block(ms(t0, 1800)).expect("block");
    assert_eq!((b.last_sr, b.delay_since_last_sr), (0, 0));
}

#[test]
fn ntp_from_system_time() {
    let ntp = NtpTimestamp::from_system_time(UNIX_EPOCH + Duration::from_millis(1500));
    assert_eq!(ntp.0, ((NTP_UNIX_OFFSET_SECS + 1) << 32) | 0x8000_0000);
    assert_eq!(
        ntp.middle_32(),
        ((NTP_UNIX_OFFSET_SECS as u32 + 1) << 16) | 0x8000
    );
}

#[test]
fn sender_info_extrapolates_the_timestamp() {
    let t0 = Instant::now();
    let mut s = SenderStats::new(8000);
    assert_eq!(s.sender_info(t0, UNIX_EPOCH), None);
    s.on_packet_sent(t0, u32::MAX - 99, 160);
    s.on_packet_sent(ms(t0, 5), u32::MAX - 259, 160); // late relayed packet
    let info = s.sender_info(ms(t0, 100), UNIX_EPOCH).expect("sent");
    assert_eq!(info.rtp_timestamp, 700, "wraps: MAX - 99 + 800");
    assert_eq!((info.packet_count, info.octet_count), (2, 320));
    assert_eq!(s.last_sent_at(), Some(ms(t0, 5)));
}

#[test]
fn parser_rejects_malformed_compounds() {
    let rr = receiver_report(1, None);
    let sdes = sdes_cname(1, "ab");
    let cat = |parts: &[&[u8]]| parts.concat();
    assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
    assert!(matches!(
        parse_compound(&rr[..3]),
        Err(RtcpError::TruncatedHeader { offset: 0, .. })
    ));
    assert!(matches!(
        parse_compound(&cat(&[&rr, &[0x80, 202]])),
        Err(RtcpError::TruncatedHeader { offset: 8, .. })
    ));
    let mut v1 = rr.clone();
    v1[0] = 0x40;
    assert_eq!(
        parse_compound(&v1),
        Err(RtcpError::BadVersion {
            offset: 0,
            version: 1
        })
    );
    assert_eq!(
        parse_compound(&sdes),
        Err(RtcpError::NotStartingWithReport(PT_SDES))
    );
    assert!(matches!(
        parse_compound(&rr[..7]),
        Err(RtcpError::LengthBeyondDatagram { declared: 8, .. })
    ));
    assert!(matches!(
        parse_compound(&cat(&[&rr, &sdes[..12]])),
        Err(RtcpError::LengthBeyondDatagram { offset: 8, .. })
    ));
    let mut padded_first = cat(&[&rr, &sdes]);
    padded_first[0] |= 0x20;
    assert_eq!(
        parse_compound(&padded_first),
        Err(RtcpError::PaddingNotLast { offset: 0 })
    );
    let mut bad_pad = cat(&[&rr, &[0xA0, 204, 0, 1, 0, 0, 0, 9]]);
    assert!(parse_compound(&bad_pad).is_err(), "padding count 9 > 4");
    bad_pad[15] = 0;
    assert!(matches!(
        parse_compound(&bad_pad),
        Err(RtcpError::BadPadding { padding: 0, .. })
    ));
    bad_pad[15] = 4;
    assert!(parse_compound(&bad_pad).is_ok(), "APP with 4 padding bytes");
    let mut rc_too_big = rr.clone();
    rc_too_big[0] |= 1;
    assert!(matches!(
        parse_compound(&rc_too_big),
        Err(RtcpError::TooShortForReports { need: 32, .. })
    ));
    let mut sr_short = rr.clone();
    sr_short[1] = PT_SR;
    assert!(matches!(
        parse_compound(&sr_short),
        Err(RtcpError::TooShortForReports { need: 28, .. })
    ));
}

#[test]
fn parser_never_panics_on_random_or_mutated_bytes() {
    let mut state = 0x5EED_u64;
    let mut next = || splitmix64(&mut state);
    let info = SenderInfo {
        ntp: NtpTimestamp(1),
        rtp_timestamp: 2,
        packet_count: 3,
        octet_count: 4,
    };
    let valid = [
        compound_report(1, Some(&info), Some(&block()), "cname"),
        [receiver_report(1, Some(&block())), bye(1, Some("x"))].concat(),
    ];
    for i in 0..20_000 {
        let mut bytes: Vec<u8> = if i % 2 == 0 {
            (0..next() % 96).map(|_| next() as u8).collect()
        } else {
            valid[i % 4 / 2].clone()
        };
        if let Some(first) = bytes.first_mut() {
            // Mostly version 2, so the parser gets past the first check.
            *first = (*first & 0x3F) | if i % 3 == 0 { 0 } else { 0x80 };
        }
        for _ in 0..next() % 4 {
            if !bytes.is_empty() {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
        }
        let _ = parse_compound(&bytes);
        let mut reporter = RtcpReporter::new(Instant::now(), 1, "c".into(), 8000, 1);
        let _ = reporter.on_rtcp_received(Instant::now(), &bytes);
    }
}

#[test]
fn round_trip_between_two_reporters() {
    let t0 = Instant::now();
    let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut us = RtcpReporter::new(t0, 0xAAAA, "us".into(), 8000, 1);
    let mut phone = RtcpReporter::new(t0, 0xBBBB, "phone".into(), 8000, 2);
    for i in 0..50u32 {
        let now = ms(t0, 20 * u64::from(i));
        let ts = 8000 + 160 * i;
        us.on_rtp_sent(now, ts, 160);
        if i != 10 {
            let h = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: 500 + i as u16,
                timestamp: ts,
                ssrc: 0xAAAA,
            };
            phone.on_rtp_received(now, &h);
        }
    }
    let due = us.poll_timeout().expect("scheduled");
    let now = due.max(ms(t0, 1000));
    let sr = us
        .poll_transmit(now, wall)
        .expect("due: SR, as we have sent");
    assert_eq!(sr[1], PT_SR);
    let summary = phone.on_rtcp_received(now, &sr).expect("valid");
    let got = summary.sender_report.expect("SR");
    assert_eq!(got.ssrc, 0xAAAA);
    assert_eq!(got.info.ntp, NtpTimestamp::from_system_time(wall));
    assert_eq!((got.info.packet_count, got.info.octet_count), (50, 8000));
    let elapsed = now.duration_since(ms(t0, 980));
    assert_eq!(
        got.info.rtp_timestamp,
        8000 + 160 * 49 + in_rtp_units(elapsed, 8000)
    );
    assert!(summary.report_blocks.is_empty() && !summary.bye);
    // The phone has received from us but never sent: an RR whose block echoes our SR.
    let later = now + Duration::from_millis(250);
    let rr = phone
        .poll_transmit(later.max(phone.poll_timeout().expect("due")), wall)
        .expect("due");
    let parsed = parse_compound(&rr).expect("valid");
    assert_eq!((rr[1], parsed.sender_report), (PT_RR, None));
    let b = parsed.report_blocks[0];
    assert_eq!(b.ssrc, 0xAAAA);
    assert_eq!((b.extended_highest_seq, b.cumulative_lost), (549, 1));
    assert_eq!(b.fraction_lost, 5, "1/50 of 256");
    assert_eq!(b.last_sr, got.info.ntp.middle_32());
    assert!(b.delay_since_last_sr >= in_1_65536_secs(Duration::from_millis(250)));
}

#[test]
fn report_interval_bounds() {
    assert_eq!(report_interval(0.0, false), Duration::from_millis(2500));
    assert_eq!(report_interval(0.5, false), MIN_REPORT_INTERVAL);
    assert_eq!(report_interval(1.0, false), Duration::from_millis(7500));
    assert_eq!(report_interval(1.0, true), Duration::from_millis(3750));
    assert_eq!(report_interval(f64::NAN, false), MIN_REPORT_INTERVAL);
    assert_eq!(report_interval(-3.0, false), Duration::from_millis(2500));
}

#[test]
fn schedule_sr_or_rr_and_bye() {
    let t0 = Instant::now();
    let wall = UNIX_EPOCH;
    let mut r = RtcpReporter::new(t0, 7, cname_from_seed(3), 8000, 99);
    assert_eq!(r.bye(t0, wall, None), None, "never sent anything: no BYE");
    assert_eq!(r.poll_timeout(), None);

    let mut r = RtcpReporter::new(t0, 7, cname_from_seed(3), 8000, 99);
    let first = r.poll_timeout().expect("scheduled");
    let wait = first - t0;
    assert!(wait >= Duration::from_millis(1250) && wait <= Duration::from_millis(3750));
    assert_eq!(
        r.poll_transmit(first - Duration::from_millis(1), wall),
        None
    );
    r.on_rtp_sent(t0, 0, 160);
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let due = r.poll_timeout().expect("scheduled");
        let packet = r.poll_transmit(due, wall).expect("due");
        let next = r.poll_timeout().expect("rescheduled") - due;
        assert!(next >= Duration::from_millis(2500) && next <= Duration::from_millis(7500));
        parse_compound(&packet).expect("valid compound");
        kinds.push(packet[1]);
    }
    // Sent before the first report: SR for that report and the next, then RR.
    assert_eq!(kinds, [PT_SR, PT_SR, PT_RR, PT_RR]);

    let now = r.poll_timeout().expect("scheduled");
    let packet = r.bye(now, wall, Some("hangup")).expect("BYE");
    let parsed = parse_compound(&packet).expect("valid");
    assert!(parsed.bye);
    assert!(packet.ends_with(&bye(7, Some("hangup"))));
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.poll_transmit(now + MIN_REPORT_INTERVAL * 2, wall), None);
    assert_eq!(r.bye(now, wall, None), None, "only once");
}

#[test]
fn cnames_are_distinct_and_fit() {
    let a = cname_from_seed(1);
    assert_eq!(a.len(), 24);
    assert_ne!(a, cname_from_seed(2));
    assert_eq!(a, cname_from_seed(1));
}
