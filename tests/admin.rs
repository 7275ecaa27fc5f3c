//! The admin HTTP server of a real `scamscreen run` (issue 14): `/metrics` during and after
//! a screened call, `/healthz` while draining, and the call log page in headless Chromium
//! (Debian `chromium`), driven over the DevTools protocol: the page lists the call, the
//! "Not a scam" button changes the stored record.

mod common;

use common::screening::{callee, speech, Scamscreen, GREETING_MS};
use scamscreen::store::{CallStore, Feedback};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// One HTTP/1.1 GET: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Read the head, then Content-Length bytes (some servers keep the connection open).
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    let mut raw = Vec::new();
    match length {
        Some(n) => {
            raw.resize(n, 0);
            r.read_exact(&mut raw).unwrap();
        }
        None => {
            r.read_to_end(&mut raw).unwrap();
        }
    }
    let body = String::from_utf8_lossy(&raw).to_string();
    (status, body)
}

/// The value of one sample line (`name{labels} value`) of Prometheus text, after checking
/// that every line of the text is a comment or a well-formed sample.
fn sample(text: &str, series: &str) -> Option<f64> {
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("sample line: name value");
        assert!(value.parse::<f64>().is_ok(), "not a number in {line:?}");
        let metric = name.split('{').next().unwrap();
        assert!(
            metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name.contains('{') {
            assert!(name.ends_with('}'), "unclosed labels in {line:?}");
        }
        if name == series {
            return value.parse().ok();
        }
    }
    None
}

