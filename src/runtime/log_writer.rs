//! A log writer that cannot be steered from the network: control characters that arrive in
//! SIP header values (a Call-ID with ESC, NUL or a newline from the trunk) are written as
//! `\xNN`, so a line in the log is always one event and a terminal or a log viewer never
//! runs an escape sequence a caller chose. tracing-subscriber escapes ESC in field values
//! itself, but not NUL, CR or LF; the JSON format escapes every control character already.
//!
//! ANSI colours only when stderr is a terminal (see [`stderr_is_terminal`]); then the
//! formatter's own ESC sequences are kept and tracing-subscriber escapes those in values.

use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;

/// Whether stderr is a terminal (colours on) or a file, a pipe or journald (colours off).
pub fn stderr_is_terminal() -> bool {
    io::IsTerminal::is_terminal(&io::stderr())
}

/// `MakeWriter` for stderr with control characters escaped.
#[derive(Debug, Clone, Copy)]
pub struct SafeStderr {
    /// Keep ESC (the formatter's colours); only when writing to a terminal.
    pub keep_esc: bool,
}

impl<'a> MakeWriter<'a> for SafeStderr {
    type Writer = SafeWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        SafeWriter {
            inner: io::stderr(),
            keep_esc: self.keep_esc,
        }
    }
}

/// Escapes control characters in what it is given, except a newline at the very end of a
/// write (tracing-subscriber writes one whole event per `write`) and tabs.
#[derive(Debug)]
pub struct SafeWriter<W> {
    pub inner: W,
    pub keep_esc: bool,
}

/// `bytes` with every control character but a final newline and tabs written as `\xNN`.
pub fn escape_controls(bytes: &[u8], keep_esc: bool) -> Vec<u8> {
    let (body, tail) = match bytes.split_last() {
        Some((b'\n', body)) => (body, &b"\n"[..]),
        _ => (bytes, &b""[..]),
    };
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for &b in body {
        let control = (b < 0x20 && b != b'\t') || b == 0x7f;
        if control && !(keep_esc && b == 0x1b) {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(tail);
    out
}

impl<W: Write> Write for SafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(&escape_controls(buf, self.keep_esc))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_but_the_line_end_stays() {
        let line = b"new call call_id=a\x1b[31mb\x00c\r\nFAKE line\x07\n";
        let out = escape_controls(line, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "new call call_id=a\\x1b[31mb\\x00c\\x0d\\x0aFAKE line\\x07\n"
        );
    }

    #[test]
    fn a_terminal_keeps_the_colours_but_not_the_rest() {
        let out = escape_controls(b"\x1b[32mINFO\x1b[0m x=\x00\n", true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\x1b[32mINFO\x1b[0m x=\\x00\n"
        );
    }

    #[test]
    fn utf8_and_tabs_pass() {
        let s = "Grüße\tjürg — ok\n";
        assert_eq!(escape_controls(s.as_bytes(), false), s.as_bytes());
    }

    #[test]
    fn the_writer_reports_the_whole_buffer_written() {
        let mut w = SafeWriter {
            inner: Vec::new(),
            keep_esc: false,
        };
        assert_eq!(w.write(b"a\x00b\n").unwrap(), 4);
        assert_eq!(w.inner, b"a\\x00b\n");
    }
}
