//! A minimal HTTP/1.1 over a unix socket, enough for corrald's API: one request per connection
//! (`Connection: close`), bodies sized by `Content-Length`, JSON or plain text. Both sides live here: the
//! server's request reader and response writer, and the client's `call`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Longest request line or header line accepted.
const MAX_LINE: usize = 8 << 10;
/// Most header lines accepted.
const MAX_HEADERS: usize = 64;

/// The head of a request; the body is read by the handler, which knows how much it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `GET`, `POST`, `DELETE`, ...
    pub method: String,
    /// Path segments, percent-decoded (`/containers/abc/start` → `["containers", "abc", "start"]`).
    pub segments: Vec<String>,
    /// Query parameters, percent-decoded.
    pub query: BTreeMap<String, String>,
    /// `Content-Length` (0 when absent).
    pub content_length: u64,
}

impl Request {
    /// A query parameter that is present and not `0`/`false`.
    pub fn flag(&self, key: &str) -> bool {
        self.query
            .get(key)
            .is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
    }
}

/// A response: status, content type and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, v: &Value) -> Self {
        Response {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        }
    }
    /// A plain-text (or raw bytes) response.
    pub fn text(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
    /// A JSON error `{"message": ...}`, as Docker's API answers.
    pub fn error(status: u16, msg: &str) -> Self {
        Self::json(status, &serde_json::json!({ "message": msg }))
    }
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

fn read_line<R: BufRead>(r: &mut R) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
    if n > MAX_LINE {
        return Err(bad("line too long"));
    }
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let s = String::from_utf8(buf).map_err(|_| bad("header is not UTF-8"))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// Decodes `%XX` escapes (and `+` as space in queries).
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Encodes everything but unreserved characters, for a path segment or query value.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// Reads a request line and headers.
pub fn read_request<R: BufRead>(r: &mut R) -> std::io::Result<Request> {
    let line = read_line(r)?;
    let mut parts = line.split(' ');
    let (method, target) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => (m.to_string(), t.to_string()),
        _ => return Err(bad(format!("bad request line: {line}"))),
    };
    let mut content_length = 0u64;
    for i in 0.. {
        let h = read_line(r)?;
        if h.is_empty() {
            break;
        }
        if i >= MAX_HEADERS {
            return Err(bad("too many headers"));
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().map_err(|_| bad("bad Content-Length"))?;
            } else if k.trim().eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked bodies are not supported: send Content-Length"));
            }
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let query = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "1"));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect();
    Ok(Request {
        method,
        segments,
        query,
        content_length,
    })
}

/// Reads a body of at most `limit` bytes.
pub fn read_body<R: Read>(r: &mut R, req: &Request, limit: u64) -> std::io::Result<Vec<u8>> {
    if req.content_length > limit {
        return Err(bad(format!(
            "body of {} bytes is over the limit of {limit}",
            req.content_length
        )));
    }
    let mut body = Vec::with_capacity(req.content_length as usize);
    r.take(req.content_length).read_to_end(&mut body)?;
    if (body.len() as u64) < req.content_length {
        return Err(bad("body shorter than Content-Length"));
    }
    Ok(body)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Error",
    }
}

/// Writes a response and closes the exchange.
pub fn write_response<W: Write>(w: &mut W, resp: &Response) -> std::io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    )?;
    w.write_all(&resp.body)?;
    w.flush()
}

/// Writes a response whose body is a file (an image archive), streamed rather than held in memory.
pub fn write_file_response<W: Write>(
    w: &mut W,
    status: u16,
    content_type: &str,
    file: &mut std::fs::File,
) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    write!(
        w,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        reason(status)
    )?;
    std::io::copy(file, w)?;
    w.flush()
}

