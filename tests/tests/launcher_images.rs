//! `corral load` / `corral save` and image configs end to end: archives built by hand in each test with the
//! `tar` CLI (a `docker save` tarball, an OCI image layout archive with a nested multi-platform index), a
//! two-layer image whose upper layer deletes a file with a `.wh.` whiteout and makes a directory opaque; the
//! files a container sees, the image's Cmd/Env/WorkingDir, a save → rm → load round trip, corrupt and truncated
//! archives refused with nothing stored, and an image VOLUME as an anonymous volume.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::launcher::Launcher;
use corral_tests::sh;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// sha256 of a file, as `sha256:<hex>`.
fn sha256(p: &Path) -> String {
    let out = sh("sha256sum", &[p.to_str().unwrap()]);
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn tar_dir(dir: &Path, out: &Path, gzip: bool) {
    let flags = if gzip { "-czf" } else { "-cf" };
    sh(
        "tar",
        &[
            "--sort=name",
            "--owner=0",
            "--group=0",
            "-C",
            dir.to_str().unwrap(),
            flags,
            out.to_str().unwrap(),
            ".",
        ],
    );
}

/// The two layers of the test image, as plain tars: (path, diff id) each.
/// Layer 1: busybox with its applets, `/etc/gone.txt`, `/opq/lower.txt`, `/keep/lower.txt`, `/vol/sub/seed.txt`.
/// Layer 2: `/added.txt`, a whiteout of `/etc/gone.txt`, `/opq` made opaque with `/opq/upper.txt` in it.
/// Built once per test: a rebuilt tar would carry new mtimes, hence another diff id.
fn layers(l: &Launcher) -> Vec<(PathBuf, String)> {
    let one = l.dir.join("layer1");
    let two = l.dir.join("layer2");
    if one.with_extension("tar").exists() {
        return [one, two]
            .iter()
            .map(|d| (d.with_extension("tar"), sha256(&d.with_extension("tar"))))
            .collect();
    }
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "opq", "keep"] {
        std::fs::create_dir_all(one.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", one.join("bin/busybox")).unwrap();
    for applet in sh("/bin/busybox", &["--list"]).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", one.join("bin").join(applet));
        }
    }
    std::fs::write(one.join("etc/gone.txt"), "deleted by layer 2\n").unwrap();
    std::fs::write(one.join("opq/lower.txt"), "hidden by the opaque dir\n").unwrap();
    std::fs::write(one.join("keep/lower.txt"), "still here\n").unwrap();
    std::fs::create_dir_all(one.join("vol/sub")).unwrap();
    std::fs::write(one.join("vol/sub/seed.txt"), "seeded from the image\n").unwrap();
    for d in ["etc", "opq"] {
        std::fs::create_dir_all(two.join(d)).unwrap();
    }
    std::fs::write(two.join("added.txt"), "from layer two\n").unwrap();
    std::fs::write(two.join("etc/.wh.gone.txt"), "").unwrap();
    std::fs::write(two.join("opq/.wh..wh..opq"), "").unwrap();
    std::fs::write(two.join("opq/upper.txt"), "from the opaque dir\n").unwrap();
    [one, two]
        .iter()
        .map(|dir| {
            let tar = dir.with_extension("tar");
            tar_dir(dir, &tar, false);
            let diff_id = sha256(&tar);
            (tar, diff_id)
        })
        .collect()
}

