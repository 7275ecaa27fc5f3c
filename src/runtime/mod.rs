//! The tokio runtime: sockets, timers, tasks. The only place that uses tokio's I/O; the
//! protocol logic it drives lives in `crate::sip` as pure state machines.

pub mod calls;
pub mod device;
pub mod door;
pub mod icmp;
pub mod live;
pub mod log_writer;
pub mod media_relay;
pub mod sip_server;
pub mod tcp_limits;

/// Raise this process's open-file limit to its hard limit. Every screened call holds two
/// RTP sockets, and the usual soft limit (1,024) would refuse calls at ~500 while the hard
/// limit (often 524,288) allows far more. Returns the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}
