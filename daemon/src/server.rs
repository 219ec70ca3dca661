//! corrald's control socket: a unix socket (mode 0660, group `corral` when that group exists) whose peers must
//! be root or in the `corral` group (checked with SO_PEERCRED), serving the HTTP/JSON API of docs/launcher.md,
//! one thread per connection.

use crate::container::CreateRequest;
use crate::engine::{ApiError, ApiResult, Engine};
use crate::http::{read_body, read_request, write_response, Request, Response};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use serde_json::{json, Value};
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Largest JSON body accepted.
const JSON_LIMIT: u64 = 1 << 20;
/// Largest image tarball accepted.
const IMPORT_LIMIT: u64 = 8 << 30;

/// Binds the socket (replacing a stale one), sets its mode and group.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    if UnixStream::connect(path).is_ok() {
        return Err(format!("{}: another corrald is listening there", path.display()));
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(Some(g)) = nix::unistd::Group::from_name("corral") {
        std::os::unix::fs::chown(path, Some(0), Some(g.gid.as_raw()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(l)
}

/// Whether the peer may use the API: root, or a member of the `corral` group.
fn allowed(s: &UnixStream) -> bool {
    let Ok(cred) = getsockopt(s, PeerCredentials) else {
        return false;
    };
    if cred.uid() == 0 {
        return true;
    }
    let Ok(Some(g)) = nix::unistd::Group::from_name("corral") else {
        return false;
    };
    if cred.gid() == g.gid.as_raw() {
        return true;
    }
    // Supplementary groups of the peer process.
    std::fs::read_to_string(format!("/proc/{}/status", cred.pid()))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Groups:")).map(str::to_string))
        .is_some_and(|l| {
            l.split_whitespace()
                .skip(1)
                .any(|x| x.parse() == Ok(g.gid.as_raw()))
        })
}

/// Serves forever.
pub fn serve(listener: UnixListener, engine: Arc<Engine>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || handle(stream, &engine));
    }
}

fn handle(stream: UnixStream, engine: &Arc<Engine>) {
    let Ok(mut w) = stream.try_clone() else { return };
    if !allowed(&stream) {
        let _ = write_response(
            &mut w,
            &Response::error(403, "permission denied: root or the corral group only"),
        );
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(300)));
    let mut r = BufReader::new(stream);
    let resp = match read_request(&mut r) {
        Ok(req) if req.method == "GET" && req.segments == ["images", "get"] => match image_save(engine, &req)
        {
            // The archive is streamed from a temporary file, not held in memory.
            Ok(mut archive) => {
                let _ = crate::http::write_file_response(&mut w, 200, "application/x-tar", &mut archive);
                return;
            }
            Err(e) => Response::error(e.status, &e.message),
        },
        Ok(req) => route(&req, &mut r, engine),
        Err(e) => Response::error(400, &e.to_string()),
    };
    let _ = write_response(&mut w, &resp);
}

