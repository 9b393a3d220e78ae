//! A fault-injecting HTTP proxy for a real DAV peer (Radicale): it listens on a free loopback
//! port, forwards each request to the upstream, and, while a fault is armed for the request's
//! method, answers instead with a 500, a 429 with `Retry-After`, a dropped connection (closed
//! without an answer, after an optional stall), a truncated body (the full `Content-Length`,
//! half the bytes, then close), malformed XML (a 207 whose multistatus is cut mid-element) or
//! malformed JSON (a 200 cut mid-object, for the Google and Graph fakes).
//! One request per connection (`Connection: close`), so a fault never leaks into the next one.
//! Counts what it injected, so a test can prove the fault was hit.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do instead of (or to) the upstream's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 Internal Server Error`.
    Status500,
    /// `429 Too Many Requests` with `Retry-After: secs`.
    Throttle { retry_after_secs: u64 },
    /// Read the request, wait this long, close without answering (a timeout at the peer's
    /// side, then a dropped connection).
    Drop { stall_ms: u64 },
    /// The upstream's status and `Content-Length`, but only half of the body, then close.
    Truncate,
    /// A 207 whose XML body stops in the middle of an element.
    MalformedXml,
    /// A 200 `application/json` body that stops in the middle of an object.
    MalformedJson,
}

#[derive(Default)]
struct Armed {
    /// (method, fault, how many more times; `None`: until disarmed).
    rule: Option<(String, Fault, Option<u32>)>,
    injected: u64,
    forwarded: u64,
}

/// The running proxy; stops with the test's runtime.
#[derive(Clone)]
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    state: Arc<Mutex<Armed>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`127.0.0.1:PORT`).
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Armed::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = handle(sock, upstream, st).await;
                });
            }
        });
        FaultProxy {
            url: format!("http://127.0.0.1:{port}/"),
            state,
        }
    }

    /// Injects `fault` on the next `times` requests with `method` (`None`: every one).
    pub fn arm(&self, method: &str, fault: Fault, times: Option<u32>) {
        self.state.lock().unwrap().rule = Some((method.to_string(), fault, times));
    }

    /// Forwards everything again.
    pub fn disarm(&self) {
        self.state.lock().unwrap().rule = None;
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.state.lock().unwrap().injected
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request: head and `Content-Length` body.
async fn read_request(sock: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = buf[..head_end].to_vec();
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

async fn handle(
    mut sock: TcpStream,
    upstream: SocketAddr,
    state: Arc<Mutex<Armed>>,
) -> std::io::Result<()> {
    let (head, body) = read_request(&mut sock).await?;
    let head_text = String::from_utf8_lossy(&head).to_string();
    let method = head_text.split(' ').next().unwrap_or("").to_string();
    let fault = {
        let mut st = state.lock().unwrap();
        let mut hit = None;
        let mut exhausted = false;
        if let Some((m, f, times)) = st.rule.as_mut() {
            if *m == method {
                hit = Some(*f);
                if let Some(t) = times {
                    *t -= 1;
                    exhausted = *t == 0;
                }
            }
        }
        if exhausted {
            st.rule = None;
        }
        if hit.is_some() {
            st.injected += 1;
        } else {
            st.forwarded += 1;
        }
        hit
    };
    match fault {
        Some(Fault::Status500) => {
            let b = "injected failure";
            return reply(&mut sock, "500 Internal Server Error", &[], b.as_bytes()).await;
        }
        Some(Fault::Throttle { retry_after_secs }) => {
            let ra = format!("Retry-After: {retry_after_secs}\r\n");
            return reply(&mut sock, "429 Too Many Requests", &[&ra], b"slow down").await;
        }
        Some(Fault::Drop { stall_ms }) => {
            tokio::time::sleep(Duration::from_millis(stall_ms)).await;
            return sock.shutdown().await;
        }
        Some(Fault::MalformedXml) => {
            let b = "<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\"><d:response><d:href>/x";
            let ct = "Content-Type: application/xml; charset=utf-8\r\n";
            return reply(&mut sock, "207 Multi-Status", &[ct], b.as_bytes()).await;
        }
        Some(Fault::MalformedJson) => {
            let b = r#"{"value": [{"id": "AAMk", "displayName": "#;
            let ct = "Content-Type: application/json; charset=utf-8\r\n";
            return reply(&mut sock, "200 OK", &[ct], b.as_bytes()).await;
        }
        Some(Fault::Truncate) | None => {}
    }
    // Forward: the same head (with `Connection: close`) and body, to the upstream.
    let mut up = TcpStream::connect(upstream).await?;
    let mut fwd = String::new();
    for (i, line) in head_text.split("\r\n").enumerate() {
        let lower = line.to_ascii_lowercase();
        if line.is_empty() || lower.starts_with("connection:") || lower.starts_with("host:") {
            continue;
        }
        fwd.push_str(line);
        fwd.push_str("\r\n");
        if i == 0 {
            fwd.push_str(&format!("Host: {upstream}\r\n"));
        }
    }
    fwd.push_str("Connection: close\r\n\r\n");
    up.write_all(fwd.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    let answer = rewrite_links(answer, upstream, sock.local_addr()?);
    if fault == Some(Fault::Truncate) {
        let end = find(&answer, b"\r\n\r\n").map_or(answer.len(), |i| i + 4);
        let keep = end + (answer.len() - end) / 2;
        sock.write_all(&answer[..keep]).await?;
        return sock.shutdown().await;
    }
    sock.write_all(&answer).await?;
    sock.shutdown().await
}

/// Points absolute links in the answer (Graph's `@odata.nextLink`, Google's none) at the
/// proxy instead of the upstream, fixing `Content-Length`; answers without one pass as is.
fn rewrite_links(answer: Vec<u8>, upstream: SocketAddr, proxy: SocketAddr) -> Vec<u8> {
    let Some(end) = find(&answer, b"\r\n\r\n").map(|i| i + 4) else {
        return answer;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_string();
    let has_len = head
        .to_ascii_lowercase()
        .lines()
        .any(|l| l.starts_with("content-length:"));
    let from = upstream.to_string();
    let Ok(body) = std::str::from_utf8(&answer[end..]) else {
        return answer;
    };
    if !has_len || !body.contains(&from) {
        return answer;
    }
    let body = body.replace(&from, &proxy.to_string());
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

async fn reply(
    sock: &mut TcpStream,
    status: &str,
    headers: &[&str],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.shutdown().await
}
