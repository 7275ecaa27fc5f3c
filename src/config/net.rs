//! Addresses in the configuration: `host[:port]` targets and trusted networks.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// A host: an IP literal or a DNS name (lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: Host,
    pub port: Option<u16>,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    #[error("it is empty")]
    Empty,
    #[error("give host:port, not a URI ({0:?})")]
    Uri(String),
    #[error("{0:?} is not a port (1-65535)")]
    Port(String),
    #[error("{0:?} is not an IP address or host name")]
    Host(String),
}

impl HostPort {
    pub fn parse(text: &str) -> Result<HostPort, HostPortError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(HostPortError::Empty);
        }
        let lower = text.to_ascii_lowercase();
        if ["sip:", "sips:", "tel:", "udp:", "tcp:"]
            .iter()
            .any(|s| lower.starts_with(s))
            || text.contains('/')
        {
            return Err(HostPortError::Uri(text.to_string()));
        }
        if let Ok(ip) = text.parse::<Ipv6Addr>() {
            return Ok(HostPort {
                host: Host::Ip(IpAddr::V6(ip)),
                port: None,
            });
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (v6, after) = rest
                .split_once(']')
                .ok_or_else(|| HostPortError::Host(text.to_string()))?;
            let ip: Ipv6Addr = v6
                .parse()
                .map_err(|_| HostPortError::Host(v6.to_string()))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| HostPortError::Host(text.to_string()))?,
                ),
            };
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = match text.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            };
            (parse_host(host)?, port)
        };
        let port = port.map(parse_port).transpose()?;
        Ok(HostPort { host, port })
    }

    /// The port, or `default` when none was given.
    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }
}

fn parse_port(port: &str) -> Result<u16, HostPortError> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(HostPortError::Port(port.to_string())),
    }
}

fn parse_host(host: &str) -> Result<Host, HostPortError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    // A name whose last label is all digits would be a mistyped IPv4 address.
    let last_is_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) || last_is_numeric {
        return Err(HostPortError::Host(host.to_string()));
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

/// A trusted network that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an IP address (192.0.2.1, 2001:db8::1) or network (192.0.2.0/24, 2001:db8::/32)"
)]
pub struct NetError(pub String);

/// An IP network in CIDR notation, or a bare IP address as a /32 or /128. Also a clap
/// `value_parser` for `--trust`.
pub fn parse_trusted_net(text: &str) -> Result<IpNet, NetError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| NetError(text.to_string()))
}

/// serde: a list of [`parse_trusted_net`] strings.
pub(super) fn deserialize_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_trusted_net(s).map_err(serde::de::Error::custom))
        .collect()
}

/// serde: socket addresses, with an error that shows the bad entry.
pub(super) fn deserialize_socket_addrs<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            s.trim().parse::<SocketAddr>().map_err(|_| {
                serde::de::Error::custom(format!(
                    "{s:?} is not an IP address and port (\"0.0.0.0:5060\", \"[::]:5060\")"
                ))
            })
        })
        .collect()
}
