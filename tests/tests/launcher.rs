//! corrald and the `corral` launcher verbs end to end: a daemon started by each test on a private socket and
//! state dir inside a throwaway node namespace (nsenter --net only), a busybox image built from the machine's
//! busybox-static, containers run by runc on a corral network through corral's plugins. Guards stop corrald,
//! kill containers, unmount overlays and netns files, and delete the node and temp dirs on every path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::launcher::Launcher;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[test]
fn imports_an_image_and_run_returns_the_exit_code() {
    let l = Launcher::new();
    let img = l.image();
    let ls = l.ok(&["image", "ls"]);
    assert!(ls.contains("bb:test"), "{ls}");
    assert_eq!(l.corral(&["run", "--rm", img, "true"]).status.code(), Some(0));
    let out = l.corral(&["run", "--rm", img, "sh", "-c", "echo out-line; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("out-line"),
        "{out:?}"
    );
    // --rm left nothing behind.
    assert_eq!(l.ok(&["ps", "-a"]).lines().count(), 1);
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
}

#[test]
fn web_server_with_published_port_is_reachable_and_rm_cleans_up() {
    let l = Launcher::new();
    let img = l.image();
    let www = l.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from corral\n").unwrap();
    let bind = format!("{}:/www:ro", www.display());
    let id = l.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-v",
        &bind,
        img,
        "sh",
        "-c",
        "echo web-started; exec httpd -f -p 80 -h /www",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");

    // Reachable from the node through the published port.
    let end = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let out = l
            .node
            .exec(&["curl", "-s", "--max-time", "2", "http://127.0.0.1:8080/"]);
        if out.status.success() || Instant::now() > end {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(page, "hello from corral\n");

    // inspect: IP and ports; a second container reaches the first by IP.
    let doc = l.inspect("web");
    let ip = doc["NetworkSettings"]["IPAddress"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.88."), "{doc}");
    assert_eq!(doc["NetworkSettings"]["Ports"][0], "8080->80/tcp");
    assert_eq!(doc["State"]["Status"], "running");
    let fetch = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {ip} 80");
    let out = l.ok(&["run", "--rm", img, "sh", "-c", &fetch]);
    assert!(out.contains("hello from corral"), "{out}");

    let ps = l.ok(&["ps"]);
    assert!(
        ps.contains("web") && ps.contains("Up") && ps.contains("8080->80/tcp"),
        "{ps}"
    );
    assert!(l.ok(&["logs", "web"]).contains("web-started"));
    let nat = l.ok(&["list-nat"]);
    assert!(
        nat.contains("NAME") && nat.lines().any(|r| r.contains("8080") && r.contains(" web ")),
        "{nat}"
    );

    // stop records the exit code (httpd as PID 1 ignores TERM: KILL after the timeout).
    l.ok(&["stop", "-t", "1", "web"]);
    let doc = l.inspect("web");
    assert_eq!(doc["State"]["Status"], "exited");
    assert_eq!(doc["State"]["ExitCode"], 137, "{doc}");

    // rm: overlay dirs, netns, veth, IPAM reservation and NAT mapping are gone.
    l.ok(&["rm", "web"]);
    assert!(!l.state().join("containers").join(id).exists());
    assert!(!l.state().join("netns").join(id).exists());
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
    let veths = l.node.ip_json(&["link", "show", "type", "veth"]);
    assert_eq!(veths.as_array().map(Vec::len), Some(0), "{veths}");
    assert!(
        !l.state().join("ipam/corral").join(&ip).exists(),
        "IPAM reservation of {ip} left"
    );
    let nat: Value = serde_json::from_str(&l.ok(&["list-nat", "--json"])).unwrap();
    assert_eq!(nat["dnat"].as_array().map(Vec::len), Some(0), "{nat}");
    assert_eq!(nat["snat"].as_array().map(Vec::len), Some(0), "{nat}");
}

#[test]
fn containers_survive_a_corrald_kill_and_restart() {
    let mut l = Launcher::new();
    let img = l.image();
    l.ok(&["run", "-d", "--name", "sleeper", img, "sleep", "1000"]);
    l.kill_daemon();
    std::thread::sleep(Duration::from_millis(300));
    l.start_daemon();
    let ps = l.ok(&["ps"]);
    assert!(ps.contains("sleeper") && ps.contains("Up"), "{ps}");
    l.ok(&["stop", "-t", "1", "sleeper"]);
    let doc = l.inspect("sleeper");
    assert_eq!(doc["State"]["Status"], "exited", "{doc}");
    assert_eq!(doc["State"]["ExitCode"], 137, "{doc}");
    l.ok(&["rm", "sleeper"]);
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
}

#[test]
fn bad_input_is_refused_and_creates_nothing() {
    let l = Launcher::new();
    let img = l.image();
    l.fails(&["run", "--rm", "nosuch:image", "true"], "no such image");
    l.ok(&["run", "-d", "--name", "taken", img, "sleep", "1000"]);
    l.fails(&["run", "--name", "taken", img, "true"], "already in use");
    l.fails(&["run", "-p", "80", img, "true"], "-p 80");
    l.fails(
        &["run", "-v", "/nonexistent/corral:/x", img, "true"],
        "bind source path does not exist",
    );
    l.fails(&["run", "--net", "nosuchnet", img, "true"], "no such network");
    let ps = l.ok(&["ps", "-a"]);
    assert_eq!(ps.lines().count(), 2, "{ps}");
    let netns: Vec<_> = std::fs::read_dir(l.state().join("netns")).unwrap().collect();
    assert_eq!(netns.len(), 1);
    l.ok(&["rm", "-f", "taken"]);
    assert!(l.mounts_under_dir().is_empty());
    // A network in use cannot be removed; an unused one can.
    l.ok(&["network", "create", "other"]);
    let ls = l.ok(&["network", "ls"]);
    assert!(ls.contains("other") && ls.contains("10.89.0.0/16"), "{ls}");
    l.ok(&[
        "run", "-d", "--name", "user", "--net", "other", img, "sleep", "1000",
    ]);
    l.fails(&["network", "rm", "other"], "in use");
    l.ok(&["rm", "-f", "user"]);
    l.ok(&["network", "rm", "other"]);
}

#[test]
fn containers_find_each_other_by_name_and_hosts_follow_starts_and_stops() {
    let l = Launcher::new();
    let img = l.image();
    let www = l.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello by name\n").unwrap();
    let bind = format!("{}:/www:ro", www.display());
    l.ok(&["run", "-d", "--name", "peer", img, "sleep", "1000"]);
    l.ok(&[
        "run", "-d", "--name", "web", "-v", &bind, img, "httpd", "-f", "-p", "80", "-h", "/www",
    ]);
    let web_ip = l.inspect("web")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    // A container started later fetches from `web` by name.
    let end = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let out = l.corral(&["run", "--rm", img, "wget", "-qO-", "http://web/"]);
        if out.status.success() || Instant::now() > end {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(page, "hello by name\n");
    // The container started earlier learned about `web` when it started (its hosts file rewritten in place).
    let hosts = l.ok(&["exec", "peer", "cat", "/etc/hosts"]);
    assert!(
        hosts.lines().any(|h| h.starts_with(&format!("{web_ip}\tweb "))),
        "{hosts}"
    );
    let web_hosts = l.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(web_hosts.contains("\tpeer "), "{web_hosts}");
    // Stopping web takes it out of peer's hosts file.
    l.ok(&["stop", "-t", "1", "web"]);
    let hosts = l.ok(&["exec", "peer", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("\tweb "), "{hosts}");
    l.ok(&["rm", "-f", "peer", "web"]);
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
}

#[test]
fn named_volume_keeps_data_across_containers_and_a_corrald_restart() {
    let mut l = Launcher::new();
    let img = l.image();
    l.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        img,
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert!(l.ok(&["volume", "ls"]).contains("data"));
    l.kill_daemon();
    l.start_daemon();
    let out = l.ok(&["run", "--rm", "-v", "data:/data:ro", img, "cat", "/data/f"]);
    assert_eq!(out, "kept\n");
    // A read-only volume refuses writes.
    let out = l.corral(&["run", "--rm", "-v", "data:/data:ro", img, "touch", "/data/g"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    // A tmpfs inside the volume: mounted after it (by depth), whatever the order on the command line.
    let out = l.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/data/t",
        "-v",
        "data:/data",
        img,
        "sh",
        "-c",
        "grep -q ' /data/t tmpfs ' /proc/mounts && cat /data/f && echo in-tmpfs > /data/t/x && echo ok",
    ]);
    assert_eq!(out, "kept\nok\n");
    assert!(!l.state().join("volumes/data/_data/t/x").exists());
    // In use: refused; after the user is removed: gone.
    l.ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "-v",
        "data:/data",
        img,
        "sleep",
        "1000",
    ]);
    l.fails(&["volume", "rm", "data"], "in use");
    let v: Value = serde_json::from_str(&l.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(v[0]["UsedBy"][0], "user", "{v}");
    l.ok(&["rm", "-f", "user"]);
    l.ok(&["volume", "rm", "data"]);
    l.fails(&["volume", "rm", "data"], "no such volume");
    assert!(l.volume_dirs().is_empty(), "{:?}", l.volume_dirs());
    l.ok(&["volume", "create", "made"]);
    assert!(l.ok(&["volume", "ls"]).contains("made"));
    l.fails(&["volume", "create", "bad/name"], "invalid volume name");
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
}

#[test]
fn anonymous_volume_and_overlay_dirs_are_removed_with_the_container() {
    let l = Launcher::new();
    let img = l.image();
    let id = l.ok(&[
        "run",
        "-d",
        "--name",
        "anon",
        "-v",
        "/scratch",
        img,
        "sh",
        "-c",
        "echo x > /scratch/f; exec sleep 1000",
    ]);
    let id = id.trim();
    let doc = l.inspect("anon");
    let src = PathBuf::from(doc["Mounts"][0]["source"].as_str().unwrap());
    assert_eq!(doc["Mounts"][0]["anonymous"], true, "{doc}");
    let end = Instant::now() + Duration::from_secs(10);
    while !src.join("f").exists() {
        assert!(Instant::now() < end, "{} never written", src.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    let cdir = l.state().join("containers").join(id);
    assert!(cdir.join("upper").exists());
    l.ok(&["rm", "-f", "anon"]);
    assert!(!src.exists(), "{} left", src.display());
    assert!(!cdir.exists(), "{} left", cdir.display());
    assert!(l.volume_dirs().is_empty(), "{:?}", l.volume_dirs());
    // --rm removes the anonymous volume too.
    l.ok(&["run", "--rm", "-v", "/scratch", img, "touch", "/scratch/f"]);
    assert!(l.volume_dirs().is_empty(), "{:?}", l.volume_dirs());
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
}

#[test]
fn restart_policy_on_failure_and_always_until_stop() {
    let l = Launcher::new();
    let img = l.image();
    l.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        img,
        "sh",
        "-c",
        "echo attempt; exit 1",
    ]);
    let doc = l.inspect_until("flaky", 20, |d| {
        d["RestartCount"] == 2 && d["State"]["Status"] == "exited" && d["RootFs"]["Mounted"] == false
    });
    assert_eq!(doc["State"]["ExitCode"], 1, "{doc}");
    assert_eq!(
        doc["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2,
        "{doc}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let doc = l.inspect("flaky");
    assert_eq!(doc["RestartCount"], 2, "{doc}");
    assert_eq!(doc["State"]["Status"], "exited", "{doc}");
    assert_eq!(l.ok(&["logs", "flaky"]).matches("attempt").count(), 3);
    assert!(l.ok(&["ps", "-a"]).contains("restarts 2"));
    // on-failure does not restart a clean exit.
    l.ok(&[
        "run",
        "-d",
        "--name",
        "clean",
        "--restart",
        "on-failure",
        img,
        "true",
    ]);
    let doc = l.inspect_until("clean", 10, |d| {
        d["State"]["Status"] == "exited" && d["RootFs"]["Mounted"] == false
    });
    assert_eq!(doc["RestartCount"], 0, "{doc}");
    // always: restarts clean exits until stopped.
    l.ok(&[
        "run",
        "-d",
        "--name",
        "forever",
        "--restart",
        "always",
        img,
        "sh",
        "-c",
        "sleep 0.1",
    ]);
    l.inspect_until("forever", 20, |d| d["RestartCount"].as_u64() >= Some(2));
    l.ok(&["stop", "-t", "1", "forever"]);
    let n = l.inspect("forever")["RestartCount"].clone();
    std::thread::sleep(Duration::from_secs(2));
    let doc = l.inspect("forever");
    assert_eq!(doc["RestartCount"], n, "{doc}");
    assert_eq!(doc["State"]["Status"], "exited", "{doc}");
    l.fails(
        &["run", "--rm", "--restart", "always", img, "true"],
        "cannot be combined",
    );
    l.fails(
        &["run", "--restart", "sometimes", img, "true"],
        "--restart sometimes",
    );
    l.ok(&["rm", "flaky", "clean", "forever"]);
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
}

#[test]
fn exec_returns_the_output_and_exit_code() {
    let l = Launcher::new();
    let img = l.image();
    l.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "-e",
        "GREETING=hi",
        img,
        "sleep",
        "1000",
    ]);
    let out = l.corral(&["exec", "box", "sh", "-c", "echo $GREETING; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // The exec'd process is in the container: it sees the container's PID 1.
    let ps1 = l.ok(&["exec", "box", "cat", "/proc/1/cmdline"]);
    assert!(ps1.starts_with("sleep"), "{ps1}");
    l.fails(&["exec", "nosuch", "true"], "no such container");
    l.ok(&["stop", "-t", "1", "box"]);
    l.fails(&["exec", "box", "true"], "not running");
    l.ok(&["rm", "box"]);
}
