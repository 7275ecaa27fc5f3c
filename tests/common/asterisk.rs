//! A real Asterisk 22 (the relocatable build `make peers` unpacks into target/peers) on
//! loopback, configured with the project's own `dialplans/asterisk/` files, only addresses
//! and ports substituted, plus the test's additions in `tests/pbx/asterisk/` (the phone
//! behind the PBX, the ITSP context that rings it, a TCP transport, a voicemail box).
//!
//! Layout, as in dialplans/README.md "Inline" with everything on one host: scamscreen and
//! Asterisk on 127.0.0.1 (Asterisk on its own port), the phone on 127.0.0.3, the trunk
//! caller on 127.0.0.2.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The phone's address (a `DemoCallee` there).
pub const PHONE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// Where `make peers` unpacks the PBX builds (or `SCAMSCREEN_PEERS_DIR`).
pub fn peers_dir() -> PathBuf {
    std::env::var_os("SCAMSCREEN_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::root().join("target/peers"))
}

/// The unpacked Asterisk build; a missing one fails the test with the command that makes it.
pub fn build() -> PathBuf {
    let ast = peers_dir().join("asterisk");
    assert!(
        ast.join("sbin/asterisk").is_file(),
        "{} has no Asterisk build: run `make peers` (it unpacks \
         ../shared/peers/asterisk-22-bookworm-amd64.tar.zst)",
        ast.display()
    );
    ast
}

/// What one Asterisk is set up with.
pub struct Setup {
    /// Asterisk's SIP port (UDP and TCP), on 127.0.0.1.
    pub port: u16,
    /// scamscreen's SIP address: the `scamscreen` AOR (OPTIONS, hairpin calls).
    pub scamscreen: SocketAddr,
    /// The phone behind the PBX.
    pub phone: SocketAddr,
    /// Appended to extensions.conf (hairpin, device-mode router rules).
    pub extensions: String,
    /// Appended to pjsip.conf.
    pub pjsip: String,
    /// Which of the project's snippets to use.
    pub layout: Layout,
    /// Asterisk's second port (hairpin: the socket it sends withheld calls to scamscreen from).
    pub port2: u16,
}

/// The project's configuration used.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `dialplans/asterisk/{pjsip,extensions}.conf`: scamscreen in front of Asterisk, plus
    /// the test's phone and `[from-itsp]` that rings it.
    Inline,
    /// `dialplans/asterisk/hairpin/*` with `../extensions.conf` (SCAMSCREEN_ROUTE set to
    /// route-inbound as hairpin/extensions.conf says), the phone, and an ITSP endpoint for
    /// the trunk caller (127.0.0.2).
    Hairpin,
    /// Only what `extensions` and `pjsip` say (device mode: Asterisk as the home router).
    Own,
}

impl Setup {
    /// A free port for Asterisk, chosen before scamscreen starts (scamscreen's upstream).
    pub fn free_port() -> u16 {
        scamscreen::demo::free_sip_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap()
    }
}

pub struct Asterisk {
    child: Child,
    dir: tempfile::TempDir,
    ast: PathBuf,
    pub addr: SocketAddr,
}

