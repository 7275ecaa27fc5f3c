//! Fuzz the SIP message layer: datagram parsing, serialization round trip, validation,
//! stream framing, and the URI / name-addr / Via parsers.
//!
//! Properties checked (a failed one panics, which libFuzzer records as a crash):
//! - nothing panics on any input;
//! - a parsed message serializes (`to_bytes`) to bytes that parse again, unless the
//!   serialization outgrew `MAX_MESSAGE_BYTES` (`to_bytes` always writes Content-Length and
//!   CRLF line ends, so a message at the size limit may legitimately grow past it) or its
//!   request line was malformed (`MALFORMED_REQUEST_LINE`: rejected, never serialized);
//! - serialization is idempotent: `to_bytes(parse(to_bytes(m))) == to_bytes(m)`;
//! - `frame_stream` only returns frames inside the buffer;
//! - the overload door's lane scan never panics, and its 503 for a shed request parses as a
//!   503 response with Retry-After.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scamscreen::sip::msg::{
    frame_stream, ParseError, SipMessage, StartLine, MALFORMED_REQUEST_LINE, MAX_MESSAGE_BYTES,
};
use scamscreen::sip::uri::{NameAddr, Uri};
use scamscreen::sip::validate::{check_request, check_response};
use scamscreen::sip::via::Via;

fn exercise_message(msg: &SipMessage) {
    let _ = msg.header_values("via");
    let _ = msg.header_values("route");
    let _ = msg.content_length();
    if msg.is_request() {
        let _ = check_request(msg);
    } else {
        let _ = check_response(msg);
    }
}

/// `to_bytes` output parses again and serializes to the same bytes.
fn round_trip(msg: &SipMessage) {
    let bytes = msg.to_bytes();
    match SipMessage::parse(&bytes) {
        Ok(again) => {
            exercise_message(&again);
            let bytes2 = again.to_bytes();
            assert!(
                bytes == bytes2,
                "to_bytes is not idempotent:\nfirst:  {:?}\nsecond: {:?}",
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&bytes2)
            );
        }
        Err(ParseError::TooLarge) if bytes.len() > MAX_MESSAGE_BYTES => {}
        Err(e) => panic!(
            "to_bytes output does not parse again ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

/// The door's scan and refusal ([`scamscreen::sip::proxy::overload`]).
fn door(data: &[u8]) {
    use scamscreen::sip::proxy::overload::{lane, shed_reply};
    use scamscreen::sip::proxy::Peer;
    let _ = lane(true, data);
    let from = Peer::udp("127.0.0.2:5060".parse().unwrap());
    if let Some((_, answer)) = shed_reply(data, from) {
        match SipMessage::parse(&answer) {
            Ok(resp) => {
                assert_eq!(resp.status(), Some(503), "shed reply is not a 503");
                assert!(resp.header("retry-after").is_some(), "shed reply without Retry-After");
            }
            Err(ParseError::TooLarge) if answer.len() > MAX_MESSAGE_BYTES => {}
            Err(e) => panic!(
                "shed reply does not parse ({e}): {:?}",
                String::from_utf8_lossy(&answer)
            ),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    door(data);
    // Datagram parsing.
    if let Ok(msg) = SipMessage::parse(data) {
        exercise_message(&msg);
        // A request line with extra or missing spaces parses with a placeholder version, only
        // so that validation can answer 400; such a message is never serialized (check_request
        // always rejects it) and cannot round-trip.
        let malformed = matches!(&msg.start,
            StartLine::Request { version, .. } if version == MALFORMED_REQUEST_LINE);
        if malformed {
            assert!(
                check_request(&msg).is_err(),
                "check_request accepted a malformed request line"
            );
        } else {
            round_trip(&msg);
        }
    }

    // Stream framing, consuming the buffer the way a TCP reader does.
    let mut buf = data;
    loop {
        match frame_stream(buf, MAX_MESSAGE_BYTES) {
            Ok(Some((skip, len))) => {
                assert!(len > 0, "frame_stream returned an empty frame");
                let end = skip
                    .checked_add(len)
                    .expect("frame_stream: skip + len overflows");
                assert!(
                    end <= buf.len(),
                    "frame_stream frame {skip}+{len} beyond buffer of {}",
                    buf.len()
                );
                if let Ok(msg) = SipMessage::parse(&buf[skip..end]) {
                    exercise_message(&msg);
                }
                buf = &buf[end..];
            }
            Ok(None) | Err(_) => break,
        }
    }

    // Header-value parsers on the input as text.
    let text = String::from_utf8_lossy(data);
    if let Ok(uri) = Uri::parse(&text) {
        let _ = uri.user_decoded();
        let _ = uri.number_or_user();
        let _ = uri.param("transport");
    }
    if let Ok(na) = NameAddr::parse(&text) {
        let _ = na.tag();
    }
    if let Ok(mut via) = Via::parse(&text) {
        let _ = via.branch();
        let _ = via.has_rfc3261_branch();
        let _ = via.sent_by();
        via.set_param("received", Some("192.0.2.1".into()));
        via.set_param("rport", Some("5060".into()));
        // The proxy writes Vias with `to_header_value` (response Via with received/rport)
        // and its peers parse them again: the text must round-trip.
        let value = via.to_header_value();
        assert_eq!(
            Via::parse(&value).as_ref(),
            Ok(&via),
            "Via does not round-trip through to_header_value: {value:?}"
        );
    }
});
