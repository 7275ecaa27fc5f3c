//! SDP tests with offers and answers as real phones write them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn crlf(s: &str) -> String {
    s.lines()
        .map(|l| format!("{}\r\n", l.trim_start()))
        .collect()
}

fn answer_to(offer: &str) -> Result<(Negotiated, String), SdpError> {
    let offer = SessionDescription::parse(offer)?;
    answer(&offer, LOCAL, 40_000, 77, 1)
}

fn sa(s: &str) -> Option<SocketAddr> {
    Some(s.parse().expect("socket address"))
}

const ASTERISK: &str = "v=0
o=- 1234567 1234567 IN IP4 192.0.2.10
s=Asterisk
c=IN IP4 192.0.2.10
t=0 0
m=audio 14000 RTP/AVP 8 0 3 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv";

const BARESIP: &str = "v=0
o=- 1928366472 2012365018 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
a=tool:baresip 3.10.1
m=audio 10462 RTP/AVP 96 9 0 8 101
b=AS:512
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:10463
a=sendrecv
a=label:1
a=ssrc:3411233297 cname:1f4c2a0e-7b3d
a=mid:audio
m=video 10464 RTP/AVP 100
a=rtpmap:100 H264/90000
a=fmtp:100 packetization-mode=0
a=sendrecv";

const SIPP: &str = "v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000";

#[test]
fn asterisk_offer_prefers_pcma() {
    let (n, text) = answer_to(&crlf(ASTERISK)).expect("answer");
    assert_eq!(n.codec, Codec::Pcma);
    assert_eq!(n.payload_type, 8);
    assert_eq!(n.telephone_event, Some(101));
    assert_eq!(n.remote, sa("192.0.2.10:14000"));
    assert_eq!(n.remote_rtcp, sa("192.0.2.10:14001"));
    assert_eq!(n.direction, Direction::SendRecv);
    assert_eq!(n.ptime_ms, 20);
    assert_eq!(
        text,
        "v=0\r\no=scamscreen 77 1 IN IP4 198.51.100.7\r\ns=scamscreen\r\n\
         c=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8 101\r\n\
         a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    // Our answer is itself valid SDP, and accepting it gives the same choice.
    let ours = SessionDescription::parse(&text).expect("our answer parses");
    let back = accept_answer(&ours).expect("accepted");
    assert_eq!((back.codec, back.payload_type), (Codec::Pcma, 8));
    assert_eq!(back.remote, sa("198.51.100.7:40000"));
}

#[test]
fn baresip_offer_gets_pcmu_and_video_is_declined() {
    // LF line ends, as some stacks write them.
    let (n, text) = answer_to(BARESIP).expect("answer");
    assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 0));
    assert_eq!(n.telephone_event, Some(101));
    assert_eq!(n.remote_rtcp, sa("10.0.0.5:10463"));
    assert!(text.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{text}");
    assert!(
        text.contains("a=fmtp:101 0-15\r\n"),
        "the offered events are kept: {text}"
    );
    assert!(text.ends_with("m=video 0 RTP/AVP 100\r\n"), "{text}");
    let parsed = SessionDescription::parse(&text).expect("parses");
    assert_eq!(parsed.media.len(), 2);
    assert_eq!(parsed.media[1].port, 0);
}

#[test]
fn sipp_default_offer() {
    let (n, text) = answer_to(&crlf(SIPP)).expect("answer");
    assert_eq!(
        (n.codec, n.payload_type, n.telephone_event),
        (Codec::Pcmu, 0, None)
    );
    assert_eq!(n.remote, sa("127.0.0.1:6000"));
    assert!(!text.contains("telephone-event"));
    // Without any rtpmap the static payload types still count (RFC 3551 §6).
    let bare = SIPP.replace("a=rtpmap:0 PCMU/8000", "");
    assert_eq!(answer_to(&bare).expect("answer").0.codec, Codec::Pcmu);
    let pcma = SIPP
        .replace("RTP/AVP 0", "RTP/AVP 8")
        .replace("a=rtpmap:0 PCMU/8000", "");
    assert_eq!(answer_to(&pcma).expect("answer").0.codec, Codec::Pcma);
}

