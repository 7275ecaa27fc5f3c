//! Digest against the RFC examples, and the client's nonce rules.

use super::*;

fn mufasa(password: &str) -> Credentials {
    Credentials {
        user: "Mufasa".into(),
        password: password.into(),
    }
}

/// The value of `name` in an Authorization header we built.
fn param(header: &str, name: &str) -> Option<String> {
    let rest = header.strip_prefix("Digest ")?;
    parse_auth_params(rest)
        .ok()?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

#[test]
fn rfc2617_section_3_5_example() {
    let c = Challenge::parse(
        "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
         opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    assert_eq!(c.algorithm, Algorithm::Md5);
    assert!(c.qop_auth);
    assert!(!c.stale);
    let creds = mufasa("Circle Of Life");
    let h = c.authorize("GET", "/dir/index.html", &creds, "0a4f113b", 1);
    assert_eq!(
        param(&h, "response").as_deref(),
        Some("6629fae49393a05397450978507c4ef1")
    );
    assert_eq!(param(&h, "nc").as_deref(), Some("00000001"));
    assert_eq!(param(&h, "qop").as_deref(), Some("auth"));
    assert_eq!(param(&h, "cnonce").as_deref(), Some("0a4f113b"));
    assert_eq!(
        param(&h, "opaque").as_deref(),
        Some("5ccc069c403ebaf9f0171e9517f40e41")
    );
    assert_eq!(param(&h, "username").as_deref(), Some("Mufasa"));
    assert_eq!(param(&h, "uri").as_deref(), Some("/dir/index.html"));
}

const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

fn rfc7616(algorithm: &str) -> Challenge {
    Challenge::parse(&format!(
        "Digest\r\n realm=\"http-auth@example.org\",\r\n qop=\"auth, auth-int\",\r\n \
         algorithm={algorithm},\r\n nonce=\"{RFC7616_NONCE}\",\r\n \
         opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
    ))
    .unwrap()
}

#[test]
fn rfc7616_section_3_9_1_examples() {
    let creds = mufasa("Circle of Life");
    let md5 = rfc7616("MD5");
    assert_eq!(md5.algorithm, Algorithm::Md5);
    assert_eq!(
        md5.response("GET", "/dir/index.html", &creds, RFC7616_CNONCE, 1),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
    let sha = rfc7616("SHA-256");
    assert_eq!(sha.algorithm, Algorithm::Sha256);
    let h = sha.authorize("GET", "/dir/index.html", &creds, RFC7616_CNONCE, 1);
    assert_eq!(
        param(&h, "response").as_deref(),
        Some("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
    );
    assert_eq!(param(&h, "algorithm").as_deref(), Some("SHA-256"));
}

#[test]
fn sess_variants_and_rfc2069() {
    let creds = mufasa("Circle of Life");
    // Expected values computed independently (Python hashlib) from RFC 7616 §3.4.2.
    let md5_sess = rfc7616("MD5-sess");
    assert_eq!(
        md5_sess.response("GET", "/dir/index.html", &creds, RFC7616_CNONCE, 1),
        "e783283f46242139c486a698fec7211d"
    );
    let sha_sess = rfc7616("sha-256-SESS");
    assert_eq!(sha_sess.algorithm, Algorithm::Sha256Sess);
    assert_eq!(
        sha_sess.response("GET", "/dir/index.html", &creds, RFC7616_CNONCE, 1),
        "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7"
    );
    // RFC 2069: no qop, so no cnonce or nc in the header.
    let old = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
    assert!(!old.qop_auth);
    let h = old.authorize("REGISTER", "sip:r", &creds, "cn", 1);
    assert_eq!(param(&h, "cnonce"), None);
    assert_eq!(param(&h, "nc"), None);
    assert_eq!(
        param(&h, "response").as_deref(),
        Some("226a27ed8c4121fc7b2cbcbefc7595b1")
    );
}

#[test]
fn lenient_parsing() {
    let c = Challenge::parse(
        "digest  REALM = \"fritz.box\" ,, nonce=ABCDEF0123, stale=TRUE, algorithm=md5, \
         qop=\"auth-int , auth\", domain=\"sip:fritz.box\", realm=\"other\"",
    )
    .unwrap();
    assert_eq!(c.realm, "fritz.box");
    assert_eq!(c.nonce, "ABCDEF0123");
    assert!(c.stale);
    assert!(c.qop_auth);
    assert_eq!(c.opaque, None);
    let c = Challenge::parse(r#"Digest realm="a \"quoted\" \\ realm", nonce="""#).unwrap();
    assert_eq!(c.realm, r#"a "quoted" \ realm"#);
    assert_eq!(c.nonce, "");
    let h = c.authorize("REGISTER", "sip:a", &mufasa("x"), "c", 1);
    assert!(h.contains(r#"realm="a \"quoted\" \\ realm""#), "{h}");
}

#[test]
fn malformed_challenges_are_errors() {
    let cases: &[(&str, DigestError)] = &[
        ("", DigestError::NotDigest(String::new())),
        ("Basic realm=\"x\"", DigestError::NotDigest("Basic".into())),
        ("Digest", DigestError::Missing("realm")),
        ("Digest nonce=\"n\"", DigestError::Missing("realm")),
        ("Digest realm=\"r\"", DigestError::Missing("nonce")),
        (
            "Digest realm=\"r",
            DigestError::Syntax("unterminated quoted string"),
        ),
        (
            "Digest realm",
            DigestError::Syntax("expected '=' after a parameter name"),
        ),
        (
            "Digest realm=",
            DigestError::Syntax("empty parameter value"),
        ),
        (
            "Digest =x",
            DigestError::Syntax("expected a parameter name"),
        ),
        (
            "Digest realm=\"r\" nonce=\"n\"",
            DigestError::Syntax("expected ',' between parameters"),
        ),
        (
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
            DigestError::UnsupportedAlgorithm("SHA-512-256".into()),
        ),
        (
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
            DigestError::UnsupportedQop("auth-int".into()),
        ),
        (
            "Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess",
            DigestError::SessWithoutQop,
        ),
        (
            "Digest realm=\"r\\",
            DigestError::Syntax("unterminated quoted string"),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(Challenge::parse(input).as_ref(), Err(expected), "{input:?}");
    }
    // Odd bytes never panic.
    for input in [
        "Digest \u{e9}=\"\u{e9}\"",
        "Digest r=\u{e9}\u{e9}, n",
        "\u{1F600}",
    ] {
        let _ = Challenge::parse(input);
    }
}

fn response(status: u16, challenges: &[&str]) -> SipMessage {
    let mut raw = format!("SIP/2.0 {status} X\r\nCall-ID: c\r\n");
    let name = if status == 407 {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    for c in challenges {
        raw.push_str(&format!("{name}: {c}\r\n"));
    }
    raw.push_str("Content-Length: 0\r\n\r\n");
    SipMessage::parse(raw.as_bytes()).unwrap()
}

#[test]
fn the_first_supported_challenge_is_chosen() {
    let r = response(
        401,
        &[
            "Digest realm=\"r\", nonce=\"a\", algorithm=SHA-512-256, qop=\"auth\"",
            "Digest realm=\"r\", nonce=\"b\", algorithm=SHA-256, qop=\"auth\"",
            "Digest realm=\"r\", nonce=\"c\", algorithm=MD5, qop=\"auth\"",
        ],
    );
    let c = Challenge::from_response(&r, ChallengeHeader::Www).unwrap();
    assert_eq!((c.nonce.as_str(), c.algorithm), ("b", Algorithm::Sha256));
    assert_eq!(
        Challenge::from_response(&r, ChallengeHeader::Proxy),
        Err(DigestError::NoChallenge("Proxy-Authenticate"))
    );
    let r = response(401, &["Basic realm=\"r\"", "Digest nonce=1"]);
    assert_eq!(
        Challenge::from_response(&r, ChallengeHeader::Www),
        Err(DigestError::NotDigest("Basic".into()))
    );
}

#[test]
fn digest_client_answers_each_nonce_once() {
    let mut client = DigestClient::new(mufasa("pw"));
    assert_eq!(client.authorization("REGISTER", "sip:r", "c0"), None);
    let first = response(401, &["Digest realm=\"r\", nonce=\"n1\", qop=\"auth\""]);
    assert_eq!(client.on_challenge(&first), Ok(()));
    let (name, value) = client.authorization("REGISTER", "sip:r", "c1").unwrap();
    assert_eq!(name, "Authorization");
    assert_eq!(param(&value, "nc").as_deref(), Some("00000001"));
    // Same nonce again, not stale: the password is wrong.
    assert_eq!(client.on_challenge(&first), Err(AuthError::Rejected));
    // Stale: answer the new nonce, counting from 1 again.
    let stale = response(
        401,
        &["Digest realm=\"r\", nonce=\"n2\", qop=\"auth\", stale=true"],
    );
    assert_eq!(client.on_challenge(&stale), Ok(()));
    let (_, value) = client.authorization("REGISTER", "sip:r", "c2").unwrap();
    assert_eq!(param(&value, "nonce").as_deref(), Some("n2"));
    assert_eq!(param(&value, "nc").as_deref(), Some("00000001"));
    client.on_accepted();
    let (_, value) = client.authorization("REGISTER", "sip:r", "c3").unwrap();
    assert_eq!(param(&value, "nc").as_deref(), Some("00000002"));
    // A proxy challenge is answered with Proxy-Authorization.
    let proxy = response(407, &["Digest realm=\"p\", nonce=\"x\""]);
    assert_eq!(client.on_challenge(&proxy), Ok(()));
    let (name, _) = client.authorization("INVITE", "sip:b@p", "c4").unwrap();
    assert_eq!(name, "Proxy-Authorization");
    // Errors.
    assert_eq!(
        client.on_challenge(&response(403, &[])),
        Err(AuthError::NotAChallenge(403))
    );
    assert!(matches!(
        client.on_challenge(&response(401, &["Digest realm=\"r"])),
        Err(AuthError::Unusable(_))
    ));
    client.forget();
    assert_eq!(client.authorization("REGISTER", "sip:r", "c5"), None);
}

#[test]
fn a_server_that_keeps_changing_the_nonce_is_given_up_on() {
    let mut client = DigestClient::new(mufasa("pw"));
    for i in 0..MAX_CHALLENGES_PER_REQUEST {
        let r = response(401, &[&format!("Digest realm=\"r\", nonce=\"n{i}\"")]);
        assert_eq!(client.on_challenge(&r), Ok(()), "challenge {i}");
        client.authorization("REGISTER", "sip:r", "c");
    }
    let r = response(401, &["Digest realm=\"r\", nonce=\"last\""]);
    assert_eq!(client.on_challenge(&r), Err(AuthError::TooManyChallenges));
}

#[test]
fn credentials_do_not_show_the_password() {
    assert!(!format!("{:?}", mufasa("secret")).contains("secret"));
}
