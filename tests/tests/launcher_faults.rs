//! corrald under faults: killed (SIGKILL) at each of its crash points in the middle of a create or start, or
//! while a container exits, or with a container's record lost; restarted, it must leave nothing behind but
//! what its running containers hold (network namespaces, overlay mounts, runtime state, IPAM reservations, NAT
//! records and kernel elements), with the containers that ran before still running and reachable. Also: a taken
//! host port refused up front, `logs -f`, `network inspect`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::launcher::Launcher;
use corral_tests::state::nft_elements;
use corral_tests::wait_until;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `GET` a page from the node through a published port, retrying while the server comes up.
fn fetch(l: &Launcher, port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let out = l.node.exec(&["curl", "-s", "--max-time", "2", &url]);
        if out.status.success() || Instant::now() > end {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A detached busybox httpd serving `page` on port 80, published on `port`.
fn serve(l: &Launcher, img: &str, name: &str, port: u16, page: &str) {
    let publish = format!("{port}:80");
    let script = format!("mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 80 -h /www");
    l.ok(&[
        "run", "-d", "--name", name, "-p", &publish, img, "sh", "-c", &script,
    ]);
}

fn dir_names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that exactly the containers `holders` (by name, each attached to the network `corral` with one
/// published port) hold anything: network namespaces, overlay mounts, runtime state, veths, IPAM reservations,
/// NAT records, and elements of corral's nftables sets in the node.
fn assert_only_held_by(l: &Launcher, holders: &[&str], why: &str) {
    let docs: Vec<Value> = holders.iter().map(|h| l.inspect(h)).collect();
    let ids: BTreeSet<String> = docs
        .iter()
        .map(|d| d["Id"].as_str().unwrap().to_string())
        .collect();
    let ips: BTreeSet<String> = docs
        .iter()
        .map(|d| d["NetworkSettings"]["IPAddress"].as_str().unwrap().to_string())
        .collect();
    let state = l.state();
    assert_eq!(dir_names(&state.join("netns")), ids, "{why}: network namespaces");
    assert_eq!(dir_names(&state.join("runtime")), ids, "{why}: runtime state");
    let mounts: BTreeSet<String> = l.mounts_under_dir().into_iter().collect();
    let want: BTreeSet<String> = ids
        .iter()
        .flat_map(|id| {
            [
                state.join("netns").join(id),
                state.join("containers").join(id).join("rootfs"),
            ]
        })
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(mounts, want, "{why}: mounts");
    // The kernel removes a deleted namespace's veth a little later.
    let node_veths = || {
        l.node
            .ip_json(&["link", "show", "type", "veth"])
            .as_array()
            .map_or(0, Vec::len)
    };
    assert!(
        wait_until(5, || node_veths() == ids.len()),
        "{why}: {} veths for {} containers",
        node_veths(),
        ids.len()
    );
    let ipam = state.join("ipam/corral");
    let reserved: BTreeSet<String> = dir_names(&ipam)
        .into_iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert_eq!(reserved, ips, "{why}: IPAM reservations");
    let index: BTreeSet<String> = ids.iter().map(|id| format!("{id}@eth0")).collect();
    assert_eq!(dir_names(&ipam.join(".corral")), index, "{why}: IPAM index");
    for record in dir_names(&state.join("nat/corral"))
        .iter()
        .filter(|n| n.ends_with(".json"))
    {
        assert!(
            ids.iter().any(|id| record.starts_with(id.as_str())),
            "{why}: NAT record {record} of no running container"
        );
    }
    let masq: BTreeSet<String> = nft_elements(&l.node, "inet", "masq_src4").into_iter().collect();
    assert_eq!(masq, ips, "{why}: masquerade elements");
    for (kind, name) in [("map", "hostports4"), ("set", "dnat_masq4")] {
        assert_eq!(nft_addresses(l, kind, name), ips, "{why}: {kind} {name}");
    }
}

/// The IPv4 addresses in the elements of a map or set of `table inet corral` in the node (empty when it does
/// not exist yet).
fn nft_addresses(l: &Launcher, kind: &str, name: &str) -> BTreeSet<String> {
    let out = l.node.exec(&["nft", "list", kind, "inet", "corral", name]);
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || ",{}".contains(c))
        .filter(|t| t.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
        .collect()
}

/// Names in `ps -a`.
fn all_names(l: &Launcher) -> Vec<String> {
    l.ok(&["ps", "-a"])
        .lines()
        .skip(1)
        .filter_map(|r| r.split_whitespace().last().map(str::to_string))
        .collect()
}

#[test]
fn corrald_killed_at_each_crash_point_leaks_nothing() {
    let mut l = Launcher::new();
    let img = l.image();
    serve(&l, img, "keeper", 8080, "keeper-page");
    assert_eq!(fetch(&l, 8080).trim(), "keeper-page");
    let points = [
        "corrald-create-record",
        "corrald-start-overlay",
        "corrald-start-netns",
        "corrald-start-shim",
        "corrald-start-cni",
        "corrald-start-sent",
    ];
    for (i, point) in points.iter().enumerate() {
        let victim = format!("victim{i}");
        let port = 9100 + u16::try_from(i).unwrap();
        l.kill_daemon();
        l.start_daemon_with_env(&[("CORRAL_FAIL_AT", point)]);
        let publish = format!("{port}:80");
        let script =
            format!("mkdir -p /www && echo {victim} > /www/index.html && exec httpd -f -p 80 -h /www");
        let out = l.corral(&[
            "run", "-d", "--name", &victim, "-p", &publish, img, "sh", "-c", &script,
        ]);
        assert!(!out.status.success(), "{point}: run succeeded: {out:?}");
        assert!(l.daemon_died_within(10), "{point}: corrald did not die");
        // What the dead corrald left behind, beside the keeper's.
        let state = l.state();
        let left = match *point {
            "corrald-create-record" => dir_names(&state.join("containers")).len(),
            "corrald-start-overlay" => l
                .mounts_under_dir()
                .iter()
                .filter(|m| m.ends_with("/rootfs"))
                .count(),
            "corrald-start-netns" => dir_names(&state.join("netns")).len(),
            "corrald-start-cni" => dir_names(&state.join("ipam/corral"))
                .iter()
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .count(),
            _ => 2,
        };
        assert_eq!(left, 2, "{point}: the crash left nothing to recover");
        l.start_daemon();

        // The container that ran before still runs and serves.
        let ps = l.ok(&["ps"]);
        assert!(
            ps.lines().any(|r| r.contains("keeper") && r.contains("Up")),
            "{point}: {ps}"
        );
        assert_eq!(fetch(&l, 8080).trim(), "keeper-page", "{point}");

        match *point {
            "corrald-create-record" => {
                assert!(!all_names(&l).contains(&victim), "{point}: {:?}", all_names(&l));
                assert_eq!(
                    dir_names(&l.state().join("containers")).len(),
                    1,
                    "{point}: a container dir without a record is left"
                );
                assert_only_held_by(&l, &["keeper"], point);
            }
            "corrald-start-sent" => {
                // The shim was told to start the container: the restarted corrald adopts it.
                let doc = l.inspect(&victim);
                assert_eq!(doc["State"]["Status"], "running", "{point}: {doc}");
                assert_eq!(fetch(&l, port).trim(), victim, "{point}");
                assert_only_held_by(&l, &["keeper", &victim], point);
                l.ok(&["rm", "-f", &victim]);
                assert_only_held_by(&l, &["keeper"], &format!("{point}, after rm"));
            }
            _ => {
                // Cut short in the middle of its start: undone, and left as created.
                let doc = l.inspect(&victim);
                assert_eq!(doc["State"]["Status"], "created", "{point}: {doc}");
                assert_eq!(doc["RootFs"]["Mounted"], false, "{point}: {doc}");
                assert!(doc["NetworkSettings"]["SandboxKey"].is_null(), "{point}: {doc}");
                assert_only_held_by(&l, &["keeper"], point);
                l.ok(&["rm", &victim]);
            }
        }
    }
    assert_eq!(all_names(&l), ["keeper"]);
    l.ok(&["rm", "-f", "keeper"]);
    assert_only_held_by(&l, &[], "after rm keeper");
}

#[test]
fn a_container_that_exits_while_corrald_is_down_is_torn_down_after_restart() {
    let mut l = Launcher::new();
    let img = l.image();
    serve(&l, img, "keeper", 8080, "keeper-page");
    let id = l.ok(&[
        "run",
        "-d",
        "--name",
        "brief",
        "-p",
        "8081:80",
        img,
        "sh",
        "-c",
        "sleep 1; exit 5",
    ]);
    let id = id.trim();
    assert_only_held_by(&l, &["keeper", "brief"], "before the outage");
    l.kill_daemon();
    let exit = l.state().join("containers").join(id).join("exit");
    assert!(wait_until(15, || exit.exists()), "brief did not exit");
    l.start_daemon();
    let doc = l.inspect_until("brief", 10, |d| {
        d["State"]["Status"] == "exited" && d["RootFs"]["Mounted"] == false
    });
    assert_eq!(doc["State"]["ExitCode"], 5, "{doc}");
    assert!(doc["NetworkSettings"]["SandboxKey"].is_null(), "{doc}");
    assert_only_held_by(&l, &["keeper"], "after brief exited during the outage");
    assert_eq!(fetch(&l, 8080).trim(), "keeper-page");
    l.ok(&["rm", "brief"]);
    assert!(!l.state().join("containers").join(id).exists());
}

#[test]
fn what_a_lost_record_held_is_collected_after_restart() {
    let mut l = Launcher::new();
    let img = l.image();
    serve(&l, img, "keeper", 8080, "keeper-page");
    l.ok(&[
        "run", "-d", "--name", "lost", "-p", "8082:80", "-v", "/scratch", img, "sleep", "1000",
    ]);
    let doc = l.inspect("lost");
    let id = doc["Id"].as_str().unwrap().to_string();
    let shim = doc["State"]["ShimPid"].as_i64().unwrap();
    assert_eq!(l.volume_dirs().len(), 1);
    l.kill_daemon();
    // The record is gone, as after a corrald killed inside `create`: everything else of the container is not.
    std::fs::remove_file(l.state().join("containers").join(&id).join("container.json")).unwrap();
    l.start_daemon();
    assert_eq!(all_names(&l), ["keeper"]);
    assert!(!l.state().join("containers").join(&id).exists());
    assert!(
        !std::path::Path::new(&format!("/proc/{shim}")).exists()
            || !std::fs::read_to_string(format!("/proc/{shim}/cmdline"))
                .unwrap_or_default()
                .contains(&id),
        "the shim of the lost container still runs"
    );
    assert!(
        l.volume_dirs().is_empty(),
        "anonymous volume left: {:?}",
        l.volume_dirs()
    );
    assert_only_held_by(&l, &["keeper"], "after the record was lost");
    assert_eq!(fetch(&l, 8080).trim(), "keeper-page");
}

#[test]
fn logs_follow_prints_lines_as_they_come_and_ends_with_the_container() {
    let l = Launcher::new();
    let img = l.image();
    // The container prints, waits for the test's go (a file in a bind-mounted dir), prints again and exits.
    let ctl = l.dir.join("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let bind = format!("{}:/ctl", ctl.display());
    l.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "-v",
        &bind,
        img,
        "sh",
        "-c",
        "echo first; while [ ! -e /ctl/go ]; do sleep 0.05; done; echo second",
    ]);
    let mut follower = Command::new(l.bin.join("corral"))
        .arg("-H")
        .arg(l.sock())
        .args(["logs", "-f", "talker"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "first");
    // Nothing more while the container waits, and the follower keeps following.
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    assert!(follower.try_wait().unwrap().is_none(), "logs -f ended early");
    std::fs::write(ctl.join("go"), "").unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "second");
    // The follower ends right after the container exits.
    let end = Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(s) = follower.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "logs -f did not end with the container");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert_eq!(l.inspect("talker")["State"]["Status"], "exited");
    // On an exited container -f prints everything and returns; --tail keeps the last lines.
    assert_eq!(l.ok(&["logs", "-f", "talker"]), "first\nsecond\n");
    assert_eq!(l.ok(&["logs", "--tail", "1", "talker"]), "second\n");
    assert_eq!(l.ok(&["logs", "-f", "--tail", "1", "talker"]), "second\n");
    l.fails(&["logs", "-f", "nosuch"], "no such container");
}

#[test]
fn network_inspect_shows_subnet_gateway_and_containers_with_their_addresses() {
    let l = Launcher::new();
    let img = l.image();
    l.ok(&["network", "create", "inner", "--subnet", "10.77.0.0/24"]);
    l.ok(&[
        "run", "-d", "--name", "member", "--net", "inner", img, "sleep", "1000",
    ]);
    let ip = l.inspect("member")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&l.ok(&["network", "inspect", "inner"])).unwrap();
    let net = &v[0];
    assert_eq!(net["Name"], "inner", "{net}");
    assert_eq!(net["Subnet"], "10.77.0.0/24", "{net}");
    assert_eq!(net["Gateway"], "10.77.0.1", "{net}");
    assert_eq!(net["Config"]["plugins"][0]["type"], "bridge", "{net}");
    assert_eq!(net["Containers"][0]["Name"], "member", "{net}");
    assert_eq!(net["Containers"][0]["IPAddress"], ip.as_str(), "{net}");
    assert_eq!(net["Containers"][0]["State"], "running", "{net}");
    assert!(ip.starts_with("10.77.0."), "{ip}");
    // The bridge it names is in the node, with the gateway address.
    let bridge = net["Bridge"].as_str().unwrap();
    assert!(
        l.node.addrs(bridge).contains(&"10.77.0.1/24".to_string()),
        "{:?}",
        l.node.addrs(bridge)
    );
    l.ok(&["stop", "-t", "1", "member"]);
    let v: Value = serde_json::from_str(&l.ok(&["network", "inspect", "inner"])).unwrap();
    assert!(v[0]["Containers"][0]["IPAddress"].is_null(), "{v}");
    l.fails(&["network", "inspect", "nosuch"], "no such network");
}