#[test]
fn no_common_codec() {
    let g729 = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                m=audio 5004 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\n\
                a=rtpmap:101 telephone-event/8000\r\n";
    let err = answer_to(g729).expect_err("no G.711");
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.sip_status(), 488);
    // SRTP only, video only, a rejected audio stream, wideband PCMU: all 488.
    for offer in [
        SIPP.replace("RTP/AVP", "RTP/SAVP"),
        SIPP.replace("m=audio 6000 RTP/AVP 0", "m=video 6000 RTP/AVP 0"),
        SIPP.replace("m=audio 6000", "m=audio 0"),
        SIPP.replace("PCMU/8000", "PCMU/16000"),
        SIPP.replace("PCMU/8000", "PCMU/8000/2"),
        SIPP.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 G722/8000"),
        SIPP.lines().take(5).collect::<Vec<_>>().join("\n"),
    ] {
        assert_eq!(
            answer_to(&offer).map(|_| ()),
            Err(SdpError::NoCommonCodec),
            "{offer}"
        );
    }
}

#[test]
fn garbage_is_malformed() {
    for text in [
        "",
        "\r\n\r\n",
        "hello world",
        "INVITE sip:bob@example.com SIP/2.0\r\n",
        "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\ns=-\r\n",
        "v=0\r\no=- 1 1 IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nthis is not sdp\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 phone.example.com\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 ::1\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=ATM NSAP 47\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 0\r\na=rtpmap:300 PCMU/8000\r\n",
    ] {
        let err = SessionDescription::parse(text).expect_err(text);
        assert!(matches!(err, SdpError::Malformed(_)), "{text:?}: {err:?}");
        assert_eq!(err.sip_status(), 400);
    }
    // Parses, but the chosen audio stream has no address.
    let no_c = SIPP.replace("c=IN IP4 127.0.0.1", "");
    assert!(matches!(answer_to(&no_c), Err(SdpError::Malformed(_))));
}

#[test]
fn ipv6_and_media_level_connection() {
    let v6 = SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP6 2001:db8::5");
    let (n, _) = answer_to(&v6).expect("answer");
    assert_eq!(
        n.remote,
        Some(SocketAddr::new(
            IpAddr::V6("2001:db8::5".parse::<Ipv6Addr>().expect("v6")),
            6000
        ))
    );
    // Media-level c= wins over the session's; our own v6 answer says IP6.
    let both = SIPP.replace(
        "a=rtpmap:0 PCMU/8000",
        "c=IN IP4 192.0.2.99\na=rtpmap:0 PCMU/8000",
    );
    assert_eq!(
        answer_to(&both).expect("answer").0.remote,
        sa("192.0.2.99:6000")
    );
    let offer = SessionDescription::parse(SIPP).expect("parse");
    let local6: IpAddr = "2001:db8::1".parse().expect("v6");
    let (_, text) = answer(&offer, local6, 5000, 1, 2).expect("answer");
    assert!(
        text.contains("o=scamscreen 1 2 IN IP6 2001:db8::1\r\n"),
        "{text}"
    );
    assert!(text.contains("c=IN IP6 2001:db8::1\r\n"), "{text}");
    // Multicast-style TTL suffix and a=rtcp with an address.
    let ttl = SIPP
        .replace("c=IN IP4 127.0.0.1", "c=IN IP4 192.0.2.1/127")
        .replace(
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:0 PCMU/8000\na=rtcp:7001 IN IP4 192.0.2.2",
        );
    let (n, _) = answer_to(&ttl).expect("answer");
    assert_eq!(n.remote, sa("192.0.2.1:6000"));
    assert_eq!(n.remote_rtcp, sa("192.0.2.2:7001"));
}

#[test]
fn hold_and_directions() {
    // Old-style hold (RFC 2543): c=0.0.0.0; new-style: a=sendonly.
    let hold = SIPP
        .replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000\na=sendonly");
    let (n, text) = answer_to(&hold).expect("answer");
    assert_eq!(n.remote, None);
    assert_eq!(n.remote_rtcp, None);
    assert_eq!(n.direction, Direction::RecvOnly);
    assert!(!n.direction.sends() && n.direction.receives());
    assert!(text.contains("a=recvonly\r\n"));
    // Session-level direction applies when the media has none.
    let session_level = SIPP.replace("t=0 0", "t=0 0\na=recvonly");
    assert_eq!(
        answer_to(&session_level).expect("ok").0.direction,
        Direction::SendOnly
    );
    let inactive = SIPP.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000\na=inactive");
    assert_eq!(
        answer_to(&inactive).expect("ok").0.direction,
        Direction::Inactive
    );
}

