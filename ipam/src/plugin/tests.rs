use super::*;
use corral_cni::skel::{run, Io};
use corral_cni::version::{at_least, SUPPORTED};
use serde_json::{json, Value};
use std::collections::BTreeMap;

struct Call<'a> {
    cmd: &'a str,
    id: &'a str,
    extra_env: &'a [(&'a str, &'a str)],
}

fn invoke(conf: &Value, call: Call<'_>) -> (i32, Value) {
    let mut env: BTreeMap<String, String> = [
        ("CNI_COMMAND", call.cmd),
        ("CNI_CONTAINERID", call.id),
        ("CNI_NETNS", "/var/run/netns/test"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in call.extra_env {
        env.insert(k.to_string(), v.to_string());
    }
    let stdin = serde_json::to_vec(conf).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(
        &HostLocal::default(),
        crate::ABOUT,
        Io {
            env: &env,
            stdin: &mut stdin.as_slice(),
            stdout: &mut out,
            stderr: &mut err,
        },
    );
    let v = if out.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out).unwrap()
    };
    (code, v)
}

fn call<'a>(cmd: &'a str, id: &'a str) -> Call<'a> {
    Call {
        cmd,
        id,
        extra_env: &[],
    }
}

fn conf(dir: &Path, ver: &str, ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["type"] = json!("host-local");
    ipam["dataDir"] = json!(dir);
    json!({"cniVersion": ver, "name": "net1", "type": "bridge", "ipam": ipam})
}

fn dual(dir: &Path, ver: &str) -> Value {
    conf(
        dir,
        ver,
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]],
               "routes": [{"dst": "0.0.0.0/0", "priority": 7}]}),
    )
}

#[test]
fn add_result_has_the_shape_of_every_version() {
    for ver in SUPPORTED {
        let dir = tempfile::tempdir().unwrap();
        let (code, v) = invoke(&dual(dir.path(), ver), call("ADD", "c1"));
        assert_eq!(code, 0, "{ver}: {v}");
        assert_eq!(v["cniVersion"], ver, "{ver}");
        if at_least(ver, "0.3.0") {
            assert_eq!(v["ips"][0]["address"], "10.1.0.2/24", "{ver}");
            assert_eq!(v["ips"][0]["gateway"], "10.1.0.1", "{ver}");
            assert_eq!(v["ips"][1]["address"], "fd00::2/64", "{ver}");
            assert!(v["ips"][0].get("interface").is_none(), "{ver}");
            assert_eq!(
                v["ips"][0].get("version").is_some(),
                !at_least(ver, "1.0.0"),
                "{ver}"
            );
            assert_eq!(v["routes"][0]["dst"], "0.0.0.0/0", "{ver}");
            assert_eq!(v["routes"][0].get("priority").is_some(), ver == "1.1.0", "{ver}");
            assert!(v.get("interfaces").is_none(), "{ver}");
        } else {
            assert_eq!(v["ip4"]["ip"], "10.1.0.2/24", "{ver}");
            assert_eq!(v["ip4"]["gateway"], "10.1.0.1", "{ver}");
            assert_eq!(v["ip6"]["ip"], "fd00::2/64", "{ver}");
            assert_eq!(v["ip4"]["routes"][0]["dst"], "0.0.0.0/0", "{ver}");
        }
    }
}

#[test]
fn dns_comes_from_resolv_conf() {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("resolv.conf");
    std::fs::write(&rc, "nameserver 10.1.0.53\nsearch a.example\n").unwrap();
    let c = conf(
        dir.path(),
        "1.0.0",
        json!({"subnet": "10.1.0.0/24", "resolvConf": rc}),
    );
    let (code, v) = invoke(&c, call("ADD", "c1"));
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        v["dns"],
        json!({"nameservers": ["10.1.0.53"], "search": ["a.example"]})
    );
    let c = conf(
        dir.path(),
        "1.0.0",
        json!({"subnet": "10.1.0.0/24", "resolvConf": "/nonexistent/r"}),
    );
    let (code, v) = invoke(&c, call("ADD", "c2"));
    assert_eq!((code, v["code"].clone()), (1, json!(7)), "{v}");
    assert!(v["msg"].as_str().unwrap().contains("/nonexistent/r"), "{v}");
}

