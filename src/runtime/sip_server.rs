//! The SIP edge on tokio: UDP and TCP sockets around the pure [`Proxy`] core.
//!
//! One task owns the core. Socket reader tasks (one per UDP socket, one per TCP
//! connection) hand it `(peer, bytes)` over two bounded lanes, sorted at the [`Door`]: the
//! dialog lane (responses, requests inside dialogs) which the core always empties first, and
//! the new-request lane, whose queueing delay drives overload shedding (503 + Retry-After,
//! [`crate::sip::proxy::overload`]). The core task sends UDP
//! itself (non-blocking `try_send_to`, counted when the kernel buffer is full) and hands TCP
//! bytes to the connection's writer. Timers: the core's `poll_timeout` is the only clock
//! the loop sleeps on.

use crate::runtime::calls::{CallEvent, CallManager, CallStats, ScreeningResources};
use crate::runtime::device::Device;
use crate::runtime::door::{Door, DoorStats, NewRequest, Sorted, NEW_LANE};
use crate::runtime::icmp;
use crate::runtime::live::{Health, Live, Snapshot};
use crate::runtime::tcp_limits::{ConnSlot, ConnTable, Refusal, TcpLimits, TcpStats};
use crate::sip::msg::{frame_stream, MAX_MESSAGE_BYTES};
use crate::sip::proxy::overload::{ShedChange, Shedder};
use crate::sip::proxy::{Peer, Proxy, ProxyConfig, ProxyEvent, ProxyStats, Transmit, Transport};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn};

/// Socket buffer size asked for (the kernel caps it at net.core.rmem_max / wmem_max).
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;
/// Depth of the dialog lane from socket readers to the core (a reader waits when full).
const INPUT_QUEUE: usize = 8192;
/// Depth of each TCP connection's write queue.
const TCP_WRITE_QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind UDP {addr}: {source}")]
    BindUdp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind TCP {addr}: {source}")]
    BindTcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no UDP listen address: UDP is needed to send to UDP peers")]
    NoUdp,
}

/// What the sockets tell the core.
enum Input {
    Message {
        from: Peer,
        bytes: Bytes,
    },
    TcpOpened {
        conn: u64,
        writer: mpsc::Sender<Bytes>,
    },
    TcpClosed {
        conn: u64,
    },
    /// `addr` cannot be reached: our TCP connection to it failed, or ICMP said so.
    Unreachable {
        addr: SocketAddr,
        why: &'static str,
    },
}

/// Bound sockets, ready to run.
pub struct SipServer {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    cfg: ProxyConfig,
    max_message_bytes: usize,
    screening: Option<ScreeningResources>,
    tcp_limits: Option<TcpLimits>,
    shutdown_grace: Duration,
    live: Option<Arc<Live>>,
    reloads: Option<mpsc::Receiver<Reload>>,
    device: Option<crate::sip::register::RegistrationConfig>,
}

/// What a SIGHUP re-reads and the running server takes without dropping a call.
pub struct Reload {
    pub classify: crate::sip::classify::ClassifyRules,
    pub skip_screening_from: Vec<ipnet::IpNet>,
    /// For the call layer (`None` in mark mode).
    pub screening: Option<ScreeningReload>,
}

pub struct ScreeningReload {
    pub detector: Arc<crate::detect::Detector>,
    pub prompts: crate::runtime::calls::PromptBook,
    pub languages: crate::call::language::LanguageByNumber,
}

/// How long calls in progress may go on after SIGTERM (`sip.shutdown_grace_secs`).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(45);
/// After the grace: how long the BYEs and CANCELs may take to be answered.
const HANG_UP_WAIT: Duration = Duration::from_secs(3);

