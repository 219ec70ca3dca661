use super::*;
use crate::result::IpConfig;
use std::cell::RefCell;

/// A plugin that records what it was asked and returns one address.
#[derive(Default)]
struct Probe {
    seen: RefCell<Vec<(Command, String, String)>>,
    fail_with: Option<CniError>,
}

impl Plugin for Probe {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        self.seen
            .borrow_mut()
            .push((req.command, req.container_id.clone(), req.ifname.clone()));
        if let Some(e) = &self.fail_with {
            return Err(e.clone());
        }
        Ok(CniResult {
            ips: vec![IpConfig {
                address: "10.9.0.2/24".parse().unwrap(),
                gateway: None,
                interface: None,
            }],
            ..Default::default()
        })
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        self.seen
            .borrow_mut()
            .push((req.command, req.container_id.clone(), req.ifname.clone()));
        Ok(())
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        self.seen
            .borrow_mut()
            .push((req.command, req.container_id.clone(), req.ifname.clone()));
        Ok(())
    }
}

fn env(cmd: &str) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    for (k, v) in [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", "/run/netns/does-not-exist"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ] {
        e.insert(k.to_string(), v.to_string());
    }
    e
}

fn conf(ver: &str) -> String {
    format!(r#"{{"cniVersion":"{ver}","name":"net1","type":"probe"}}"#)
}

fn call(p: &Probe, env: &BTreeMap<String, String>, stdin: &str) -> (i32, Value, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run(
        p,
        "CNI probe plugin",
        Io {
            env,
            stdin: &mut stdin.as_bytes(),
            stdout: &mut out,
            stderr: &mut err,
        },
    );
    let v = if out.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out).unwrap()
    };
    (code, v, String::from_utf8(err).unwrap())
}

#[test]
fn add_writes_result_in_every_version() {
    for ver in version::SUPPORTED {
        let p = Probe::default();
        let (code, v, _) = call(&p, &env("ADD"), &conf(ver));
        assert_eq!(code, 0, "{ver}: {v}");
        assert_eq!(v["cniVersion"], ver, "{ver}");
        if version::at_least(ver, "0.3.0") {
            assert_eq!(v["ips"][0]["address"], "10.9.0.2/24", "{ver}");
        } else {
            assert_eq!(v["ip4"]["ip"], "10.9.0.2/24", "{ver}");
        }
        assert_eq!(
            p.seen.borrow()[0],
            (Command::Add, "ctr1".into(), "eth0".into()),
            "{ver}"
        );
    }
}

#[test]
fn version_echoes_input_and_lists_all() {
    for ver in version::SUPPORTED {
        let (code, v, _) = call(
            &Probe::default(),
            &env("VERSION"),
            &format!(r#"{{"cniVersion":"{ver}"}}"#),
        );
        assert_eq!(code, 0);
        assert_eq!(v["cniVersion"], ver, "{ver}");
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7, "{ver}");
    }
    let (_, v, _) = call(&Probe::default(), &env("VERSION"), "");
    assert_eq!(v["cniVersion"], version::CURRENT);
}

#[test]
fn no_command_prints_about_and_succeeds() {
    let mut e = env("ADD");
    e.remove("CNI_COMMAND");
    let (code, v, err) = call(&Probe::default(), &e, "");
    assert_eq!(code, 0);
    assert_eq!(v, Value::Null);
    assert!(err.contains("CNI probe plugin") && err.contains("1.1.0"), "{err}");
}

#[test]
fn unknown_command_is_code_4() {
    let (code, v, _) = call(&Probe::default(), &env("FROB"), &conf("1.0.0"));
    assert_eq!(code, 1);
    assert_eq!(v["code"], 4);
    assert!(v["msg"].as_str().unwrap().contains("FROB"));
}

#[test]
fn missing_env_is_code_4_naming_every_variable() {
    for cmd in ["ADD", "CHECK"] {
        let mut e = env(cmd);
        e.remove("CNI_CONTAINERID");
        e.remove("CNI_NETNS");
        let (code, v, _) = call(&Probe::default(), &e, &conf("1.0.0"));
        assert_eq!(code, 1, "{cmd}");
        assert_eq!(v["code"], 4, "{cmd}");
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.contains("CNI_CONTAINERID") && msg.contains("CNI_NETNS"),
            "{cmd}: {msg}"
        );
        assert_eq!(
            v["cniVersion"], "1.0.0",
            "{cmd}: error labelled with the config's version"
        );
    }
}

