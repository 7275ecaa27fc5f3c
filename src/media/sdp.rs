//! SDP (RFC 4566) for scamscreen's two legs, and the offer/answer rules of RFC 3264.
//!
//! * The caller's INVITE carries an offer: [`SessionDescription::parse`] it, then [`answer`]
//!   picks one audio stream and one G.711 law (the offerer's preference order, RFC 3264
//!   §6.1) plus telephone-event (RFC 4733) when offered, and writes the answer for the 200 OK.
//! * The INVITE scamscreen sends to the callee carries [`offer`]; the callee's answer goes
//!   through [`accept_answer`].
//!
//! Both give a [`Negotiated`]: what to send, to where, and in which direction, from
//! scamscreen's point of view.
//!
//! The parser is tolerant where real phones are sloppy (unknown lines and attributes, other
//! media, missing `s=`/`t=`, LF line ends, trailing blanks) and strict where a mistake would
//! send audio to the wrong place (`v=`, `o=`, `c=`, `m=`, `a=rtpmap`). It never panics.
//! `c=` with a host name instead of an address is refused as malformed (the media core
//! does no DNS).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::g711::{Codec, CLOCK_RATE};

/// The telephone-event payload type scamscreen offers.
pub const TELEPHONE_EVENT_PT: u8 = 101;
/// The events scamscreen offers: DTMF 0–9, `*`, `#`, A–D and flash (RFC 4733 §3.2).
pub const TELEPHONE_EVENTS: &str = "0-16";
/// Packet time scamscreen sends and asks for.
pub const PTIME_MS: u32 = 20;

/// Why an SDP body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// No audio stream we can accept: no PCMU/PCMA, only secure or non-RTP profiles, or no
    /// audio at all. SIP answer: 488 Not Acceptable Here (RFC 3261 §21.4.26).
    #[error("no common codec (scamscreen speaks PCMU and PCMA over RTP/AVP)")]
    NoCommonCodec,
    /// Not valid SDP (the reason names the line). SIP answer: 400 Bad Request.
    #[error("malformed SDP: {0}")]
    Malformed(String),
}

impl SdpError {
    /// The SIP status code to reject an offer with.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::NoCommonCodec => 488,
            SdpError::Malformed(_) => 400,
        }
    }
}

/// Media direction (RFC 4566 §6, RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction as seen from the other end (RFC 3264 §6.1: a sendonly offer gets a
    /// recvonly answer and so on).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// Whether this side sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether this side receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// `o=` (RFC 4566 §5.2), kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: String,
    pub address: String,
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]` (RFC 4566 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

/// `a=rtcp:<port> [IN IP4 <address>]` (RFC 3605 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpAttribute {
    pub port: u16,
    pub address: Option<IpAddr>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// "audio", "video", …
    pub media: String,
    pub port: u16,
    /// "RTP/AVP", "RTP/SAVP", …
    pub proto: String,
    /// The format list as written (payload type numbers for RTP).
    pub formats: Vec<String>,
    /// Media-level `c=` address (overrides the session's).
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:<format> <parameters>`.
    pub fmtps: Vec<(String, String)>,
    pub ptime_ms: Option<u32>,
    pub direction: Option<Direction>,
    pub rtcp: Option<RtcpAttribute>,
}

impl MediaDescription {
    fn new(media: String, port: u16, proto: String, formats: Vec<String>) -> Self {
        MediaDescription {
            media,
            port,
            proto,
            formats,
            connection: None,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            ptime_ms: None,
            direction: None,
            rtcp: None,
        }
    }

    /// The numeric formats, in the offerer's preference order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|&pt| pt <= 127)
    }

    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == pt)
    }

    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        let pt = pt.to_string();
        self.fmtps
            .iter()
            .find(|(f, _)| *f == pt)
            .map(|(_, p)| p.as_str())
    }

    /// The G.711 law a payload type stands for: its `a=rtpmap` (PCMU or PCMA at 8000 Hz,
    /// mono) or, without one, the static assignment of RFC 3551 §6.
    pub fn codec_of(&self, pt: u8) -> Option<Codec> {
        match self.rtpmap(pt) {
            Some(m) => Codec::from_name(&m.encoding)
                .filter(|_| m.clock_rate == CLOCK_RATE && m.channels.unwrap_or(1) == 1),
            None => Codec::from_static_payload_type(pt),
        }
    }

    /// The first listed telephone-event/8000 payload type (RFC 4733 §7.1.1).
    pub fn telephone_event(&self) -> Option<u8> {
        self.payload_types().find(|&pt| {
            self.rtpmap(pt).is_some_and(|m| {
                m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == CLOCK_RATE
            })
        })
    }

    /// The first supported codec in preference order, with its payload type.
    pub fn first_codec(&self) -> Option<(Codec, u8)> {
        self.payload_types()
            .find_map(|pt| self.codec_of(pt).map(|c| (c, pt)))
    }

    fn is_rtp_avp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP")
    }
}

