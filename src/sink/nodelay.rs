//! TCP_NODELAY on the database connections.
//!
//! sqlx 0.9.0 stopped setting TCP_NODELAY on its sockets (transact-rs/sqlx
//! #4335; the fix, #4336, is not in a release yet). With Nagle's algorithm
//! on, a query whose request the client writes in more than one piece waits
//! for the server's delayed ACK: about 40 ms on Linux, per statement. The
//! batch protocol's three reads of a 1000-record batch took 55 + 2 + 45 ms
//! where PostgreSQL spent about 10 ms on each.
//!
//! sqlx does not hand out its socket, so after each new connection this
//! walks the process's open sockets and sets TCP_NODELAY on those connected
//! to the database's port. Setting it on a socket that has it already, or on
//! another TCP socket to that port, changes nothing else. Remove this module
//! once a sqlx release sets TCP_NODELAY again.

use std::io;

/// Sets TCP_NODELAY on every TCP socket of this process whose peer port is
/// `port`; returns how many sockets were switched.
#[cfg(target_os = "linux")]
pub fn set_on_sockets_to_port(port: u16) -> io::Result<usize> {
    use std::os::fd::BorrowedFd;

    let mut switched = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only used for getpeername and
        // setsockopt while borrowed; if another thread closed it meanwhile
        // (and the number was reused), these calls fail or touch another
        // socket's option, neither of which is unsafe.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        let peer_port = sock
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port());
        if peer_port != Some(port) {
            continue;
        }
        if let Ok(false) = sock.tcp_nodelay() {
            sock.set_tcp_nodelay(true)?;
            switched += 1;
        }
    }
    Ok(switched)
}

/// Elsewhere the sockets keep sqlx's settings.
#[cfg(not(target_os = "linux"))]
pub fn set_on_sockets_to_port(_port: u16) -> io::Result<usize> {
    Ok(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn switches_the_sockets_to_the_port_and_only_those() {
        let db = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_db = TcpStream::connect(db.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        to_db.set_nodelay(false).unwrap();
        to_other.set_nodelay(false).unwrap();

        let n = set_on_sockets_to_port(db.local_addr().unwrap().port()).unwrap();
        assert_eq!(n, 1);
        assert!(to_db.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap());
        // A second pass finds nothing left to switch.
        assert_eq!(
            set_on_sockets_to_port(db.local_addr().unwrap().port()).unwrap(),
            0
        );
    }
}
