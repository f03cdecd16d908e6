//! A TCP stream whose every read and write is bounded by one deadline.
//!
//! A socket timeout (SO_RCVTIMEO) bounds one system call: a server that
//! drips one byte at a time restarts it with every byte and defeats it.
//! [`DeadlineStream`] carries an absolute deadline instead: before each
//! read or write it makes the socket's timeout no longer than what is left
//! of the deadline, and once the deadline has passed every call fails with
//! [`io::ErrorKind::TimedOut`]. TLS, the HTTP upgrade, web-proxy CONNECT
//! and the WebSocket frames all run over it, so one deadline covers every
//! byte of a connect or of an exchange, whatever the peer sends.
//!
//! Without a deadline ([`DeadlineStream::set_deadline`] with `None`) the
//! stream is the plain socket (used for the non-blocking liveness check).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A socket timeout within this of what is left of the deadline is kept:
/// resetting it costs a system call, and overshooting by this is harmless.
const SLACK: Duration = Duration::from_millis(50);

/// The shortest socket timeout set (zero would mean "no timeout").
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// A TCP stream with a deadline (see the module documentation).
#[derive(Debug)]
pub struct DeadlineStream {
    tcp: TcpStream,
    deadline: Option<Instant>,
    /// The socket timeouts currently set (None: not set by us yet).
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// The error every call returns once the deadline has passed.
pub fn expired() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out (deadline passed)")
}

/// True for the errors a socket timeout produces.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What is left of `deadline` (None once it has passed).
pub fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

impl DeadlineStream {
    /// Wraps `tcp` (blocking mode), with `deadline`.
    pub fn new(tcp: TcpStream, deadline: Option<Instant>) -> DeadlineStream {
        DeadlineStream {
            tcp,
            deadline,
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Replaces the deadline (None: no bound, the socket as it is).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The current deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Makes the socket timeout for the next call fit the deadline.
    fn arm(&mut self, write: bool) -> io::Result<()> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        let left = remaining(deadline).ok_or_else(expired)?.max(MIN_TIMEOUT);
        let current = if write {
            self.write_timeout
        } else {
            self.read_timeout
        };
        let fits = current.is_some_and(|c| c <= left + SLACK && c + SLACK >= left);
        if !fits {
            if write {
                self.tcp.set_write_timeout(Some(left))?;
                self.write_timeout = Some(left);
            } else {
                self.tcp.set_read_timeout(Some(left))?;
                self.read_timeout = Some(left);
            }
        }
        Ok(())
    }

    /// Runs one I/O call under the deadline: a socket timeout before the
    /// deadline (the timeout was shorter than what was left) is retried.
    fn bounded<T>(
        &mut self,
        write: bool,
        mut call: impl FnMut(&mut TcpStream) -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            self.arm(write)?;
            match call(&mut self.tcp) {
                Err(e) if is_timeout(&e) && self.deadline.is_some() => {
                    if self.deadline.and_then(remaining).is_none() {
                        return Err(expired());
                    }
                    // Left more than the timeout that just ran out: go on.
                    if write {
                        self.write_timeout = None;
                    } else {
                        self.read_timeout = None;
                    }
                }
                other => return other,
            }
        }
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.bounded(false, |s| s.read(buf))
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bounded(true, |s| s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::TcpListener;

    /// A server that sends one byte every `gap` for `n` bytes.
    fn dripping_server(
        gap: Duration,
        n: usize,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            for _ in 0..n {
                std::thread::sleep(gap);
                if s.write_all(b"x").is_err() {
                    return;
                }
            }
        });
        (addr, h)
    }

    #[test]
    fn dripping_peer_cannot_extend_the_deadline() {
        let (addr, h) = dripping_server(Duration::from_millis(40), 50);
        let tcp = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        let mut s = DeadlineStream::new(tcp, Some(start + Duration::from_millis(300)));
        let mut buf = [0u8; 64];
        let mut got = 0;
        let err = loop {
            match s.read(&mut buf) {
                Ok(0) => panic!("eof"),
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        let took = start.elapsed();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(got >= 2, "{got}");
        assert!(took < Duration::from_millis(300) + SLACK * 3, "{took:?}");
        drop(s);
        h.join().unwrap();
    }

    #[test]
    fn slow_peer_within_the_deadline_is_read() {
        let (addr, h) = dripping_server(Duration::from_millis(150), 1);
        let tcp = TcpStream::connect(addr).unwrap();
        let mut s = DeadlineStream::new(tcp, Some(Instant::now() + Duration::from_secs(2)));
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap(), 1);
        h.join().unwrap();
    }

    #[test]
    fn passed_deadline_fails_at_once() {
        let (addr, h) = dripping_server(Duration::from_millis(1), 1);
        let tcp = TcpStream::connect(addr).unwrap();
        let mut s = DeadlineStream::new(tcp, Some(Instant::now()));
        assert_eq!(s.write(b"x").unwrap_err().kind(), io::ErrorKind::TimedOut);
        drop(s);
        h.join().unwrap();
    }
}
