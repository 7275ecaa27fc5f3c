//! `scamscreen run` and `scamscreen check-config`.

use anyhow::Context;
use clap::Args;
use ipnet::IpNet;
use scamscreen::admin::metrics::Metrics;
use scamscreen::admin::AdminState;
use scamscreen::call::{CallConfig, SilentAction};
use scamscreen::config::{
    self, Config, ConfigError, Host, HostPort, LogFormat, Overrides, ScreeningMode,
};
use scamscreen::runtime::live::{Health, Live};
use scamscreen::runtime::log_writer;
use scamscreen::runtime::sip_server::SipServer;
use scamscreen::runtime::tcp_limits::TcpLimits;
use scamscreen::sip::proxy::{Peer, ProxyConfig, Transport, UntrustedAction};
use scamscreen::sip::ratelimit::RateLimitConfig;
use scamscreen::sip::transaction::TimerConfig;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Configuration file (see scamscreen.example.toml); without it, built-in defaults.
    #[arg(long, short = 'c', env = "SCAMSCREEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address for UDP and TCP (repeatable; replaces the file's listen_udp/listen_tcp).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// The PBX, host:port: the only forwarding target (replaces sip.upstream).
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: Option<String>,
    /// Trusted peer network or address (repeatable; replaces security.trusted).
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub trust: Vec<IpNet>,
    /// `screen` (answer, listen, decide) or `mark` (forward marked) (replaces screening.mode).
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<ScreeningMode>,
    /// RTP port range FIRST-LAST for screened calls (replaces media.rtp_ports).
    #[arg(long, value_name = "FIRST-LAST")]
    pub rtp_ports: Option<String>,
    /// Where diverted calls go, a sip: URI (replaces screening.divert_uri).
    #[arg(long, value_name = "URI")]
    pub divert_uri: Option<String>,
    /// Call record database (replaces store.db).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Folder of the default whisper model; also of the rules (`rules/`) and spoken prompts
    /// (`prompts/`) unless the file sets screening.rules_dir / media.prompts_dir.
    #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
    pub models_dir: PathBuf,
    /// The admin HTTP server (metrics, health, call log): ADDR:PORT or `off` (replaces
    /// admin.listen; default 127.0.0.1:9060).
    #[arg(long, value_name = "ADDR:PORT|off")]
    pub admin: Option<String>,
}

fn parse_mode(s: &str) -> Result<ScreeningMode, String> {
    match s {
        "screen" => Ok(ScreeningMode::Screen),
        "mark" => Ok(ScreeningMode::Mark),
        other => Err(format!("{other:?}: give screen or mark")),
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    config::parse_trusted_net(s).map_err(|e| e.to_string())
}

/// Load the file (if any), lay the flags over it, validate everything at once.
pub fn load(args: &ConfigArgs) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    cfg.apply(Overrides {
        listen: args.listen.clone(),
        upstream: args.upstream.clone(),
        trust: args.trust.clone(),
        mode: args.mode,
        rtp_ports: args.rtp_ports.clone(),
        divert_uri: args.divert_uri.clone(),
        db: args.db.clone(),
        admin: args.admin.clone(),
    });
    // --models-dir moves the rules and prompts too, where the file leaves them at their
    // defaults (which live under the default models folder).
    if cfg.screening.rules_dir == std::path::Path::new(config::DEFAULT_RULES_DIR) {
        cfg.screening.rules_dir = args.models_dir.join("rules");
    }
    if cfg.media.prompts_dir == std::path::Path::new(config::DEFAULT_PROMPTS_DIR) {
        cfg.media.prompts_dir = args.models_dir.join("prompts");
    }
    if let Err(problems) = cfg.validate() {
        return Err(ConfigError::Invalid(problems).into());
    }
    Ok(cfg)
}