#[test]
fn del_releases_is_idempotent_and_tolerates_a_missing_network() {
    let dir = tempfile::tempdir().unwrap();
    let c = dual(dir.path(), "1.1.0");
    assert_eq!(invoke(&c, call("ADD", "c1")).0, 0);
    assert!(dir.path().join("net1/10.1.0.2").exists());
    for _ in 0..2 {
        let (code, v) = invoke(&c, call("DEL", "c1"));
        assert_eq!(code, 0, "{v}");
    }
    assert!(!dir.path().join("net1/10.1.0.2").exists());
    assert!(!dir.path().join("net1/fd00::2").exists());
    let other = conf(
        &dir.path().join("nowhere"),
        "1.1.0",
        json!({"subnet": "10.1.0.0/24"}),
    );
    assert_eq!(invoke(&other, call("DEL", "c1")).0, 0);
    assert!(!dir.path().join("nowhere").exists(), "DEL creates nothing");
}

#[test]
fn del_works_with_a_config_whose_ranges_became_invalid() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(invoke(&dual(dir.path(), "1.1.0"), call("ADD", "c1")).0, 0);
    let broken = conf(dir.path(), "1.1.0", json!({"subnet": "10.1.0.3/24"}));
    assert_eq!(invoke(&broken, call("DEL", "c1")).0, 0);
    assert!(!dir.path().join("net1/10.1.0.2").exists());
}

#[test]
fn check_verifies_reservations_and_prev_result() {
    let dir = tempfile::tempdir().unwrap();
    let c = dual(dir.path(), "1.1.0");
    let (_, result) = invoke(&c, call("ADD", "c1"));
    let mut with_prev = c.clone();
    with_prev["prevResult"] = result.clone();
    assert_eq!(invoke(&with_prev, call("CHECK", "c1")).0, 0);
    let (code, v) = invoke(&with_prev, call("CHECK", "c2"));
    assert_eq!((code, v["code"].clone()), (1, json!(101)), "{v}");
    let mut wrong = with_prev.clone();
    wrong["prevResult"]["ips"][0]["address"] = json!("10.1.0.77/24");
    let (_, v) = invoke(&wrong, call("CHECK", "c1"));
    assert_eq!(v["code"], 101, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("10.1.0.77"), "{v}");
    std::fs::remove_file(dir.path().join("net1/fd00::2")).unwrap();
    let (_, v) = invoke(&with_prev, call("CHECK", "c1"));
    assert!(v["msg"].as_str().unwrap().contains("fd00::2"), "{v}");
}

#[test]
fn cni_args_ip_is_requested_and_unknown_keys_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), "1.0.0", json!({"subnet": "10.1.0.0/24"}));
    let with = |args: &'static [(&'static str, &'static str)], id: &'static str| {
        invoke(
            &c,
            Call {
                cmd: "ADD",
                id,
                extra_env: args,
            },
        )
    };
    let (code, v) = with(&[("CNI_ARGS", "IP=10.1.0.42;K8S_POD_NAME=web")], "c1");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ips"][0]["address"], "10.1.0.42/24");
    let (_, v) = with(&[("CNI_ARGS", "FOO=bar")], "c2");
    assert_eq!(v["code"], 4, "{v}");
    let (code, _) = with(&[("CNI_ARGS", "FOO=bar;IgnoreUnknown=1")], "c3");
    assert_eq!(code, 0);
    let (_, v) = with(&[("CNI_ARGS", "IP=10.9.9.9")], "c4");
    assert_eq!(v["code"], 7, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("10.9.9.9"), "{v}");
}

#[test]
fn a_held_lock_times_out_with_code_11() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), "1.1.0", json!({"subnet": "10.1.0.0/24"}));
    let store = DiskStore::open(dir.path(), "net1").unwrap();
    let _held = store.lock(Duration::from_secs(1)).unwrap();
    for cmd in ["ADD", "DEL"] {
        let (code, v) = invoke(
            &c,
            Call {
                cmd,
                id: "c1",
                extra_env: &[(LOCK_TIMEOUT_ENV, "30")],
            },
        );
        assert_eq!((code, v["code"].clone()), (1, json!(11)), "{cmd}: {v}");
        assert!(v["msg"].as_str().unwrap().contains("lock"), "{cmd}: {v}");
    }
}