#[test]
fn metrics_show_a_screened_call_and_health_goes_503_while_draining() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start_with(callee.addr(), 8, Some("[sip]\nshutdown_grace_secs = 20\n"));
    let admin = ss.admin.expect("the admin server listens");
    let (code, body) = get(admin, "/healthz");
    assert_eq!((code, body.trim()), (200, "ready"));
    let words = speech("Hi, this is Anna from the library. Your book is ready to pick up.");
    let mut c = ss.dial("metrics");
    let call_id = c.call_id().to_string();
    // During the call: counted as screened and active.
    std::thread::sleep(Duration::from_millis(600));
    let (code, text) = get(admin, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        sample(&text, "scamscreen_calls_total{class=\"screened\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "scamscreen_active_calls"),
        Some(1.0),
        "{text}"
    );
    c.silence(GREETING_MS).unwrap();
    c.speak(&words).unwrap();
    c.silence(4000).unwrap();
    c.hang_up().unwrap();
    let rec = ss.record(&call_id);
    let action = rec["action"].as_str().unwrap().to_string();
    let outcome = rec["outcome"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = get(admin, "/metrics");
        let series = format!(
            "scamscreen_screened_calls_total{{action=\"{action}\",outcome=\"{}\"}}",
            outcome.replace(['(', ')'], "_").trim_matches('_')
        );
        if sample(&text, &series) == Some(1.0) {
            assert!(
                sample(&text, "scamscreen_time_to_verdict_seconds_count").is_some_and(|n| n >= 1.0)
            );
            // The speech model's work on the call.
            assert!(
                sample(&text, "scamscreen_asr_transcriptions_total").is_some_and(|n| n >= 1.0),
                "{text}"
            );
            assert!(
                sample(&text, "scamscreen_asr_model_milliseconds_total").is_some_and(|n| n > 0.0),
                "{text}"
            );
            assert!(
                sample(&text, "scamscreen_asr_refused_total{reason=\"timed_out\"}").is_some(),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{series} not in {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A call in progress keeps the process draining after SIGTERM: /healthz says so.
    let _staying = ss.dial("draining");
    ss.sigterm();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = get(admin, "/healthz");
        if code == 503 {
            assert_eq!(body.trim(), "draining");
            break;
        }
        assert!(Instant::now() < deadline, "healthz still {code} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Headless Chromium with a DevTools websocket to its page.
struct Browser {
    child: std::process::Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1280,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("chromium (Debian package `chromium`, installed by make deps)");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…"
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let browser_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium did not open its DevTools port");
        let port: u16 = browser_url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap();
        let devtools = SocketAddr::from(([127, 0, 0, 1], port));
        let (_, list) = get(devtools, "/json/list");
        let targets: serde_json::Value = serde_json::from_str(&list).unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap().to_string();
        let (ws, _) = tungstenite::connect(url).expect("DevTools websocket");
        let mut b = Browser {
            child,
            ws,
            next_id: 1,
            _profile: profile,
        };
        b.call("Page.enable", serde_json::json!({}));
        b
    }

    /// Send a command and wait for its result (events before it are dropped, except that
    /// `load` remembers whether a page load finished meanwhile).
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.call_seeing(method, params, &mut false)
    }

    fn call_seeing(
        &mut self,
        method: &str,
        params: serde_json::Value,
        loaded: &mut bool,
    ) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let m = self.ws.read().unwrap();
            let Ok(text) = m.to_text() else { continue };
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            if v["method"] == "Page.loadEventFired" {
                *loaded = true;
            }
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Wait for the next page load to finish.
    fn wait_load(&mut self, already: bool) {
        if already {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.ws.read().unwrap();
            if let Ok(text) = m.to_text() {
                if text.contains("\"Page.loadEventFired\"") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "page did not load");
        }
    }

    fn open(&mut self, url: &str) {
        let mut loaded = false;
        self.call_seeing(
            "Page.navigate",
            serde_json::json!({ "url": url }),
            &mut loaded,
        );
        self.wait_load(loaded);
    }

    fn eval(&mut self, js: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": js, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }
}

#[test]
fn the_call_log_page_lists_a_call_and_its_feedback_button_changes_the_record() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start(callee.addr());
    let admin = ss.admin.expect("the admin server listens");
    let words = speech(
        "This is Microsoft support. Your computer has a virus. Install TeamViewer so we can fix it.",
    );
    let mut c = ss.dial("page");
    let call_id = c.call_id().to_string();
    c.silence(GREETING_MS).unwrap();
    c.speak(&words).unwrap();
    c.silence(6000).unwrap();
    c.hang_up().unwrap();
    let rec = ss.record(&call_id);
    assert_ne!(rec["action"], "allow", "{rec}");

    let mut b = Browser::start();
    b.open(&format!("http://{admin}/"));
    let row = format!("document.querySelector('tr[data-call=\"{call_id}\"]')");
    assert_eq!(
        b.eval(&format!("{row} !== null")),
        true,
        "the call is not listed"
    );
    let text = b
        .eval(&format!("{row}.textContent"))
        .to_string()
        .to_lowercase();
    assert!(text.contains("microsoft"), "{text}");
    // The user says it was not a scam: the browser submits the form, the page comes back.
    let mut loaded = false;
    b.call_seeing(
        "Runtime.evaluate",
        serde_json::json!({
            "expression": format!("{row}.querySelector('button[value=\"not_scam\"]').click()")
        }),
        &mut loaded,
    );
    b.wait_load(loaded);
    let said = b.eval(&format!("{row}.querySelector('.fb').textContent"));
    assert_eq!(said, "you said: not a scam");
    let store = CallStore::open_existing(&ss.db).unwrap();
    assert_eq!(store.feedback(&call_id).unwrap(), Some(Feedback::NotScam));
    // The screenshot for the README (docs/call-log.png when asked to update it).
    let shot = b.call(
        "Page.captureScreenshot",
        serde_json::json!({"format": "png"}),
    );
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let out = if std::env::var_os("SCAMSCREEN_UPDATE_SCREENSHOT").is_some() {
        common::root().join("docs/call-log.png")
    } else {
        common::root().join("target/call-log.png")
    };
    std::fs::write(out, png).unwrap();
}

/// A webhook receiver on loopback: the bodies of the POSTs it got.
fn receiver() -> (SocketAddr, std::sync::mpsc::Receiver<serde_json::Value>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            if r.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    let _ = tx.send(v);
                }
            }
            let mut s = s;
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (addr, rx)
}

/// A scam call, diverted (with `message_secs = 0`): (call id, its record).
fn scam_call(ss: &Scamscreen, name: &str) -> (String, serde_json::Value) {
    let words = speech(
        "This is Microsoft support. Your computer has a virus. Install TeamViewer so we can fix it.",
    );
    let mut c = ss.dial(name);
    let call_id = c.call_id().to_string();
    c.silence(GREETING_MS).unwrap();
    c.speak(&words).unwrap();
    // Diverted without a divert target and no message: the block announcement, then our BYE.
    if !c.wait_for_bye(Duration::from_secs(40)).unwrap() {
        c.hang_up().unwrap();
    }
    let rec = ss.record(&call_id);
    (call_id, rec)
}

/// Two scamscreens screen at once below: each model runs several times slower than alone on
/// a 2-core box, which must not turn the verdict into `unscreened` (no event).
const PATIENT: &str = "[screening]\nscreening_timeout_ms = 30000\nmessage_secs = 0\n";

#[test]
fn a_webhook_hears_of_a_diverted_call_and_a_dead_one_changes_nothing() {
    let _cpu = common::cpu_heavy();
    let (addr, events) = receiver();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let callee = callee();
    let callee = &callee;
    std::thread::scope(|s| {
        let live = s.spawn(move || {
            let ss = Scamscreen::start_with(
                callee.addr(),
                8,
                Some(&format!(
                    "{PATIENT}[notify]\nwebhook = \"http://{addr}/hook\"\n"
                )),
            );
            let (call_id, rec) = scam_call(&ss, "hooked");
            let ev = events
                .recv_timeout(Duration::from_secs(10))
                .expect("the receiver got no event");
            assert_eq!(ev["call_id"], call_id.as_str());
            assert_eq!(ev["verdict"], rec["action"]);
            assert!(ev["transcript"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("microsoft"));
            rec
        });
        let down = s.spawn(|| {
            let ss = Scamscreen::start_with(
                callee.addr(),
                8,
                Some(&format!(
                    "{PATIENT}[notify]\nwebhook = \"http://{dead}/hook\"\nredact = true\n"
                )),
            );
            scam_call(&ss, "unhooked").1
        });
        let (with, without) = (live.join().unwrap(), down.join().unwrap());
        // The dead receiver changed nothing for the call.
        assert_eq!(with["action"], without["action"]);
        assert_eq!(with["outcome"], without["outcome"]);
    });
}

/// SIGHUP re-reads the file: a new allow entry lets the next withheld caller through
/// unscreened, the call in progress goes on; a broken file is refused and the running
/// configuration kept.
#[test]
fn sighup_reloads_the_allow_list_for_the_next_call_and_keeps_calls() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    // The pid file and the database as a packaged config names them: relative to its folder.
    let ss = Scamscreen::start_with(
        callee.addr(),
        8,
        Some("[screening]\nallow = []\n[run]\npidfile = \"scamscreen.pid\"\n[store]\ndb = \"calls.db\"\n"),
    );
    let file = ss.config.clone().unwrap();
    let pidfile = file.with_file_name("scamscreen.pid");
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        ss.pid().to_string()
    );
    // A call in progress: answered by scamscreen, listening.
    let mut first = ss.dial("before-reload");
    // A broken file first: refused, the log lists the problem.
    std::fs::write(
        &file,
        "[screening]\nallow = [\"*@anonymous.invalid\"]\nbogus = 1\n[store]\ndb = \"calls.db\"\n",
    )
    .unwrap();
    // `scamscreen reload --pidfile` signals the process (SIGHUP).
    let out = Command::new(env!("CARGO_BIN_EXE_scamscreen"))
        .args(["reload", "--pidfile"])
        .arg(&pidfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent SIGHUP"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&ss.log.lock().unwrap()).contains("reload refused") {
        assert!(Instant::now() < deadline, "no refusal in the log");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Now a good one through the admin server (as `scamscreen reload` does).
    std::fs::write(
        &file,
        "[screening]\nallow = [\"*@anonymous.invalid\"]\n[run]\npidfile = \"scamscreen.pid\"\n\
         [store]\ndb = \"calls.db\"\n",
    )
    .unwrap();
    let admin = ss.admin.unwrap();
    let mut s = TcpStream::connect(admin).unwrap();
    write!(
        s,
        "POST /reload HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // The next withheld caller is on the allow list: the callee's phone rings at once,
    // without a verdict from screening.
    let mut second = scamscreen::demo::DemoCaller::invite(
        ss.sip,
        common::screening::CALLER_IP,
        "after-reload",
        None,
    )
    .unwrap();
    assert_eq!(
        second.wait_final(Duration::from_secs(5)).unwrap(),
        Some(200)
    );
    let at_callee = callee
        .call_for(second.call_id())
        .expect("the allowed call went straight to the callee");
    assert_eq!(at_callee.scamscreen_header("verdict"), None);
    second.hang_up().unwrap();
    // The first call is still up: its BYE is answered.
    first.hang_up().unwrap();
    assert!(first.bye_answered(), "{:?}", first.sip_log());
    // SIGHUP did not stop the process (it used to exit with 129).
    assert!(!String::from_utf8_lossy(&ss.log.lock().unwrap()).contains("stopping"));
    // The pid file goes when the process stops.
    let mut ss = ss;
    ss.stop();
    assert!(!pidfile.exists());
    // `scamscreen calls --config` reads the database the file names.
    let out = Command::new(env!("CARGO_BIN_EXE_scamscreen"))
        .args(["calls", "--json", "--config"])
        .arg(&file)
        .env_remove("SCAMSCREEN_DB")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(first.call_id()),
        "{out:?}"
    );
}
