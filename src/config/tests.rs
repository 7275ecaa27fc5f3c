use std::net::{IpAddr, SocketAddr};

use super::*;

const EXAMPLE: &str = include_str!("../../scamscreen.example.toml");

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    parse_trusted_net(s).unwrap()
}

/// The defaults plus the two settings that have none.
fn runnable() -> Config {
    let mut c = Config::default();
    c.sip.upstream = Some("192.0.2.20:5080".to_string());
    c.security.trusted = vec![net("192.0.2.0/24")];
    c
}

fn fields(problems: &[ConfigProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.field.as_str()).collect()
}

fn problems_of(c: &Config) -> Vec<ConfigProblem> {
    c.validate().expect_err("expected problems")
}

#[test]
fn empty_file_is_the_defaults() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.sip.listen_udp, vec![addr("0.0.0.0:5060")]);
    assert_eq!(c.sip.listen_tcp, vec![addr("0.0.0.0:5060")]);
    assert_eq!(c.sip.upstream, None);
    assert_eq!(c.sip.upstream_transport, Transport::Udp);
    assert!(c.sip.record_route);
    assert_eq!(c.sip.timer_t1(), Duration::from_millis(500));
    assert_eq!(c.sip.timer_t2(), Duration::from_secs(4));
    assert_eq!(c.sip.timer_t4(), Duration::from_secs(5));
    assert_eq!(c.sip.max_message_bytes, 65_535);
    assert_eq!(c.security.untrusted, UntrustedAction::Reject);
    assert!(c.security.trusted.is_empty());
    assert_eq!(c.screening.policy, ScreeningPolicy::Withheld);
    assert!(c.screening.trust_asserted_identity);
    assert_eq!(c.screening.listen(), Duration::from_secs(8));
    assert_eq!(c.screening.thresholds(), Thresholds::default());
    assert_eq!(c.screening.rules_dir, PathBuf::from("models/rules"));
    assert_eq!(c.screening.when_unscreened(), WhenUnscreened::Allow);
    assert_eq!(c.screening.language, "en");
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn defaults_need_only_upstream_and_trusted() {
    let problems = problems_of(&Config::default());
    assert_eq!(fields(&problems), ["sip.upstream", "security.trusted"]);
    assert!(problems[0].message.contains("--upstream"));
    assert!(problems[1].message.contains("--trust"));
    assert_eq!(runnable().validate(), Ok(()));
}

#[test]
fn example_parses_and_validates() {
    let c = Config::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.sip.upstream.as_deref(), Some("127.0.0.1:5080"));
    assert!(c.security.is_trusted("127.0.0.1".parse().unwrap()));
    assert!(c.security.is_trusted("192.0.2.77".parse().unwrap()));
    assert!(!c.security.is_trusted("198.51.100.1".parse().unwrap()));
}

#[test]
fn example_states_every_default() {
    let c = Config::from_toml_str(EXAMPLE).unwrap();
    let mut defaults = Config::default();
    defaults.sip.upstream = c.sip.upstream.clone();
    defaults.security.trusted = c.security.trusted.clone();
    assert_eq!(c, defaults);
}

#[test]
fn example_mentions_every_option() {
    let options = [
        "listen_udp",
        "listen_tcp",
        "upstream",
        "upstream_transport",
        "record_route",
        "advertised_host",
        "timer_t1_ms",
        "timer_t2_ms",
        "timer_t4_ms",
        "max_message_bytes",
        "tcp_idle_secs",
        "tcp_max_connections",
        "tcp_max_per_source",
        "tcp_message_timeout_secs",
        "shutdown_grace_secs",
        "upstream_probe_secs",
        "max_header_bytes",
        "max_headers",
        "trusted",
        "untrusted",
        "rate_limit_per_sec",
        "rate_limit_burst",
        "rate_limit_sources",
        "trusted_rate_limit_per_sec",
        "policy",
        "trust_asserted_identity",
        "allow",
        "deny",
        "listen_secs",
        "warn_threshold",
        "divert_threshold",
        "model_weight",
        "rules_dir",
        "model",
        "when_unscreened",
        "divert_uri",
        "language",
        "multilingual_model",
        "second_pass",
        "mode",
        "screening_timeout_ms",
        "ring_secs",
        "asr_queue_depth",
        "asr_threads",
        "early_verdict",
        "max_listen_secs",
        "no_speech_secs",
        "follow_up",
        "silent_action",
        "message_secs",
        "callee_choice_secs",
        "callee_default",
        "bypass_code",
        "skip_from",
        "rtp_ports",
        "media_ip",
        "prompts_dir",
        "ringback",
        "db",
        "retention_days",
        "level",
        "format",
        "token",
        "webhook",
        "redact",
    ];
    for option in options {
        let set = format!("\n{option} = ");
        let commented = format!("\n# {option} = ");
        assert!(
            EXAMPLE.contains(&set) || EXAMPLE.contains(&commented),
            "{option} is missing from scamscreen.example.toml"
        );
    }
    assert!(EXAMPLE.contains("\n# [[screening.called]]\n# number = "));
}