/// Where the shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Running,
    /// New calls refused; calls in progress go on until this moment.
    Draining(Instant),
    /// Remaining calls were ended; their BYEs are answered until this moment.
    HangingUp(Instant),
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a small default buffer drops packets from a few thousand calls/s.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    // ICMP errors for what we send (a PBX port closed): known at once, see `icmp`.
    if !icmp::enable(&socket, addr.is_ipv6()) {
        debug!(%addr, "IP_RECVERR refused: ICMP errors will not be seen");
    }
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

impl SipServer {
    /// Bind every listen address (errors name the address).
    pub async fn bind(
        udp: &[SocketAddr],
        tcp: &[SocketAddr],
        cfg: ProxyConfig,
        max_message_bytes: usize,
    ) -> Result<SipServer, ServerError> {
        if udp.is_empty() {
            return Err(ServerError::NoUdp);
        }
        let mut udp_sockets = Vec::new();
        for &addr in udp {
            let s = udp_socket(addr).map_err(|source| ServerError::BindUdp { addr, source })?;
            udp_sockets.push(Arc::new(s));
        }
        let mut listeners = Vec::new();
        for &addr in tcp {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::BindTcp { addr, source })?;
            listeners.push(l);
        }
        Ok(SipServer {
            udp: udp_sockets,
            tcp: listeners,
            cfg,
            max_message_bytes: max_message_bytes.min(MAX_MESSAGE_BYTES),
            screening: None,
            tcp_limits: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            live: None,
            reloads: None,
            device: None,
        })
    }

    /// Device mode: register to the router (the upstream) as an IP phone from the core's
    /// socket, keep the binding fresh, unregister at the end.
    pub fn with_device(mut self, cfg: crate::sip::register::RegistrationConfig) -> SipServer {
        self.device = Some(cfg);
        self
    }

    /// Screen calls (answer, listen, transcribe, decide) with these resources.
    pub fn with_screening(mut self, res: ScreeningResources) -> SipServer {
        self.cfg.screen_calls = true;
        self.screening = Some(res);
        self
    }

    /// Limits for accepted TCP connections (default: [`TcpLimits::new`] with the proxy's
    /// trusted networks and a 300 s idle timeout).
    pub fn with_tcp_limits(mut self, limits: TcpLimits) -> SipServer {
        self.tcp_limits = Some(limits);
        self
    }

    /// How long calls in progress may go on after the first stop request.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> SipServer {
        self.shutdown_grace = grace;
        self
    }

    /// Take reloaded configurations from here (SIGHUP).
    pub fn with_reloads(mut self, rx: mpsc::Receiver<Reload>) -> SipServer {
        self.reloads = Some(rx);
        self
    }

    /// Publish counters and health here for the admin server.
    pub fn with_live(mut self, live: Arc<Live>) -> SipServer {
        self.live = Some(live);
        self
    }

    /// Replace the proxy configuration (e.g. once the bound port is known).
    pub fn with_config(mut self, cfg: ProxyConfig) -> SipServer {
        self.cfg = cfg;
        self
    }

    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Run until stopped; returns the final counters. `stop` counts the stop requests
    /// (SIGTERM): at the first, new calls are refused with 503 (OPTIONS too) while calls in
    /// progress go on for up to the shutdown grace ([`SipServer::with_shutdown_grace`]);
    /// when they have all ended, or the grace is over, or at the second request, what is
    /// left is ended on both legs (BYE, CANCEL), recorded, and the loop returns.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<u32>) -> RunStats {
        let grace = self.shutdown_grace;
        let (tx, mut rx) = mpsc::channel::<Input>(INPUT_QUEUE);
        let (new_tx, mut new_rx) = mpsc::channel::<NewRequest>(NEW_LANE);
        let door = Arc::new(Door::new(self.cfg.trusted.clone(), new_tx));
        let mut tasks = Vec::new();
        for sock in &self.udp {
            tasks.push(tokio::spawn(read_udp(
                sock.clone(),
                tx.clone(),
                door.clone(),
            )));
        }
        let next_conn = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let limits = self
            .tcp_limits
            .unwrap_or_else(|| TcpLimits::new(self.cfg.trusted.clone(), Duration::from_secs(300)));
        let conns = ConnTable::new(limits);
        for listener in self.tcp {
            tasks.push(tokio::spawn(accept_tcp(
                listener,
                tx.clone(),
                next_conn.clone(),
                self.max_message_bytes,
                conns.clone(),
                door.clone(),
            )));
        }
        let (call_tx, mut call_rx) = mpsc::channel::<CallEvent>(INPUT_QUEUE);
        let screen = self.screening.is_some();
        let mut cfg = self.cfg;
        cfg.screen_calls = screen;
        let calls = self.screening.map(|res| CallManager::new(res, call_tx));
        let mut core = Core {
            calls,
            proxy: Proxy::new(cfg),
            udp: self.udp,
            tcp_writers: HashMap::new(),
            outbound: HashMap::new(),
            input: tx,
            next_conn,
            conns: conns.clone(),
            max_message_bytes: self.max_message_bytes,
            send_drops: 0,
            door: door.clone(),
            shedder: Shedder::new(),
            live: self.live.clone(),
            published: None,
            draining: false,
            clock_base: (Instant::now(), std::time::Instant::now()),
            device: self
                .device
                .map(|cfg| Device::new(cfg, std::time::Instant::now())),
        };
        // Start the proxy's own timers (the upstream's health probes).
        core.proxy.handle_timeout(std::time::Instant::now());
        core.drain().await;
        let mut phase = Phase::Running;
        let mut stop_open = true;
        let mut reloads = self.reloads;
        loop {
            // Shutdown: move on when the calls are done or the time is up.
            let live = core.calls.as_ref().map_or(0, CallManager::live);
            let active = core.calls.as_ref().map_or(0, CallManager::active);
            match phase {
                Phase::Running => {}
                Phase::Draining(until) => {
                    if live == 0 || Instant::now() >= until || *stop.borrow() >= 2 {
                        if live > 0 {
                            info!(calls = live, "shutdown: ending the calls still going on");
                        }
                        if let Some(calls) = core.calls.as_mut() {
                            calls.end_all(&mut core.proxy).await;
                        }
                        core.drain().await;
                        phase = Phase::HangingUp(Instant::now() + HANG_UP_WAIT);
                        continue;
                    }
                }
                Phase::HangingUp(until) => {
                    if active == 0 || Instant::now() >= until {
                        break;
                    }
                }
            }
            let check_phase = match phase {
                Phase::Running => None,
                // Look again soon: calls end by events the loop does not wait on here.
                Phase::Draining(_) | Phase::HangingUp(_) => {
                    Some(Instant::now() + Duration::from_millis(50))
                }
            };
            // Timers first when due: a flood keeps the lanes busy, and retransmissions and
            // timeouts must not wait for it to end. (Once per turn, so a timer that stays
            // due cannot starve the sockets.)
            if core.next_timer().is_some_and(|d| d <= Instant::now()) {
                core.timeout().await;
                core.drain().await;
            }
            core.report_shedding();
            core.publish(false);
            let deadline = core.next_timer();
            tokio::select! {
                biased;
                changed = stop.changed(), if stop_open => {
                    match changed {
                        Err(_) => stop_open = false,
                        Ok(()) if phase == Phase::Running => {
                            info!(grace_secs = grace.as_secs(), "stopping: new calls refused, calls in progress may finish");
                            core.proxy.start_draining();
                            core.draining = true;
                            core.publish(true);
                            phase = Phase::Draining(Instant::now() + grace);
                        }
                        // A second request ends the grace (checked at the top).
                        Ok(()) => {}
                    }
                }
                _ = sleep_until_opt(check_phase) => {}
                Some(r) = async { match reloads.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    core.proxy.reconfigure(r.classify, r.skip_screening_from);
                    if let (Some(calls), Some(sr)) = (core.calls.as_mut(), r.screening) {
                        calls.reload(sr.detector, sr.prompts, sr.languages);
                    }
                    info!("configuration reloaded: allow/deny lists, rules, thresholds and prompts in force for new calls");
                }
                Some(input) = rx.recv() => {
                    core.input(input, phase == Phase::Running).await;
                    // Whatever else is queued, each answered at once (no batching delay),
                    // before the loop looks at timers again; the dialog lane first.
                    for _ in 0..256 {
                        if let Ok(input) = rx.try_recv() {
                            core.input(input, phase == Phase::Running).await;
                        } else if let Ok(new) = new_rx.try_recv() {
                            core.new_request(new, phase == Phase::Running).await;
                        } else {
                            break;
                        }
                    }
                }
                Some(ev) = call_rx.recv(), if screen => {
                    if let Some(calls) = core.calls.as_mut() {
                        calls.event(&mut core.proxy, ev).await;
                        // Media before the bridge arrives 50 packets/s per leg: take what
                        // is queued in one go rather than a timer check per packet.
                        for _ in 0..256 {
                            match call_rx.try_recv() {
                                Ok(ev) => calls.event(&mut core.proxy, ev).await,
                                Err(_) => break,
                            }
                        }
                    }
                }
                Some(new) = new_rx.recv() => {
                    core.new_request(new, phase == Phase::Running).await;
                    for _ in 0..256 {
                        if let Ok(input) = rx.try_recv() {
                            core.input(input, phase == Phase::Running).await;
                        } else if let Ok(new) = new_rx.try_recv() {
                            core.new_request(new, phase == Phase::Running).await;
                        } else {
                            break;
                        }
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    core.timeout().await;
                }
                // A report of shedding is due even when no new request comes.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            core.drain().await;
        }
        // Device mode: tell the router we are gone, and give it a moment to say so.
        if let Some(d) = core.device.as_mut() {
            d.unregister(std::time::Instant::now());
            core.drain().await;
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                tokio::select! {
                    Some(input) = rx.recv() => core.input(input, false).await,
                    _ = tokio::time::sleep_until(until) => {}
                }
                core.drain().await;
                if core.device.as_ref().is_some_and(|d| d.unregistered()) {
                    break;
                }
            }
        }
        for t in tasks {
            t.abort();
        }
        let stats = RunStats {
            proxy: core.proxy.stats().clone(),
            tcp: conns.counters.snapshot(),
            door: door.stats(),
            overload_episodes: core.shedder.episodes,
            max_new_request_wait_ms: core.shedder.max_wait.as_millis() as u64,
            calls: core.calls.as_ref().map(CallManager::stats),
        };
        if core.send_drops > 0 {
            warn!(
                drops = core.send_drops,
                "UDP sends dropped: socket buffer full"
            );
        }
        stats
    }
}