/// A request body for `call`.
#[derive(Debug)]
pub enum Body<'a> {
    /// No body.
    None,
    /// A JSON document.
    Json(&'a Value),
    /// A file streamed as the body.
    File(&'a Path),
}

/// Client side: sends one request over the socket and returns (status, body).
pub fn call(socket: &Path, method: &str, path: &str, body: Body<'_>) -> std::io::Result<(u16, Vec<u8>)> {
    let (status, content_length, mut r) = send(socket, method, path, body)?;
    let mut out = Vec::new();
    match content_length {
        Some(n) => r.take(n).read_to_end(&mut out)?,
        None => r.read_to_end(&mut out)?,
    };
    Ok((status, out))
}

/// Client side: sends one request and streams a successful answer's body into `sink` (an image archive);
/// returns the status and, for an error status, the body.
pub fn call_into(
    socket: &Path,
    method: &str,
    path: &str,
    sink: &mut dyn Write,
) -> std::io::Result<(u16, Vec<u8>)> {
    let (status, content_length, mut r) = send(socket, method, path, Body::None)?;
    let mut out = Vec::new();
    if status >= 400 {
        r.read_to_end(&mut out)?;
        return Ok((status, out));
    }
    let n = std::io::copy(&mut r, sink)?;
    if content_length.is_some_and(|want| n < want) {
        return Err(bad(format!("corrald's answer ended after {n} bytes")));
    }
    sink.flush()?;
    Ok((status, out))
}

/// Sends a request; returns the status, the answer's `Content-Length` and the reader at the body.
fn send(
    socket: &Path,
    method: &str,
    path: &str,
    body: Body<'_>,
) -> std::io::Result<(u16, Option<u64>, std::io::Take<BufReader<UnixStream>>)> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot reach corrald at {}: {e}", socket.display()),
        )
    })?;
    let (bytes, file, len) = match body {
        Body::None => (Vec::new(), None, 0),
        Body::Json(v) => {
            let b = v.to_string().into_bytes();
            let n = b.len() as u64;
            (b, None, n)
        }
        Body::File(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            let n = f.metadata()?.len();
            (Vec::new(), Some(f), n)
        }
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: corrald\r\nContent-Length: {len}\r\nConnection: close\r\n"
    )?;
    if !bytes.is_empty() {
        write!(s, "Content-Type: application/json\r\n")?;
    }
    write!(s, "\r\n")?;
    s.write_all(&bytes)?;
    if let Some(mut f) = file {
        std::io::copy(&mut f, &mut s)?;
    }
    s.flush()?;
    let mut r = BufReader::new(s);
    let status_line = read_line(&mut r)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(format!("bad status line from corrald: {status_line}")))?;
    let mut content_length = None;
    loop {
        let h = read_line(&mut r)?;
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse::<u64>().ok();
            }
        }
    }
    Ok((status, content_length, r.take(content_length.unwrap_or(u64::MAX))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_head_path_and_query() {
        let raw = b"POST /containers/a%2Fb/stop?t=5&all HTTP/1.1\r\nContent-Length: 3\r\nHost: x\r\n\r\nabc";
        let mut r = BufReader::new(&raw[..]);
        let req = read_request(&mut r).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.segments, vec!["containers", "a/b", "stop"]);
        assert_eq!(req.query.get("t").map(String::as_str), Some("5"));
        assert!(req.flag("all"));
        assert_eq!(read_body(&mut r, &req, 10).unwrap(), b"abc");
    }

    #[test]
    fn refuses_bodies_over_the_limit_and_bad_lines() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 30\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let req = read_request(&mut r).unwrap();
        assert!(read_body(&mut r, &req, 10).is_err());
        assert!(read_request(&mut BufReader::new(&b"garbage\r\n\r\n"[..])).is_err());
    }

    #[test]
    fn percent_round_trip() {
        for s in ["busybox:latest", "a b/c%", "é"] {
            assert_eq!(percent_decode(&percent_encode(s), false), s);
        }
        assert_eq!(percent_decode("%zz", false), "%zz");
    }
}