fn reply(status: u16, res: ApiResult) -> Response {
    match res {
        Ok(Value::Null) => Response {
            status: 204,
            content_type: "application/json",
            body: vec![],
        },
        Ok(v) => Response::json(status, &v),
        Err(e) => Response::error(e.status, &e.message),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(
    r: &mut BufReader<UnixStream>,
    req: &Request,
) -> Result<T, ApiError> {
    let body = read_body(r, req, JSON_LIMIT).map_err(|e| ApiError::bad(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("request body: {e}")))
}

fn route(req: &Request, r: &mut BufReader<UnixStream>, engine: &Arc<Engine>) -> Response {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let q = |k: &str| req.query.get(k).map(String::as_str);
    match (req.method.as_str(), seg.as_slice()) {
        ("GET", ["_ping"]) => Response::text(200, b"OK".to_vec()),
        ("POST", ["containers", "create"]) => {
            let res = json_body::<CreateRequest>(r, req).and_then(|mut c| {
                if let Some(n) = q("name") {
                    c.name = n.to_string();
                }
                engine.create(c)
            });
            reply(201, res)
        }
        ("GET", ["containers", "json"]) => reply(200, engine.list(req.flag("all"))),
        ("GET", ["containers", id, "json"]) => reply(200, engine.inspect(id)),
        ("POST", ["containers", id, "start"]) => reply(204, engine.start(id)),
        ("POST", ["containers", id, "stop"]) => {
            let t = q("t").and_then(|t| t.parse().ok()).unwrap_or(10);
            reply(204, engine.stop(id, Duration::from_secs(t)))
        }
        ("POST", ["containers", id, "kill"]) => reply(204, engine.kill(id, q("signal").unwrap_or("KILL"))),
        ("POST", ["containers", id, "wait"]) => reply(200, engine.wait(id)),
        ("POST", ["containers", id, "exec"]) => {
            let res = json_body::<crate::container::ExecRequest>(r, req).and_then(|x| engine.exec(id, &x));
            reply(200, res)
        }
        ("POST", ["volumes", "create"]) => {
            let res = json_body::<Value>(r, req).and_then(|v| volume_create(engine, &v));
            reply(201, res)
        }
        ("GET", ["volumes"]) => reply(200, volume_list(engine)),
        ("GET", ["volumes", name]) => reply(200, volume_inspect(engine, name)),
        ("DELETE", ["volumes", name]) => reply(204, volume_remove(engine, name)),
        ("DELETE", ["containers", id]) => reply(204, engine.remove(id, req.flag("force"))),
        ("GET", ["containers", id, "logs"]) => {
            let offset = q("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            match engine.logs(id, offset) {
                Ok(b) => Response::text(200, b),
                Err(e) => Response::error(e.status, &e.message),
            }
        }
        ("POST", ["networks", "create"]) => {
            let res = json_body::<Value>(r, req).and_then(|v| network_create(engine, &v));
            reply(201, res)
        }
        ("GET", ["networks"]) => reply(200, network_list(engine)),
        ("GET", ["networks", name]) => reply(200, network_inspect(engine, name)),
        ("DELETE", ["networks", name]) => reply(204, network_remove(engine, name)),
        ("POST", ["images", "import"]) => reply(200, image_import(engine, req, r)),
        ("POST", ["images", "load"]) => reply(200, image_load(engine, req, r)),
        ("GET", ["images", "json"]) => reply(
            200,
            engine.images.list().map(Value::Array).map_err(ApiError::internal),
        ),
        ("DELETE", ["images", reference]) => reply(200, image_remove(engine, reference)),
        ("GET", ["nat"]) => {
            let names = engine.names();
            match crate::nat_cmd::list_in(
                &engine.state,
                req.flag("json"),
                q("network"),
                q("container"),
                Some(&names),
            ) {
                Ok(text) => Response::text(200, text.into_bytes()),
                Err(e) => Response::error(500, &e),
            }
        }
        _ => Response::error(
            404,
            &format!("no such endpoint: {} /{}", req.method, req.segments.join("/")),
        ),
    }
}

fn network_create(engine: &Engine, v: &Value) -> ApiResult {
    let name = v["Name"]
        .as_str()
        .ok_or_else(|| ApiError::bad("Name is required"))?;
    let subnet = v["Subnet"].as_str().filter(|s| !s.is_empty());
    let _g = engine
        .lock
        .lock()
        .map_err(|_| ApiError::internal("lock poisoned"))?;
    let list = engine.networks.create(name, subnet).map_err(|e| {
        if e.contains("already exists") {
            ApiError::conflict(e)
        } else {
            ApiError::bad(e)
        }
    })?;
    Ok(json!({ "Name": name, "Config": list }))
}

fn network_list(engine: &Engine) -> ApiResult {
    let nets = engine.networks.list().map_err(ApiError::internal)?;
    let all = engine.all();
    Ok(Value::Array(
        nets.iter()
            .map(|(name, v)| {
                json!({
                    "Name": name,
                    "Bridge": v["plugins"][0]["bridge"],
                    "Subnet": v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
                    "Containers": all.iter().filter(|c| &c.network == name).map(|c| c.name.clone()).collect::<Vec<_>>(),
                })
            })
            .collect(),
    ))
}

/// `GET /networks/{name}`: the conflist, subnet, gateway and bridge, and the containers on it with their
/// state and address (`null` while not attached).
fn network_inspect(engine: &Engine, name: &str) -> ApiResult {
    let conflist = engine
        .networks
        .list()
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::not_found(format!("no such network: {name}")))?;
    let containers: Vec<Value> = engine
        .all()
        .iter()
        .filter(|c| c.network == name)
        .map(|c| {
            json!({
                "Name": c.name, "Id": c.id, "State": c.status(&engine.paths(&c.id)).word(),
                "IPAddress": c.ip, "Ports": c.ports,
            })
        })
        .collect();
    Ok(json!({
        "Name": name,
        "Bridge": conflist["plugins"][0]["bridge"],
        "Subnet": crate::network::subnet_of(&conflist).map(|s| s.to_string()),
        "Gateway": crate::network::gateway_of(&conflist).map(|g| g.to_string()),
        "Containers": containers,
        "Config": conflist,
    }))
}

fn network_remove(engine: &Engine, name: &str) -> ApiResult {
    let _g = engine
        .lock
        .lock()
        .map_err(|_| ApiError::internal("lock poisoned"))?;
    let users: Vec<String> = engine
        .all()
        .into_iter()
        .filter(|c| c.network == name)
        .map(|c| c.name)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "network {name} is in use by containers: {}",
            users.join(", ")
        )));
    }
    engine.networks.remove(name).map_err(ApiError::not_found)?;
    Ok(Value::Null)
}