/// Counters at shutdown, printed as one JSON line: the proxy's counters at the top level,
/// the call layer's resources under `calls` (absent in `mark` mode).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunStats {
    #[serde(flatten)]
    pub proxy: ProxyStats,
    #[serde(flatten)]
    pub tcp: TcpStats,
    #[serde(flatten)]
    pub door: DoorStats,
    /// Times the core fell behind and began shedding new requests.
    pub overload_episodes: u64,
    /// Longest a new request waited for the core.
    pub max_new_request_wait_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<CallStats>,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

struct Core {
    proxy: Proxy,
    calls: Option<CallManager>,
    udp: Vec<Arc<UdpSocket>>,
    tcp_writers: HashMap<u64, mpsc::Sender<Bytes>>,
    /// Our own TCP connections to a destination (the upstream), by address.
    outbound: HashMap<SocketAddr, u64>,
    input: mpsc::Sender<Input>,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
    /// Accepted TCP connections and their limits (timeouts apply to our own too).
    conns: Arc<ConnTable>,
    max_message_bytes: usize,
    send_drops: u64,
    /// Where the readers sort messages; told when to refuse new requests.
    door: Arc<Door>,
    /// Whether the core is behind, from the new lane's queueing delay.
    shedder: Shedder,
    /// Where the admin server reads counters and health, and when they were last written.
    live: Option<Arc<Live>>,
    published: Option<std::time::Instant>,
    draining: bool,
    /// The same moment on both clocks (the core speaks std, tokio sleeps on its own).
    clock_base: (Instant, std::time::Instant),
    /// Device mode's registration.
    device: Option<Device>,
}