#[test]
fn commented_options_in_the_example_are_valid_too() {
    let uncommented: String = EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_option(rest) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::from_toml_str(&uncommented).unwrap();
    assert!(c.sip.advertised_host.is_some());
    assert!(c.screening.model.is_some());
    assert!(c.screening.divert_uri.is_some());
    assert_eq!(c.validate(), Ok(()));
}

fn is_option(line: &str) -> bool {
    ["advertised_host = ", "model = ", "divert_uri = "]
        .iter()
        .any(|o| line.starts_with(o))
}

#[test]
fn full_file_parses() {
    let src = r#"
        [sip]
        listen_udp = ["127.0.0.1:5070", "[::1]:5070"]
        listen_tcp = []
        upstream = "pbx.example:5080"
        upstream_transport = "tcp"
        record_route = false
        advertised_host = "sbc.example"
        timer_t1_ms = 250
        timer_t2_ms = 2000
        timer_t4_ms = 2500
        max_message_bytes = 8192
        tcp_idle_secs = 60

        [security]
        trusted = ["10.0.0.0/8", "192.0.2.1", "2001:db8::1"]
        untrusted = "drop"
        rate_limit_per_sec = 5.5
        rate_limit_burst = 20
        rate_limit_sources = 500

        [screening]
        policy = "unknown"
        trust_asserted_identity = false
        allow = ["+4930*", "*@trusted.example"]
        deny = ["0900*"]
        listen_secs = 6
        warn_threshold = 0.4
        divert_threshold = 0.9
        rules_dir = "/etc/scamscreen/rules"
        model = "/var/lib/scamscreen/model.bin"
        fail_open = false
        divert_uri = "sips:vm@pbx.example"
        language = "de"

        [log]
        level = "scamscreen::sip=debug,info"
        format = "json"
    "#;
    let c = Config::from_toml_str(src).unwrap();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(
        c.sip.listen_udp,
        vec![addr("127.0.0.1:5070"), addr("[::1]:5070")]
    );
    assert!(c.sip.listen_tcp.is_empty());
    assert_eq!(
        c.sip.upstream_target(),
        Some(HostPort {
            host: Host::Name("pbx.example".to_string()),
            port: Some(5080)
        })
    );
    assert_eq!(c.sip.upstream_transport, Transport::Tcp);
    assert!(!c.sip.record_route);
    assert_eq!(c.sip.tcp_idle(), Duration::from_secs(60));
    assert_eq!(
        c.security.trusted,
        vec![
            net("10.0.0.0/8"),
            net("192.0.2.1/32"),
            net("2001:db8::1/128")
        ]
    );
    assert_eq!(c.security.untrusted, UntrustedAction::Drop);
    assert_eq!(c.security.rate_limit_per_sec, 5.5);
    assert_eq!(c.screening.policy, ScreeningPolicy::Unknown);
    let rules = c.screening.classify_rules().unwrap();
    assert_eq!((rules.allow.len(), rules.deny.len()), (2, 1));
    assert!(!rules.trust_asserted_identity);
    assert_eq!(c.screening.thresholds().divert, 0.9);
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn unknown_field_names_the_field_and_line() {
    let src = "[sip]\nlisten_udp = []\n\n[screening]\nlisten_sec = 8\n";
    match Config::from_toml_str(src) {
        Err(ConfigError::Parse {
            file,
            line,
            column,
            message,
        }) => {
            assert_eq!(file, "<config>");
            assert_eq!((line, column), (5, 1));
            assert!(message.contains("unknown field `listen_sec`"), "{message}");
            assert!(message.contains("listen_secs"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let e = Config::from_toml_str("[sound]\n").unwrap_err();
    assert!(e.to_string().starts_with("<config>:1:"), "{e}");
    assert!(e.to_string().contains("sound"), "{e}");
}

#[test]
fn type_errors_have_a_line() {
    let e = Config::from_toml_str("[sip]\n\ntimer_t1_ms = \"fast\"\n").unwrap_err();
    assert!(e.to_string().starts_with("<config>:3:15: "), "{e}");
    let e = Config::from_toml_str("[screening]\npolicy = \"some\"\n").unwrap_err();
    assert!(e.to_string().contains("withheld"), "{e}");
    let e = Config::from_toml_str("[sip]\nlisten_udp = [\"localhost\"]\n").unwrap_err();
    assert!(e.to_string().starts_with("<config>:2:"), "{e}");
    assert!(e.to_string().contains("\"localhost\" is not"), "{e}");
}

#[test]
fn asr_threads_is_auto_or_a_count() {
    use crate::asr::cpu::ThreadPolicy;
    let c = Config::from_toml_str("[screening]\nasr_threads = 1\n").unwrap();
    assert_eq!(c.screening.asr_threads, ThreadPolicy::Fixed(1));
    let c = Config::from_toml_str("[screening]\nasr_threads = \"auto\"\n").unwrap();
    assert!(matches!(c.screening.asr_threads, ThreadPolicy::Auto { .. }));
    let e = Config::from_toml_str("[screening]\nasr_threads = 0\n").unwrap_err();
    assert!(e.to_string().contains("`auto` or a number"), "{e}");
    let e = Config::from_toml_str("[screening]\nasr_threads = \"fast\"\n").unwrap_err();
    assert!(e.to_string().starts_with("<config>:2:"), "{e}");
}

#[test]
fn bad_trusted_entry_is_a_parse_error() {
    let e = Config::from_toml_str("[security]\ntrusted = [\"10.0.0.0/8\", \"ten\"]\n").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("<config>:2:"), "{text}");
    assert!(text.contains("\"ten\" is not an IP address"), "{text}");
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::NotFound { .. }));
    assert!(e.to_string().contains("nope.toml"));
    assert!(e.to_string().contains("not found"));

    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[log]\nlevel = \"info\"\nfromat = \"json\"\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}:3:1: ", path.display())),
        "{text}"
    );
    assert!(text.contains("fromat"), "{text}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, EXAMPLE).unwrap();
    assert!(Config::load(&good).is_ok());
}