impl Asterisk {
    pub fn start(setup: Setup) -> Asterisk {
        let ast = build();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "etc",
            "varlib/keys",
            "varlib/sounds",
            "spool",
            "run",
            "log",
            "agi",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // Asterisk exits at start without the documentation folder (peers README).
        std::os::unix::fs::symlink(
            ast.join("var/lib/asterisk/documentation"),
            d.join("varlib/documentation"),
        )
        .unwrap();
        // Prompts for VoiceMail (Debian's asterisk-core-sounds-en-wav, `make peers`).
        let sounds = Path::new("/usr/share/asterisk/sounds/en_US_f_Allison");
        if sounds.is_dir() {
            std::os::unix::fs::symlink(sounds, d.join("varlib/sounds/en")).unwrap();
        }
        let rtp = scamscreen::demo::free_rtp_range(IpAddr::V4(Ipv4Addr::LOCALHOST), 40).unwrap();
        let tmpl = super::root().join("tests/pbx/asterisk");
        let sub = |text: &str| {
            text.replace("@DIR@", &d.display().to_string())
                .replace("@AST@", &ast.display().to_string())
                .replace("@RTP_FIRST@", &rtp.0.to_string())
                .replace("@RTP_LAST@", &rtp.1.to_string())
                .replace("@AST_PORT@", &setup.port.to_string())
                .replace("@PHONE@", &setup.phone.to_string())
                .replace("@SCAMSCREEN@", &setup.scamscreen.to_string())
        };
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        for f in [
            "asterisk.conf",
            "modules.conf",
            "logger.conf",
            "rtp.conf",
            "voicemail.conf",
            "indications.conf",
        ] {
            std::fs::write(d.join("etc").join(f), sub(&read(tmpl.join(f)))).unwrap();
        }
        // The project's snippets: only the documentation addresses and ports replaced.
        let snippet = |name: &str| {
            read(super::root().join("dialplans/asterisk").join(name))
                .replace("0.0.0.0:5080", &format!("127.0.0.1:{}", setup.port))
                .replace("0.0.0.0:5082", &format!("127.0.0.1:{}", setup.port2))
                .replace("198.51.100.5:5080", &format!("127.0.0.1:{}", setup.port))
                .replace("198.51.100.5:5060", &setup.scamscreen.to_string())
                .replace("198.51.100.5", "127.0.0.1")
        };
        let (mut pjsip, mut extensions) = match setup.layout {
            Layout::Inline => (
                snippet("pjsip.conf") + &sub(&read(tmpl.join("test-pjsip.conf"))),
                snippet("extensions.conf") + &sub(&read(tmpl.join("test-extensions.conf"))),
            ),
            Layout::Hairpin => (
                snippet("hairpin/pjsip.conf")
                    + &sub(&read(tmpl.join("test-pjsip.conf")))
                    + &sub(&read(tmpl.join("test-itsp.conf"))),
                snippet("extensions.conf").replace(
                    "SCAMSCREEN_ROUTE=from-itsp",
                    "SCAMSCREEN_ROUTE=route-inbound",
                ) + &snippet("hairpin/extensions.conf"),
            ),
            Layout::Own => (String::new(), String::new()),
        };
        pjsip += &sub(&setup.pjsip);
        extensions += &sub(&setup.extensions);
        std::fs::write(d.join("etc/pjsip.conf"), pjsip).unwrap();
        std::fs::write(d.join("etc/extensions.conf"), extensions).unwrap();
        // Empty files silence "Unable to load config file" noise.
        for f in [
            "cdr",
            "cel",
            "features",
            "acl",
            "udptl",
            "pjproject",
            "pjsip_wizard",
            "pjsip_notify",
            "ccss",
            "musiconhold",
        ] {
            std::fs::write(d.join(format!("etc/{f}.conf")), "").unwrap();
        }
        let child = Command::new(ast.join("sbin/asterisk"))
            .arg("-C")
            .arg(d.join("etc/asterisk.conf"))
            .arg("-f")
            .env("LD_LIBRARY_PATH", ast.join("lib"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start asterisk");
        let a = Asterisk {
            child,
            dir,
            ast,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), setup.port),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = a.cli_output("core waitfullybooted");
            if out.as_ref().is_ok_and(|o| o.contains("fully booted")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Asterisk did not start: {out:?}\n{}",
                a.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        a
    }

    fn cli_output(&self, cmd: &str) -> Result<String, String> {
        let out = Command::new(self.ast.join("sbin/asterisk"))
            .arg("-C")
            .arg(self.dir.path().join("etc/asterisk.conf"))
            .args(["-rx", cmd])
            .env("LD_LIBRARY_PATH", self.ast.join("lib"))
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// An Asterisk CLI command's output.
    pub fn cli(&self, cmd: &str) -> String {
        self.cli_output(cmd)
            .unwrap_or_else(|e| panic!("asterisk -rx {cmd:?}: {e}"))
    }

    /// Asterisk's log (notice, warning, error, verbose 3, dtmf).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/messages.log")).unwrap_or_default()
    }

    /// Wait until the log has a line containing every one of `needles`.
    pub fn wait_log(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .log()
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

    /// Messages in a voicemail box (`100@default` → spool/voicemail/default/100/INBOX).
    pub fn voicemails(&self, context: &str, mailbox: &str) -> Vec<PathBuf> {
        let inbox = self
            .dir
            .path()
            .join("spool/voicemail")
            .join(context)
            .join(mailbox);
        super::pbx::wav_files(&inbox.join("INBOX"))
    }

    /// The folder Asterisk runs in (configuration under etc/).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Asterisk {
    fn drop(&mut self) {
        let _ = self.cli_output("core stop now");
        super::pbx::stop(&mut self.child, Duration::from_secs(5));
    }
}

/// The From header's display name in an INVITE.
pub fn display_name(invite: &str) -> String {
    scamscreen::demo::header(invite, "from")
        .and_then(|f| f.split('"').nth(1))
        .unwrap_or_default()
        .to_string()
}