pub fn check_config(args: ConfigArgs) -> anyhow::Result<()> {
    let cfg = load(&args)?;
    println!("{cfg}");
    for w in cfg.warnings() {
        println!("warning: {w}");
    }
    if cfg.screening.mode == ScreeningMode::Screen {
        // The languages must be ones the models can hear (a German call with only tiny.en
        // would be transcribed as English nonsense and never screened).
        if let Ok(plan) = crate::cli::screening_setup::SpeechPlan::of(&cfg, &args.models_dir) {
            println!(
                "speech      {} for {}{}",
                plan.first.display(),
                if plan.first_multilingual {
                    plan.languages.join(", ")
                } else {
                    "en".to_string()
                },
                plan.multilingual
                    .as_ref()
                    .map_or(String::new(), |m| format!(
                        "; {} for {}",
                        m.display(),
                        plan.languages
                            .iter()
                            .filter(|l| *l != "en")
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
            );
        }
    }
    let pre = crate::cli::preflight::check(&cfg, &args.models_dir);
    for w in &pre.warnings {
        println!("warning: {w}");
    }
    if !pre.problems.is_empty() {
        anyhow::bail!(
            "{} problem(s) `run` would stop on:\n  {}",
            pre.problems.len(),
            pre.problems.join("\n  ")
        );
    }
    println!("configuration OK");
    Ok(())
}

fn init_logging(cfg: &Config) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("SCAMSCREEN_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{},whisper_rs=off", cfg.log.level))
        });
    // Colours only on a terminal; control characters from the network escaped either way.
    let ansi = log_writer::stderr_is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(log_writer::SafeStderr { keep_esc: ansi });
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Resolve a configured host:port (DNS names once, at start).
async fn resolve(hp: &HostPort, default_port: u16) -> anyhow::Result<SocketAddr> {
    let port = hp.port_or(default_port);
    match &hp.host {
        Host::Ip(ip) => Ok(SocketAddr::new(*ip, port)),
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .with_context(|| format!("cannot resolve upstream {name}"))?
            .next()
            .with_context(|| format!("upstream {name} has no address")),
    }
}

