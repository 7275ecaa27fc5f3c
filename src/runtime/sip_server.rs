//! The SIP edge on tokio: UDP and TCP sockets around the pure [`Proxy`] core.
//!
//! One task owns the core. Socket reader tasks (one per UDP socket, one per TCP
//! connection) hand it `(peer, bytes)` over a bounded channel; the core task sends UDP
//! itself (non-blocking `try_send_to`, counted when the kernel buffer is full) and hands TCP
//! bytes to the connection's writer. Timers: the core's `poll_timeout` is the only clock
//! the loop sleeps on.

use crate::runtime::calls::{CallEvent, CallManager, CallStats, ScreeningResources};
use crate::sip::msg::{frame_stream, MAX_MESSAGE_BYTES};
use crate::sip::proxy::{Peer, Proxy, ProxyConfig, ProxyEvent, ProxyStats, Transmit, Transport};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
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
/// Depth of the channel from socket readers to the core.
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
}

/// Bound sockets, ready to run.
pub struct SipServer {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    cfg: ProxyConfig,
    max_message_bytes: usize,
    screening: Option<ScreeningResources>,
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a small default buffer drops packets from a few thousand calls/s.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
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
        })
    }

    /// Screen calls (answer, listen, transcribe, decide) with these resources.
    pub fn with_screening(mut self, res: ScreeningResources) -> SipServer {
        self.cfg.screen_calls = true;
        self.screening = Some(res);
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

    /// Run until `shutdown` resolves; returns the final counters.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> RunStats {
        let (tx, mut rx) = mpsc::channel::<Input>(INPUT_QUEUE);
        let mut tasks = Vec::new();
        for sock in &self.udp {
            tasks.push(tokio::spawn(read_udp(sock.clone(), tx.clone())));
        }
        let next_conn = Arc::new(std::sync::atomic::AtomicU64::new(1));
        for listener in self.tcp {
            tasks.push(tokio::spawn(accept_tcp(
                listener,
                tx.clone(),
                next_conn.clone(),
                self.max_message_bytes,
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
            max_message_bytes: self.max_message_bytes,
            send_drops: 0,
            clock_base: (Instant::now(), std::time::Instant::now()),
        };
        tokio::pin!(shutdown);
        loop {
            let next = match (
                core.proxy.poll_timeout(),
                core.calls.as_ref().and_then(|c| c.poll_timeout()),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let deadline = next.map(|t| core.to_tokio(t));
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(input) = rx.recv() => {
                    core.handle(input);
                    core.drain().await;
                    // Whatever else is queued, each answered at once (no batching delay),
                    // before the loop looks at timers again.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(input) => {
                                core.handle(input);
                                core.drain().await;
                            }
                            Err(_) => break,
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
                _ = sleep_until_opt(deadline) => {
                    let now = std::time::Instant::now();
                    core.proxy.handle_timeout(now);
                    if let Some(calls) = core.calls.as_mut() {
                        calls.handle_timeout(&mut core.proxy).await;
                    }
                }
            }
            core.drain().await;
        }
        for t in tasks {
            t.abort();
        }
        let stats = RunStats {
            proxy: core.proxy.stats().clone(),
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
    max_message_bytes: usize,
    send_drops: u64,
    /// The same moment on both clocks (the core speaks std, tokio sleeps on its own).
    clock_base: (Instant, std::time::Instant),
}

impl Core {
    fn to_tokio(&self, t: std::time::Instant) -> Instant {
        let (tokio_base, std_base) = self.clock_base;
        match t.checked_duration_since(std_base) {
            Some(d) => tokio_base + d,
            None => tokio_base,
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Message { from, bytes } => {
                self.proxy
                    .handle_input(std::time::Instant::now(), from, &bytes);
            }
            Input::TcpOpened { conn, writer } => {
                self.tcp_writers.insert(conn, writer);
            }
            Input::TcpClosed { conn } => {
                self.tcp_writers.remove(&conn);
                self.outbound.retain(|_, c| *c != conn);
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
                        ..
                    },
                    Some(calls),
                ) => calls.sip(&mut self.proxy, call, from_upstream, msg).await,
                _ => {}
            }
        }
        while let Some(Transmit { to, bytes }) = self.proxy.poll_transmit() {
            match to.transport {
                Transport::Udp => self.send_udp(to.addr, &bytes).await,
                Transport::Tcp => self.send_tcp(to, bytes),
            }
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
        self.tcp_writers.insert(conn, wtx);
        self.outbound.insert(to.addr, conn);
        let input = self.input.clone();
        let max = self.max_message_bytes;
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(to.addr)).await {
                Ok(Ok(stream)) => serve_tcp(stream, to.addr, conn, input, wrx, max).await,
                _ => {
                    warn!(addr = %to.addr, "cannot connect over TCP");
                    let _ = input.send(Input::TcpClosed { conn }).await;
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
        ProxyEvent::ScreenCall { .. } | ProxyEvent::CallMessage { .. } => {}
    }
}

async fn read_udp(sock: Arc<UdpSocket>, tx: mpsc::Sender<Input>) {
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if n == 0 {
                    continue;
                }
                let input = Input::Message {
                    from: Peer::udp(from),
                    bytes: Bytes::copy_from_slice(&buf[..n]),
                };
                if tx.send(input).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // ICMP port unreachable shows up here on Linux; keep reading.
                debug!(error = %e, "UDP receive error");
            }
        }
    }
}

async fn accept_tcp(
    listener: TcpListener,
    tx: mpsc::Sender<Input>,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
    max: usize,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let conn = next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (wtx, wrx) = mpsc::channel::<Bytes>(TCP_WRITE_QUEUE);
                if tx
                    .send(Input::TcpOpened { conn, writer: wtx })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::spawn(serve_tcp(stream, addr, conn, tx.clone(), wrx, max));
            }
            Err(e) => {
                warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Read frames (Content-Length framing, RFC 3261 §18.3) and write queued bytes.
async fn serve_tcp(
    stream: TcpStream,
    addr: SocketAddr,
    conn: u64,
    tx: mpsc::Sender<Input>,
    mut writes: mpsc::Receiver<Bytes>,
    max: usize,
) {
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
    'read: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame_stream(&buf, max) {
                Ok(Some((skip, len))) => {
                    let frame = Bytes::copy_from_slice(&buf[skip..skip + len]);
                    buf.drain(..skip + len);
                    if tx
                        .send(Input::Message {
                            from: peer,
                            bytes: frame,
                        })
                        .await
                        .is_err()
                    {
                        break 'read;
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
    }
    writer.abort();
    let _ = tx.send(Input::TcpClosed { conn }).await;
}