/// One HTTP/1.1 call on corrald's socket: status and body.
fn api(l: &Launcher, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(l.sock()).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: corral\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    (status, body.to_string())
}

#[test]
fn a_taken_host_port_is_refused_up_front_and_creates_nothing() {
    let l = Launcher::new();
    let img = l.image();
    serve(&l, img, "web", 8080, "web-page");
    for publish in ["8080:80", "127.0.0.1:8080:81", "0.0.0.0:8080:80"] {
        l.fails(
            &["run", "-d", "-p", publish, img, "sleep", "1000"],
            "8080/tcp is already published by container web",
        );
    }
    assert_eq!(all_names(&l), ["web"]);
    assert_only_held_by(&l, &["web"], "after the refused runs");
    assert_eq!(fetch(&l, 8080).trim(), "web-page");
    // Another protocol on the same number is free.
    l.ok(&[
        "run",
        "-d",
        "--name",
        "dns",
        "-p",
        "8080:53/udp",
        img,
        "sleep",
        "1000",
    ]);
    l.ok(&["rm", "-f", "dns"]);

    // A created container is checked again when it starts.
    let (status, body) = api(
        &l,
        "POST",
        "/containers/create?name=later",
        r#"{"Image":"bb:test","Cmd":["sleep","1000"],"Publish":["8085:80"]}"#,
    );
    assert_eq!(status, 201, "{body}");
    serve(&l, img, "early", 8085, "early-page");
    let (status, body) = api(&l, "POST", "/containers/later/start", "");
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("port 8085/tcp is already published by container early"),
        "{body}"
    );
    assert_eq!(l.inspect("later")["State"]["Status"], "created");
    assert_only_held_by(&l, &["web", "early"], "after the refused start");
    l.ok(&["rm", "later"]);
    l.ok(&["rm", "-f", "early"]);

    // A process of the node listening on the port: its traffic would be taken by the DNAT rule.
    let mut listener = Command::new("nsenter")
        .arg(format!("--net={}", l.node.path()))
        .args(["/bin/busybox", "nc", "-l", "-p", "9090"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let listening = wait_until(5, || {
        String::from_utf8_lossy(&l.node.exec(&["ss", "-Hltn", "sport = :9090"]).stdout).contains("9090")
    });
    let refused = l.corral(&["run", "-d", "-p", "9090:80", img, "sleep", "1000"]);
    let _ = listener.kill();
    let _ = listener.wait();
    assert!(listening, "nc did not listen");
    assert!(!refused.status.success(), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("port 9090/tcp is already in use on the node")
            && err.contains(&format!("pid {}", listener.id())),
        "{err}"
    );
    assert_eq!(all_names(&l), ["web"]);
    assert_only_held_by(&l, &["web"], "after the node listener refused a run");
    // Once it is gone, the port can be published.
    serve(&l, img, "late", 9090, "late-page");
    assert_eq!(fetch(&l, 9090).trim(), "late-page");
}

#[test]
fn bad_specs_are_refused_with_a_clear_error_and_create_nothing() {
    let l = Launcher::new();
    let img = l.image();
    for (args, needle) in [
        (vec!["-p", "99999:80"], "-p 99999:80: want"),
        (vec!["-p", "8080:80/icmp"], "-p 8080:80/icmp: want"),
        (vec!["-p", "nohost:8080:80"], "-p nohost:8080:80: want"),
        (vec!["-v", "/srv:relative"], "-v /srv:relative: want"),
        (vec!["-v", "/srv:/x:rx"], "-v /srv:/x:rx: want"),
        (vec!["-v", "bad/name:/x"], "-v bad/name:/x: invalid volume name"),
        (vec!["--tmpfs", "run"], "--tmpfs run: want"),
        (
            vec!["-v", "data:/x", "-v", "/nonexistent/corral:/y"],
            "bind source path does not exist",
        ),
    ] {
        let mut cmd = vec!["run", "-d"];
        cmd.extend(args);
        cmd.extend([img, "true"]);
        l.fails(&cmd, needle);
    }
    assert!(all_names(&l).is_empty());
    assert!(dir_names(&l.state().join("containers")).is_empty());
    // The named volume of the refused run was not created either: volumes come last.
    assert!(l.volume_dirs().is_empty(), "{:?}", l.volume_dirs());
    assert!(l.mounts_under_dir().is_empty());
}
