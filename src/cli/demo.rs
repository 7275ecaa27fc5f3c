//! `scamscreen demo`: the product on loopback in one command.
//!
//! Starts `scamscreen run` (this same binary, default configuration) between a test phone
//! ([`DemoCallee`], the "PBX" upstream) and a withheld caller ([`DemoCaller`] on 127.0.0.2),
//! then places two calls one after the other, spoken with espeak-ng: a tech-support scam and
//! the dentist confirming an appointment. For each it prints what the caller said, what
//! scamscreen heard and decided (from its call database), whether the phone rang with which
//! `X-Scamscreen-*` headers, and what the callee heard (transcribed with the same model).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use scamscreen::asr::whisper::{WhisperConfig, WhisperPool};
use scamscreen::asr::Transcriber;
use scamscreen::config::{Config, DEFAULT_PROMPTS_DIR, DEFAULT_RULES_DIR};
use scamscreen::demo::{
    espeak, free_rtp_range, free_sip_port, to_16k, write_wav, CalleeCall, DemoCallee, DemoCaller,
    RATE,
};
use scamscreen::model::ModelPaths;
use scamscreen::runtime::calls::load_prompt;
use scamscreen::store::{CallRecord, CallStore};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Folder of the whisper model (the default model in it is used).
    #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
    models_dir: PathBuf,
    /// Keep the working folder (call database, scamscreen's log, the audio as WAV files).
    #[arg(long)]
    keep: bool,
}

/// The scam: a tech-support opening, said within the default 8 s of listening.
const SCAM: &str = "This is Microsoft support. Your computer has a virus. Install TeamViewer \
                    now so we can fix it.";
/// The legitimate caller's opening, said to scamscreen.
const LEGIT_FIRST: &str = "Hello, this is Doctor Miller's dental office calling to confirm your \
                           appointment tomorrow at ten in the morning.";
/// What the legitimate caller says once put through: the callee should hear it.
const LEGIT_SECOND: &str =
    "Please remember to bring your insurance card and arrive ten minutes early.";
/// A borderline opening: a company claim and a problem, no request yet: warned.
const BORDERLINE: &str = "Hello, this is Microsoft. Your computer has a problem.";
/// When the test phone presses 1 after answering a warned call (the warning and "press 1 or
/// 2" take about 9 s).
const CALLEE_KEY_AFTER: Duration = Duration::from_secs(10);