/// A parsed SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    /// Session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

fn malformed(line_no: usize, what: impl std::fmt::Display) -> SdpError {
    SdpError::Malformed(format!("line {line_no}: {what}"))
}

/// `IN IP4 <addr>[/ttl[/n]]` or `IN IP6 <addr>[/n]` (RFC 4566 §5.7).
fn parse_address(nettype: &str, addrtype: &str, addr: &str) -> Result<IpAddr, String> {
    if !nettype.eq_ignore_ascii_case("IN") {
        return Err(format!("network type {nettype:?}"));
    }
    let addr = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    match (addrtype.to_ascii_uppercase().as_str(), ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err(format!("address type {addrtype} does not match {addr}")),
    }
}

fn parse_connection(value: &str) -> Result<IpAddr, String> {
    match value.split_ascii_whitespace().collect::<Vec<_>>()[..] {
        [net, ty, addr] => parse_address(net, ty, addr),
        _ => Err(format!("c={value:?} needs 3 fields")),
    }
}

fn parse_rtpmap(value: &str) -> Result<RtpMap, String> {
    let (pt, rest) = value
        .split_once(' ')
        .ok_or_else(|| format!("rtpmap {value:?}"))?;
    let payload_type = pt
        .parse::<u8>()
        .ok()
        .filter(|&p| p <= 127)
        .ok_or_else(|| format!("rtpmap payload type {pt:?}"))?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next().unwrap_or_default().to_string();
    let clock_rate = parts
        .next()
        .and_then(|c| c.parse::<u32>().ok())
        .ok_or_else(|| format!("rtpmap clock rate in {value:?}"))?;
    let channels = match parts.next() {
        Some(c) => Some(
            c.parse::<u16>()
                .map_err(|_| format!("rtpmap channels in {value:?}"))?,
        ),
        None => None,
    };
    if encoding.is_empty() {
        return Err(format!("rtpmap encoding in {value:?}"));
    }
    Ok(RtpMap {
        payload_type,
        encoding,
        clock_rate,
        channels,
    })
}

fn parse_rtcp(value: &str) -> Option<RtcpAttribute> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let port = fields.first()?.parse::<u16>().ok()?;
    let address = match fields[1..] {
        [net, ty, addr] => Some(parse_address(net, ty, addr).ok()?),
        _ => None,
    };
    Some(RtcpAttribute { port, address })
}