impl Core {
    fn to_tokio(&self, t: std::time::Instant) -> Instant {
        let (tokio_base, std_base) = self.clock_base;
        match t.checked_duration_since(std_base) {
            Some(d) => tokio_base + d,
            None => tokio_base,
        }
    }

    /// OPTIONS to us answers 503 while new calls would be refused (`when_unscreened =
    /// "503"` and the speech model saturated), so a dispatcher's probe takes the node out.
    fn update_availability(&mut self) {
        let why = match &self.calls {
            Some(c) if c.refuses_when_saturated() => c.saturated(),
            _ => None,
        };
        self.proxy.set_unavailable(why);
    }

    /// One message or event from the dialog lane.
    async fn input(&mut self, input: Input, running: bool) {
        // Availability as of the calls taken so far (OPTIONS answers with it).
        if running {
            self.update_availability();
        }
        self.handle(input);
        self.drain().await;
    }

    /// One message from the new-request lane: processed, or refused with 503 when it waited
    /// too long for the core (the core is behind).
    async fn new_request(&mut self, new: NewRequest, running: bool) {
        if running {
            self.update_availability();
        }
        let backlog = self.door.taken(new.bytes.len());
        let now = std::time::Instant::now();
        let shed = self.shedder.take(now, new.at.elapsed(), backlog);
        self.door.set_pace(self.shedder.service_interval());
        if shed {
            self.proxy.shed_input(now, new.from, &new.bytes);
        } else {
            self.proxy.handle_input(now, new.from, &new.bytes);
        }
        self.drain().await;
        self.report_shedding();
    }