#[test]
fn status_reports_a_full_pool_and_an_unwritable_store() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), "1.1.0", json!({"subnet": "10.1.0.0/30"}));
    assert_eq!(invoke(&c, call("STATUS", "")).0, 0);
    assert_eq!(invoke(&c, call("ADD", "c1")).0, 0);
    let (_, v) = invoke(&c, call("STATUS", ""));
    assert_eq!(v["code"], 50, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("10.1.0.0/30"), "{v}");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let c = conf(&file, "1.1.0", json!({"subnet": "10.1.0.0/30"}));
    let (_, v) = invoke(&c, call("STATUS", ""));
    assert_eq!(v["code"], 50, "{v}");
}

#[test]
fn gc_keeps_valid_attachments_only() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), "1.1.0", json!({"subnet": "10.1.0.0/24"}));
    for id in ["c1", "c2", "c3"] {
        assert_eq!(invoke(&c, call("ADD", id)).0, 0);
    }
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c2", "ifname": "eth0"}]);
    let (code, v) = invoke(&gc, call("GC", ""));
    assert_eq!(code, 0, "{v}");
    let net = dir.path().join("net1");
    assert!(
        !net.join("10.1.0.2").exists() && net.join("10.1.0.3").exists() && !net.join("10.1.0.4").exists()
    );
    assert!(!net.join(".corral/c1@eth0").exists() && net.join(".corral/c2@eth0").exists());
    let mut legacy = c.clone();
    legacy["cni.dev/attachments"] = json!([]);
    assert_eq!(invoke(&legacy, call("GC", "")).0, 0);
    assert!(!net.join("10.1.0.3").exists(), "legacy key read too");
}

#[test]
fn a_reboot_makes_a_full_pool_usable_again() {
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot_id");
    let boot_env = boot.display().to_string();
    let env = [(BOOT_ID_FILE_ENV, boot_env.as_str())];
    let c = conf(dir.path(), "1.1.0", json!({"subnet": "10.1.0.0/30"}));
    let with = |cmd, id| Call {
        cmd,
        id,
        extra_env: &env,
    };
    std::fs::write(&boot, "boot-one\n").unwrap();
    assert_eq!(invoke(&c, with("ADD", "c1")).0, 0);
    let index = std::fs::read_to_string(dir.path().join("net1/.corral/c1@eth0")).unwrap();
    assert!(index.contains("\nboot_id boot-one\n"), "{index}");
    let (code, v) = invoke(&c, with("ADD", "c2"));
    assert_eq!((code, &v["code"]), (1, &json!(100)), "{v}");
    assert_eq!(invoke(&c, with("STATUS", "")).1["code"], 50);

    std::fs::write(&boot, "boot-two\n").unwrap();
    assert_eq!(
        invoke(&c, with("STATUS", "")).0,
        0,
        "the stale reservation counts as room"
    );
    let (code, v) = invoke(&c, with("ADD", "c2"));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ips"][0]["address"], "10.1.0.2/30");
    assert!(!dir.path().join("net1/.corral/c1@eth0").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("net1/10.1.0.2")).unwrap(),
        "c2\r\neth0"
    );
}

#[test]
fn a_netns_that_vanished_without_del_frees_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), "1.1.0", json!({"subnet": "10.1.0.0/30"}));
    // A process's netns path: a namespace while the process lives, gone when it is reaped.
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let netns = format!("/proc/{}/ns/net", child.id());
    // Without root the process shares our netns: the override lets ADD through, as a runtime that
    // deliberately passes its own namespace would.
    let env = [("CNI_NETNS", netns.as_str()), ("CNI_NETNS_OVERRIDE", "1")];
    let (code, v) = invoke(
        &c,
        Call {
            cmd: "ADD",
            id: "c1",
            extra_env: &env,
        },
    );
    assert_eq!(code, 0, "{v}");
    let index = std::fs::read_to_string(dir.path().join("net1/.corral/c1@eth0")).unwrap();
    assert!(index.contains("\nnetns_ino "), "{index}");
    assert_eq!(invoke(&c, call("ADD", "c2")).1["code"], 100, "c1 is alive");
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, v) = invoke(&c, call("ADD", "c2"));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ips"][0]["address"], "10.1.0.2/30");
    // The default CNI_NETNS of these tests does not exist: nothing recorded, so c2 is never judged by it.
    let index = std::fs::read_to_string(dir.path().join("net1/.corral/c2@eth0")).unwrap();
    assert!(!index.contains("netns_ino"), "{index}");
    assert_eq!(invoke(&c, call("ADD", "c3")).1["code"], 100);
}