/// Receives an uploaded tarball into a temporary file in the state dir and hands it to `with` under the
/// engine lock; the file is removed afterwards.
fn with_upload(
    engine: &Engine,
    req: &Request,
    r: &mut BufReader<UnixStream>,
    with: impl FnOnce(&Path) -> ApiResult,
) -> ApiResult {
    if req.content_length > IMPORT_LIMIT {
        return Err(ApiError::bad("tarball too large"));
    }
    let tmp = engine.state.join(format!(
        ".upload-{}",
        crate::file::random_hex(8).map_err(|e| ApiError::internal(e.to_string()))?
    ));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| ApiError::internal(e.to_string()))?;
        let n = std::io::copy(&mut std::io::Read::take(r, req.content_length), &mut f)
            .map_err(|e| ApiError::bad(format!("upload: {e}")))?;
        if n < req.content_length {
            return Err(ApiError::bad("upload shorter than Content-Length"));
        }
        let _g = engine
            .lock
            .lock()
            .map_err(|_| ApiError::internal("lock poisoned"))?;
        with(&tmp)
    })();
    let _ = std::fs::remove_file(&tmp);
    res
}

fn image_import(engine: &Engine, req: &Request, r: &mut BufReader<UnixStream>) -> ApiResult {
    let reference = req
        .query
        .get("ref")
        .ok_or_else(|| ApiError::bad("ref (name:tag) is required"))?;
    let normalized = crate::image::normalize(reference).map_err(ApiError::bad)?;
    with_upload(engine, req, r, |tmp| {
        let id = engine.images.import(tmp, reference).map_err(ApiError::bad)?;
        Ok(json!({ "Id": id, "Reference": normalized }))
    })
}

