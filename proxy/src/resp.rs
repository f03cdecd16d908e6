//! A minimal Redis (RESP2) client: pipelined commands over one TCP
//! connection, replies bounded in size. Only what the throttle's shared
//! counters need (integers, simple strings, bulk strings, errors).

use std::io;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest bulk string accepted in a reply.
const MAX_BULK: usize = 64 * 1024;
/// Longest reply line accepted.
const MAX_LINE: usize = 1024;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR …`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$3\r\nabc`, or `$-1` (none).
    Bulk(Option<Vec<u8>>),
}

impl Reply {
    /// The reply as a number: an integer, or a bulk string of digits
    /// (`GET` of a counter); none counts 0.
    pub fn number(&self) -> io::Result<i64> {
        match self {
            Reply::Int(n) => Ok(*n),
            Reply::Bulk(None) => Ok(0),
            Reply::Bulk(Some(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("not a number")),
            Reply::Error(e) => Err(bad(e)),
            Reply::Simple(_) => Err(bad("not a number")),
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("redis: {what}"))
}

/// A connection to a Redis server.
pub struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    /// Connects to `target` (`HOST:PORT`).
    pub async fn connect(target: &str) -> io::Result<Connection> {
        let tcp = TcpStream::connect(target).await?;
        tcp.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(tcp),
        })
    }

    /// Sends `commands` at once and reads their replies, in order.
    pub async fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> io::Result<Vec<Reply>> {
        let mut out = Vec::new();
        for args in commands {
            encode(&mut out, args);
        }
        self.stream.get_mut().write_all(&out).await?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.read_reply().await?);
        }
        Ok(replies)
    }

    async fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = (&mut self.stream)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if !line.ends_with(b"\r\n") {
            return Err(bad("reply line too long or cut"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    async fn read_reply(&mut self) -> io::Result<Reply> {
        let line = self.read_line().await?;
        let (kind, rest) = line.split_first().ok_or_else(|| bad("empty reply"))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        match kind {
            b'+' => Ok(Reply::Simple(text)),
            b'-' => Ok(Reply::Error(text)),
            b':' => text.parse().map(Reply::Int).map_err(|_| bad("bad integer")),
            b'$' => {
                let n: i64 = text.parse().map_err(|_| bad("bad length"))?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = usize::try_from(n).map_err(|_| bad("bad length"))?;
                if n > MAX_BULK {
                    return Err(bad("bulk reply too large"));
                }
                let mut data = vec![0; n + 2];
                self.stream.read_exact(&mut data).await?;
                data.truncate(n);
                Ok(Reply::Bulk(Some(data)))
            }
            _ => Err(bad("unexpected reply type")),
        }
    }
}

/// Appends `args` as a RESP array of bulk strings.
fn encode(out: &mut Vec<u8>, args: &[Vec<u8>]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A command from its words.
pub fn cmd(words: &[&[u8]]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn encoding() {
        let mut out = Vec::new();
        encode(&mut out, &cmd(&[b"GET", b"k"]));
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(Reply::Bulk(Some(b"12".to_vec())).number().unwrap(), 12);
        assert_eq!(Reply::Bulk(None).number().unwrap(), 0);
        assert!(Reply::Error("ERR".into()).number().is_err());
    }

    #[tokio::test]
    async fn replies_are_parsed_and_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            s.write_all(b"+OK\r\n:7\r\n$2\r\nab\r\n$-1\r\n-ERR no\r\n$99999999\r\n")
                .await
                .unwrap();
        });
        let mut c = Connection::connect(&addr).await.unwrap();
        let ping = cmd(&[b"PING"]);
        let r = c.pipeline(&vec![ping.clone(); 5]).await.unwrap();
        assert_eq!(
            r,
            [
                Reply::Simple("OK".into()),
                Reply::Int(7),
                Reply::Bulk(Some(b"ab".to_vec())),
                Reply::Bulk(None),
                Reply::Error("ERR no".into()),
            ]
        );
        assert!(c.pipeline(&[ping]).await.is_err(), "too large");
    }
}