const SCAMSCREEN_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The caller comes from another loopback address than the callee (the upstream, which
/// scamscreen treats as the PBX).
const CALLER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// How long the test phone rings before it answers.
const RING: Duration = Duration::from_millis(1000);
/// RTP ports for scamscreen (two per screened call).
const RTP_PORTS: u16 = 8;
/// Label column of the report.
const W: usize = 17;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let model = ModelPaths::new(&args.models_dir).default_ggml();
    if !model.is_file() {
        bail!(
            "no whisper model at {}: run `make model` first (or `scamscreen model fetch && \
             scamscreen model convert --quantize q8_0`)",
            model.display()
        );
    }
    if !Path::new(DEFAULT_RULES_DIR).is_dir() {
        bail!(
            "{DEFAULT_RULES_DIR} not found: run the demo from the scamscreen folder (it uses the \
             default configuration, whose paths are relative to it)"
        );
    }
    let work = tempfile::Builder::new()
        .prefix("scamscreen-demo-")
        .tempdir()
        .context("cannot create a working folder")?;
    let dir = work.path().to_path_buf();

    let scam = espeak(SCAM, &dir.join("scam-caller.wav"))?;
    let legit_first = espeak(LEGIT_FIRST, &dir.join("legit-caller-1.wav"))?;
    let legit_second = espeak(LEGIT_SECOND, &dir.join("legit-caller-2.wav"))?;

    let borderline = espeak(BORDERLINE, &dir.join("borderline-caller.wav"))?;
    // The test phone accepts warned calls with 1 (RFC 4733) once it has heard the warning.
    let callee = DemoCallee::start_with_key(SCAMSCREEN_IP, RING, Some(('1', CALLEE_KEY_AFTER)))?;
    let ss = Scamscreen::start(&args.models_dir, callee.addr(), &dir)?;
    let greeting = greeting_ms();
    let listen = Config::default().screening.listen();

    println!("scamscreen demo: four withheld calls through scamscreen, all on loopback");
    println!(
        "  {:<11}{} (default configuration, model {})",
        "scamscreen",
        ss.sip,
        model.display()
    );
    println!("  {:<11}started as: {}", "", ss.command);
    println!(
        "  {:<11}{} (the PBX: a test phone that rings {} s, answers and records; after a \
         warning it presses 1 to accept)",
        "callee",
        callee.addr(),
        RING.as_secs()
    );
    println!(
        "  {:<11}{CALLER_IP} (From: anonymous, Privacy: id; espeak-ng speech as PCMU)",
        "caller"
    );
    println!(
        "  {:<11}waits for the greeting ({:.1} s), then speaks; scamscreen listens {} s, up to \
         {} s while more speech could change the verdict",
        "",
        greeting as f64 / 1000.0,
        listen.as_secs(),
        Config::default().screening.max_listen_secs
    );

    let pool = WhisperPool::start(&WhisperConfig::new(&model))
        .context("cannot load the whisper model for the callee's audio")?;
    let demo = Demo {
        ss: &ss,
        callee: &callee,
        pool: &pool,
        greeting_ms: greeting,
        dir: &dir,
        keep: args.keep,
    };

    println!();
    println!("── Call 1: a tech-support scam ──");
    let (scam_ok, scam_action) = demo.scam_call(&scam)?;

    println!();
    println!("── Call 2: the dentist confirming an appointment ──");
    let (legit_ok, legit_action) = demo.legit_call(&legit_first, &legit_second)?;

    println!();
    println!("── Call 3: a borderline caller (a claim and a problem, no request yet) ──");
    let (warn_ok, warn_action) = demo.warned_call(&borderline)?;

    println!();
    println!("── Call 4: a caller who says nothing ──");
    let (silent_ok, silent_action) = demo.silent_call()?;

    drop(ss);
    println!();
    if args.keep {
        let kept = work.keep();
        println!(
            "kept {}: calls.db (scamscreen calls --db …), scamscreen.log, the audio as WAV",
            kept.display()
        );
    }
    let secs = started.elapsed().as_secs();
    match (scam_ok, legit_ok, warn_ok, silent_ok) {
        (true, true, true, true) => {
            println!(
                "Result: the scam was blocked before the phone rang; the legitimate caller was \
                 put through and heard; the borderline caller was announced with a warning and \
                 put through when the callee pressed 1; the silent caller was re-prompted, then \
                 blocked as silent. ({secs} s)"
            );
            Ok(())
        }
        (scam, legit, warn, silent) => {
            let mut what = Vec::new();
            if !scam {
                what.push("the scam call was not blocked");
            }
            if !legit {
                what.push("the legitimate call did not reach the callee");
            }
            if !warn {
                what.push("the borderline call was not warned and put through");
            }
            if !silent {
                what.push("the silent caller was not blocked as silent");
            }
            let actions = [&scam_action, &legit_action, &warn_action, &silent_action];
            let hint = if actions.iter().any(|a| *a == "unscreened") {
                format!(
                    "; scamscreen had no verdict within its screening timeout ({} ms): is the \
                     machine busy? On two idle cores whisper needs about half a second per call",
                    Config::default().screening.screening_timeout_ms
                )
            } else {
                String::new()
            };
            bail!(
                "the demo did not go as expected: {}{hint} (run again with --keep and look at \
                 scamscreen.log)",
                what.join("; ")
            )
        }
    }
}

/// The greeting's length: the caller speaks after it (what scamscreen plays first).
pub(crate) fn greeting_ms() -> u64 {
    let path = Path::new(DEFAULT_PROMPTS_DIR).join("greeting.wav");
    load_prompt(&path)
        .map(|pcm| pcm.len() as u64 * 1000 / u64::from(RATE))
        .unwrap_or(5000)
}

fn secs(pcm: &[i16]) -> f64 {
    pcm.len() as f64 / f64::from(RATE)
}

struct Demo<'a> {
    ss: &'a Scamscreen,
    callee: &'a DemoCallee,
    pool: &'a WhisperPool,
    greeting_ms: u64,
    dir: &'a Path,
    keep: bool,
}

