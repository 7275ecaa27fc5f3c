//! Device mode against a real Asterisk 22 playing a home router with a built-in PBX
//! (Fritz!Box-style; tests/pbx/asterisk/router-*.conf): scamscreen registers as IP phone
//! 620 with digest authentication, the router sends it the withheld callers, and scamscreen
//! rings the house by calling the router's internal number **9 as device 620, the verdict in
//! the display name; scams go to the router's answering machine (**600).
//!
//! Needs `make peers` (the Asterisk build in target/peers).

mod common;

use common::asterisk::{display_name, Asterisk, Layout, Setup, PHONE_IP};
use common::pbx::{answered, phone_call};
use common::screening::{speech, Scamscreen, CALLER_IP, GREETING_MS};
use scamscreen::demo::{DemoCallee, DemoCaller};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const LEGIT: &str = "Hello, this is Doctor Miller's dental office calling to confirm your \
                     appointment tomorrow at ten in the morning.";
const SCAM: &str = "This is Microsoft support. Your computer has a virus. Install TeamViewer \
                    now so we can fix it.";

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

fn wait_health(admin: SocketAddr, want: u16, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, body) = http_get(admin, "/healthz");
        if code == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz stayed {code} {body:?}, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn device_mode_registers_screens_and_rings_the_house_through_the_router() {
    let _cpu = common::cpu_heavy();
    let phone = DemoCallee::start(PHONE_IP, Duration::from_millis(300)).unwrap();
    let port = Setup::free_port();
    let router = SocketAddr::from(([127, 0, 0, 1], port));
    let toml = format!(
        "[sip]\nupstream_probe_secs = 0\n\
         [screening]\nscreening_timeout_ms = 20000\n\
         divert_uri = \"sip:**600@127.0.0.1:{port}\"\n\
         [device]\nuser = \"620\"\npassword = \"secret-620-x\"\ncallback = \"**9\"\n\
         expires_secs = 120\n"
    );
    // scamscreen first: the router is not up yet, so it is not registered (503), and it
    // keeps trying.
    let ss = Scamscreen::start_with(router, 8, Some(&toml));
    let admin = ss.admin.expect("admin server");
    assert_eq!(wait_health(admin, 503, 5).trim(), "not registered");
    let tmpl = common::root().join("tests/pbx/asterisk");
    let ast = Asterisk::start(Setup {
        port,
        port2: 0,
        scamscreen: ss.sip,
        phone: phone.addr(),
        extensions: std::fs::read_to_string(tmpl.join("router-extensions.conf")).unwrap(),
        pjsip: std::fs::read_to_string(tmpl.join("router-pjsip.conf")).unwrap(),
        layout: Layout::Own,
    });
    // Registered on a retry (back-off 5 s after the first failure, then 10 s).
    assert_eq!(wait_health(admin, 200, 25).trim(), "ready");
    let contacts = ast.cli("pjsip show contacts");
    assert!(
        contacts.contains(&format!("620/sip:620@{}", ss.sip)),
        "{contacts}"
    );
    let (_, metrics) = http_get(admin, "/metrics");
    assert!(
        metrics.contains("scamscreen_device_registered 1"),
        "{metrics}"
    );

    // A caller with a number: the router rings the house itself.
    let mut caller =
        DemoCaller::invite_from(router, CALLER_IP, "dev-numbered", None, Some("+4930123456"))
            .unwrap();
    answered(&mut caller, 10);
    let call = phone_call(&phone, &mut caller, 5, 0);
    assert!(call.invite.contains("4930123456"), "{}", call.invite);
    caller.hang_up().unwrap();
    assert!(
        ss.calls().is_empty(),
        "scamscreen saw a caller with a number"
    );

    // Withheld and legitimate: the router sends it to scamscreen, which screens it and rings
    // the house as device 620 with the verdict on the display.
    let mut caller = DemoCaller::invite(router, CALLER_IP, "dev-dentist", None).unwrap();
    answered(&mut caller, 10);
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&speech(LEGIT)).unwrap();
    let call = phone_call(&phone, &mut caller, 30, 1);
    assert_eq!(
        display_name(&call.invite),
        "Screened caller",
        "{}",
        call.invite
    );
    let from = scamscreen::demo::header(&call.invite, "from").unwrap_or_default();
    assert!(
        from.contains("sip:620@"),
        "the house sees device 620: {from}"
    );
    assert!(
        ast.log().contains("rings every phone"),
        "the router's **9 was not used:\n{}",
        ast.log()
    );
    caller
        .speak(&speech("Please bring your insurance card."))
        .unwrap();
    caller.silence(500).unwrap();
    let heard = phone.calls()[1].audio.clone();
    let text = common::screening::transcribe(&heard);
    assert!(text.contains("insurance"), "the phone heard: {text}");
    caller.hang_up().unwrap();
    assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    let recs = ss.calls();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["action"], "allow", "{recs:?}");
    assert_eq!(recs[0]["outcome"], "connected", "{recs:?}");

    // A scam: to the router's answering machine, the house stays quiet.
    let mut caller = DemoCaller::invite(router, CALLER_IP, "dev-scam", None).unwrap();
    caller.wait_final(Duration::from_secs(10)).unwrap();
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&speech(SCAM)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ast.log().contains("to the answering machine") {
        assert!(Instant::now() < deadline, "no divert:\n{}", ast.log());
        caller.silence(200).unwrap();
    }
    let line = ast
        .log()
        .lines()
        .find(|l| l.contains("to the answering machine"))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("\"SCAM "), "{line}");
    caller.silence(2000).unwrap();
    caller.hang_up().unwrap();
    assert_eq!(phone.calls().len(), 2, "the phone rang for a scam");

    // Stopping unregisters: the router forgets the contact.
    let mut ss = ss;
    ss.stop();
    let contacts = ast.cli("pjsip show contacts");
    assert!(!contacts.contains("620/sip:620@"), "{contacts}");
}