/// The image config: Cmd, Env, WorkingDir, a VOLUME, and the layers' diff ids.
fn config(diff_ids: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Env": ["PATH=/bin", "GREETING=hello-from-config"],
            "Cmd": ["sh", "-c", "echo $GREETING; pwd"],
            "WorkingDir": "/keep",
            "Volumes": {"/vol": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// An old-style `docker save` tarball (`<id>/layer.tar`, `<config-hex>.json`, `manifest.json`) naming `tag`.
/// `diff_ids_override` replaces the config's diff ids.
fn docker_archive(l: &Launcher, tag: &str, diff_ids_override: Option<Vec<String>>) -> PathBuf {
    let layers = layers(l);
    let dir = l.dir.join(format!("docker-{}", corral_tests::unique("d")));
    let diff_ids: Vec<String> =
        diff_ids_override.unwrap_or_else(|| layers.iter().map(|(_, d)| d.clone()).collect());
    let cfg = config(&diff_ids.iter().map(String::as_str).collect::<Vec<_>>());
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("config.tmp");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let cfg_name = format!("{}.json", hex(&sha256(&cfg_path)));
    std::fs::rename(&cfg_path, dir.join(&cfg_name)).unwrap();
    let mut layer_paths = Vec::new();
    for (i, (tar, _)) in layers.iter().enumerate() {
        let id = format!("layer{i}");
        std::fs::create_dir_all(dir.join(&id)).unwrap();
        std::fs::copy(tar, dir.join(&id).join("layer.tar")).unwrap();
        layer_paths.push(format!("{id}/layer.tar"));
    }
    let manifest = json!([{"Config": cfg_name, "RepoTags": [tag], "Layers": layer_paths}]);
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let out = dir.with_extension("tar");
    tar_dir(&dir, &out, false);
    out
}

/// Writes a blob into an OCI layout dir; returns its descriptor.
fn put_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let tmp = dir.join("blob.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    let digest = sha256(&tmp);
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::rename(&tmp, dir.join("blobs/sha256").join(hex(&digest))).unwrap();
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}

/// An OCI image layout archive, gzip-compressed as a whole: layer 1 a plain tar, layer 2 gzip; `index.json` →
/// a multi-platform index (an arm64 entry whose blobs are absent, the amd64 manifest), named by a bare tag and
/// `io.containerd.image.name` as docker 25 writes it. Returns the archive and the layout dir.
fn oci_archive(l: &Launcher, name: &str) -> (PathBuf, PathBuf) {
    let layers = layers(l);
    let dir = l.dir.join(format!("oci-{}", corral_tests::unique("o")));
    std::fs::create_dir_all(&dir).unwrap();
    let l1 = put_blob(
        &dir,
        "application/vnd.oci.image.layer.v1.tar",
        &std::fs::read(&layers[0].0).unwrap(),
    );
    let gz = layers[1].0.with_extension("tar.gz");
    sh(
        "sh",
        &[
            "-c",
            &format!("gzip -c {} > {}", layers[1].0.display(), gz.display()),
        ],
    );
    let l2 = put_blob(
        &dir,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &std::fs::read(&gz).unwrap(),
    );
    let cfg = put_blob(
        &dir,
        "application/vnd.oci.image.config.v1+json",
        &config(&[&layers[0].1, &layers[1].1]),
    );
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg, "layers": [l1, l2]});
    let mut m = put_blob(
        &dir,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    m["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let arm = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", "0".repeat(64)), "size": 100,
        "platform": {"os": "linux", "architecture": "arm64"}});
    let inner = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [arm, m]});
    let mut inner_desc = put_blob(
        &dir,
        "application/vnd.oci.image.index.v1+json",
        inner.to_string().as_bytes(),
    );
    inner_desc["annotations"] = json!({
        "org.opencontainers.image.ref.name": "oci",
        "io.containerd.image.name": format!("docker.io/library/{name}"),
    });
    let index = json!({"schemaVersion": 2, "manifests": [inner_desc]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let out = dir.with_extension("tar.gz");
    tar_dir(&dir, &out, true);
    (out, dir)
}

/// Runs the image and checks what the container sees: the upper layer's file, the whiteout and the opaque
/// dir hiding lower content, a lower-only dir intact, and the config's Cmd, Env and WorkingDir.
fn assert_runs_as_built(l: &Launcher, image: &str) {
    let out = l.ok(&["run", "--rm", image]);
    assert_eq!(out, "hello-from-config\n/keep\n", "{image}: Cmd/Env/WorkingDir");
    let script = "cat /added.txt; ls /etc; echo opq: $(ls /opq); cat /keep/lower.txt; \
                  test -e /etc/gone.txt && echo gone-visible; test -e /opq/lower.txt && echo lower-visible; true";
    let out = l.ok(&["run", "--rm", image, "sh", "-c", script]);
    assert!(out.contains("from layer two"), "{out}");
    assert!(
        out.contains("opq: upper.txt\n"),
        "opaque dir must hide layer 1's content: {out}"
    );
    assert!(out.contains("still here"), "{out}");
    assert!(
        !out.contains("gone-visible") && !out.contains("lower-visible"),
        "{out}"
    );
    assert!(!out.contains(".wh."), "whiteouts must not show: {out}");
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The store's blobs, layer dirs and top-level entries (temporary files would show there).
fn store_state(l: &Launcher) -> (Vec<String>, Vec<String>, Vec<String>, String) {
    let s = l.state();
    (
        listing(&s.join("images/blobs/sha256")),
        listing(&s.join("layers")),
        listing(&s.join("images")),
        l.ok(&["image", "ls"]),
    )
}

#[test]
fn loads_a_docker_save_tarball_with_whiteouts_and_the_image_config() {
    let l = Launcher::new();
    let archive = docker_archive(&l, "multi:docker", None);
    let out = l.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out, "Loaded image: multi:docker\n");
    assert!(l.ok(&["image", "ls"]).contains("multi:docker"));
    assert_runs_as_built(&l, "multi:docker");
    // Two layers, each unpacked once; the blobs are gzip (recompressed from the plain tars).
    assert_eq!(listing(&l.state().join("layers")).len(), 2);
}

#[test]
fn loads_an_oci_archive_from_stdin_through_a_nested_index_and_shares_layers() {
    let l = Launcher::new();
    let (archive, _) = oci_archive(&l, "multi:oci");
    // `corral load` without -i reads stdin (`image load` is the same verb).
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} -H {} image load < {}",
            l.bin.join("corral").display(),
            l.sock().display(),
            archive.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{}", l.daemon_log());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Loaded image: multi:oci\n");
    assert_runs_as_built(&l, "multi:oci");
    // The same layers from a docker tarball reuse the unpacked dirs.
    let docker = docker_archive(&l, "multi:docker", None);
    l.ok(&["load", "-i", docker.to_str().unwrap()]);
    assert_eq!(listing(&l.state().join("layers")).len(), 2);
    let ls = l.ok(&["image", "ls"]);
    assert!(ls.contains("multi:oci") && ls.contains("multi:docker"), "{ls}");

    // An image without any name is stored by id: listed without a reference, run and removed by id. (The
    // same image under a name would just be that named image, so that one goes first.)
    l.ok(&["image", "rm", "multi:oci"]);
    let (_, dir) = oci_archive(&l, "unused:name");
    let mut index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    let nameless = l.dir.join("nameless.tar");
    tar_dir(&dir, &nameless, false);
    let out = l.ok(&["load", "-i", nameless.to_str().unwrap()]);
    let id = out
        .strip_prefix("Loaded image ID: sha256:")
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .to_string();
    let row = l
        .ok(&["image", "ls"])
        .lines()
        .find(|r| r.contains(&id[..12]))
        .map(str::to_string)
        .unwrap();
    assert!(row.starts_with('-'), "{row}");
    assert_runs_as_built(&l, &id[..12]);
    l.ok(&["image", "rm", &id[..12]]);
    assert!(!l.ok(&["image", "ls"]).contains(&id[..12]));
}

