//! A real FreeSWITCH 1.10 (the relocatable build `make peers` unpacks into target/peers) on
//! loopback, configured from its own vanilla configuration with the project's
//! `dialplans/freeswitch/` files applied as dialplans/README.md says (addresses and ports
//! substituted only), plus the test's additions in `tests/pbx/freeswitch/` (the module list
//! of this build, and one public-context extension per test phone). The hairpin files
//! (`dialplans/freeswitch/hairpin/`) are installed too: the "scamscreen" profile on a port
//! of its own, and `hairpin.xml` included after `00_scamscreen.xml`, bridging to scamscreen
//! once [`FreeSwitch::hairpin_to`] has named its address.
//!
//! Layout, as in dialplans/README.md "Inline" with everything on loopback: scamscreen on
//! 127.0.0.1, the trunk caller on 127.0.0.2, the phones behind FreeSWITCH on 127.0.0.3, and
//! FreeSWITCH (its profiles and event socket) on 127.0.0.4.
//!
//! Self-contained (no `super::`): usable as `common::freeswitch` or by `#[path]`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// FreeSWITCH's address (both sofia profiles and the event socket).
pub const FS_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
/// The phones' address (`DemoCallee`s there).
pub const PHONE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// Where scamscreen sends from (the snippet's `network_addr` condition).
pub const SCAMSCREEN_IP: &str = "127.0.0.1";
/// The documentation address the snippets use for the host of scamscreen and FreeSWITCH.
const DOC_IP: &str = "198.51.100.5";
/// The line dialplans/README.md says to add to the stock public.xml, right after
/// `<context name="public">` (the snippet's own comment names the same path).
pub const PUBLIC_INCLUDE: &str =
    r#"<X-PRE-PROCESS cmd="include" data="scamscreen/00_scamscreen.xml"/>"#;
/// Where that include makes FreeSWITCH read the snippet (relative to conf/dialplan/).
pub const SNIPPET_PATH: &str = "scamscreen/00_scamscreen.xml";
/// Hairpin: the line `dialplans/freeswitch/hairpin/hairpin.xml` says to add right after
/// [`PUBLIC_INCLUDE`], and where it makes FreeSWITCH read that file.
pub const HAIRPIN_INCLUDE: &str = r#"<X-PRE-PROCESS cmd="include" data="scamscreen/hairpin.xml"/>"#;
pub const HAIRPIN_PATH: &str = "scamscreen/hairpin.xml";
/// Hairpin: where `scamscreen-profile.xml` is installed (relative to conf/).
pub const HAIRPIN_PROFILE_PATH: &str = "sip_profiles/scamscreen.xml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `make peers` unpacks the PBX builds (or `SCAMSCREEN_PEERS_DIR`).
pub fn peers_dir() -> PathBuf {
    std::env::var_os("SCAMSCREEN_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/peers"))
}

/// The unpacked FreeSWITCH build; a missing one fails the test with the command that makes it.
pub fn build() -> PathBuf {
    let fs = peers_dir().join("freeswitch");
    assert!(
        fs.join("bin/freeswitch").is_file() && fs.join("etc/freeswitch/vars.xml").is_file(),
        "{} has no FreeSWITCH build: run `make peers` (it unpacks \
         ../shared/peers/freeswitch-1.10-bookworm-amd64.tar.zst and installs the libraries \
         it needs)",
        fs.display()
    );
    fs
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn write(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

/// `text` with `from` replaced by `to`, which must occur (the stock file changed otherwise).
fn replace_once(file: &str, text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the stock {file} no longer contains {from:?}: update tests/common/freeswitch.rs"
    );
    text.replacen(from, to, 1)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// A free TCP port on `ip` (FreeSWITCH's event socket).
fn free_tcp_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free TCP port on {ip}: {e}"))
}

/// The RTP range external-profile.xml suggests for FreeSWITCH ("e.g. 16384-19998").
pub fn suggested_rtp_range() -> (u16, u16) {
    let text = read(&root().join("dialplans/freeswitch/external-profile.xml"));
    let at = text
        .find("rtp-end-port, e.g. ")
        .expect("external-profile.xml suggests an RTP range (\"rtp-end-port, e.g. A-B\")")
        + "rtp-end-port, e.g. ".len();
    let range: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    let (a, b) = range.split_once('-').expect("A-B");
    (a.parse().unwrap(), b.parse().unwrap())
}

/// The `<param name=… value=…/>` pairs of a sofia settings snippet.
fn params(xml: &str) -> Vec<(String, String)> {
    let attr = |line: &str, name: &str| {
        let at = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[at..].split('"').next()?.to_string())
    };
    xml.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("<param "))
        .filter_map(|l| Some((attr(l, "name")?, attr(l, "value")?)))
        .collect()
}