    /// Counters and health for the admin server, at most 4 times a second (or now).
    fn publish(&mut self, now_anyway: bool) {
        let Some(live) = &self.live else { return };
        let t = std::time::Instant::now();
        let due = self
            .published
            .is_none_or(|p| t.saturating_duration_since(p) >= Duration::from_millis(250));
        if !due && !now_anyway {
            return;
        }
        self.published = Some(t);
        let saturated = match &self.calls {
            Some(c) if c.refuses_when_saturated() => c.saturated().is_some(),
            _ => false,
        };
        let unregistered = self
            .device
            .as_ref()
            .is_some_and(|d| !d.snapshot().registered);
        live.set_health(if self.draining {
            Health::Draining
        } else if unregistered {
            Health::Unregistered
        } else if saturated {
            Health::Saturated
        } else {
            Health::Ready
        });
        live.publish(Snapshot {
            proxy: self.proxy.stats().clone(),
            door: self.door.stats(),
            tcp: self.conns.counters.snapshot(),
            tcp_open: self.conns.held(std::net::IpAddr::from([0, 0, 0, 0])).0,
            calls: self.calls.as_ref().map(CallManager::stats),
            asr: self.calls.as_ref().and_then(CallManager::asr_capacity),
            upstream_up: self.proxy.upstream_up(),
            device: self.device.as_ref().map(Device::snapshot),
        });
    }

    /// Once a second while new requests are refused, and when that ends.
    fn report_shedding(&mut self) {
        let door = self.door.stats().shed_at_door;
        self.shedder.tick(std::time::Instant::now(), door);
        match self.shedder.poll_change() {
            Some(ShedChange::Shedding {
                at_door,
                in_core,
                max_wait,
            }) => warn!(
                refused_at_door = at_door,
                refused_in_core = in_core,
                longest_wait_ms = max_wait.as_millis() as u64,
                "overload: new requests refused with 503 in the last second (the core is behind)"
            ),
            Some(ShedChange::Ended) => info!("overload over: taking every new call again"),
            None => {}
        }
    }

