//! `check-config` as a preflight: everything `run` needs except actually running, checked
//! at once and reported together (after the configuration itself validated): the speech
//! models, the rule packs, the prompts (or espeak-ng to make the missing ones, and a folder
//! it may write them to), the call database's folder, and the listen ports.

use crate::cli::screening_setup::SpeechPlan;
use scamscreen::config::{Config, ScreeningMode};
use std::net::SocketAddr;
use std::path::Path;

/// What `run` would stop on (problems) and what it would only warn about.
#[derive(Debug, Default)]
pub struct Preflight {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn check(cfg: &Config, models_dir: &Path) -> Preflight {
    let mut out = Preflight::default();
    if cfg.screening.mode == ScreeningMode::Screen {
        screening(cfg, models_dir, &mut out);
        database(&cfg.store.db, &mut out);
    }
    ports(cfg, &mut out);
    out
}

fn screening(cfg: &Config, models_dir: &Path, out: &mut Preflight) {
    for p in cfg.check_paths() {
        out.problems.push(format!("{}: {}", p.field, p.message));
    }
    let languages = match SpeechPlan::of(cfg, models_dir) {
        Ok(plan) => plan.languages,
        Err(e) => {
            out.problems.push(format!("speech model: {e:#}"));
            vec![cfg.screening.language.clone()]
        }
    };
    if cfg.screening.rules_dir.is_dir() {
        if let Err(e) = scamscreen::detect::Detector::load_dir(
            &cfg.screening.rules_dir,
            cfg.screening.thresholds(),
        ) {
            out.problems.push(format!(
                "screening.rules_dir: {}: {e}",
                cfg.screening.rules_dir.display()
            ));
        }
    }
    // Prompts: recorded files, or espeak-ng to speak the missing ones into a writable folder.
    let names = [
        "greeting.wav",
        "reprompt.wav",
        "follow-up.wav",
        "block.wav",
        "block-message.wav",
        "unavailable.wav",
    ];
    let mut missing = Vec::new();
    for lang in &languages {
        let dir = cfg
            .media
            .prompts_dir
            .join(scamscreen::call::language::prompt_subdir(lang));
        for n in names {
            let f = dir.join(n);
            if !f.is_file() {
                missing.push(f);
            }
        }
    }
    if !missing.is_empty() {
        let espeak = std::process::Command::new("espeak-ng")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !espeak {
            out.problems.push(format!(
                "media.prompts_dir: {} prompt(s) missing ({}) and espeak-ng is not installed to \
                 speak them: install espeak-ng or provide the WAV files",
                missing.len(),
                missing[0].display()
            ));
        }
        for dir in missing.iter().filter_map(|f| f.parent()) {
            if let Err(e) = writable(dir) {
                out.problems.push(format!(
                    "media.prompts_dir: missing prompts would be written to {}, which {e}",
                    dir.display()
                ));
                break;
            }
        }
    }
}

/// Whether files can be made in `dir` (or in the nearest existing parent, which would hold it).
fn writable(dir: &Path) -> Result<(), String> {
    let mut d = dir;
    while !d.exists() {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => {
                d = Path::new(".");
                break;
            }
        }
    }
    tempfile::tempfile_in(d)
        .map(drop)
        .map_err(|e| format!("is not writable ({e})"))
}

fn database(db: &Path, out: &mut Preflight) {
    let folder = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        out.problems.push(format!(
            "store.db: the folder {} does not exist",
            folder.display()
        ));
    } else if let Err(e) = writable(folder) {
        out.problems.push(format!(
            "store.db: {} {e}: the database needs its folder writable (SQLite journal)",
            folder.display()
        ));
    }
    if db.is_file() {
        if let Err(e) = scamscreen::store::CallStore::open_existing(db) {
            out.problems.push(format!("store.db: {e}"));
        }
    }
}

fn ports(cfg: &Config, out: &mut Preflight) {
    let mut try_bind = |addr: SocketAddr, udp: bool, what: &str, fatal: bool| {
        let r = if udp {
            std::net::UdpSocket::bind(addr).map(drop)
        } else {
            std::net::TcpListener::bind(addr).map(drop)
        };
        if let Err(e) = r {
            let msg = format!("{what} {addr}: cannot listen there now ({e})");
            if fatal {
                out.problems.push(msg);
            } else {
                out.warnings.push(msg);
            }
        }
    };
    for &a in &cfg.sip.listen_udp {
        try_bind(a, true, "sip.listen_udp", true);
    }
    for &a in &cfg.sip.listen_tcp {
        try_bind(a, false, "sip.listen_tcp", true);
    }
    if let Ok(Some(a)) = cfg.admin.addr() {
        // The default taken only warns, as `run` does.
        try_bind(a, false, "admin.listen", !cfg.admin.is_default());
    }
}
