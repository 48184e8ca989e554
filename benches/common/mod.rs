//! What the benches share: a kept-alive HTTP/1.1 connection to the gateway, percentiles, Redis
//! clean-up, a child process stopped when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};

/// One connection to the gateway, kept alive between requests.
pub struct KeptAlive {
    reader: BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
    line: String,
}

impl KeptAlive {
    pub fn connect(address: std::net::SocketAddr) -> std::io::Result<Self> {
        let stream = std::net::TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        Ok(KeptAlive { reader: BufReader::new(stream.try_clone()?), writer: stream, line: String::new() })
    }

    /// GET `path`: the status and the body.
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        write!(self.writer, "GET {path} HTTP/1.1\r\nHost: arus\r\n\r\n")?;
        // Status line, headers, then the body by its length.
        let (mut status, mut length) = (0u16, 0usize);
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line)?;
            if self.line == "\r\n" || self.line.is_empty() {
                break;
            }
            if status == 0 {
                status = self.line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            } else if let Some(value) = self.line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().map_err(std::io::Error::other)?;
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// The latency below which `per_mille` thousandths of the sorted `latencies` fall.
pub fn percentile(latencies: &[std::time::Duration], per_mille: usize) -> std::time::Duration {
    latencies[(latencies.len() * per_mille / 1_000).min(latencies.len() - 1)]
}

/// Removes keys under `prefix` from Redis.
pub fn redis_cleanup(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let mut connection = redis::Client::open(url)?.get_connection()?;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut connection)?;
    for chunk in keys.chunks(1_000) {
        redis::cmd("DEL").arg(chunk).query::<()>(&mut connection)?;
    }
    Ok(())
}

/// A process of the bench's (a job), killed and reaped when dropped.
pub struct Stop(pub std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