/// `POST /images/load`: an OCI archive or `docker save` tarball → `[{"Id","Names"}]`.
fn image_load(engine: &Engine, req: &Request, r: &mut BufReader<UnixStream>) -> ApiResult {
    if req.content_length == 0 {
        return Err(ApiError::bad("load: empty archive"));
    }
    with_upload(engine, req, r, |tmp| {
        let loaded = engine.images.load(tmp).map_err(ApiError::bad)?;
        Ok(Value::Array(
            loaded
                .into_iter()
                .map(|l| json!({ "Id": l.id, "Names": l.names }))
                .collect(),
        ))
    })
}

/// `GET /images/get?names=a,b`: the archive of those images, written to a temporary file (unlinked at once,
/// so nothing is left behind) under the engine lock, so no `rm` takes a blob away half-way.
fn image_save(engine: &Engine, req: &Request) -> Result<std::fs::File, ApiError> {
    let names: Vec<String> = req
        .query
        .get("names")
        .map(|n| {
            n.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(ApiError::bad(
            "names (image references or ids, comma-separated) is required",
        ));
    }
    let _g = engine
        .lock
        .lock()
        .map_err(|_| ApiError::internal("lock poisoned"))?;
    for n in &names {
        engine.images.resolve(n).map_err(ApiError::not_found)?;
    }
    let tmp = engine.state.join(format!(
        ".save-{}",
        crate::file::random_hex(8).map_err(|e| ApiError::internal(e.to_string()))?
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| ApiError::internal(format!("{}: {e}", tmp.display())));
    let _ = std::fs::remove_file(&tmp);
    let mut file = file?;
    engine
        .images
        .save(&names, &mut file)
        .map_err(ApiError::internal)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))
        .map_err(|e| ApiError::internal(format!("save: {e}")))?;
    Ok(file)
}

fn image_remove(engine: &Engine, reference: &str) -> ApiResult {
    let _g = engine
        .lock
        .lock()
        .map_err(|_| ApiError::internal("lock poisoned"))?;
    let image = engine.images.resolve(reference).map_err(ApiError::not_found)?;
    let users: Vec<String> = engine
        .all()
        .into_iter()
        .filter(|c| c.image_id == image.id)
        .map(|c| c.name)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "image {} is used by containers: {}",
            image.reference,
            users.join(", ")
        )));
    }
    let removed = engine.images.remove(reference).map_err(ApiError::internal)?;
    Ok(json!({ "Untagged": removed }))
}

fn volume_json(engine: &Engine, v: &crate::volume::Volume) -> Value {
    json!({
        "Name": v.name, "Mountpoint": v.mountpoint, "CreatedAt": v.created_at, "Anonymous": v.anonymous,
        "UsedBy": engine.volume_users(&v.name),
    })
}

fn volume_create(engine: &Engine, v: &Value) -> ApiResult {
    let name = v["Name"]
        .as_str()
        .ok_or_else(|| ApiError::bad("Name is required"))?;
    let _g = engine
        .lock
        .lock()
        .map_err(|_| ApiError::internal("lock poisoned"))?;
    let vol = engine.volumes.create(name, false).map_err(ApiError::bad)?;
    Ok(volume_json(engine, &vol))
}

fn volume_list(engine: &Engine) -> ApiResult {
    Ok(Value::Array(
        engine
            .volumes
            .list()
            .iter()
            .map(|v| volume_json(engine, v))
            .collect(),
    ))
}

fn volume_inspect(engine: &Engine, name: &str) -> ApiResult {
    let v = engine
        .volumes
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("no such volume: {name}")))?;
    Ok(volume_json(engine, &v))
}

fn volume_remove(engine: &Engine, name: &str) -> ApiResult {
    let _g = engine
        .lock
        .lock()
        .map_err(|_| ApiError::internal("lock poisoned"))?;
    if engine.volumes.get(name).is_none() {
        return Err(ApiError::not_found(format!("no such volume: {name}")));
    }
    let users = engine.volume_users(name);
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "volume {name} is in use by containers: {}",
            users.join(", ")
        )));
    }
    engine.volumes.remove(name).map_err(ApiError::internal)?;
    Ok(Value::Null)
}