    /// When the next timer of the proxy or the call layer is due.
    fn next_timer(&self) -> Option<Instant> {
        let next = match (
            self.proxy.poll_timeout(),
            self.calls.as_ref().and_then(|c| c.poll_timeout()),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let next = match (next, self.device.as_ref().and_then(Device::poll_timeout)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|t| self.to_tokio(t))
    }

    /// Timers due: the proxy's and the call layer's.
    async fn timeout(&mut self) {
        let now = std::time::Instant::now();
        self.proxy.handle_timeout(now);
        if let Some(d) = self.device.as_mut() {
            d.handle_timeout(now);
        }
        if let Some(calls) = self.calls.as_mut() {
            calls.handle_timeout(&mut self.proxy).await;
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Message { from, bytes } => {
                let now = std::time::Instant::now();
                if let Some(d) = self.device.as_mut() {
                    if d.takes(&bytes, now) {
                        return;
                    }
                }
                self.proxy.handle_input(now, from, &bytes);
            }
            Input::TcpOpened { conn, writer } => {
                self.tcp_writers.insert(conn, writer);
            }
            Input::TcpClosed { conn } => {
                self.tcp_writers.remove(&conn);
                self.outbound.retain(|_, c| *c != conn);
            }
            Input::Unreachable { addr, why } => {
                if let Some(d) = self.device.as_mut() {
                    d.unreachable(std::time::Instant::now(), addr);
                }
                self.proxy.unreachable(std::time::Instant::now(), addr, why);
            }
        }
    }

    async fn drain(&mut self) {
        while let Some(ev) = self.proxy.poll_event() {
            log_event(&ev);
            match (ev, self.calls.as_mut()) {
                (
                    ProxyEvent::ScreenCall {
                        invite,
                        source,
                        classification,
                    },
                    Some(calls),
                ) => {
                    calls
                        .start(&mut self.proxy, invite, source, classification.reason)
                        .await;
                }
                (ProxyEvent::ScreenCall { invite, source, .. }, None) => {
                    // No call layer on this server: refuse rather than leave the caller hanging.
                    self.proxy
                        .respond(&invite, source, 503, "Service Unavailable");
                }
                (
                    ProxyEvent::CallMessage {
                        call,
                        from_upstream,
                        msg,
                        source,
                        ..
                    },
                    Some(calls),
                ) => {
                    calls
                        .sip(&mut self.proxy, call, (from_upstream, source), msg)
                        .await
                }
                (ProxyEvent::Upstream { up: false, .. }, Some(calls)) => {
                    calls.upstream_down(&mut self.proxy).await;
                }
                _ => {}
            }
        }
        while let Some(Transmit { to, bytes }) = self.proxy.poll_transmit() {
            match to.transport {
                Transport::Udp => self.send_udp(to.addr, &bytes).await,
                Transport::Tcp => self.send_tcp(to, bytes),
            }
        }
        if let Some(mut d) = self.device.take() {
            // Device mode registers over UDP (config validation).
            while let Some(out) = d.poll_transmit() {
                self.send_udp(out.to, &out.bytes).await;
            }
            d.events(std::time::Instant::now());
            self.device = Some(d);
        }
    }

    async fn send_udp(&mut self, to: SocketAddr, bytes: &[u8]) {
        let sock = self
            .udp
            .iter()
            .find(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == to.is_ipv4()))
            .or_else(|| self.udp.first());
        let Some(sock) = sock else { return };
        match sock.try_send_to(bytes, to) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Wait briefly for buffer space rather than lose a SIP message.
                let r =
                    tokio::time::timeout(Duration::from_millis(50), sock.send_to(bytes, to)).await;
                if !matches!(r, Ok(Ok(_))) {
                    self.send_drops += 1;
                }
            }
            Err(e) => debug!(%to, error = %e, "UDP send failed"),
        }
    }

    fn send_tcp(&mut self, to: Peer, bytes: Bytes) {
        let conn = to.conn.or_else(|| self.outbound.get(&to.addr).copied());
        if let Some(conn) = conn {
            if let Some(w) = self.tcp_writers.get(&conn) {
                if w.try_send(bytes).is_err() {
                    self.send_drops += 1;
                }
                return;
            }
            if to.conn.is_some() {
                // The connection a request came on is gone; RFC 3261 §18.2.2 would open a
                // new one to the sent-by address, which we do only for our own targets.
                debug!(conn, "TCP connection closed before the response");
                return;
            }
        }
        // Open a connection to the target and queue the bytes on it.
        let conn = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (wtx, wrx) = mpsc::channel::<Bytes>(TCP_WRITE_QUEUE);
        let _ = wtx.try_send(bytes);
        self.tcp_writers.insert(conn, wtx.clone());
        let door = self.door.clone();
        self.outbound.insert(to.addr, conn);
        let input = self.input.clone();
        let max = self.max_message_bytes;
        let conns = self.conns.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(to.addr)).await {
                Ok(Ok(stream)) => {
                    let link = TcpLink {
                        addr: to.addr,
                        conn,
                        max,
                        conns,
                        _slot: None,
                        door,
                        replies: wtx,
                    };
                    serve_tcp(stream, link, input, wrx).await
                }
                _ => {
                    warn!(addr = %to.addr, "cannot connect over TCP");
                    let _ = input.send(Input::TcpClosed { conn }).await;
                    let why = "TCP connection failed";
                    let _ = input.send(Input::Unreachable { addr: to.addr, why }).await;
                }
            }
        });
    }
}