#[test]
fn del_does_not_need_netns_or_path() {
    let mut e = env("DEL");
    e.remove("CNI_NETNS");
    e.remove("CNI_PATH");
    let p = Probe::default();
    let (code, v, _) = call(&p, &e, &conf("1.0.0"));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v, Value::Null);
    assert_eq!(p.seen.borrow()[0].0, Command::Del);
}

#[test]
fn gc_and_status_need_no_attachment_env() {
    let mut e = BTreeMap::new();
    for cmd in ["GC", "STATUS"] {
        e.insert("CNI_COMMAND".to_string(), cmd.to_string());
        let (code, v, _) = call(&Probe::default(), &e, &conf("1.1.0"));
        assert_eq!(code, 0, "{cmd}: {v}");
    }
}

#[test]
fn verbs_below_their_version_are_code_1() {
    for (cmd, ver) in [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "0.4.0")] {
        let (code, v, _) = call(&Probe::default(), &env(cmd), &conf(ver));
        assert_eq!(code, 1, "{cmd} {ver}");
        assert_eq!(v["code"], 1, "{cmd} {ver}");
    }
}

#[test]
fn unknown_version_is_code_1() {
    let (code, v, _) = call(&Probe::default(), &env("ADD"), &conf("0.5.0"));
    assert_eq!(code, 1);
    assert_eq!(v["code"], 1);
    assert!(v["details"].as_str().unwrap().contains("0.5.0"));
}

#[test]
fn malformed_json_is_code_6() {
    let (code, v, _) = call(&Probe::default(), &env("ADD"), "{\"cniVersion\":");
    assert_eq!(code, 1);
    assert_eq!(v["code"], 6);
}

#[test]
fn bad_network_name_is_code_7() {
    let (_, v, _) = call(
        &Probe::default(),
        &env("ADD"),
        r#"{"cniVersion":"1.0.0","name":"a/b","type":"probe"}"#,
    );
    assert_eq!(v["code"], 7);
}

#[test]
fn bad_container_id_and_ifname_are_code_4() {
    let mut e = env("ADD");
    e.insert("CNI_CONTAINERID".into(), "-bad id".into());
    let (_, v, _) = call(&Probe::default(), &e, &conf("1.0.0"));
    assert_eq!(v["code"], 4);
    assert!(v["msg"].as_str().unwrap().contains("CNI_CONTAINERID"));
    for bad in ["averyveryverylongname", "..", "et h0", "a/b", "a:b"] {
        let mut e = env("ADD");
        e.insert("CNI_IFNAME".into(), bad.into());
        let (_, v, _) = call(&Probe::default(), &e, &conf("1.0.0"));
        assert_eq!(v["code"], 4, "{bad}");
        assert!(v["msg"].as_str().unwrap().contains("CNI_IFNAME"), "{bad}");
    }
}

#[test]
fn own_netns_is_refused_unless_overridden() {
    let mut e = env("ADD");
    e.insert("CNI_NETNS".into(), "/proc/thread-self/ns/net".into());
    let (_, v, _) = call(&Probe::default(), &e, &conf("1.0.0"));
    assert_eq!(v["code"], 8);
    e.insert("CNI_NETNS_OVERRIDE".into(), "1".into());
    let (code, _, _) = call(&Probe::default(), &e, &conf("1.0.0"));
    assert_eq!(code, 0);
}

#[test]
fn plugin_error_keeps_its_code_and_version_label() {
    let p = Probe {
        fail_with: Some(CniError::try_again("lock timed out")),
        ..Default::default()
    };
    for ver in version::SUPPORTED {
        let (code, v, _) = call(&p, &env("ADD"), &conf(ver));
        assert_eq!(code, 1);
        assert_eq!(v["code"], 11, "{ver}");
        assert_eq!(v["cniVersion"], ver, "{ver}");
    }
}

#[test]
fn missing_cni_version_is_read_as_0_1_0() {
    let (code, v, _) = call(&Probe::default(), &env("ADD"), r#"{"name":"n","type":"probe"}"#);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["cniVersion"], "0.1.0");
}

#[test]
fn bad_cni_args_is_code_4() {
    let mut e = env("ADD");
    e.insert("CNI_ARGS".into(), "garbage".into());
    let (_, v, _) = call(&Probe::default(), &e, &conf("1.0.0"));
    assert_eq!(v["code"], 4);
}