impl SessionDescription {
    /// Parse an SDP body (RFC 4566 §5).
    pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
        let mut lines = text
            .split('\n')
            .map(|l| l.trim_end_matches(['\r', ' ', '\t']))
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.is_empty());
        match lines.next() {
            Some((_, "v=0")) => {}
            Some((n, l)) => return Err(malformed(n, format!("expected v=0, found {l:?}"))),
            None => return Err(SdpError::Malformed("empty body".into())),
        }
        let mut origin = None;
        let mut session_name = String::new();
        let mut connection = None;
        let mut direction = None;
        let mut media: Vec<MediaDescription> = Vec::new();
        for (n, line) in lines {
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(malformed(n, format!("not <type>=<value>: {line:?}")));
            }
            let value = &line[2..];
            let current = media.last_mut();
            match (bytes[0], current) {
                (b'o', _) => {
                    let f: Vec<&str> = value.split_ascii_whitespace().collect();
                    let [user, id, version, _net, _ty, addr] = f[..] else {
                        return Err(malformed(n, "o= needs 6 fields"));
                    };
                    origin = Some(Origin {
                        username: user.into(),
                        session_id: id.into(),
                        session_version: version.into(),
                        address: addr.into(),
                    });
                }
                (b's', None) => session_name = value.to_string(),
                (b'c', m) => {
                    let ip = parse_connection(value).map_err(|e| malformed(n, e))?;
                    match m {
                        Some(m) => m.connection = Some(ip),
                        None => connection = Some(ip),
                    }
                }
                (b'm', _) => {
                    let f: Vec<&str> = value.split_ascii_whitespace().collect();
                    let [kind, port, proto, formats @ ..] = &f[..] else {
                        return Err(malformed(n, "m= needs media, port and proto"));
                    };
                    let port = port.split('/').next().unwrap_or(port);
                    let port = port
                        .parse::<u16>()
                        .map_err(|_| malformed(n, format!("m= port {port:?}")))?;
                    let formats = formats.iter().map(|s| s.to_string()).collect();
                    media.push(MediaDescription::new(
                        kind.to_string(),
                        port,
                        proto.to_string(),
                        formats,
                    ));
                }
                (b'a', m) => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    let arg = arg.trim();
                    if let Some(d) = Direction::from_attribute(name) {
                        match m {
                            Some(m) => m.direction = Some(d),
                            None => direction = Some(d),
                        }
                        continue;
                    }
                    let Some(m) = m else { continue };
                    match name {
                        "rtpmap" => m
                            .rtpmaps
                            .push(parse_rtpmap(arg).map_err(|e| malformed(n, e))?),
                        "fmtp" => {
                            let (f, p) = arg.split_once(' ').unwrap_or((arg, ""));
                            m.fmtps.push((f.to_string(), p.trim().to_string()));
                        }
                        "ptime" => {
                            m.ptime_ms = arg
                                .parse::<f64>()
                                .ok()
                                .filter(|p| p.is_finite() && *p >= 1.0 && *p <= 1000.0)
                                .map(|p| p.round() as u32);
                        }
                        "rtcp" => m.rtcp = parse_rtcp(arg),
                        _ => {}
                    }
                }
                // t=, b=, k=, r=, z=, i=, u=, e=, p= and anything unknown: not needed.
                _ => {}
            }
        }
        let origin = origin.ok_or_else(|| SdpError::Malformed("no o= line".into()))?;
        Ok(SessionDescription {
            origin,
            session_name,
            connection,
            direction,
            media,
        })
    }
}

/// What one leg agreed on, from scamscreen's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// The payload type the codec has on this leg (static 0/8, or a dynamic one).
    pub payload_type: u8,
    /// The telephone-event payload type, when both ends do RFC 4733.
    pub telephone_event: Option<u8>,
    /// Where to send RTP: `None` while on hold (`c=0.0.0.0` / `::`, RFC 3264 §8.4) or when
    /// the stream's port is 0.
    pub remote: Option<SocketAddr>,
    /// Where to send RTCP: `a=rtcp` (RFC 3605) or the RTP port + 1 (RFC 3550 §11).
    pub remote_rtcp: Option<SocketAddr>,
    /// scamscreen's direction on this leg (sendonly = we send, the phone does not).
    pub direction: Direction,
    /// The packet time the phone asked for (`a=ptime`), default 20.
    pub ptime_ms: u32,
}

/// Build the [`Negotiated`] for a chosen stream of `session`.
fn negotiated(
    session: &SessionDescription,
    m: &MediaDescription,
    codec: Codec,
    payload_type: u8,
) -> Result<Negotiated, SdpError> {
    let ip = m
        .connection
        .or(session.connection)
        .ok_or_else(|| SdpError::Malformed("no c= line for the audio stream".into()))?;
    let (remote, remote_rtcp) = if ip.is_unspecified() || m.port == 0 {
        (None, None)
    } else {
        let rtcp = match m.rtcp {
            Some(a) => Some(SocketAddr::new(a.address.unwrap_or(ip), a.port)),
            None => m.port.checked_add(1).map(|p| SocketAddr::new(ip, p)),
        };
        (Some(SocketAddr::new(ip, m.port)), rtcp)
    };
    let theirs = m
        .direction
        .or(session.direction)
        .unwrap_or(Direction::SendRecv);
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: m.telephone_event(),
        remote,
        remote_rtcp,
        direction: theirs.reversed(),
        ptime_ms: m.ptime_ms.unwrap_or(PTIME_MS),
    })
}

fn session_header(out: &mut String, ip: IpAddr, session_id: u64, version: u64) {
    let ty = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(
        out,
        "v=0\r\no=scamscreen {session_id} {version} IN {ty} {ip}\r\ns=scamscreen\r\n\
         c=IN {ty} {ip}\r\nt=0 0\r\n"
    );
}

