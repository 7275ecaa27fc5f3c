//! The command-line front end: one file per `scamscreen` command (and the benchmarks'
//! drivers). Everything here reads flags and files and prints; the work is in the library.

pub mod bench;
pub mod bench_hostile;
pub mod bench_listening;
pub mod bench_relay;
pub mod bench_screening;
pub mod bench_two_pass;
pub mod calls;
pub mod demo;
pub mod detect;
pub mod eval_audio;
pub mod pidfile;
pub mod preflight;
pub mod reload;
pub mod run;
pub mod screening_setup;
pub mod transcribe;
pub mod wer;

/// An error and its causes, each said once: a message that already quotes its cause (as
/// "cannot bind UDP 127.0.0.1:5060: Address already in use" does) is not followed by the
/// cause again.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(io)
            .context("cannot bind UDP 127.0.0.1:5060: Address already in use");
        assert_eq!(
            super::error_text(&e),
            "cannot bind UDP 127.0.0.1:5060: Address already in use"
        );
        let e = anyhow::anyhow!("root").context("outer");
        assert_eq!(super::error_text(&e), "outer: root");
    }
}
