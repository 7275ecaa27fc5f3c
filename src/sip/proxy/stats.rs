//! Counters of what the proxy saw and did (no personal data).

/// Monotonic counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProxyStats {
    /// Datagrams / frames handed to the core.
    pub received: u64,
    /// Messages queued for sending.
    pub sent: u64,
    /// Dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Not SIP at all (framing failed): dropped.
    pub unparsable: u64,
    /// From a source outside the trusted networks.
    pub untrusted: u64,
    /// SIP but invalid (answered 400/416/420/505 if a request, dropped if a response).
    pub invalid: u64,
    /// Requests answered with an error status by us (any reason).
    pub refused: u64,
    /// Requests forwarded with a response context.
    pub forwarded: u64,
    /// ACKs for 2xx forwarded statelessly.
    pub forwarded_stateless: u64,
    /// Request retransmissions absorbed by a server transaction.
    pub retransmissions_in: u64,
    /// Responses relayed back to the sender.
    pub responses_relayed: u64,
    /// Of those, by class: 1xx (100 Trying is not relayed) … 6xx.
    pub responses_by_class: [u64; 6],
    /// Responses matching no transaction of ours.
    pub stray_responses: u64,
    /// OPTIONS answered locally.
    pub options_answered: u64,
    /// New INVITEs refused with 503 while shutting down.
    pub refused_draining: u64,
    /// New requests refused with 503 by the core because it was behind (overload).
    pub shed: u64,
    /// ACKs for our stateless rejections, absorbed.
    pub acks_absorbed: u64,
    /// Messages over the size limits (whole message, one header, header count).
    pub too_large: u64,
    /// Pre-loaded Route values from the trunk side removed before forwarding.
    pub routes_stripped: u64,
    /// Times the upstream was found down (probes unanswered, connection refused).
    pub upstream_down: u64,
    /// New INVITEs refused with 503 while the upstream was down.
    pub refused_upstream_down: u64,
    /// CANCELs accepted.
    pub cancels: u64,
    /// Upstream never answered (408) or could not be reached (503).
    pub upstream_timeouts: u64,
    /// New INVITEs by classification.
    pub calls_passed: u64,
    pub calls_screened: u64,
    pub calls_denied: u64,
    /// `X-Scamscreen-*` header lines removed from requests of the trunk side (spoofing).
    pub spoofed_headers_removed: u64,
}