/// A running FreeSWITCH, shut down when dropped.
pub struct FreeSwitch {
    child: Child,
    dir: tempfile::TempDir,
    /// The external profile: where scamscreen sends calls (`sip.upstream`), UDP and TCP.
    pub sip: SocketAddr,
    /// The internal profile (unused by the tests; moved off 5060 as the README says).
    pub internal: SocketAddr,
    /// Hairpin: the "scamscreen" profile (`dialplans/freeswitch/hairpin/`), UDP only: the
    /// socket withheld trunk callers are sent to scamscreen from.
    pub hairpin: SocketAddr,
    /// FreeSWITCH's RTP range (switch.conf.xml).
    pub rtp: (u16, u16),
    esl: SocketAddr,
}

impl FreeSwitch {
    /// Configure and start FreeSWITCH with one public-context extension per `(number,
    /// phone)`: a call to `number` is bridged to the phone.
    pub fn start(phones: &[(&str, SocketAddr)]) -> FreeSwitch {
        let fs = build();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "log", "db", "run", "tmp", "storage", "cache", "rec", "sounds", "certs", "scripts",
            "grammar", "htdocs",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let sip = SocketAddr::new(FS_IP, scamscreen::demo::free_sip_port(FS_IP).unwrap());
        let internal = SocketAddr::new(FS_IP, scamscreen::demo::free_sip_port(FS_IP).unwrap());
        let hairpin = SocketAddr::new(FS_IP, scamscreen::demo::free_sip_port(FS_IP).unwrap());
        let esl = SocketAddr::new(FS_IP, free_tcp_port(FS_IP));
        let rtp = suggested_rtp_range();
        let conf = d.join("conf");
        copy_dir(&fs.join("etc/freeswitch"), &conf);
        configure(&conf, sip, internal, hairpin, esl, rtp, phones);
        let out = std::fs::File::create(d.join("freeswitch.out")).unwrap();
        let path = |p: &str| d.join(p).display().to_string();
        let mut cmd = Command::new(fs.join("bin/freeswitch"));
        // Killed with the test (an interrupted run would leave it holding its ports).
        // SAFETY: only prctl between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .args(["-nf", "-nc", "-nonat", "-nonatmap"])
            .arg("-base")
            .arg(&fs)
            .args([
                "-conf",
                &path("conf"),
                "-log",
                &path("log"),
                "-db",
                &path("db"),
            ])
            .args(["-run", &path("run"), "-temp", &path("tmp")])
            .arg("-mod")
            .arg(fs.join("lib/freeswitch/mod"))
            .args(["-storage", &path("storage"), "-cache", &path("cache")])
            .args(["-recordings", &path("rec"), "-sounds", &path("sounds")])
            .args(["-certs", &path("certs"), "-scripts", &path("scripts")])
            .args(["-grammar", &path("grammar"), "-htdocs", &path("htdocs")])
            .env("LD_LIBRARY_PATH", fs.join("lib"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start freeswitch");
        let mut f = FreeSwitch {
            child,
            dir,
            sip,
            internal,
            hairpin,
            rtp,
            esl,
        };
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let status = f.try_api("sofia status");
            let running = |name: &str| {
                status.as_ref().is_ok_and(|s| {
                    s.lines()
                        .any(|l| l.contains(name) && l.contains("profile") && l.contains("RUNNING"))
                })
            };
            if running("external") && running("internal") && running("scamscreen") {
                break;
            }
            if let Ok(Some(st)) = f.child.try_wait() {
                panic!(
                    "FreeSWITCH exited at start ({st}):\n{}\n{}",
                    std::fs::read_to_string(f.dir.path().join("freeswitch.out"))
                        .unwrap_or_default(),
                    f.log_tail(40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "FreeSWITCH did not start: {status:?}\n{}",
                f.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        // SIP messages into the log (the tests check the transport).
        f.api("sofia global siptrace on");
        f
    }

    /// An API command over the event socket (mod_event_socket: auth, api, exit).
    fn try_api(&self, cmd: &str) -> Result<String, String> {
        let s = TcpStream::connect_timeout(&self.esl, Duration::from_secs(2))
            .map_err(|e| format!("event socket {}: {e}", self.esl))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        let mut r = BufReader::new(s);
        // One event socket message: headers, a blank line, Content-Length bytes of body.
        let message = |r: &mut BufReader<TcpStream>| -> Result<(String, String), String> {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                    return Err(format!("event socket closed after {head:?}"));
                }
                if line == "\n" && !head.is_empty() {
                    break;
                }
                head.push_str(&line);
            }
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |n| n.trim().parse().unwrap_or(0));
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).map_err(|e| e.to_string())?;
            Ok((head, String::from_utf8_lossy(&body).into_owned()))
        };
        message(&mut r)?; // auth/request
        w.write_all(b"auth ClueCon\n\n")
            .map_err(|e| e.to_string())?;
        let (head, _) = message(&mut r)?;
        if !head.contains("+OK") {
            return Err(format!("event socket auth: {head}"));
        }
        w.write_all(format!("api {cmd}\n\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let (_, body) = message(&mut r)?;
        let _ = w.write_all(b"exit\n\n");
        Ok(body)
    }

    /// An API command's output (what `fs_cli -x CMD` prints).
    pub fn api(&self, cmd: &str) -> String {
        self.try_api(cmd)
            .unwrap_or_else(|e| panic!("FreeSWITCH api {cmd:?}: {e}"))
    }

    /// FreeSWITCH's log file (level debug, SIP trace included).
    pub fn log(&self) -> String {
        let raw = std::fs::read(self.dir.path().join("log/freeswitch.log")).unwrap_or_default();
        String::from_utf8_lossy(&raw).into_owned()
    }

    /// The log's current length: pass it to [`FreeSwitch::log_since`] for one scenario's lines.
    pub fn log_mark(&self) -> usize {
        std::fs::metadata(self.dir.path().join("log/freeswitch.log"))
            .map_or(0, |m| m.len() as usize)
    }

    /// The log written after `mark`.
    pub fn log_since(&self, mark: usize) -> String {
        let raw = std::fs::read(self.dir.path().join("log/freeswitch.log")).unwrap_or_default();
        String::from_utf8_lossy(raw.get(mark..).unwrap_or_default()).into_owned()
    }

    /// Wait until the log after `mark` has a line containing every one of `needles`.
    pub fn wait_log(&self, mark: usize, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .log_since(mark)
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Some(l.to_string());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The dialplan and call lines of the log after `mark` (for failure messages): the
    /// extensions that matched, the applications run, notices, warnings and errors.
    pub fn digest(&self, mark: usize) -> String {
        self.log_since(mark)
            .lines()
            .filter(|l| {
                [
                    "Regex (PASS)",
                    "EXECUTE",
                    "[NOTICE]",
                    "[WARNING]",
                    "[ERR]",
                    "Hangup",
                ]
                .iter()
                .any(|k| l.contains(k))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Copy the log to `to` (kept for a failed run; the configuration folder is not).
    pub fn save_log(&self, to: &Path) -> std::io::Result<u64> {
        std::fs::copy(self.dir.path().join("log/freeswitch.log"), to)
    }

    fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Hairpin: install `dialplans/freeswitch/hairpin/hairpin.xml` with `scamscreen` (its SIP
    /// address) as the bridge target, and `reloadxml` (scamscreen picks its port after
    /// FreeSWITCH is up; until then the installed copy bridges to 127.0.0.1:5060).
    pub fn hairpin_to(&self, scamscreen: SocketAddr) {
        write(
            &self.conf().join("dialplan").join(HAIRPIN_PATH),
            &hairpin_dialplan(&scamscreen.to_string()),
        );
        let out = self.api("reloadxml");
        assert!(out.contains("+OK"), "reloadxml: {out}");
    }

    /// The configuration folder FreeSWITCH runs with.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    /// Waits for a voicemail message in `mailbox` that is not in `before` and that FreeSWITCH
    /// has finished writing: the WAV header is only final when the recording is closed, so
    /// the file must parse and keep its size for 300 ms. `None` after `timeout`.
    pub fn finished_voicemail(
        &self,
        mailbox: &str,
        before: &[PathBuf],
        timeout: Duration,
    ) -> Option<(PathBuf, scamscreen::asr::audio::MonoAudio)> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<(PathBuf, u64, Instant)> = None;
        while Instant::now() < deadline {
            let fresh = self
                .voicemails(mailbox)
                .into_iter()
                .find(|p| !before.contains(p));
            if let Some(path) = fresh {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                match &last {
                    Some((p, l, since))
                        if *p == path
                            && *l == len
                            && since.elapsed() >= Duration::from_millis(300) =>
                    {
                        if let Ok(audio) = scamscreen::asr::audio::read_wav(&path) {
                            return Some((path, audio));
                        }
                    }
                    Some((p, l, _)) if *p == path && *l == len => {}
                    _ => last = Some((path, len, Instant::now())),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Voicemail messages stored for `box@domain` (`storage/voicemail/default/DOMAIN/BOX`).
    pub fn voicemails(&self, mailbox: &str) -> Vec<PathBuf> {
        let dir = self.dir.path().join("storage/voicemail/default");
        super::pbx::wav_files(&dir.join(FS_IP.to_string()).join(mailbox))
    }
}

impl Drop for FreeSwitch {
    fn drop(&mut self) {
        let _ = self.try_api("fsctl shutdown");
        super::pbx::stop(&mut self.child, Duration::from_secs(8));
    }
}

/// The vanilla configuration in `conf`, changed for a closed loopback box (the peers README:
/// no STUN, no IPv6 profiles, no example gateway, ports moved, an even RTP end port) and
/// with the project's FreeSWITCH snippets applied as dialplans/README.md says.
fn configure(
    conf: &Path,
    sip: SocketAddr,
    internal: SocketAddr,
    hairpin: SocketAddr,
    esl: SocketAddr,
    rtp: (u16, u16),
    phones: &[(&str, SocketAddr)],
) {
    let tmpl = root().join("tests/pbx/freeswitch");
    let fs_ip = FS_IP.to_string();
    // vars.xml: fixed addresses instead of STUN lookups and the host's first address.
    let p = conf.join("vars.xml");
    let mut vars = read(&p);
    for var in ["external_rtp_ip", "external_sip_ip"] {
        vars = replace_once(
            "vars.xml",
            &vars,
            &format!(r#"<X-PRE-PROCESS cmd="stun-set" data="{var}=stun:stun.freeswitch.org"/>"#),
            &format!(r#"<X-PRE-PROCESS cmd="set" data="{var}={fs_ip}"/>"#),
        );
    }
    vars = replace_once(
        "vars.xml",
        &vars,
        "<include>",
        &format!("<include>\n  <X-PRE-PROCESS cmd=\"set\" data=\"local_ip_v4={fs_ip}\"/>"),
    );
    for (var, port) in [
        ("internal_sip_port=5060", internal.port()),
        ("external_sip_port=5080", sip.port()),
    ] {
        let name = var.split('=').next().unwrap();
        vars = replace_once("vars.xml", &vars, var, &format!("{name}={port}"));
    }
    write(&p, &vars);
    // No IPv6 profiles, no example gateways (sofia status would list them).
    for f in [
        "sip_profiles/internal-ipv6.xml",
        "sip_profiles/external-ipv6.xml",
        "sip_profiles/external/example.xml",
        "directory/default/example.com.xml",
    ] {
        std::fs::remove_file(conf.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    std::fs::remove_dir_all(conf.join("sip_profiles/external-ipv6")).unwrap();
    // The external profile: the params of dialplans/freeswitch/external-profile.xml.
    let snippet = read(&root().join("dialplans/freeswitch/external-profile.xml"));
    let p = conf.join("sip_profiles/external.xml");
    let mut profile = read(&p);
    for (name, value) in params(&snippet) {
        let value = value
            .replace(DOC_IP, &fs_ip)
            .replace("5080", &sip.port().to_string());
        let start = format!("<param name=\"{name}\" value=\"");
        let line = format!("<param name=\"{name}\" value=\"{value}\"/>");
        profile = match profile.find(&start) {
            Some(at) => {
                let end = at + profile[at..].find("/>").unwrap() + 2;
                format!("{}{line}{}", &profile[..at], &profile[end..])
            }
            None => replace_once(
                "external.xml",
                &profile,
                "<settings>",
                &format!("<settings>\n    {line}"),
            ),
        };
    }
    write(&p, &profile);
    // Event socket on FreeSWITCH's address and a free port.
    let p = conf.join("autoload_configs/event_socket.conf.xml");
    let mut es = read(&p);
    es = replace_once(
        "event_socket.conf.xml",
        &es,
        r#"<param name="listen-ip" value="::"/>"#,
        &format!(r#"<param name="listen-ip" value="{}"/>"#, esl.ip()),
    );
    es = replace_once(
        "event_socket.conf.xml",
        &es,
        r#"<param name="listen-port" value="8021"/>"#,
        &format!(r#"<param name="listen-port" value="{}"/>"#, esl.port()),
    );
    write(&p, &es);
    // switch.conf.xml: the RTP range external-profile.xml suggests. Test-binding each port
    // before use: another FreeSWITCH test run on this host may hold some of them.
    let p = conf.join("autoload_configs/switch.conf.xml");
    let mut sw = read(&p);
    for (name, port) in [("rtp-start-port", rtp.0), ("rtp-end-port", rtp.1)] {
        let stock = format!(r#"<!-- <param name="{name}" value=""#);
        let at = sw
            .find(&stock)
            .unwrap_or_else(|| panic!("the stock switch.conf.xml has no {stock:?}"));
        let end = at + sw[at..].find("-->").unwrap() + 3;
        sw = format!(
            r#"{}<param name="{name}" value="{port}"/>{}"#,
            &sw[..at],
            &sw[end..]
        );
    }
    sw = replace_once(
        "switch.conf.xml",
        &sw,
        r#"<!-- <param name="rtp-port-usage-robustness" value="true"/> -->"#,
        r#"<param name="rtp-port-usage-robustness" value="true"/>"#,
    );
    write(&p, &sw);
    // Only the modules this build has.
    std::fs::copy(
        tmpl.join("modules.conf.xml"),
        conf.join("autoload_configs/modules.conf.xml"),
    )
    .unwrap();
    // The dialplan snippet, installed and included as dialplans/README.md says.
    let snippet = read(&root().join("dialplans/freeswitch/00_scamscreen.xml"));
    assert!(
        snippet.contains(&format!("data=\"{SNIPPET_PATH}\"")),
        "00_scamscreen.xml's comment names the include line the test applies"
    );
    let snippet = snippet
        .replace(
            &DOC_IP.replace('.', r"\."),
            &SCAMSCREEN_IP.replace('.', r"\."),
        )
        .replace(DOC_IP, SCAMSCREEN_IP);
    let p = conf.join("dialplan").join(SNIPPET_PATH);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    write(&p, &snippet);
    let p = conf.join("dialplan/public.xml");
    let public = read(&p);
    let context = r#"<context name="public">"#;
    let at = public
        .find(context)
        .expect("public.xml has the public context")
        + context.len();
    let eol = at + public[at..].find('\n').unwrap() + 1;
    // Hairpin: hairpin.xml included right after it (its comment says so), and the
    // "scamscreen" profile. The hairpin only acts on calls that do not come from scamscreen's
    // address, so the inline scenarios (every call from scamscreen) run through it untouched.
    let hairpin_xml = read(&root().join("dialplans/freeswitch/hairpin/hairpin.xml"));
    assert!(
        hairpin_xml.contains(&format!("data=\"{HAIRPIN_PATH}\"")),
        "hairpin.xml's comment names the include line the test applies"
    );
    write(
        &p,
        &format!(
            "{}    {PUBLIC_INCLUDE}\n    {HAIRPIN_INCLUDE}\n{}",
            &public[..eol],
            &public[eol..]
        ),
    );
    write(
        &conf.join("dialplan").join(HAIRPIN_PATH),
        &hairpin_dialplan(&format!("{DOC_IP}:5060")),
    );
    let profile = read(&root().join("dialplans/freeswitch/hairpin/scamscreen-profile.xml"));
    assert!(
        profile.contains(&format!("conf/{HAIRPIN_PROFILE_PATH}")),
        "scamscreen-profile.xml's comment names where the test installs it"
    );
    write(
        &conf.join(HAIRPIN_PROFILE_PATH),
        &replace_once(
            "scamscreen-profile.xml",
            &profile,
            r#"<param name="sip-port" value="5082"/>"#,
            &format!(r#"<param name="sip-port" value="{}"/>"#, hairpin.port()),
        )
        .replace(DOC_IP, &fs_ip),
    );
    // Voicemail prompts, spoken (FreeSWITCH's sounds are not packaged).
    let sounds = conf.parent().unwrap().join("sounds/en/us/callie");
    for line in read(&tmpl.join("prompts.tsv")).lines() {
        let Some((file, text)) = line.split_once('\t').filter(|_| !line.starts_with('#')) else {
            continue;
        };
        let wav = sounds.join(file);
        std::fs::create_dir_all(wav.parent().unwrap()).unwrap();
        scamscreen::demo::espeak(text, &wav).unwrap_or_else(|e| panic!("espeak-ng: {e}"));
    }
    // The test's phones, after the stock public/00_inbound_did.xml.
    let phone = read(&tmpl.join("phone.xml"));
    for (number, addr) in phones {
        write(
            &conf.join(format!("dialplan/public/50_phone_{number}.xml")),
            &phone
                .replace("@NUMBER@", number)
                .replace("@PHONE@", &addr.to_string()),
        );
    }
}

/// `dialplans/freeswitch/hairpin/hairpin.xml` with scamscreen's address in the
/// `network_addr` condition and `target` (scamscreen's SIP address) in the bridge.
fn hairpin_dialplan(target: &str) -> String {
    let text = read(&root().join("dialplans/freeswitch/hairpin/hairpin.xml"));
    replace_once(
        "hairpin.xml",
        &text,
        &format!("sofia/scamscreen/${{destination_number}}@{DOC_IP}:5060"),
        &format!("sofia/scamscreen/${{destination_number}}@{target}"),
    )
    .replace(
        &DOC_IP.replace('.', r"\."),
        &SCAMSCREEN_IP.replace('.', r"\."),
    )
    .replace(DOC_IP, SCAMSCREEN_IP)
}

/// The number the trunk dials. The demo caller always calls `sip:100@…`; this relay, on the
/// caller's address between the caller and scamscreen, rewrites that to `sip:NUMBER@…`
/// (Request-URI and To) in every request the caller sends, and passes everything else
/// through both ways (scamscreen answers the relay's port: `rport`). Requests from
/// scamscreen go to the caller's Contact directly.
pub struct Dialled {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Dialled {
    pub fn start(ip: IpAddr, scamscreen: SocketAddr, number: &str) -> Dialled {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let to = format!("sip:{number}@");
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65535];
            let mut caller: Option<SocketAddr> = None;
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if from == scamscreen {
                    if let Some(c) = caller {
                        let _ = sock.send_to(&buf[..n], c);
                    }
                } else {
                    caller = Some(from);
                    let msg = String::from_utf8_lossy(&buf[..n]);
                    let (head, body) = msg.split_once("\r\n\r\n").unwrap_or((&msg, ""));
                    let out = format!("{}\r\n\r\n{body}", head.replace("sip:100@", &to));
                    let _ = sock.send_to(out.as_bytes(), scamscreen);
                }
            }
        });
        Dialled {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Give this to the caller as the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Dialled {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