#[test]
fn save_rm_load_round_trip_keeps_id_name_and_layers() {
    let l = Launcher::new();
    let archive = docker_archive(&l, "multi:docker", None);
    l.ok(&["load", "-i", archive.to_str().unwrap()]);
    let id_of = |l: &Launcher| {
        let ls = l.ok(&["image", "ls"]);
        ls.lines()
            .find(|r| r.starts_with("multi:docker"))
            .map(|r| r.split_whitespace().nth(1).unwrap().to_string())
            .unwrap_or_else(|| panic!("multi:docker not listed: {ls}"))
    };
    let id = id_of(&l);
    let saved = l.dir.join("saved.tar");
    assert_eq!(l.ok(&["save", "-o", saved.to_str().unwrap(), "multi:docker"]), "");
    // Both layouts in one archive, with the name in each.
    let members = sh("tar", &["-tf", saved.to_str().unwrap()]);
    for m in ["oci-layout", "index.json", "manifest.json", "blobs/sha256/"] {
        assert!(members.contains(m), "{m} missing: {members}");
    }
    let manifest: Value =
        serde_json::from_str(&sh("tar", &["-xOf", saved.to_str().unwrap(), "manifest.json"])).unwrap();
    assert_eq!(manifest[0]["RepoTags"], json!(["multi:docker"]));
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 2);
    // save to stdout (`image save`) gives the same archive.
    let piped = l.dir.join("piped.tar");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} -H {} image save multi:docker > {}",
            l.bin.join("corral").display(),
            l.sock().display(),
            piped.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&piped).unwrap(), std::fs::read(&saved).unwrap());

    l.ok(&["image", "rm", "multi:docker"]);
    assert!(listing(&l.state().join("layers")).is_empty());
    assert_eq!(
        l.ok(&["load", "-i", saved.to_str().unwrap()]),
        "Loaded image: multi:docker\n"
    );
    assert_eq!(id_of(&l), id);
    assert_runs_as_built(&l, "multi:docker");
    l.fails(
        &["save", "-o", saved.to_str().unwrap(), "nope:1"],
        "no such image: nope:1",
    );
}

