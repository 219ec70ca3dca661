//! A small CRI client, as the kubelet talks to containerd: unary gRPC calls of `runtime.v1.RuntimeService`
//! over HTTP/2 (h2) on containerd's unix socket, with the few protobuf messages the test needs encoded and
//! decoded by hand (field numbers from the CRI API's `api.proto`).

use bytes::Bytes;
use std::path::Path;
use std::time::Duration;

/// A protobuf message being encoded: fields appended in order.
#[derive(Default, Clone)]
pub struct Msg(Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    pub fn new() -> Self {
        Msg(Vec::new())
    }
    fn key(&mut self, field: u32, wire: u8) {
        varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
    }
    /// A length-delimited field (string, bytes, embedded message).
    pub fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.key(field, 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    pub fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
    /// A varint field (int32/int64/uint32/bool/enum with a non-negative value).
    pub fn int(mut self, field: u32, v: u64) -> Self {
        self.key(field, 0);
        varint(&mut self.0, v);
        self
    }
    /// One `map<string, string>` entry.
    pub fn map_entry(self, field: u32, k: &str, v: &str) -> Self {
        self.msg(field, Msg::new().str(1, k).str(2, v))
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A decoded protobuf message: its fields in wire order.
#[derive(Debug, Clone, Default)]
pub struct Decoded(Vec<(u32, Field)>);

#[derive(Debug, Clone)]
pub enum Field {
    Varint(u64),
    Bytes(Vec<u8>),
    Fixed(u64),
}

fn read_varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

impl Decoded {
    pub fn parse(b: &[u8]) -> Result<Self, String> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < b.len() {
            let key = read_varint(b, &mut pos)?;
            let field = (key >> 3) as u32;
            let f = match key & 7 {
                0 => Field::Varint(read_varint(b, &mut pos)?),
                1 => {
                    let s = b.get(pos..pos + 8).ok_or("truncated fixed64")?;
                    pos += 8;
                    Field::Fixed(u64::from_le_bytes(s.try_into().map_err(|_| "fixed64")?))
                }
                2 => {
                    let n = read_varint(b, &mut pos)? as usize;
                    let s = b.get(pos..pos + n).ok_or("truncated bytes")?;
                    pos += n;
                    Field::Bytes(s.to_vec())
                }
                5 => {
                    let s = b.get(pos..pos + 4).ok_or("truncated fixed32")?;
                    pos += 4;
                    Field::Fixed(u64::from(u32::from_le_bytes(
                        s.try_into().map_err(|_| "fixed32")?,
                    )))
                }
                w => return Err(format!("unsupported wire type {w}")),
            };
            out.push((field, f));
        }
        Ok(Decoded(out))
    }
    /// Every length-delimited value of `field`.
    pub fn all_bytes(&self, field: u32) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(n, _)| *n == field)
            .filter_map(|(_, f)| match f {
                Field::Bytes(b) => Some(b.as_slice()),
                _ => None,
            })
            .collect()
    }
    /// The last string value of `field` ("" when absent, as proto3).
    pub fn str(&self, field: u32) -> String {
        self.all_bytes(field)
            .last()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }
    /// The embedded message in `field` (empty when absent).
    pub fn msg(&self, field: u32) -> Decoded {
        self.all_bytes(field)
            .last()
            .and_then(|b| Decoded::parse(b).ok())
            .unwrap_or_default()
    }
    /// The varint value of `field` (0 when absent).
    pub fn int(&self, field: u32) -> u64 {
        self.0
            .iter()
            .rev()
            .find_map(|(n, f)| match f {
                Field::Varint(v) if *n == field => Some(*v),
                _ => None,
            })
            .unwrap_or(0)
    }
    /// A `map<string, string>` field as pairs.
    pub fn map(&self, field: u32) -> Vec<(String, String)> {
        self.all_bytes(field)
            .into_iter()
            .filter_map(|b| Decoded::parse(b).ok())
            .map(|e| (e.str(1), e.str(2)))
            .collect()
    }
}

