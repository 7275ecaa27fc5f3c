//! ICMP errors for our UDP sends (Linux `IP_RECVERR`), so a PBX whose port is closed or
//! whose host is unreachable is known from the first datagram, not after Timer B (32 s).
//!
//! Linux reports ICMP errors on an unconnected UDP socket only with `IP_RECVERR` /
//! `IPV6_RECVERR` set (ip(7), ipv6(7)); the error is queued on the socket, a receive then
//! fails once with its errno, and `recvmsg(MSG_ERRQUEUE)` yields each error with the address
//! the failed datagram was sent to (`msg_name`) and a `sock_extended_err` that says what it
//! was. Only errors that came from ICMP (not local ones such as a full buffer) are returned.
//!
//! An ICMP error can be forged by anyone who can guess our port; what it costs is the same
//! as a PBX that stops answering probes: new calls get 503 until the next probe is answered
//! (`sip.upstream_probe_secs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// Ask the kernel to queue ICMP errors on `sock` (best effort: `false` if refused).
pub fn enable(sock: &impl AsRawFd, ipv6: bool) -> bool {
    let on: libc::c_int = 1;
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// One ICMP error: where the datagram was going, and what the network said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable {
    pub to: SocketAddr,
    /// `ECONNREFUSED` (port unreachable), `EHOSTUNREACH`, `ENETUNREACH`, …
    pub errno: i32,
}

/// Take every queued error from `sock` without blocking; ICMP ones are returned.
pub fn take_errors(sock: &impl AsRawFd) -> Vec<Unreachable> {
    let mut out = Vec::new();
    // A bound on the loop: the queue is drained in one go, and it never holds more than
    // the socket's receive buffer allows.
    for _ in 0..256 {
        match take_one(sock.as_raw_fd()) {
            Some(Some(u)) => out.push(u),
            Some(None) => {}
            None => break,
        }
    }
    out
}

/// One entry of the error queue: `None` when empty, `Some(None)` for a non-ICMP error.
fn take_one(fd: libc::c_int) -> Option<Option<Unreachable>> {
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut data = [0u8; 512];
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points at a live buffer of the length given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    let mut found = None;
    // SAFETY: the CMSG_* walk stays inside `control`, whose used length the kernel set.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            let is_err = (level == libc::IPPROTO_IP && kind == libc::IP_RECVERR)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_RECVERR);
            if is_err {
                let ee: libc::sock_extended_err =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let icmp = ee.ee_origin == libc::SO_EE_ORIGIN_ICMP
                    || ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                if icmp {
                    found = Some(ee.ee_errno as i32);
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let to = sockaddr_to_std(&name)?;
    Some(found.map(|errno| Unreachable { to, errno }))
}

fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let addr = SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            );
            // A v4-mapped destination from a dual-stack socket is the v4 address.
            Some(match IpAddr::V6(ip).to_canonical() {
                IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, addr.port())),
                IpAddr::V6(_) => SocketAddr::V6(addr),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_closed_port_is_reported_with_its_address() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable(&sock, false));
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        sock.send_to(b"OPTIONS", closed).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            // The receive fails once with the error, then the queue has it.
            let mut b = [0u8; 16];
            let e = sock.recv_from(&mut b).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
            got = take_errors(&sock);
        }
        assert_eq!(
            got,
            vec![Unreachable {
                to: closed,
                errno: libc::ECONNREFUSED
            }]
        );
        assert!(take_errors(&sock).is_empty());
    }
}