#[test]
fn corrupt_truncated_and_mismatched_archives_are_refused_and_store_nothing() {
    let l = Launcher::new();
    let good = docker_archive(&l, "keep:me", None);
    l.ok(&["load", "-i", good.to_str().unwrap()]);
    let before = store_state(&l);

    // A layer blob whose content no longer matches its digest (same size, one byte changed).
    let (_, dir) = oci_archive(&l, "bad:digest");
    let blobs = dir.join("blobs/sha256");
    let manifest_hex = {
        let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let inner: Value = serde_json::from_slice(
            &std::fs::read(blobs.join(hex(index["manifests"][0]["digest"].as_str().unwrap()))).unwrap(),
        )
        .unwrap();
        hex(inner["manifests"][1]["digest"].as_str().unwrap()).to_string()
    };
    let manifest: Value = serde_json::from_slice(&std::fs::read(blobs.join(&manifest_hex)).unwrap()).unwrap();
    let layer2 = blobs.join(hex(manifest["layers"][1]["digest"].as_str().unwrap()));
    let mut bytes = std::fs::read(&layer2).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer2, bytes).unwrap();
    let corrupt = l.dir.join("corrupt.tar");
    tar_dir(&dir, &corrupt, false);
    l.fails(&["load", "-i", corrupt.to_str().unwrap()], "is corrupt");

    // A docker tarball cut in half.
    let truncated = l.dir.join("truncated.tar");
    let all = std::fs::read(docker_archive(&l, "bad:truncated", None)).unwrap();
    std::fs::write(&truncated, &all[..all.len() / 2]).unwrap();
    l.fails(&["load", "-i", truncated.to_str().unwrap()], "truncated");

    // A config whose diff ids do not match the layers.
    let wrong = vec![
        format!("sha256:{}", "1".repeat(64)),
        format!("sha256:{}", "2".repeat(64)),
    ];
    let mismatched = docker_archive(&l, "bad:diffid", Some(wrong));
    l.fails(
        &["load", "-i", mismatched.to_str().unwrap()],
        "does not match the image config",
    );

    // Not an archive at all, and a bare OCI tag without a repository.
    let junk = l.dir.join("junk.tar");
    std::fs::write(&junk, b"not a tar").unwrap();
    l.fails(&["load", "-i", junk.to_str().unwrap()], "not a tar archive");
    let (_, dir) = oci_archive(&l, "x:y");
    let mut index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    let bare = l.dir.join("bare.tar");
    tar_dir(&dir, &bare, false);
    l.fails(
        &["load", "-i", bare.to_str().unwrap()],
        "only by the tag \"latest\"",
    );

    assert_eq!(store_state(&l), before, "a refused load must store nothing");
    assert_runs_as_built(&l, "keep:me");
}

#[test]
fn an_image_volume_is_an_anonymous_volume_that_goes_with_the_container() {
    let l = Launcher::new();
    let archive = docker_archive(&l, "multi:docker", None);
    l.ok(&["load", "-i", archive.to_str().unwrap()]);
    l.ok(&["run", "-d", "--name", "v", "multi:docker", "sleep", "30"]);
    let doc = l.inspect("v");
    let mounts = doc["Mounts"].as_array().unwrap();
    let vol = mounts
        .iter()
        .find(|m| m["destination"] == "/vol")
        .unwrap_or_else(|| panic!("no /vol mount: {doc}"));
    assert_eq!(vol["anonymous"], true, "{doc}");
    let name = vol["volume"].as_str().unwrap().to_string();
    assert_eq!(l.volume_dirs(), vec![name.clone()]);
    // It is the volume's data dir that /vol shows, seeded with the image's /vol.
    let data = l.state().join("volumes").join(&name).join("_data");
    assert_eq!(
        std::fs::read_to_string(data.join("sub/seed.txt")).unwrap(),
        "seeded from the image\n"
    );
    l.ok(&["exec", "v", "sh", "-c", "echo in-volume > /vol/f"]);
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "in-volume\n");
    l.ok(&["rm", "-f", "v"]);
    assert!(l.volume_dirs().is_empty(), "{:?}", l.volume_dirs());
    // A new named volume is seeded too; one with content keeps it.
    let out = l.ok(&[
        "run",
        "--rm",
        "-v",
        "named:/vol",
        "multi:docker",
        "sh",
        "-c",
        "cat /vol/sub/seed.txt; rm -r /vol/sub; echo mine > /vol/own",
    ]);
    assert_eq!(out, "seeded from the image\n");
    let out = l.ok(&["run", "--rm", "-v", "named:/vol", "multi:docker", "ls", "/vol"]);
    assert_eq!(out, "own\n");
    l.ok(&["volume", "rm", "named"]);
    // A --tmpfs (or -v) on the VOLUME's path replaces it: no volume is created.
    let out = l.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/vol",
        "multi:docker",
        "sh",
        "-c",
        "grep ' /vol ' /proc/mounts",
    ]);
    assert!(out.contains("tmpfs"), "{out}");
    assert!(l.volume_dirs().is_empty(), "{:?}", l.volume_dirs());
}