fn log_event(ev: &ProxyEvent) {
    match ev {
        ProxyEvent::CallClassified {
            call_id,
            classification,
        } => {
            let span = info_span!("call", call_id = %call_id);
            let _g = span.enter();
            info!(class = %classification.class, reason = %classification.reason, "new call");
        }
        ProxyEvent::Refused {
            status,
            detail,
            source,
        } => debug!(status, %detail, %source, "request refused"),
        ProxyEvent::Upstream { up: false, why } => {
            warn!(
                why,
                "upstream down: new calls get 503 until it answers again"
            )
        }
        ProxyEvent::Upstream { up: true, why } => info!(why, "upstream up"),
        ProxyEvent::ScreenCall { .. } | ProxyEvent::CallMessage { .. } => {}
    }
}

async fn read_udp(sock: Arc<UdpSocket>, tx: mpsc::Sender<Input>, door: Arc<Door>) {
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if n == 0 {
                    continue;
                }
                let peer = Peer::udp(from);
                match door.sort(peer, Bytes::copy_from_slice(&buf[..n])) {
                    Sorted::Dialog(bytes) => {
                        if tx.send(Input::Message { from: peer, bytes }).await.is_err() {
                            return;
                        }
                    }
                    Sorted::Queued | Sorted::Refused(None) => {}
                    Sorted::Refused(Some((to, answer))) => {
                        // Best effort: a full send buffer under a flood drops the 503.
                        let _ = sock.try_send_to(&answer, to.addr);
                    }
                }
            }
            Err(e) => {
                // With IP_RECVERR an ICMP error fails one receive; the queue says for whom.
                debug!(error = %e, "UDP receive error");
                for u in icmp::take_errors(sock.as_ref()) {
                    debug!(to = %u.to, errno = u.errno, "ICMP error for a datagram we sent");
                    let why = "ICMP unreachable";
                    if tx
                        .send(Input::Unreachable { addr: u.to, why })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}

async fn accept_tcp(
    listener: TcpListener,
    tx: mpsc::Sender<Input>,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
    max: usize,
    conns: Arc<ConnTable>,
    door: Arc<Door>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                // Trust and caps before a byte is read: a refused connection is closed at
                // once (dropped), so it holds a descriptor for microseconds only.
                let slot = match conns.admit(addr.ip()) {
                    Ok(slot) => slot,
                    Err(why) => {
                        match why {
                            Refusal::Untrusted => {
                                debug!(%addr, "TCP connection refused: untrusted source")
                            }
                            Refusal::SourceFull | Refusal::AllFull => {
                                debug!(%addr, ?why, "TCP connection refused: too many connections")
                            }
                        }
                        drop(stream);
                        continue;
                    }
                };
                let conn = next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (wtx, wrx) = mpsc::channel::<Bytes>(TCP_WRITE_QUEUE);
                if tx
                    .send(Input::TcpOpened {
                        conn,
                        writer: wtx.clone(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let link = TcpLink {
                    addr,
                    conn,
                    max,
                    conns: conns.clone(),
                    _slot: Some(slot),
                    door: door.clone(),
                    replies: wtx,
                };
                tokio::spawn(serve_tcp(stream, link, tx.clone(), wrx));
            }
            Err(e) => {
                // EMFILE/ENFILE: the pending connection stays in the backlog; try again soon.
                warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One TCP connection's identity and limits.
struct TcpLink {
    addr: SocketAddr,
    conn: u64,
    max: usize,
    conns: Arc<ConnTable>,
    /// The accepted connection's place in the table (none for our own connections).
    _slot: Option<ConnSlot>,
    /// Where messages are sorted, and this connection's writer for refusals at the door.
    door: Arc<Door>,
    replies: mpsc::Sender<Bytes>,
}

/// Read frames (Content-Length framing, RFC 3261 §18.3) and write queued bytes. The
/// connection is closed when idle longer than the idle timeout, or when a message begun is
/// not complete within the message timeout (a slow sender holds nothing for long).
async fn serve_tcp(
    stream: TcpStream,
    link: TcpLink,
    tx: mpsc::Sender<Input>,
    mut writes: mpsc::Receiver<Bytes>,
) {
    let (addr, conn, max) = (link.addr, link.conn, link.max);
    let (idle, message) = (link.conns.limits().idle, link.conns.limits().message);
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(b) = writes.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let peer = Peer {
        addr,
        transport: Transport::Tcp,
        conn: Some(conn),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16384];
    // When the message now in `buf` began (None: nothing pending).
    let mut begun: Option<Instant> = None;
    'read: loop {
        let until = match begun {
            Some(t) => t + message,
            None => Instant::now() + idle,
        };
        let n = match tokio::time::timeout_at(until, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                let counters = &link.conns.counters;
                if begun.is_some() {
                    counters
                        .closed_slow
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    debug!(%addr, "closing TCP connection: message not complete in time");
                } else {
                    counters
                        .closed_idle
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    debug!(%addr, "closing idle TCP connection");
                }
                break;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame_stream(&buf, max) {
                Ok(Some((skip, len))) => {
                    let frame = Bytes::copy_from_slice(&buf[skip..skip + len]);
                    buf.drain(..skip + len);
                    // What is left is the start of a new message.
                    begun = None;
                    match link.door.sort(peer, frame) {
                        Sorted::Dialog(bytes) => {
                            if tx.send(Input::Message { from: peer, bytes }).await.is_err() {
                                break 'read;
                            }
                        }
                        Sorted::Queued | Sorted::Refused(None) => {}
                        Sorted::Refused(Some((_, answer))) => {
                            let _ = link.replies.try_send(answer);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // A stream we cannot frame cannot be resynchronised: close it.
                    debug!(%addr, error = %e, "closing TCP connection: bad framing");
                    break 'read;
                }
            }
        }
        // Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are not a message begun.
        let pending = buf.iter().any(|b| !matches!(b, b'\r' | b'\n'));
        begun = match (pending, begun) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => Some(Instant::now()),
        };
    }
    writer.abort();
    let _ = tx.send(Input::TcpClosed { conn }).await;
}