#[test]
fn every_problem_is_reported_together() {
    let src = r#"
        [sip]
        listen_udp = []
        listen_tcp = []
        upstream = "sip:pbx.example"
        advertised_host = "0.0.0.0"
        timer_t1_ms = 5000
        timer_t2_ms = 4000
        timer_t4_ms = 0
        max_message_bytes = 100
        tcp_idle_secs = 0

        [security]
        trusted = []
        rate_limit_per_sec = 0.0
        rate_limit_burst = 0
        rate_limit_sources = 0

        [screening]
        allow = ["+4930*", "49+30"]
        deny = ["a@b@c"]
        listen_secs = 0
        warn_threshold = 0.9
        divert_threshold = 1.5
        rules_dir = ""
        model = ""
        divert_uri = "tel:+4930123"
        language = "English"

        [log]
        level = "loud"
    "#;
    let c = Config::from_toml_str(src).unwrap();
    let problems = problems_of(&c);
    assert_eq!(
        fields(&problems),
        [
            "sip.listen_udp",
            "sip.upstream",
            "sip.advertised_host",
            "sip.timer_t4_ms",
            "sip.timer_t1_ms",
            "sip.max_message_bytes",
            "sip.tcp_idle_secs",
            "security.trusted",
            "security.rate_limit_per_sec",
            "security.rate_limit_burst",
            "security.rate_limit_sources",
            "screening.allow[1]",
            "screening.deny[0]",
            "screening.listen_secs",
            "screening.divert_threshold",
            "screening.rules_dir",
            "screening.model",
            "screening.divert_uri",
            "screening.language",
            "log.level",
        ]
    );
    let text = ConfigError::Invalid(problems).to_string();
    assert!(text.starts_with("20 problems in the configuration:\n  sip.listen_udp: "));
    assert!(
        text.contains("sip.upstream: give host:port, not a URI"),
        "{text}"
    );
    assert!(
        text.contains("screening.allow[1]: bad pattern \"49+30\""),
        "{text}"
    );
}