/// The address to write into Via/Record-Route when listening on a wildcard address: the
/// local address the kernel would use to reach the upstream.
fn local_address_towards(upstream: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(upstream).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let cfg = load(&args)?;
    init_logging(&cfg);
    match scamscreen::runtime::raise_fd_limit() {
        Ok(n) => tracing::debug!(open_files = n, "file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let models_dir = args.models_dir.clone();
    // The SIP core is one task (it owns every transaction and call); the workers carry
    // the sockets' readers and the bridged calls' media relays, on every core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name("scamscreen-io")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(cfg, models_dir, args))
}

async fn serve(cfg: Config, models_dir: PathBuf, args: ConfigArgs) -> anyhow::Result<()> {
    // The admin server first: /healthz says "loading" while the model loads.
    let live = Arc::new(Live::new());
    let metrics = Arc::new(Metrics::new(live.clone()));
    let (reload_req_tx, reload_req_rx) = tokio::sync::mpsc::channel(4);
    let admin = start_admin(&cfg, live.clone(), metrics.clone(), reload_req_tx.clone()).await?;
    let upstream_hp = cfg
        .sip
        .upstream_target()
        .context("sip.upstream is not set (use --upstream HOST:PORT)")?;
    let upstream = resolve(&upstream_hp, config::DEFAULT_SIP_PORT).await?;
    let classify = cfg
        .screening
        .classify_rules()
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    // Bind first so an ephemeral port (":0") is known before we advertise it.
    let placeholder = proxy_config(&cfg, upstream, String::new(), 0, classify.clone());
    let server = SipServer::bind(
        &cfg.sip.listen_udp,
        &cfg.sip.listen_tcp,
        placeholder,
        cfg.sip.max_message_bytes,
    )
    .await?;
    let udp = server.udp_addrs();
    let first = udp.first().copied().context("no UDP socket bound")?;
    let (host, port) = match cfg.sip.advertised() {
        Some(hp) => (hp.host.to_string(), hp.port.unwrap_or(first.port())),
        None => {
            let ip = if first.ip().is_unspecified() {
                local_address_towards(upstream).unwrap_or(first.ip())
            } else {
                first.ip()
            };
            let host = match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            };
            (host, first.port())
        }
    };
    let proxy_cfg = proxy_config(&cfg, upstream, host.clone(), port, classify);
    // TCP connections from the same sources the proxy serves (the PBX included).
    let mut tcp = TcpLimits::new(proxy_cfg.trusted.clone(), cfg.sip.tcp_idle());
    let mut server = server.with_config(proxy_cfg);
    tcp.total = cfg.sip.tcp_max_connections;
    tcp.per_source = cfg.sip.tcp_max_per_source;
    tcp.message = std::time::Duration::from_secs(cfg.sip.tcp_message_timeout_secs);
    server = server.with_tcp_limits(tcp);
    if let Some(user) = &cfg.device.user {
        let ip: IpAddr = host.trim_matches(['[', ']']).parse().with_context(|| {
            format!(
                "device mode: the router must reach us at an IP address; sip.advertised_host \
                 is {host:?}"
            )
        })?;
        let reg = scamscreen::sip::register::RegistrationConfig {
            registrar: upstream,
            transport: Transport::Udp,
            domain: device_domain(&cfg, &upstream_hp),
            aor_user: user.clone(),
            auth_user: cfg.device.auth_user.clone().unwrap_or_else(|| user.clone()),
            password: cfg.device.password.clone(),
            expires_secs: cfg.device.expires_secs,
            contact: SocketAddr::new(ip, port),
            user_agent: format!("scamscreen/{}", env!("CARGO_PKG_VERSION")),
            timers: TimerConfig {
                t1: cfg.sip.timer_t1(),
                t2: cfg.sip.timer_t2(),
                t4: cfg.sip.timer_t4(),
            },
        };
        if let Err(problems) = reg.validate() {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            anyhow::bail!("device mode: {}", text.join("; "));
        }
        server = server.with_device(reg);
    }
    let mut recorder = None;
    if cfg.screening.mode == ScreeningMode::Screen {
        let missing = cfg.check_paths();
        if !missing.is_empty() {
            return Err(ConfigError::Invalid(missing).into());
        }
        let media_ip = cfg
            .media
            .media_ip
            .or_else(|| host.trim_matches(['[', ']']).parse().ok())
            .context("media.media_ip is needed when sip.advertised_host is a name")?;
        let secs = |s: u32| std::time::Duration::from_secs(u64::from(s));
        let call = CallConfig {
            upstream: Peer {
                addr: upstream,
                transport: match cfg.sip.upstream_transport {
                    config::Transport::Udp => Transport::Udp,
                    config::Transport::Tcp => Transport::Tcp,
                },
                conn: None,
            },
            divert_uri: cfg.screening.divert_uri.clone(),
            local_host: format!("{host}:{port}"),
            listen: cfg.screening.listen(),
            screening_timeout: std::time::Duration::from_millis(cfg.screening.screening_timeout_ms),
            // After answering, "503" can no longer refuse: the call rings (as "allow").
            fail_open: cfg.screening.when_unscreened() != config::WhenUnscreened::Divert,
            ring_timeout: std::time::Duration::from_secs(cfg.screening.ring_secs),
            max_listen: secs(cfg.screening.max_listen_secs),
            no_speech: secs(cfg.screening.no_speech_secs),
            early_verdict: cfg.screening.early_verdict,
            follow_up: cfg.screening.follow_up,
            silent_action: match cfg.screening.silent_action {
                config::SilentAction::Divert => SilentAction::Divert,
                config::SilentAction::Block => SilentAction::Block,
                config::SilentAction::Allow => SilentAction::Allow,
            },
            message: secs(cfg.screening.message_secs),
            callee_choice: secs(cfg.screening.callee_choice_secs),
            callee_default_accept: cfg.screening.callee_default == config::CalleeDefault::Accept,
            bypass_code: cfg.screening.bypass_code.clone(),
            timers: TimerConfig {
                t1: cfg.sip.timer_t1(),
                t2: cfg.sip.timer_t2(),
                t4: cfg.sip.timer_t4(),
            },
            // Set per call from the number called (`screening.called`).
            language: cfg.screening.language.clone(),
            // Per call too: only where a bigger model is loaded and hears better.
            second_pass: cfg.screening.second_pass,
            device: device_leg(&cfg, &upstream_hp),
        };
        let (res, writer) = crate::cli::screening_setup::resources(
            &cfg,
            &models_dir,
            media_ip,
            call,
            Some(metrics.clone()),
        )?;
        recorder = writer;
        server = server.with_screening(res);
    }
    tracing::info!(
        udp = ?udp,
        tcp = ?server.tcp_addrs(),
        %upstream,
        advertised = %format!("{host}:{port}"),
        "scamscreen SIP edge running"
    );
    // SIGTERM or Ctrl-C (watched before the ready line, so a script may stop us at once):
    // the first starts a graceful stop, the second ends its grace.
    let (stop_tx, stop) = tokio::sync::watch::channel(0u32);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { std::future::pending::<()>().await },
                _ = term.recv() => {},
            }
            stop_tx.send_modify(|n| *n += 1);
        }
    });
    // Reload: SIGHUP (logrotate, systemctl reload) and POST /reload re-read the file.
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    crate::cli::reload::spawn(
        args,
        cfg.clone(),
        models_dir.clone(),
        reload_req_rx,
        reload_tx,
    );
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot watch for SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            if reload_req_tx.send(None).await.is_err() {
                return;
            }
        }
    });
    let pidfile = match &cfg.run.pidfile {
        Some(p) => Some(crate::cli::pidfile::PidFile::create(p)?),
        None => None,
    };
    // Ready before the ready line: a script that read it may ask /healthz at once. (Device
    // mode: not before the router holds our registration; the core says when.)
    live.set_health(if cfg.device.enabled() {
        Health::Unregistered
    } else {
        Health::Ready
    });
    // Ready line on stdout for scripts and tests.
    println!(
        "listening udp {} tcp {} upstream {upstream} admin {}",
        udp.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
        server
            .tcp_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
        admin.map_or("off".to_string(), |a| a.to_string())
    );
    let stats = server
        .with_shutdown_grace(std::time::Duration::from_secs(cfg.sip.shutdown_grace_secs))
        .with_live(live)
        .with_reloads(reload_rx)
        .run(stop)
        .await;
    if let Some(w) = recorder {
        w.shutdown();
    }
    drop(pidfile);
    match cfg.log.format {
        // One schema for log collectors: the counters are fields of a log line shaped as
        // tracing's own JSON lines are.
        config::LogFormat::Json => {
            let mut fields = serde_json::to_value(&stats).unwrap_or_default();
            if let Some(o) = fields.as_object_mut() {
                o.insert("message".into(), "stopped".into());
            }
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let line = serde_json::json!({
                "timestamp": crate::cli::calls::rfc3339_utc(now_ms),
                "level": "INFO",
                "fields": fields,
                "target": "scamscreen::cli::run",
            });
            eprintln!("{line}");
        }
        // For people: a line saying so, then the counters as one JSON line (scripts read it).
        _ => {
            tracing::info!("stopped");
            eprintln!("{}", serde_json::to_string(&stats).unwrap_or_default());
        }
    }
    Ok(())
}

