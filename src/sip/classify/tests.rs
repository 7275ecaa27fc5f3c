//! Caller classification tests: withheld signals, P-Asserted-Identity trust, policies and
//! the allow and deny lists as [`classify_caller`] applies them.

use super::*;

fn sip(display: Option<&str>, user: Option<&str>, host: &str) -> NameAddr {
    NameAddr {
        display: display.map(str::to_string),
        scheme: "sip".to_string(),
        user: user.map(str::to_string),
        host: host.to_string(),
    }
}

fn from(user: &str) -> CallerIdentity {
    CallerIdentity {
        from: sip(None, Some(user), "trunk.example"),
        ..CallerIdentity::default()
    }
}

fn rules() -> ClassifyRules {
    ClassifyRules {
        trust_asserted_identity: true,
        ..ClassifyRules::default()
    }
}

fn list(patterns: &[&str]) -> PatternList {
    let owned: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
    PatternList::parse(&owned).unwrap()
}

fn check(id: &CallerIdentity, rules: &ClassifyRules, class: CallerClass, reason: &str) {
    let c = classify_caller(id, rules);
    assert_eq!((c.class, c.reason.as_str()), (class, reason), "{id:?}");
}

fn screened(id: &CallerIdentity, reason: &str) {
    check(id, &rules(), CallerClass::Screen, reason);
    assert!(classify_caller(id, &rules()).withheld);
}

fn passed(id: &CallerIdentity) {
    check(id, &rules(), CallerClass::PassThrough, "caller id present");
    assert!(!classify_caller(id, &rules()).withheld);
}

#[test]
fn withheld_from_users() {
    for user in [
        "anonymous",
        "Anonymous",
        "RESTRICTED",
        "unknown",
        "Unavailable",
        "private",
        "withheld",
    ] {
        let reason = format!("From user {}", user.to_ascii_lowercase());
        screened(&from(user), &reason);
    }
    screened(&from(""), "From user empty");
    screened(&from(";isub=1"), "From user empty");
    let mut missing = from("x");
    missing.from.user = None;
    screened(&missing, "From user missing");
}

#[test]
fn withheld_anonymous_host() {
    let id = CallerIdentity {
        from: sip(None, Some("caller"), "Anonymous.Invalid"),
        ..CallerIdentity::default()
    };
    screened(&id, "From host anonymous.invalid");
}

#[test]
fn withheld_display_names() {
    for display in [
        "Anonymous",
        "PRIVATE",
        "Withheld",
        "unavailable",
        "Unknown",
        "Restricted",
        "\"Withheld\"",
        "Private Number",
        "Number Withheld",
        "Unknown Caller",
    ] {
        let mut id = from("+493012345");
        id.from.display = Some(display.to_string());
        let shown = display.trim_matches('"');
        screened(&id, &format!("display name {shown}"));
    }
    for display in ["Private Bank", "Alice", "Number", ""] {
        let mut id = from("+493012345");
        id.from.display = Some(display.to_string());
        passed(&id);
    }
}

#[test]
fn withheld_privacy_header() {
    for (privacy, reason) in [
        (vec!["id"], "Privacy: id"),
        (vec!["user"], "Privacy: user"),
        (vec!["header"], "Privacy: header"),
        (vec!["header", "id", "critical"], "Privacy: id"),
        (vec!["ID;Critical"], "Privacy: id"),
    ] {
        let mut id = from("+493012345");
        id.privacy = privacy.into_iter().map(str::to_string).collect();
        screened(&id, reason);
    }
}

#[test]
fn privacy_none_session_critical_are_not_withheld() {
    for privacy in ["none", "session", "critical"] {
        let mut id = from("+493012345");
        id.privacy = vec![privacy.to_string()];
        passed(&id);
    }
}

#[test]
fn privacy_none_does_not_hide_an_anonymous_from() {
    let mut id = from("anonymous");
    id.privacy = vec!["none".to_string()];
    screened(&id, "From user anonymous");
}

#[test]
fn normal_callers_pass() {
    passed(&from("+493012345"));
    passed(&from("0301234567"));
    passed(&from("alice"));
    let mut tel = from("+1-555-0100");
    tel.from.scheme = "tel".to_string();
    tel.from.host = String::new();
    passed(&tel);
}

#[test]
fn remote_party_id_privacy() {
    for (privacy, withheld) in [
        ("full", true),
        ("uri", true),
        ("name", true),
        ("FULL", true),
        ("off", false),
    ] {
        let mut id = from("+493012345");
        let rpid = sip(None, Some("+493012345"), "trunk.example");
        id.remote_party_id = Some((rpid, Some(privacy.to_string())));
        if withheld {
            let reason = format!("Remote-Party-ID privacy={}", privacy.to_lowercase());
            screened(&id, &reason);
        } else {
            passed(&id);
        }
    }
    let mut id = from("+493012345");
    id.remote_party_id = Some((sip(None, Some("+493012345"), "t"), None));
    passed(&id);
}

fn pai_call(trusted: bool) -> CallerIdentity {
    CallerIdentity {
        from: sip(Some("Anonymous"), Some("anonymous"), "anonymous.invalid"),
        privacy: vec!["id".to_string()],
        asserted: Some(sip(None, Some("+493012345"), "carrier.example")),
        remote_party_id: None,
        from_trusted_peer: trusted,
    }
}