#[test]
fn dynamic_payload_types_ptime_and_second_audio_stream() {
    let offer = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n\
                 m=audio 4000 RTP/AVP 112 96\na=rtpmap:112 pcmu/8000\n\
                 a=rtpmap:96 TELEPHONE-EVENT/8000\na=ptime:30\n\
                 m=audio 4002 RTP/AVP 0\n";
    let (n, text) = answer_to(offer).expect("answer");
    assert_eq!(
        (n.codec, n.payload_type, n.telephone_event),
        (Codec::Pcmu, 112, Some(96))
    );
    assert_eq!(n.ptime_ms, 30);
    assert!(text.contains("m=audio 40000 RTP/AVP 112 96\r\na=rtpmap:112 PCMU/8000\r\n"));
    assert!(text.contains("a=fmtp:96 0-16\r\n"));
    assert!(
        text.ends_with("m=audio 0 RTP/AVP 0\r\n"),
        "only one audio stream: {text}"
    );
    // An unparseable ptime is ignored; "20.0" is accepted.
    let p = SIPP.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000\na=ptime:abc");
    assert_eq!(answer_to(&p).expect("ok").0.ptime_ms, 20);
    let p = SIPP.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000\na=ptime:20.0");
    assert_eq!(answer_to(&p).expect("ok").0.ptime_ms, 20);
}

#[test]
fn our_offer_and_their_answers() {
    let text = offer(LOCAL, 30_000, 9, 3);
    assert_eq!(
        text,
        "v=0\r\no=scamscreen 9 3 IN IP4 198.51.100.7\r\ns=scamscreen\r\n\
         c=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    assert!(offer_preferring(Codec::Pcma, LOCAL, 1, 1, 1).contains("RTP/AVP 8 0 101\r\n"));
    // Answering our own offer picks PCMU and keeps 101.
    let parsed = SessionDescription::parse(&text).expect("parse");
    let (n, _) = answer(&parsed, LOCAL, 1234, 1, 1).expect("answer");
    assert_eq!((n.codec, n.telephone_event), (Codec::Pcmu, Some(101)));
    // A callee answering with PCMA only, no DTMF.
    let a = SessionDescription::parse(
        "v=0\r\no=bob 5 5 IN IP4 203.0.113.4\r\ns=-\r\nc=IN IP4 203.0.113.4\r\nt=0 0\r\n\
         m=audio 20000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n",
    )
    .expect("parse");
    let n = accept_answer(&a).expect("accept");
    assert_eq!(
        (n.codec, n.payload_type, n.telephone_event),
        (Codec::Pcma, 8, None)
    );
    assert_eq!(n.remote, sa("203.0.113.4:20000"));
    // Declined (port 0) or an answer without G.711: 488.
    let declined = SessionDescription::parse(
        "v=0\r\no=bob 5 5 IN IP4 203.0.113.4\r\ns=-\r\nc=IN IP4 203.0.113.4\r\nt=0 0\r\n\
         m=audio 0 RTP/AVP 0\r\n",
    )
    .expect("parse");
    assert_eq!(accept_answer(&declined), Err(SdpError::NoCommonCodec));
    let g729 = SessionDescription::parse(
        "v=0\r\no=bob 5 5 IN IP4 203.0.113.4\r\ns=-\r\nc=IN IP4 203.0.113.4\r\nt=0 0\r\n\
         m=audio 20000 RTP/AVP 18\r\n",
    )
    .expect("parse");
    assert_eq!(accept_answer(&g729), Err(SdpError::NoCommonCodec));
}

#[test]
fn origin_and_tolerated_lines() {
    let s = SessionDescription::parse(&crlf(BARESIP)).expect("parse");
    assert_eq!(s.origin.username, "-");
    assert_eq!(s.origin.session_id, "1928366472");
    assert_eq!(s.origin.session_version, "2012365018");
    assert_eq!(s.origin.address, "10.0.0.5");
    assert_eq!(s.session_name, "-");
    assert_eq!(s.media[0].fmtp(96), Some("stereo=1;sprop-stereo=1"));
    assert_eq!(
        s.media[0].rtcp,
        Some(RtcpAttribute {
            port: 10463,
            address: None
        })
    );
    assert_eq!(s.media[1].media, "video");
    // Unknown type letters and trailing blanks are tolerated.
    let odd = format!(
        "{}\r\nx=something new\r\n  \r\n\r\n",
        SIPP.replace('\n', "\r\n")
    );
    assert!(SessionDescription::parse(&odd).is_ok());
}