/// Device mode's leg B: the house's number and our address-of-record at the router's domain.
fn device_leg(cfg: &Config, upstream: &HostPort) -> Option<scamscreen::call::DeviceLeg> {
    let d = &cfg.device;
    let user = d.user.clone()?;
    let domain = device_domain(cfg, upstream);
    Some(scamscreen::call::DeviceLeg {
        callback_uri: format!("sip:{}@{domain}", d.callback),
        aor: format!("sip:{user}@{domain}"),
        credentials: scamscreen::sip::digest::Credentials {
            user: d.auth_user.clone().unwrap_or_else(|| user.clone()),
            password: d.password.clone(),
        },
        user,
    })
}

/// The router's SIP domain: `device.domain`, else sip.upstream as written (host[:port]).
fn device_domain(cfg: &Config, upstream: &HostPort) -> String {
    cfg.device
        .domain
        .clone()
        .unwrap_or_else(|| upstream.to_string())
}

/// Bind and start the admin server (`[admin] listen`). The default address taken by
/// another program (a second instance on the box) is a warning; an address the user chose
/// is an error.
async fn start_admin(
    cfg: &Config,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    reload: tokio::sync::mpsc::Sender<scamscreen::admin::ReloadRequest>,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = cfg
        .admin
        .addr()
        .map_err(|e| anyhow::anyhow!("admin.listen: {e}"))?
    else {
        return Ok(None);
    };
    let listener = match scamscreen::admin::bind(addr).await {
        Ok(l) => l,
        Err(e) if cfg.admin.is_default() => {
            tracing::warn!(%addr, error = %e, "admin server not started (set admin.listen or --admin to another address, or off)");
            return Ok(None);
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot bind the admin server to {addr}: {e}"
            ))
        }
    };
    let bound = listener.local_addr().ok();
    let db = (cfg.screening.mode == ScreeningMode::Screen).then(|| cfg.store.db.clone());
    let state = AdminState {
        live,
        metrics,
        db,
        token: cfg.admin.token.clone(),
        reload: Some(reload),
    };
    tokio::spawn(scamscreen::admin::serve(listener, state));
    tracing::info!(addr = ?bound, "admin server: /healthz /metrics and the call log");
    Ok(bound)
}

