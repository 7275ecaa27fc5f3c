//! The Via header (RFC 3261 §20.42, §18.2.1–§18.2.2; RFC 3581 `rport`).

use super::msg::is_token;
use super::uri::{parse_param, split_host_port, UriError};

/// RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with this magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host[:port];params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Upper-case transport (`UDP`, `TCP`, `TLS`, or any token: RFC 4475 3.1.1.10).
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    pub fn parse(value: &str) -> Result<Via, UriError> {
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport, LWS allowed
        // around the slashes (RFC 4475 3.1.1.1 wsinv).
        let mut rest = value.trim();
        let mut proto = Vec::with_capacity(3);
        for i in 0..3 {
            rest = rest.trim_start();
            let end = rest
                .find(|c: char| c == '/' || c.is_whitespace() || c == ';')
                .unwrap_or(rest.len());
            let tok = &rest[..end];
            if !is_token(tok) {
                return Err(UriError::Param);
            }
            proto.push(tok);
            rest = rest[end..].trim_start();
            if i < 2 {
                rest = rest.strip_prefix('/').ok_or(UriError::Param)?;
            }
        }
        if !proto[0].eq_ignore_ascii_case("SIP") {
            return Err(UriError::Param);
        }
        let mut parts = rest.split(';');
        let sent_by = parts.next().unwrap_or_default().trim();
        let (host, port) = split_host_port(sent_by)?;
        let mut params = Vec::new();
        for p in parts {
            params.push(parse_param(p)?);
        }
        Ok(Via {
            transport: proto[2].to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// Does the branch carry the RFC 3261 magic cookie (so it identifies the transaction)?
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// `host:port` as the transaction key uses it (default port 5060).
    pub fn sent_by(&self) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(5060))
    }

    /// Set or replace a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self.params.iter_mut().find(|(n, _)| n == name) {
            Some(p) => p.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }

    pub fn to_header_value(&self) -> String {
        let mut s = format!("SIP/2.0/{} {}", self.transport, self.host);
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        for (n, v) in &self.params {
            s.push(';');
            s.push_str(n);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vias() {
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK77;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.sent_by(), "192.0.2.1:5060");
        assert_eq!(v.branch(), Some("z9hG4bK77"));
        assert_eq!(v.param("rport"), Some(None));
        assert!(v.has_rfc3261_branch());
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.sent_by(), "192.0.2.2:5060");
        assert!(!v.has_rfc3261_branch());
        let v =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        let v = Via::parse("SIP/2.0/UNKNOWN [2001:db8::9]:5061;branch=z9hG4bKx").unwrap();
        assert_eq!(v.host, "[2001:db8::9]");
    }

    #[test]
    fn rejects_bad_vias() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/2.0 192.0.2.1",
            "HTTP/1.1/TCP h",
            "SIP/2.0/UDP h:70000",
            "",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn edits_round_trip() {
        let mut v = Via::parse("SIP/2.0/UDP h:5062;branch=z9hG4bK1;rport").unwrap();
        v.set_param("received", Some("10.0.0.1".into()));
        v.set_param("rport", Some("4000".into()));
        assert_eq!(
            v.to_header_value(),
            "SIP/2.0/UDP h:5062;branch=z9hG4bK1;rport=4000;received=10.0.0.1"
        );
    }
}
