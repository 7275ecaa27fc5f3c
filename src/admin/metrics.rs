//! `/metrics`: Prometheus text from `prometheus-client` (the Prometheus project's own Rust
//! client: typed metrics, the text format's escaping and `# TYPE`/`# HELP` lines done right).
//!
//! Two sources: the core's counters, read at scrape time from the snapshot it publishes
//! ([`Live`], through a [`Collector`]), and per-call figures observed when a screened call
//! is recorded ([`Metrics::observe_call`]). No label carries a phone number, a name or
//! words: only verdicts, outcomes and fixed kinds.

use crate::runtime::live::Live;
use crate::runtime::media_relay::MEDIA_COUNTERS;
use crate::store::CallRecord;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Everything `/metrics` shows.
pub struct Metrics {
    registry: Registry,
    calls: Family<Vec<(String, String)>, Counter>,
    time_to_verdict: Histogram,
    listening: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(live: Arc<Live>) -> Metrics {
        let mut registry = Registry::with_prefix("scamscreen");
        let calls = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "screened_calls",
            "Screened calls recorded, by verdict (action) and outcome",
            calls.clone(),
        );
        // Seconds, from the end of the caller's speech to the verdict.
        let time_to_verdict = Histogram::new([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]);
        registry.register(
            "time_to_verdict_seconds",
            "From the end of the caller's speech to the verdict",
            time_to_verdict.clone(),
        );
        let listening = Histogram::new([2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 60.0]);
        registry.register(
            "listening_seconds",
            "How long screened callers were listened to",
            listening.clone(),
        );
        registry.register_collector(Box::new(Core { live }));
        Metrics {
            registry,
            calls,
            time_to_verdict,
            listening,
        }
    }

    /// A screened call was recorded.
    pub fn observe_call(&self, r: &CallRecord) {
        self.calls
            .get_or_create(&vec![
                ("action".to_string(), r.action.clone()),
                ("outcome".to_string(), outcome_label(&r.outcome)),
            ])
            .inc();
        if let Some(ms) = r.time_to_verdict_ms {
            self.time_to_verdict.observe(ms as f64 / 1000.0);
        }
        self.listening.observe(r.listen_ms as f64 / 1000.0);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Outcomes as fixed label values (`calleefailed(486)` → `callee_failed_486`).
fn outcome_label(outcome: &str) -> String {
    outcome
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .trim_matches('_')
        .to_string()
}

/// The core's counters, read from its latest snapshot at each scrape.
#[derive(Debug)]
struct Core {
    live: Arc<Live>,
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    values: &[u64],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    if labels.is_empty() {
        return ConstCounter::new(values.first().copied().unwrap_or(0)).encode(m);
    }
    for (&(k, val), v) in labels.iter().zip(values) {
        let set = [(k, val)];
        ConstCounter::new(*v).encode(m.encode_family(&set)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Core {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.live.snapshot();
        let p = &s.proxy;
        counter(
            &mut enc,
            "calls",
            "New INVITEs by how the caller was classified",
            &[
                ("class", "passed"),
                ("class", "screened"),
                ("class", "denied"),
            ],
            &[p.calls_passed, p.calls_screened, p.calls_denied],
        )?;
        counter(
            &mut enc,
            "sip_messages_received",
            "SIP messages handed to the core",
            &[],
            &[p.received],
        )?;
        counter(
            &mut enc,
            "sip_messages_sent",
            "SIP messages sent",
            &[],
            &[p.sent],
        )?;
        counter(
            &mut enc,
            "sip_transactions",
            "Requests forwarded with a transaction, and ACKs forwarded without",
            &[("kind", "stateful"), ("kind", "stateless_ack")],
            &[p.forwarded, p.forwarded_stateless],
        )?;
        counter(
            &mut enc,
            "sip_responses",
            "Final responses relayed back, by class",
            &[
                ("class", "1xx"),
                ("class", "2xx"),
                ("class", "3xx"),
                ("class", "4xx"),
                ("class", "5xx"),
                ("class", "6xx"),
            ],
            &p.responses_by_class,
        )?;
        counter(
            &mut enc,
            "sip_refused",
            "Requests refused or dropped, by reason",
            &[
                ("reason", "untrusted"),
                ("reason", "rate_limited"),
                ("reason", "invalid"),
                ("reason", "unparsable"),
                ("reason", "too_large"),
                ("reason", "draining"),
                ("reason", "upstream_down"),
                ("reason", "upstream_timeout"),
            ],
            &[
                p.untrusted,
                p.rate_limited,
                p.invalid,
                p.unparsable,
                p.too_large,
                p.refused_draining,
                p.refused_upstream_down,
                p.upstream_timeouts,
            ],
        )?;
        counter(
            &mut enc,
            "shed_requests",
            "New requests refused with 503 because the core was behind",
            &[
                ("where", "door"),
                ("where", "core"),
                ("where", "door_dropped"),
            ],
            &[s.door.shed_at_door, p.shed, s.door.dropped_at_door],
        )?;
        counter(
            &mut enc,
            "tcp_connections_refused",
            "TCP connections closed at accept or later",
            &[
                ("reason", "untrusted"),
                ("reason", "over_cap"),
                ("reason", "idle"),
                ("reason", "slow"),
            ],
            &[
                s.tcp.tcp_refused_untrusted,
                s.tcp.tcp_refused_over_cap,
                s.tcp.tcp_closed_idle,
                s.tcp.tcp_closed_slow,
            ],
        )?;
        gauge(
            &mut enc,
            "tcp_connections",
            "Accepted TCP connections open now",
            s.tcp_open as i64,
        )?;
        gauge(
            &mut enc,
            "upstream_up",
            "Whether the PBX answers (1) or not (0)",
            i64::from(s.upstream_up),
        )?;
        let m = &MEDIA_COUNTERS;
        counter(
            &mut enc,
            "rtp_packets",
            "RTP packets of bridged calls (counted when a call's relay ends)",
            &[
                ("kind", "relayed"),
                ("kind", "dropped_wrong_source"),
                ("kind", "dropped_malformed"),
            ],
            &[
                m.relayed.load(Ordering::Relaxed),
                m.dropped_wrong_source.load(Ordering::Relaxed),
                m.dropped_malformed.load(Ordering::Relaxed),
            ],
        )?;
        if let Some(c) = &s.calls {
            gauge(
                &mut enc,
                "active_calls",
                "Screened calls holding ports, sockets or a transcription",
                c.active as i64,
            )?;
            gauge(
                &mut enc,
                "rtp_port_pairs_in_use",
                "RTP port pairs held by calls",
                c.rtp_port_pairs_in_use as i64,
            )?;
            counter(
                &mut enc,
                "refused_saturated",
                "Withheld INVITEs refused with 503 before answering (when_unscreened = 503)",
                &[],
                &[c.refused_saturated],
            )?;
        }
        if let Some(a) = &s.asr {
            gauge(
                &mut enc,
                "asr_in_flight",
                "Transcriptions queued or running",
                a.in_flight as i64,
            )?;
            gauge(
                &mut enc,
                "asr_queue_free",
                "Room left in the speech model's queue",
                a.queue_free.min(i64::MAX as usize) as i64,
            )?;
            gauge(
                &mut enc,
                "asr_typical_milliseconds",
                "Recent time per transcription",
                a.typical.as_millis() as i64,
            )?;
            let c = &crate::asr::ASR_COUNTERS;
            let n = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
            counter(
                &mut enc,
                "asr_transcriptions",
                "Transcriptions finished with a transcript",
                &[],
                &[n(&c.transcribed)],
            )?;
            counter(
                &mut enc,
                "asr_model_milliseconds",
                "Time the speech model spent on finished transcriptions",
                &[],
                &[n(&c.model_ms)],
            )?;
            counter(
                &mut enc,
                "asr_refused",
                "Transcriptions not done: stopped at the deadline, refused as unable to make it, or refused with the queue full",
                &[
                    ("reason", "timed_out"),
                    ("reason", "cannot_make_it"),
                    ("reason", "queue_full"),
                ],
                &[n(&c.timed_out), n(&c.cannot_make_it), n(&c.queue_full)],
            )?;
        }
        if let Some(d) = &s.device {
            gauge(
                &mut enc,
                "device_registered",
                "Device mode: 1 while the router holds our registration, else 0",
                i64::from(d.registered),
            )?;
            counter(
                &mut enc,
                "device_registrations",
                "Device mode: registrations and refreshes the router accepted, and attempts that failed",
                &[("result", "ok"), ("result", "failed")],
                &[d.registrations, d.failures],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::live::Snapshot;

    #[test]
    fn renders_counters_and_calls_as_prometheus_text() {
        let live = Arc::new(Live::new());
        let mut snap = Snapshot::default();
        snap.proxy.calls_screened = 3;
        snap.proxy.responses_by_class[1] = 7;
        live.publish(snap);
        let m = Metrics::new(live);
        let record = CallRecord {
            action: "divert".into(),
            outcome: "calleefailed(486)".into(),
            time_to_verdict_ms: Some(800),
            listen_ms: 6000,
            ..CallRecord::default()
        };
        m.observe_call(&record);
        let text = m.render();
        assert!(
            text.contains("scamscreen_calls_total{class=\"screened\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("scamscreen_sip_responses_total{class=\"2xx\"} 7"),
            "{text}"
        );
        assert!(
            text.contains(
                "scamscreen_screened_calls_total{action=\"divert\",outcome=\"calleefailed_486\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("scamscreen_time_to_verdict_seconds_bucket{le=\"1.0\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE scamscreen_tcp_connections gauge"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