fn proxy_config(
    cfg: &Config,
    upstream: SocketAddr,
    advertised_host: String,
    advertised_port: u16,
    classify: scamscreen::sip::classify::ClassifyRules,
) -> ProxyConfig {
    ProxyConfig {
        advertised_host,
        advertised_port,
        upstream,
        upstream_transport: match cfg.sip.upstream_transport {
            config::Transport::Udp => Transport::Udp,
            config::Transport::Tcp => Transport::Tcp,
        },
        record_route: cfg.sip.record_route,
        // Device mode: the registration's refreshes say whether the router is there (a
        // home router need not answer OPTIONS from its IP phones).
        upstream_probe: (cfg.sip.upstream_probe_secs > 0 && !cfg.device.enabled())
            .then(|| std::time::Duration::from_secs(cfg.sip.upstream_probe_secs)),
        device_mode: cfg.device.enabled(),
        limits: scamscreen::sip::proxy::Limits {
            message_bytes: cfg.sip.max_message_bytes,
            header_bytes: cfg.sip.max_header_bytes,
            headers: cfg.sip.max_headers,
        },
        // The PBX is always trusted: its BYEs and re-INVITEs must come back through us.
        trusted: {
            let mut t = cfg.security.trusted.clone();
            t.push(IpNet::from(upstream.ip()));
            t
        },
        untrusted: match cfg.security.untrusted {
            config::UntrustedAction::Reject => UntrustedAction::Reject,
            config::UntrustedAction::Drop => UntrustedAction::Drop,
        },
        rate_limit: RateLimitConfig {
            per_sec: cfg.security.rate_limit_per_sec,
            burst: cfg.security.rate_limit_burst,
            max_sources: cfg.security.rate_limit_sources,
        },
        trusted_rate_limit: RateLimitConfig {
            per_sec: cfg.security.trusted_rate_limit_per_sec,
            burst: (cfg.security.trusted_rate_limit_per_sec * 2.0)
                .ceil()
                .max(1.0) as u32,
            max_sources: cfg.security.rate_limit_sources,
        },
        timers: TimerConfig {
            t1: cfg.sip.timer_t1(),
            t2: cfg.sip.timer_t2(),
            t4: cfg.sip.timer_t4(),
        },
        classify,
        // Screened calls are marked and forwarded until the call layer runs in `run`.
        screen_calls: false,
        skip_screening_from: cfg.screening.skip_from.clone(),
    }
}