#[test]
fn asserted_identity_from_a_trusted_peer_is_a_caller_id() {
    let id = pai_call(true);
    let c = classify_caller(&id, &rules());
    assert_eq!(c.class, CallerClass::PassThrough);
    assert_eq!(c.reason, "caller id present (P-Asserted-Identity)");
    assert!(!c.withheld);
}

#[test]
fn asserted_identity_from_an_untrusted_peer_is_ignored() {
    screened(&pai_call(false), "Privacy: id");
}

#[test]
fn asserted_identity_ignored_when_trust_is_off() {
    let r = ClassifyRules {
        trust_asserted_identity: false,
        ..rules()
    };
    check(&pai_call(true), &r, CallerClass::Screen, "Privacy: id");
}

#[test]
fn anonymous_asserted_identity_is_no_caller_id() {
    let mut id = pai_call(true);
    id.asserted = Some(sip(None, Some("anonymous"), "anonymous.invalid"));
    screened(&id, "Privacy: id");
}

#[test]
fn trusted_asserted_identity_overrides_rpid_privacy() {
    let mut id = pai_call(true);
    id.privacy.clear();
    id.remote_party_id = Some((sip(None, Some("+493012345"), "c"), Some("full".into())));
    check(
        &id,
        &rules(),
        CallerClass::PassThrough,
        "caller id present (P-Asserted-Identity)",
    );
}

#[test]
fn asserted_number_feeds_the_lists_only_when_trusted() {
    let r = ClassifyRules {
        deny: list(&["+4930*"]),
        ..rules()
    };
    check(&pai_call(true), &r, CallerClass::Deny, "deny list: +4930*");
    check(&pai_call(false), &r, CallerClass::Screen, "Privacy: id");
}

#[test]
fn policy_withheld() {
    let r = rules();
    check(
        &from("+4930123"),
        &r,
        CallerClass::PassThrough,
        "caller id present",
    );
    check(
        &from("anonymous"),
        &r,
        CallerClass::Screen,
        "From user anonymous",
    );
}

#[test]
fn policy_unknown() {
    let r = ClassifyRules {
        policy: ScreeningPolicy::Unknown,
        allow: list(&["+4930*"]),
        ..rules()
    };
    check(
        &from("+4930123"),
        &r,
        CallerClass::PassThrough,
        "allow list: +4930*",
    );
    check(
        &from("+4940123"),
        &r,
        CallerClass::Screen,
        "policy unknown: not on the allow list",
    );
    check(
        &from("anonymous"),
        &r,
        CallerClass::Screen,
        "From user anonymous",
    );
}

#[test]
fn policy_all() {
    let r = ClassifyRules {
        policy: ScreeningPolicy::All,
        allow: list(&["+4930*"]),
        ..rules()
    };
    check(&from("+4940123"), &r, CallerClass::Screen, "policy all");
    check(
        &from("+4930123"),
        &r,
        CallerClass::PassThrough,
        "allow list: +4930*",
    );
    check(
        &from("private"),
        &r,
        CallerClass::Screen,
        "From user private",
    );
}

#[test]
fn deny_wins_over_allow() {
    let r = ClassifyRules {
        allow: list(&["+49*"]),
        deny: list(&["+49900*"]),
        ..rules()
    };
    check(
        &from("+49900123"),
        &r,
        CallerClass::Deny,
        "deny list: +49900*",
    );
    check(
        &from("+4930123"),
        &r,
        CallerClass::PassThrough,
        "allow list: +49*",
    );
}

#[test]
fn deny_list_applies_to_callers_with_a_number() {
    let r = ClassifyRules {
        deny: list(&["0900*"]),
        ..rules()
    };
    let c = classify_caller(&from("0900-123 456"), &r);
    assert_eq!((c.class, c.withheld), (CallerClass::Deny, false));
}

#[test]
fn lists_can_name_anonymous_callers_by_host() {
    let r = ClassifyRules {
        deny: list(&["*@anonymous.invalid"]),
        ..rules()
    };
    let id = CallerIdentity {
        from: sip(None, Some("anonymous"), "anonymous.invalid"),
        ..CallerIdentity::default()
    };
    let c = classify_caller(&id, &r);
    assert_eq!(c.class, CallerClass::Deny);
    assert!(c.withheld);
}

#[test]
fn allow_list_passes_a_withheld_caller_it_names() {
    let r = ClassifyRules {
        allow: list(&["*@trusted.example"]),
        ..rules()
    };
    let mut id = from("+4930123");
    id.from.host = "Trusted.Example".to_string();
    id.privacy = vec!["id".to_string()];
    check(
        &id,
        &r,
        CallerClass::PassThrough,
        "allow list: *@trusted.example",
    );
}

#[test]
fn reasons_never_contain_the_number() {
    let mut id = from("+493012345");
    id.privacy = vec!["id".to_string()];
    for policy in [
        ScreeningPolicy::Withheld,
        ScreeningPolicy::Unknown,
        ScreeningPolicy::All,
    ] {
        for privacy in [vec![], vec!["id".to_string()]] {
            id.privacy = privacy;
            let r = ClassifyRules { policy, ..rules() };
            assert!(!classify_caller(&id, &r).reason.contains("3012345"));
        }
    }
}

#[test]
fn policy_names() {
    #[derive(Deserialize)]
    struct P {
        policy: ScreeningPolicy,
    }
    let p: P = toml::from_str("policy = \"unknown\"").unwrap();
    assert_eq!(p.policy, ScreeningPolicy::Unknown);
    assert_eq!(ScreeningPolicy::All.to_string(), "all");
    assert!(toml::from_str::<P>("policy = \"none\"").is_err());
}