impl Demo<'_> {
    /// The scam: expect a block (divert) and a phone that never rings.
    fn scam_call(&self, words: &[i16]) -> anyhow::Result<(bool, String)> {
        line("caller says", &format!("\"{SCAM}\" ({:.1} s)", secs(words)));
        let rang_before = self.callee.calls().len();
        let mut caller = self.dial("scam")?;
        caller.silence(self.greeting_ms + 300)?;
        caller.speak(words)?;
        // Wait for the block (scamscreen hangs up) or, if it lets the call through, the ring.
        let callee = self.callee;
        caller.wait_until(Duration::from_secs(30), || {
            callee.calls().len() > rang_before
        })?;
        let hung_up = caller.got_bye();
        if !hung_up {
            // Put through after all: let the phone answer, then hang up.
            caller.silence(2000)?;
        }
        caller.hang_up()?;
        let rec = self.ss.record(caller.call_id())?;
        print_record(&rec);
        let calls = self.callee.calls();
        let rang = calls.get(rang_before..).unwrap_or_default();
        // All of it: the greeting, then the block announcement. (tiny.en tends to loop on the
        // announcement alone at 8 kHz; with the greeting before it, it does not.)
        let text = self.transcribe(caller.heard())?;
        let end = if hung_up {
            "then scamscreen hung up"
        } else {
            "and scamscreen did not hang up"
        };
        line("caller heard", &format!("{} {end}", quoted(&text)));
        print_callee(rang.first(), |a| self.transcribe(a))?;
        if self.keep {
            write_wav(&self.dir.join("scam-caller-heard.wav"), caller.heard())?;
        }
        Ok((rec.action == "divert" && rang.is_empty(), rec.action))
    }

    /// The legitimate caller: expect the phone to ring and the callee to hear the second
    /// sentence.
    fn legit_call(&self, first: &[i16], second: &[i16]) -> anyhow::Result<(bool, String)> {
        line(
            "caller says",
            &format!("\"{LEGIT_FIRST}\" ({:.1} s)", secs(first)),
        );
        line(
            "",
            &format!(
                "once put through: \"{LEGIT_SECOND}\" ({:.1} s)",
                secs(second)
            ),
        );
        let before = self.callee.calls().len();
        let mut caller = self.dial("legit")?;
        caller.silence(self.greeting_ms + 300)?;
        caller.speak(first)?;
        // The end of speech ends the listening; the phone rings, then answers.
        let answered = caller.wait_until(Duration::from_secs(30), || {
            self.callee.calls().get(before).is_some_and(|c| c.answered)
        })?;
        if answered {
            let warned = self.callee.calls().get(before).is_some_and(|c| {
                c.scamscreen_headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case("x-scamscreen-verdict") && v == "warn")
            });
            // A warned callee hears the warning before the legs are bridged.
            caller.silence(if warned { 8000 } else { 1000 })?;
            caller.speak(second)?;
            caller.silence(500)?;
        }
        caller.hang_up()?;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline
            && self
                .callee
                .calls()
                .get(before)
                .is_some_and(|c| c.answered && !c.ended)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let rec = self.ss.record(caller.call_id())?;
        print_record(&rec);
        let calls = self.callee.calls();
        let call = calls.get(before);
        let heard = print_callee(call, |a| self.transcribe(a))?;
        if self.keep {
            if let Some(c) = call {
                write_wav(&self.dir.join("legit-callee-heard.wav"), &c.audio)?;
            }
        }
        let ok = rec.action != "divert" && call.is_some_and(|c| c.answered) && !heard.is_empty();
        Ok((ok, rec.action))
    }

    /// The borderline caller: expect a warning to the callee, who accepts with 1, then the
    /// caller's words reach the callee.
    fn warned_call(&self, words: &[i16]) -> anyhow::Result<(bool, String)> {
        line(
            "caller says",
            &format!("\"{BORDERLINE}\" ({:.1} s)", secs(words)),
        );
        let before = self.callee.calls().len();
        let mut caller = self.dial("borderline")?;
        caller.silence(self.greeting_ms + 300)?;
        caller.speak(words)?;
        let answered = caller.wait_until(Duration::from_secs(30), || {
            self.callee.calls().get(before).is_some_and(|c| c.answered)
        })?;
        if answered {
            // The warning, "press 1 or 2", the key; meanwhile the caller hears ringback.
            caller.silence(RING.as_millis() as u64 + CALLEE_KEY_AFTER.as_millis() as u64 + 1000)?;
            caller.speak(&espeak(
                "Hello, are you there?",
                &self.dir.join("borderline-caller-2.wav"),
            )?)?;
            caller.silence(500)?;
        }
        caller.hang_up()?;
        let rec = self.ss.record(caller.call_id())?;
        print_record(&rec);
        let calls = self.callee.calls();
        let call = calls.get(before);
        let heard = print_callee(call, |a| self.transcribe(a))?;
        let ok = rec.action == "warn" && rec.outcome == "connected" && !heard.is_empty();
        Ok((ok, rec.action))
    }

    /// The silent caller: re-prompted once, then `silent` (blocked by default).
    fn silent_call(&self) -> anyhow::Result<(bool, String)> {
        line("caller says", "nothing (only line noise: silence)");
        let before = self.callee.calls().len();
        let mut caller = self.dial("silent")?;
        // Greeting, no speech, the re-prompt, no speech again, then the announcement.
        let verdict = self.greeting_ms + 2 * 5_000 + 5_000 + 3_000;
        caller.wait_for_bye(Duration::from_millis(verdict))?;
        caller.hang_up()?;
        let rec = self.ss.record(caller.call_id())?;
        print_record(&rec);
        let text = self.transcribe(caller.heard())?;
        line("caller heard", &quoted(&text));
        let calls = self.callee.calls();
        print_callee(calls.get(before), |a| self.transcribe(a))?;
        Ok((rec.action == "silent" && calls.len() == before, rec.action))
    }

    fn dial(&self, name: &str) -> anyhow::Result<DemoCaller> {
        DemoCaller::call(self.ss.sip, CALLER_IP, name, Duration::from_secs(10))
            .with_context(|| format!("the {name} call: {}", self.ss.log_tail()))
    }

    fn transcribe(&self, pcm: &[i16]) -> anyhow::Result<String> {
        if pcm.len() < RATE as usize / 4 {
            return Ok(String::new());
        }
        let t = self
            .pool
            .transcribe(to_16k(pcm)?)
            .context("cannot transcribe what was heard")?;
        Ok(t.text.trim().to_string())
    }
}