#[test]
fn thresholds_must_be_ordered() {
    let mut c = runnable();
    c.screening.warn_threshold = 0.9;
    c.screening.divert_threshold = 0.8;
    let problems = problems_of(&c);
    assert_eq!(fields(&problems), ["screening.warn_threshold"]);
    assert!(problems[0].message.contains("above divert_threshold"));
    c.screening.warn_threshold = f64::NAN;
    assert_eq!(
        fields(&problems_of(&c)),
        ["screening.warn_threshold"],
        "NaN is out of range"
    );
    c.screening.warn_threshold = 0.8;
    assert_eq!(c.validate(), Ok(()), "warn may equal divert");
}

#[test]
fn upstream_forms() {
    let ok = |s: &str| HostPort::parse(s).unwrap().to_string();
    assert_eq!(ok("192.0.2.1:5080"), "192.0.2.1:5080");
    assert_eq!(ok("PBX.Example."), "pbx.example");
    assert_eq!(ok("[2001:db8::1]:5080"), "[2001:db8::1]:5080");
    assert_eq!(ok("2001:db8::1"), "[2001:db8::1]");
    assert_eq!(HostPort::parse("pbx").unwrap().port_or(5060), 5060);
    for bad in [
        "",
        "pbx:",
        "pbx:0",
        "pbx:70000",
        "pbx:+5",
        "pbx:50:60",
        "pbx example",
        "-pbx.example",
        "300.1.1.1",
        "[2001:db8::1",
        "[2001:db8::1]5080",
        "sip:pbx.example",
        "udp://pbx",
    ] {
        assert!(HostPort::parse(bad).is_err(), "{bad}");
    }
    let mut c = runnable();
    c.sip.upstream = Some("pbx.example:x".to_string());
    let problems = problems_of(&c);
    assert_eq!(
        problems[0].to_string(),
        "sip.upstream: \"x\" is not a port (1-65535)"
    );
}

#[test]
fn upstream_must_not_be_ourselves() {
    let mut c = runnable();
    c.sip.upstream = Some("127.0.0.1:5060".to_string());
    assert_eq!(fields(&problems_of(&c)), ["sip.upstream"]);
    c.sip.upstream = Some("127.0.0.1".to_string());
    assert_eq!(fields(&problems_of(&c)), ["sip.upstream"], "default port");
    c.sip.upstream = Some("127.0.0.1:5080".to_string());
    assert_eq!(c.validate(), Ok(()));
    c.sip.upstream = Some("0.0.0.0:5080".to_string());
    assert_eq!(fields(&problems_of(&c)), ["sip.upstream"]);
}

#[test]
fn trusted_accepts_bare_addresses() {
    assert_eq!(net("192.0.2.1"), "192.0.2.1/32".parse::<IpNet>().unwrap());
    assert_eq!(
        net(" 2001:db8::1 "),
        "2001:db8::1/128".parse::<IpNet>().unwrap()
    );
    assert_eq!(net("10.0.0.0/8"), "10.0.0.0/8".parse::<IpNet>().unwrap());
    for bad in ["", "10.0.0.0/33", "host.example", "10.0.0.1/", "[::1]"] {
        assert!(parse_trusted_net(bad).is_err(), "{bad}");
    }
}

#[test]
fn divert_uri_and_language() {
    let mut c = runnable();
    for good in ["sip:vm@pbx.example", "SIPS:vm@pbx.example:5061"] {
        c.screening.divert_uri = Some(good.to_string());
        assert_eq!(c.validate(), Ok(()), "{good}");
    }
    for bad in ["sip:", "voicemail@pbx", "sip:vm @pbx", "http://x"] {
        c.screening.divert_uri = Some(bad.to_string());
        assert_eq!(fields(&problems_of(&c)), ["screening.divert_uri"], "{bad}");
    }
    c.screening.divert_uri = None;
    for bad in ["", "e", "EN", "en-US", "engl", "fr"] {
        c.screening.language = bad.to_string();
        assert_eq!(fields(&problems_of(&c)), ["screening.language"], "{bad}");
    }
    c.screening.language = "de".into();
    assert_eq!(c.validate(), Ok(()));
    c.screening.called = vec![
        CalledLanguage {
            number: "+41*".into(),
            language: "de".into(),
        },
        CalledLanguage {
            number: "0044*".into(),
            language: "english".into(),
        },
    ];
    assert_eq!(fields(&problems_of(&c)), ["screening.called[1].language"]);
    let c = Config::from_toml_str("[[screening.called]]\nnumber = \"+41*\"\nlanguage = \"de\"\n")
        .unwrap();
    assert_eq!(c.screening.called[0].language, "de");
}