/// A connection to containerd's CRI service.
pub struct Cri {
    rt: tokio::runtime::Runtime,
    send: h2::client::SendRequest<Bytes>,
}

impl Cri {
    /// Connects over HTTP/2 (prior knowledge, as gRPC does) to the unix socket.
    pub fn connect(socket: &Path) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let send = rt.block_on(async {
            let io = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|e| format!("connect {}: {e}", socket.display()))?;
            let (send, conn) = h2::client::handshake(io)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, String>(send)
        })?;
        Ok(Cri { rt, send })
    }

    /// One unary call of `runtime.v1.RuntimeService/<method>`; the response message, or the gRPC error
    /// (`<code>: <message>`).
    pub fn call(&mut self, method: &str, req: Msg) -> Result<Decoded, String> {
        let body = req.into_bytes();
        let mut framed = Vec::with_capacity(body.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.extend_from_slice(&body);
        let send = self.send.clone();
        let fut = async move {
            let mut send = send.ready().await.map_err(|e| e.to_string())?;
            let request = http::Request::post(format!("http://localhost/runtime.v1.RuntimeService/{method}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .map_err(|e| e.to_string())?;
            let (response, mut stream) = send.send_request(request, false).map_err(|e| e.to_string())?;
            stream
                .send_data(Bytes::from(framed), true)
                .map_err(|e| e.to_string())?;
            let response = response.await.map_err(|e| e.to_string())?;
            let (head, mut recv) = response.into_parts();
            if head.status != 200 {
                return Err(format!("HTTP status {}", head.status));
            }
            let mut data = Vec::new();
            while let Some(chunk) = recv.data().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                let _ = recv.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            let trailers = recv.trailers().await.map_err(|e| e.to_string())?;
            // A trailers-only response carries grpc-status in the headers.
            let meta = trailers.unwrap_or(head.headers);
            let status = meta
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("0")
                .to_string();
            if status != "0" {
                let msg = meta
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                return Err(format!("gRPC status {status}: {}", percent_decode(&msg)));
            }
            if data.len() < 5 {
                return Ok(Decoded::default());
            }
            let n = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
            let msg = data.get(5..5 + n).ok_or("truncated gRPC message")?;
            Decoded::parse(msg)
        };
        self.rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(60), fut)
                    .await
                    .map_err(|_| format!("{method}: no answer in 60 s"))?
            })
            .map_err(|e| format!("{method}: {e}"))
    }
}

/// grpc-message is percent-encoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `PodSandboxConfig` as the kubelet builds it for a pod: metadata, hostname, port mappings, labels.
/// `cgroup_parent` is where the pod's cgroups go (cgroupfs driver), as the kubelet's `kubepods/...`.
pub fn sandbox_config(
    name: &str,
    uid: &str,
    namespace: &str,
    ports: &[(u16, u16)],
    cgroup_parent: &str,
) -> Msg {
    let mut m = Msg::new()
        .msg(1, Msg::new().str(1, name).str(2, uid).str(3, namespace).int(4, 0))
        .str(2, name);
    for (container, host) in ports {
        // protocol TCP = 0 (proto3 default), container_port, host_port
        m = m.msg(
            5,
            Msg::new()
                .int(1, 0)
                .int(2, u64::from(*container))
                .int(3, u64::from(*host)),
        );
    }
    m.map_entry(6, "io.kubernetes.pod.name", name)
        .map_entry(6, "io.kubernetes.pod.namespace", namespace)
        .map_entry(6, "io.kubernetes.pod.uid", uid)
        .msg(8, Msg::new().str(1, cgroup_parent))
}

/// `ContainerConfig`: metadata, image, command.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> Msg {
    let mut m = Msg::new()
        .msg(1, Msg::new().str(1, name).int(2, 0))
        .msg(2, Msg::new().str(1, image));
    for c in command {
        m = m.str(3, c);
    }
    m
}