fn line(label: &str, text: &str) {
    println!("{label:<W$}{text}");
}

fn quoted(text: &str) -> String {
    if text.is_empty() {
        "silence".to_string()
    } else {
        format!("\"{text}\"")
    }
}

/// What scamscreen heard and decided.
fn print_record(rec: &CallRecord) {
    line("scamscreen heard", &quoted(rec.transcript.trim()));
    let when = match rec.time_to_verdict_ms {
        // Decided on what was said so far (an early verdict, or clear past the window).
        Some(0) if rec.action != "silent" => ", while the caller was still talking".to_string(),
        Some(ms) if rec.action != "silent" => format!(", {ms} ms after the caller stopped talking"),
        _ => String::new(),
    };
    line(
        "verdict",
        &format!("{} (score {:.2}){when}", rec.action, rec.score),
    );
    if rec.reasons.is_empty() {
        line("reasons", "none: no scam rule matched");
    }
    for (i, r) in rec.reasons.iter().enumerate() {
        line(
            if i == 0 { "reasons" } else { "" },
            &format!(
                "{} [{}: \"{}\", {:.1} s into the call]",
                r.explanation,
                r.rule,
                r.matched,
                r.at_ms as f64 / 1000.0
            ),
        );
    }
    if let (Some(w), "warn") = (&rec.warning, rec.action.as_str()) {
        line("warning", w);
    }
    let action = match (rec.action.as_str(), rec.outcome.as_str()) {
        ("divert", "blocked") => {
            "blocked: the caller hears the block announcement, the phone never rings".to_string()
        }
        ("divert", "diverted") => "diverted to the divert URI".to_string(),
        ("allow", "connected") => "put through: the phone rang and the call was bridged".into(),
        ("warn", "connected") => {
            "put through after the callee heard the warning: the call was bridged".into()
        }
        ("warn", "calleerefused") => "the callee heard the warning and pressed 2: refused".into(),
        ("silent", "blocked") => {
            "silent: re-prompted once, then the block announcement; the phone never rings".into()
        }
        ("bypass", "connected") => "put through at once: the caller keyed the bypass code".into(),
        ("unscreened", "connected") => {
            "put through unscreened: no verdict in time, and fail_open lets the call through".into()
        }
        (action, outcome) => format!("{action}, outcome {outcome}"),
    };
    line("action", &action);
}

/// Whether the phone rang, with which headers, and what the callee heard (returned).
fn print_callee(
    call: Option<&CalleeCall>,
    transcribe: impl Fn(&[i16]) -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let Some(call) = call else {
        line("callee's phone", "did not ring");
        line("callee heard", "nothing");
        return Ok(String::new());
    };
    let answered = if call.answered {
        "rang and was answered"
    } else {
        "rang, not answered"
    };
    line("callee's phone", &format!("{answered}; the INVITE carried"));
    for (name, value) in &call.scamscreen_headers {
        line("", &format!("  {name}: {value}"));
    }
    let text = transcribe(&call.audio)?;
    line(
        "callee heard",
        &format!("{} ({:.1} s of audio)", quoted(&text), secs(&call.audio)),
    );
    Ok(text)
}

/// `scamscreen run` as a child process; stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Scamscreen {
    pub(crate) child: Child,
    pub(crate) sip: SocketAddr,
    pub(crate) db: PathBuf,
    log: PathBuf,
    /// The command line, for the report.
    command: String,
}