/// Answer an offer (RFC 3264 §6): the first audio RTP/AVP stream with a non-zero port and
/// a G.711 codec is accepted with the offerer's most preferred of PCMU/PCMA, under the
/// offer's payload type number (§6.1), plus telephone-event with the offer's number when
/// offered. Every other stream (video, a second audio stream, SRTP) is declined with port 0;
/// the answer has as many `m=` lines as the offer, in the same order (§6).
///
/// `version` is the `o=` session version: keep it for an unchanged answer to a re-INVITE,
/// raise it when the answer changes (§8).
pub fn answer(
    offer: &SessionDescription,
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    version: u64,
) -> Result<(Negotiated, String), SdpError> {
    let chosen = offer.media.iter().enumerate().find_map(|(i, m)| {
        if m.media.eq_ignore_ascii_case("audio") && m.port != 0 && m.is_rtp_avp() {
            m.first_codec().map(|(codec, pt)| (i, codec, pt))
        } else {
            None
        }
    });
    let Some((index, codec, pt)) = chosen else {
        return Err(SdpError::NoCommonCodec);
    };
    let m = &offer.media[index];
    let negotiated = negotiated(offer, m, codec, pt)?;
    let mut out = String::with_capacity(256);
    session_header(&mut out, local_ip, session_id, version);
    for (i, other) in offer.media.iter().enumerate() {
        if i == index {
            let _ = write!(out, "m=audio {local_port} RTP/AVP {pt}");
            if let Some(te) = negotiated.telephone_event {
                let _ = write!(out, " {te}");
            }
            let _ = write!(out, "\r\na=rtpmap:{pt} {}/{CLOCK_RATE}\r\n", codec.name());
            if let Some(te) = negotiated.telephone_event {
                let events = m
                    .fmtp(te)
                    .filter(|f| !f.is_empty())
                    .unwrap_or(TELEPHONE_EVENTS);
                let _ = write!(
                    out,
                    "a=rtpmap:{te} telephone-event/{CLOCK_RATE}\r\na=fmtp:{te} {events}\r\n"
                );
            }
            let _ = write!(
                out,
                "a=ptime:{PTIME_MS}\r\na={}\r\n",
                negotiated.direction.attribute()
            );
        } else {
            // §6: a declined stream keeps its media, proto and (ignored) formats.
            let formats = if other.formats.is_empty() {
                "0".to_string()
            } else {
                other.formats.join(" ")
            };
            let _ = write!(out, "m={} 0 {} {formats}\r\n", other.media, other.proto);
        }
    }
    Ok((negotiated, out))
}

/// The offer for the INVITE scamscreen sends to the callee: PCMU 0, PCMA 8, telephone-event
/// 101 (0-16), ptime 20, sendrecv.
pub fn offer(local_ip: IpAddr, local_port: u16, session_id: u64, version: u64) -> String {
    offer_preferring(Codec::Pcmu, local_ip, local_port, session_id, version)
}

/// [`offer`] listing `first` first: pass the caller's codec so the callee can pick the same
/// one and no transcoding is needed.
pub fn offer_preferring(
    first: Codec,
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    version: u64,
) -> String {
    let second = match first {
        Codec::Pcmu => Codec::Pcma,
        Codec::Pcma => Codec::Pcmu,
    };
    let (a, b) = (first.payload_type(), second.payload_type());
    let te = TELEPHONE_EVENT_PT;
    let mut out = String::with_capacity(256);
    session_header(&mut out, local_ip, session_id, version);
    let _ = write!(
        out,
        "m=audio {local_port} RTP/AVP {a} {b} {te}\r\n\
         a=rtpmap:{a} {}/{CLOCK_RATE}\r\n\
         a=rtpmap:{b} {}/{CLOCK_RATE}\r\n\
         a=rtpmap:{te} telephone-event/{CLOCK_RATE}\r\n\
         a=fmtp:{te} {TELEPHONE_EVENTS}\r\n\
         a=ptime:{PTIME_MS}\r\n\
         a=sendrecv\r\n",
        first.name(),
        second.name(),
    );
    out
}

/// Take the callee's answer to [`offer`] (RFC 3264 §7): its first audio stream, the first
/// G.711 codec it lists (the answerer's preference), telephone-event if it kept it. A
/// declined audio stream (port 0) or one without PCMU/PCMA is [`SdpError::NoCommonCodec`].
pub fn accept_answer(answer: &SessionDescription) -> Result<Negotiated, SdpError> {
    let m = answer
        .media
        .iter()
        .find(|m| m.media.eq_ignore_ascii_case("audio"))
        .ok_or(SdpError::NoCommonCodec)?;
    if m.port == 0 || !m.is_rtp_avp() {
        return Err(SdpError::NoCommonCodec);
    }
    let (codec, pt) = m.first_codec().ok_or(SdpError::NoCommonCodec)?;
    negotiated(answer, m, codec, pt)
}

#[cfg(test)]
mod tests;
