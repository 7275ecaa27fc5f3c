//! `[run] pidfile`: `run` writes its process id there once it is listening, removes it when
//! it stops; `scamscreen reload` reads it to send SIGHUP.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// The pid file of a running scamscreen; removed when dropped.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Write our process id to `path` (atomically: a reader sees the old file or the whole
    /// new one). Refuses when the file names another scamscreen that is still running.
    pub fn create(path: &Path) -> anyhow::Result<PidFile> {
        if let Ok(pid) = read(path) {
            if pid != std::process::id() && is_scamscreen(pid) {
                bail!(
                    "run.pidfile {} names scamscreen process {pid}, which is still running \
                     (stop it first, or give this instance its own pidfile)",
                    path.display()
                );
            }
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot write run.pidfile {}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own: a second instance may have taken the file over since.
        if read(&self.path).ok() == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The process id in a pid file.
pub fn read(path: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the pid file {}", path.display()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", path.display()))?;
    if pid == 0 {
        bail!("{} does not hold a process id", path.display());
    }
    Ok(pid)
}

/// Whether `pid` is a running process named scamscreen.
fn is_scamscreen(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().starts_with("scamscreen"))
        .unwrap_or(false)
}

/// Send SIGHUP to the scamscreen named by `path`.
pub fn signal_reload(path: &Path) -> anyhow::Result<u32> {
    let pid = read(path)?;
    if !is_scamscreen(pid) {
        bail!(
            "{} names process {pid}, which is not a running scamscreen (a stale pid file?)",
            path.display()
        );
    }
    let pid_t = libc::pid_t::try_from(pid).context("process id out of range")?;
    // SAFETY: kill(2) with a valid signal number has no memory effects.
    if unsafe { libc::kill(pid_t, libc::SIGHUP) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot signal process {pid}"));
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scamscreen.pid");
        {
            let _f = PidFile::create(&p).unwrap();
            assert_eq!(read(&p).unwrap(), std::process::id());
        }
        assert!(!p.exists());
    }

    #[test]
    fn stale_and_garbage_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pid");
        std::fs::write(&p, "not a pid\n").unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("process id"));
        // A pid that is not a scamscreen: a stale file is taken over, not signalled.
        std::fs::write(&p, "1\n").unwrap();
        assert!(signal_reload(&p).unwrap_err().to_string().contains("stale"));
        let _f = PidFile::create(&p).unwrap();
        assert_eq!(read(&p).unwrap(), std::process::id());
    }
}