impl Scamscreen {
    fn start(models_dir: &Path, upstream: SocketAddr, dir: &Path) -> anyhow::Result<Scamscreen> {
        Self::start_with_ports(models_dir, upstream, dir, RTP_PORTS)
    }

    /// Start with `rtp_ports` RTP ports (four per concurrent call).
    pub(crate) fn start_with_ports(
        models_dir: &Path,
        upstream: SocketAddr,
        dir: &Path,
        rtp_ports: u16,
    ) -> anyhow::Result<Scamscreen> {
        Self::start_with_config(models_dir, upstream, dir, rtp_ports, None)
    }

    /// Like [`Scamscreen::start_with_ports`], with a configuration file under the flags.
    pub(crate) fn start_with_config(
        models_dir: &Path,
        upstream: SocketAddr,
        dir: &Path,
        rtp_ports: u16,
        config: Option<&Path>,
    ) -> anyhow::Result<Scamscreen> {
        Self::start_trusting(
            models_dir,
            upstream,
            dir,
            rtp_ports,
            config,
            &["127.0.0.0/8"],
        )
    }

    /// Like [`Scamscreen::start_with_config`], trusting only `trust` (`--trust` each).
    pub(crate) fn start_trusting(
        models_dir: &Path,
        upstream: SocketAddr,
        dir: &Path,
        rtp_ports: u16,
        config: Option<&Path>,
        trust: &[&str],
    ) -> anyhow::Result<Scamscreen> {
        let port = free_sip_port(SCAMSCREEN_IP)?;
        let (first, last) = free_rtp_range(SCAMSCREEN_IP, rtp_ports)?;
        let db = dir.join("calls.db");
        let log = dir.join("scamscreen.log");
        let args: Vec<String> = vec![
            "run".into(),
            "--listen".into(),
            format!("{SCAMSCREEN_IP}:{port}"),
            "--upstream".into(),
            upstream.to_string(),
            "--rtp-ports".into(),
            format!("{first}-{last}"),
            "--db".into(),
            db.display().to_string(),
            "--models-dir".into(),
            models_dir.display().to_string(),
            "--admin".into(),
            "off".into(),
        ];
        let mut args = args;
        for t in trust {
            args.extend(["--trust".into(), t.to_string()]);
        }
        if let Some(c) = config {
            args.extend(["--config".into(), c.display().to_string()]);
        }
        let exe = std::env::current_exe().context("cannot find the scamscreen binary")?;
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(&exe)
            .args(&args)
            .env("SCAMSCREEN_LOG", "warn,whisper_rs=off")
            .env_remove("SCAMSCREEN_CONFIG")
            .env_remove("SCAMSCREEN_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        // Reads to the end, so that scamscreen never writes into a closed pipe.
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                let _ = tx.send(l);
            }
        });
        let mut ss = Scamscreen {
            child,
            sip: SocketAddr::new(SCAMSCREEN_IP, port),
            db,
            log,
            command: format!("scamscreen {}", args.join(" ")),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.starts_with("listening") => break,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = ss.child.wait().ok();
                    bail!(
                        "scamscreen run stopped before listening ({}): {}",
                        status.map_or("?".into(), |s| s.to_string()),
                        ss.log_tail()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "scamscreen run did not start listening within 60 s: {}",
                    ss.log_tail()
                );
            }
        }
        Ok(ss)
    }

    /// SIGTERM, wait for the exit (up to the shutdown grace), and the counters line it
    /// wrote to its log (`None` if it did not stop or wrote none).
    pub(crate) fn stop_and_counters(&mut self) -> Option<serde_json::Value> {
        let pid = libc::pid_t::try_from(self.child.id()).ok()?;
        // SAFETY: signalling our own child by its pid; it has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(&self.log).ok()?;
        log.lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
    }

    /// The call record of the caller's Call-ID (the writer stores it just after the call).
    fn record(&self, call_id: &str) -> anyhow::Result<CallRecord> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = CallStore::open_existing(&self.db)
                .and_then(|s| s.recent(50, None))
                .ok()
                .and_then(|calls| calls.into_iter().find(|c| c.call_id == call_id));
            if let Some(rec) = found {
                return Ok(rec);
            }
            if Instant::now() > deadline {
                bail!(
                    "no call record for {call_id} in {}: {}",
                    self.db.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The end of scamscreen's log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        if tail.trim().is_empty() {
            format!("scamscreen's log ({}) is empty", self.log.display())
        } else {
            format!("scamscreen's log ends with:\n{tail}")
        }
    }
}

impl Drop for Scamscreen {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: signalling our own child by its pid; it has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