/// `podman` with private storage, config and temp dirs under `dir`, in a private mount namespace with tmpfs
/// over /run, /var/lib and /var/tmp (whatever its config says, podman writes its blob-info cache under
/// /var/lib/containers, network state under /run and copies under /var/tmp), and its network config dir (lock
/// files) under `dir` too: nothing of the machine's changes.
fn podman(dir: &Path, args: &[&str]) -> String {
    for d in ["storage", "run", "tmp", "net"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let r = dir.display();
    std::fs::write(
        dir.join("storage.conf"),
        format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{r}/storage\"\nrunroot = \"{r}/run\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("containers.conf"),
        format!(
            "[engine]\nevents_logger = \"none\"\ntmp_dir = \"{r}/tmp\"\nimage_copy_tmp_dir = \"{r}/tmp\"\n\
             [network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = \"{r}/net\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("registries.conf"), "").unwrap();
    // `mount -n`: /run/mount/utab stays untouched (and /run is the first to be covered).
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -n -t tmpfs tmpfs /run && mount -n -t tmpfs tmpfs /var/lib && mount -n -t tmpfs tmpfs /var/tmp && exec podman \"$@\"")
        .arg("podman")
        .args(args)
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"))
        .env("TMPDIR", dir.join("tmp"));
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "podman {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn loads_archives_written_by_podman() {
    if Command::new("podman").arg("--version").output().is_err() {
        eprintln!("podman is not installed: skipped");
        return;
    }
    let l = Launcher::new();
    let pod = l.dir.join("podman");
    let rootfs = layers(&l)[0].0.clone();
    podman(
        &pod,
        &[
            "import",
            "--change",
            "CMD [\"cat\", \"/keep/lower.txt\"]",
            "--change",
            "ENV PATH=/bin",
            rootfs.to_str().unwrap(),
            "localhost/podbb:1",
        ],
    );
    for (format, file) in [("oci-archive", "oci.tar"), ("docker-archive", "docker.tar")] {
        let out = pod.join(file);
        podman(
            &pod,
            &[
                "save",
                "--format",
                format,
                "-o",
                out.to_str().unwrap(),
                "localhost/podbb:1",
            ],
        );
        let loaded = l.ok(&["load", "-i", out.to_str().unwrap()]);
        assert_eq!(loaded, "Loaded image: localhost/podbb:1\n", "{format}");
        assert_eq!(
            l.ok(&["run", "--rm", "localhost/podbb:1"]),
            "still here\n",
            "{format}"
        );
        l.ok(&["image", "rm", "localhost/podbb:1"]);
    }
    // And podman loads what corral saves.
    l.ok(&["load", "-i", pod.join("docker.tar").to_str().unwrap()]);
    let saved = l.dir.join("corral-saved.tar");
    l.ok(&["save", "-o", saved.to_str().unwrap(), "localhost/podbb:1"]);
    podman(&pod, &["rmi", "localhost/podbb:1"]);
    let out = podman(&pod, &["load", "-i", saved.to_str().unwrap()]);
    assert!(out.contains("localhost/podbb:1"), "{out}");
    podman(&pod, &["rmi", "localhost/podbb:1"]);
    // Through each of podman's readers (a local transport: nothing is fetched).
    for (transport, name) in [
        ("oci-archive", "localhost/podbb:1"),
        ("docker-archive", "localhost/podbb:1"),
    ] {
        podman(
            &pod,
            &["pull", "-q", &format!("{transport}:{}:{name}", saved.display())],
        );
        let config = podman(&pod, &["image", "inspect", "--format", "{{.Config.Cmd}}", name]);
        assert_eq!(config.trim(), "[cat /keep/lower.txt]", "{transport}");
        podman(&pod, &["rmi", name]);
    }
}
