//! The call log page: server-rendered HTML, no JavaScript. Recent screened calls with their
//! time, verdict, score, the rules that fired with their time in the call, the transcript,
//! the message a blocked caller left, and a "scam" / "not a scam" form per call. Everything
//! from a call is escaped ([`esc`]): transcripts are what strangers said.

use crate::runtime::live::Health;
use crate::store::{CallRecord, Feedback};
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Rows shown at most.
pub const MAX_ROWS: usize = 200;

/// The page's filters (`?action=divert&date=2026-12-07`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Filter {
    /// A verdict (`allow`, `warn`, `divert`, `silent`, `unscreened`, …); empty: all.
    pub action: Option<String>,
    /// Calls on or after this day (UTC), `YYYY-MM-DD`.
    pub date: Option<String>,
}

impl Filter {
    /// The date filter as a moment (`None` when absent or not a date).
    pub fn since(&self) -> Option<SystemTime> {
        let d = self.date.as_deref()?.trim();
        let mut it = d.splitn(3, '-').map(|p| p.parse::<i64>().ok());
        let (y, m, day) = (it.next()??, it.next()??, it.next()??);
        if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
            return None;
        }
        let days = days_from_civil(y, m, day);
        let secs = u64::try_from(days * 86_400).ok()?;
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn keeps(&self, r: &CallRecord) -> bool {
        match self.action.as_deref().map(str::trim) {
            None | Some("") => true,
            Some(a) => r.action == a,
        }
    }

    /// This filter as a query string (for going back after feedback).
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(a) = self.action.as_deref().filter(|a| !a.is_empty()) {
            q.push(format!("action={}", url_encode(a)));
        }
        if let Some(d) = self.date.as_deref().filter(|d| !d.is_empty()) {
            q.push(format!("date={}", url_encode(d)));
        }
        format!("/?{}", q.join("&"))
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of unix milliseconds.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// HTML-escape text from a call.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.4em;\
text-align:left;vertical-align:top}th{background:#f4f4f4}.v-divert,.v-silent{color:#a00;\
font-weight:bold}.v-warn{color:#b60;font-weight:bold}.v-allow,.v-bypass{color:#070}\
.v-unscreened{color:#555}.t{max-width:28em}form.f{display:inline}button{margin:.1em}\
.fb{font-size:.9em;color:#555}.r{font-size:.9em}";

/// The page.
pub fn render(calls: &[(CallRecord, Option<Feedback>)], filter: &Filter, health: Health) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>scamscreen: call log</title><style>{STYLE}</style></head><body>\
         <h1>scamscreen call log</h1><p>Status: <b id=\"health\">{}</b>. Newest first, at most \
         {MAX_ROWS} calls. Times are UTC.</p>",
        health.as_str()
    );
    let action = filter.action.as_deref().unwrap_or("");
    let _ = write!(
        h,
        "<form method=\"get\" action=\"/\">Verdict <select name=\"action\">"
    );
    for a in [
        "",
        "allow",
        "warn",
        "divert",
        "silent",
        "bypass",
        "unscreened",
    ] {
        let sel = if a == action { " selected" } else { "" };
        let label = if a.is_empty() { "all" } else { a };
        let _ = write!(h, "<option value=\"{a}\"{sel}>{label}</option>");
    }
    let _ = write!(
        h,
        "</select> from <input type=\"date\" name=\"date\" value=\"{}\"> \
         <button type=\"submit\">Show</button></form>",
        esc(filter.date.as_deref().unwrap_or(""))
    );
    let back = esc(&filter.query());
    let shown: Vec<_> = calls.iter().filter(|(r, _)| filter.keeps(r)).collect();
    if shown.is_empty() {
        h.push_str("<p id=\"empty\">No screened calls match.</p></body></html>");
        return h;
    }
    h.push_str(
        "<table id=\"calls\"><tr><th>Time</th><th>Verdict</th><th>Score</th>\
         <th>Why (time in the call)</th><th>What the caller said</th><th>Outcome</th>\
         <th>Was it a scam?</th></tr>",
    );
    for (r, fb) in shown {
        let id = esc(&r.call_id);
        let _ = write!(
            h,
            "<tr data-call=\"{id}\"><td>{}</td><td class=\"v-{a}\">{a}</td><td>{:.2}</td><td class=\"r\">",
            utc(r.started_at_ms),
            r.score,
            a = esc(&r.action),
        );
        if r.reasons.is_empty() {
            h.push('–');
        }
        for hit in &r.reasons {
            let _ = write!(
                h,
                "{} <i>“{}”</i> at {:.1} s<br>",
                esc(&hit.explanation),
                esc(&hit.matched),
                hit.at_ms as f64 / 1000.0
            );
        }
        let _ = write!(h, "</td><td class=\"t\">{}", esc(&r.transcript));
        if let Some(ms) = r.message_ms {
            let _ = write!(
                h,
                "<br><a href=\"/calls/message?id={}\">message ({:.1} s)</a>",
                url_encode(&r.call_id),
                ms as f64 / 1000.0
            );
        }
        let _ = write!(h, "</td><td>{}</td><td>", esc(&r.outcome));
        let said = match fb {
            Some(Feedback::Scam) => "you said: scam",
            Some(Feedback::NotScam) => "you said: not a scam",
            None => "",
        };
        let _ = write!(h, "<span class=\"fb\">{said}</span> ");
        for (value, label) in [("scam", "Scam"), ("not_scam", "Not a scam")] {
            let _ = write!(
                h,
                "<form class=\"f\" method=\"post\" action=\"/calls/feedback\">\
                 <input type=\"hidden\" name=\"id\" value=\"{id}\">\
                 <input type=\"hidden\" name=\"back\" value=\"{back}\">\
                 <button type=\"submit\" name=\"verdict\" value=\"{value}\">{label}</button></form>"
            );
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</table></body></html>");
    h
}

/// The login form (when `[admin] token` is set).
pub const LOGIN: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>scamscreen: log in</title></head><body><h1>scamscreen</h1>\
<form method=\"post\" action=\"/login\"><label>Admin token <input type=\"password\" \
name=\"token\" autofocus></label> <button type=\"submit\">Log in</button></form></body></html>";

/// 8 kHz mono 16-bit PCM as a WAV file.
pub fn wav_8k(samples: &[i16]) -> Vec<u8> {
    let data = (samples.len() * 2) as u32;
    let mut w = Vec::with_capacity(44 + data as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_callers_said_and_filters() {
        let r = CallRecord {
            call_id: "c\"1".into(),
            action: "divert".into(),
            transcript: "<script>alert(1)</script>".into(),
            started_at_ms: 1_765_065_600_000,
            ..CallRecord::default()
        };
        let calls = vec![(r, Some(Feedback::Scam))];
        let page = render(&calls, &Filter::default(), Health::Ready);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("you said: scam"));
        assert!(page.contains("2025-12-07 00:00:00"), "{page}");
        let f = Filter {
            action: Some("allow".into()),
            date: None,
        };
        assert!(render(&calls, &f, Health::Ready).contains("No screened calls match"));
    }

    #[test]
    fn dates() {
        let f = Filter {
            action: None,
            date: Some("2025-12-07".into()),
        };
        let t = f.since().unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_765_065_600
        );
        assert!(Filter {
            action: None,
            date: Some("2025-13-01".into())
        }
        .since()
        .is_none());
    }
}