#[test]
fn log_levels_and_filters() {
    let mut c = runnable();
    for good in [
        "info",
        "DEBUG",
        "off",
        "scamscreen=debug",
        "scamscreen::sip=trace,warn",
    ] {
        c.log.level = good.to_string();
        assert_eq!(c.validate(), Ok(()), "{good}");
    }
    for bad in ["", "verbose", "=debug", "scamscreen=loud", "info,"] {
        c.log.level = bad.to_string();
        assert_eq!(fields(&problems_of(&c)), ["log.level"], "{bad}");
    }
}

#[test]
fn overrides_replace_file_values() {
    let mut c = Config::from_toml_str(EXAMPLE).unwrap();
    c.apply(Overrides {
        listen: vec![addr("127.0.0.1:5099")],
        upstream: Some("pbx.example:5080".to_string()),
        trust: vec![net("198.51.100.0/24")],
        mode: Some(ScreeningMode::Mark),
        rtp_ports: Some("30000-30099".to_string()),
        divert_uri: Some("sip:vm@192.0.2.20".to_string()),
        db: Some("/tmp/x.db".into()),
        admin: Some("off".into()),
    });
    assert_eq!(c.admin.addr(), Ok(None));
    assert_eq!(c.screening.mode, ScreeningMode::Mark);
    assert_eq!(c.media.port_range(), Some(30000..=30099));
    assert_eq!(c.screening.divert_uri.as_deref(), Some("sip:vm@192.0.2.20"));
    assert_eq!(c.store.db, std::path::PathBuf::from("/tmp/x.db"));
    assert_eq!(c.sip.listen_udp, vec![addr("127.0.0.1:5099")]);
    assert_eq!(c.sip.listen_tcp, vec![addr("127.0.0.1:5099")]);
    assert_eq!(c.sip.upstream.as_deref(), Some("pbx.example:5080"));
    assert_eq!(c.security.trusted, vec![net("198.51.100.0/24")]);
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn empty_overrides_keep_file_values() {
    let file = Config::from_toml_str(EXAMPLE).unwrap();
    let mut c = file.clone();
    c.apply(Overrides::default());
    assert_eq!(c, file);
}

#[test]
fn overrides_make_the_defaults_runnable() {
    let mut c = Config::default();
    c.apply(Overrides {
        listen: Vec::new(),
        upstream: Some("192.0.2.20:5080".to_string()),
        trust: vec![net("192.0.2.0/24")],
        ..Overrides::default()
    });
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn warnings() {
    let mut c = runnable();
    assert_eq!(fields(&c.warnings()), ["sip.advertised_host"]);
    c.sip.advertised_host = Some("192.0.2.5".to_string());
    assert!(c.warnings().is_empty());
    c.security.trusted.push(net("0.0.0.0/0"));
    assert_eq!(fields(&c.warnings()), ["security.trusted"]);
    // The upstream (192.0.2.20) outside `trusted` is fine: the proxy always trusts it.
    c.security.trusted = vec![net("10.0.0.0/8")];
    assert!(c.warnings().is_empty());
}

#[test]
fn check_paths_finds_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = runnable();
    c.screening.rules_dir = dir.path().to_path_buf();
    assert!(c.check_paths().is_empty());
    c.screening.rules_dir = dir.path().join("none");
    c.screening.model = Some(dir.path().join("model.bin"));
    assert_eq!(
        fields(&c.check_paths()),
        ["screening.rules_dir", "screening.model"]
    );
}

#[test]
fn summary_shows_the_effective_config_without_numbers() {
    let mut c = Config::from_toml_str(EXAMPLE).unwrap();
    c.screening.allow = vec!["+4930123456".to_string()];
    let text = c.to_string();
    assert!(
        text.contains("udp 0.0.0.0:5060; tcp 0.0.0.0:5060"),
        "{text}"
    );
    assert!(text.contains("127.0.0.1:5080 over udp"), "{text}");
    assert!(
        text.contains("127.0.0.1/32, ::1/128, 192.0.2.0/24"),
        "{text}"
    );
    assert!(text.contains("policy withheld"), "{text}");
    assert!(text.contains("allow 1 pattern; deny 0 patterns"), "{text}");
    assert!(!text.contains("4930123456"), "{text}");
    assert!(
        text.contains("up to 30 s while more speech could change the verdict"),
        "{text}"
    );
    assert!(text.contains("bypass code off"), "{text}");
    assert_eq!(text.lines().count(), 13);
    let default = Config::default().to_string();
    assert!(
        default.contains("(not set)") && default.contains("(nobody)"),
        "{default}"
    );
}

#[test]
fn is_trusted_matches_networks() {
    let c = runnable();
    assert!(c.security.is_trusted(IpAddr::from([192, 0, 2, 200])));
    assert!(!c.security.is_trusted(IpAddr::from([192, 0, 3, 1])));
}

#[test]
fn when_unscreened_and_its_old_name() {
    let parse = |s: &str| {
        let mut c = Config::from_toml_str(&format!("[screening]\n{s}\n")).unwrap();
        let r = runnable();
        c.sip.upstream = r.sip.upstream;
        c.security.trusted = r.security.trusted;
        c
    };
    assert_eq!(parse("").screening.when_unscreened(), WhenUnscreened::Allow);
    assert_eq!(
        parse("fail_open = false").screening.when_unscreened(),
        WhenUnscreened::Divert
    );
    assert_eq!(
        parse("fail_open = true").screening.when_unscreened(),
        WhenUnscreened::Allow
    );
    let pool = parse("when_unscreened = \"503\"");
    assert_eq!(pool.screening.when_unscreened(), WhenUnscreened::Refuse);
    assert_eq!(pool.validate(), Ok(()));
    // Both, agreeing: fine; contradicting: refused, naming the old one.
    let both = parse("when_unscreened = \"divert\"\nfail_open = false");
    assert_eq!(both.validate(), Ok(()));
    let clash = parse("when_unscreened = \"503\"\nfail_open = false");
    let err = format!("{:?}", clash.validate().unwrap_err());
    assert!(err.contains("screening.fail_open"), "{err}");
    assert!(Config::from_toml_str("[screening]\nwhen_unscreened = \"maybe\"\n").is_err());
}

#[test]
fn the_admin_server_off_loopback_needs_a_token() {
    let ok = Config::from_toml_str("[sip]\nupstream = \"127.0.0.1:5080\"\n[security]\ntrusted = [\"127.0.0.1\"]\n[admin]\nlisten = \"127.0.0.1:9061\"\n").unwrap();
    assert!(ok.validate().is_ok());
    let open = Config::from_toml_str("[sip]\nupstream = \"127.0.0.1:5080\"\n[security]\ntrusted = [\"127.0.0.1\"]\n[admin]\nlisten = \"0.0.0.0:9060\"\n").unwrap();
    let problems = open.validate().unwrap_err();
    assert!(
        problems.iter().any(|p| p.field == "admin.token"),
        "{problems:?}"
    );
    let tokened = Config::from_toml_str(
        "[sip]\nupstream = \"127.0.0.1:5080\"\n[security]\ntrusted = [\"127.0.0.1\"]\n[admin]\nlisten = \"0.0.0.0:9060\"\ntoken = \"0123456789abcdef\"\n",
    )
    .unwrap();
    assert!(tokened.validate().is_ok());
    let bad = Config::from_toml_str("[sip]\nupstream = \"127.0.0.1:5080\"\n[security]\ntrusted = [\"127.0.0.1\"]\n[admin]\nlisten = \"nine\"\n").unwrap();
    assert!(bad.validate().is_err());
}

#[test]
fn paths_written_in_the_file_are_relative_to_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc/scamscreen");
    std::fs::create_dir_all(&etc).unwrap();
    let file = etc.join("scamscreen.toml");
    std::fs::write(
        &file,
        "[screening]\nrules_dir = \"../../usr/share/scamscreen/rules\"\n\
         [media]\nprompts_dir = \"/abs/prompts\"\n[store]\ndb = \"calls.db\"\n",
    )
    .unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(
        c.screening.rules_dir,
        etc.join("../../usr/share/scamscreen/rules")
    );
    assert_eq!(
        c.media.prompts_dir,
        std::path::PathBuf::from("/abs/prompts")
    );
    assert_eq!(c.store.db, etc.join("calls.db"));
    // Not written: the default, relative to the working folder.
    assert_eq!(c.screening.model, None);
    assert_eq!(
        c.screening.multilingual_model,
        Config::default().screening.multilingual_model
    );
}
