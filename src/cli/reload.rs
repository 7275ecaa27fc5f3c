//! Reload without restart: SIGHUP, `POST /reload` on the admin server, or `scamscreen
//! reload` (which calls that) re-read the configuration file; the allow/deny lists, the
//! screening policy, the rules and thresholds and the prompts take effect for the next
//! call, calls in progress go on. A configuration with problems is refused with every
//! problem listed, and the running one is kept. Settings that need a restart (listen
//! addresses, ports, the model, the database, trusted networks, the admin server) are
//! named in a warning when they changed.

use crate::cli::run::{load, ConfigArgs};
use crate::cli::screening_setup::{rules_and_prompts, SpeechPlan};
use anyhow::Context;
use scamscreen::config::{Config, ScreeningMode};
use scamscreen::runtime::sip_server::Reload;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// Build what the running server takes from the configuration as it is now on disk.
pub fn build(
    args: &ConfigArgs,
    running: &Config,
    models_dir: &std::path::Path,
) -> anyhow::Result<Reload> {
    let cfg = load(args)?;
    let restart = needs_restart(running, &cfg);
    if !restart.is_empty() {
        tracing::warn!(
            settings = %restart.join(", "),
            "changed settings that only a restart applies"
        );
    }
    let classify = cfg
        .screening
        .classify_rules()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let screening = if running.screening.mode == ScreeningMode::Screen {
        let plan = SpeechPlan::of(&cfg, models_dir)?;
        Some(rules_and_prompts(&cfg, &plan.languages)?)
    } else {
        None
    };
    Ok(Reload {
        classify,
        skip_screening_from: cfg.screening.skip_from.clone(),
        screening,
    })
}

/// The sections a reload cannot apply, when they differ.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.sip != new.sip {
        out.push("[sip]");
    }
    if old.security.trusted != new.security.trusted {
        out.push("security.trusted");
    }
    if old.media.rtp_ports != new.media.rtp_ports || old.media.media_ip != new.media.media_ip {
        out.push("media.rtp_ports/media_ip");
    }
    if old.store != new.store {
        out.push("[store]");
    }
    if old.admin != new.admin {
        out.push("[admin]");
    }
    if old.run != new.run {
        out.push("[run]");
    }
    if old.notify != new.notify {
        out.push("[notify]");
    }
    if old.screening.model != new.screening.model || old.screening.mode != new.screening.mode {
        out.push("screening.model/mode");
    }
    out
}

/// Reload on each request (SIGHUP, or the admin server's `POST /reload` with a channel for
/// the outcome), in order.
pub fn spawn(
    args: ConfigArgs,
    running: Config,
    models_dir: PathBuf,
    mut requests: mpsc::Receiver<scamscreen::admin::ReloadRequest>,
    to_server: mpsc::Sender<Reload>,
) {
    tokio::spawn(async move {
        while let Some(reply) = requests.recv().await {
            let (a, r, m) = (args.clone(), running.clone(), models_dir.clone());
            let outcome = match tokio::task::spawn_blocking(move || build(&a, &r, &m)).await {
                Ok(Ok(reload)) => {
                    if to_server.send(reload).await.is_err() {
                        return;
                    }
                    Ok(())
                }
                Ok(Err(e)) => {
                    let text = crate::cli::error_text(&e);
                    tracing::error!("reload refused, the running configuration stays: {text}");
                    Err(text)
                }
                Err(e) => Err(format!("reload failed: {e}")),
            };
            if let Some(tx) = reply {
                let _ = tx.send(outcome);
            }
        }
    });
}

/// `scamscreen reload`: ask the running scamscreen to reload, through its admin server (which
/// answers with the outcome) or, where that is off or cannot be reached, with SIGHUP to the
/// process named by the pid file (the outcome is then in its log).
#[derive(clap::Args, Debug)]
pub struct ReloadArgs {
    /// The configuration file of the running scamscreen (admin address, token, pid file).
    #[arg(long, short = 'c', env = "SCAMSCREEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// The admin server's address (instead of the file's admin.listen).
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "pidfile")]
    pub admin: Option<std::net::SocketAddr>,
    /// Send SIGHUP to the process in this pid file (instead of the file's run.pidfile and
    /// the admin server).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
}

pub fn run_cli(args: ReloadArgs) -> anyhow::Result<()> {
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let by_signal = |path: &std::path::Path| -> anyhow::Result<()> {
        let pid = crate::cli::pidfile::signal_reload(path)?;
        println!(
            "sent SIGHUP to scamscreen (pid {pid}); its log says whether the reload was taken"
        );
        Ok(())
    };
    if let Some(p) = &args.pidfile {
        return by_signal(p);
    }
    let admin = match args.admin {
        Some(a) => Some(a),
        None => cfg
            .admin
            .addr()
            .map_err(|e| anyhow::anyhow!("admin.listen: {e}"))?,
    };
    let Some(addr) = admin else {
        return match &cfg.run.pidfile {
            Some(p) => by_signal(p),
            None => anyhow::bail!(
                "the admin server is off (admin.listen = \"off\") and no run.pidfile is set: \
                 send SIGHUP instead (kill -HUP PID, or systemctl reload scamscreen)"
            ),
        };
    };
    let host = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    };
    let url = format!("http://{host}/reload");
    let mut req = ureq::post(&url)
        .config()
        .http_status_as_error(false)
        .build();
    if let Some(t) = &cfg.admin.token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = match req.send_empty() {
        Ok(r) => r,
        Err(e) => {
            if let (Some(p), None) = (&cfg.run.pidfile, args.admin) {
                tracing::debug!(error = %e, "admin server unreachable, using the pid file");
                return by_signal(p);
            }
            return Err(e).with_context(|| {
                format!("cannot reach the admin server at {url}: is scamscreen running?")
            });
        }
    };
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    if !resp.status().is_success() {
        anyhow::bail!("reload refused ({}): {}", resp.status(), body.trim());
    }
    println!("{}", body.trim());
    Ok(())
}
