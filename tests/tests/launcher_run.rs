//! `corral run` options end to end: `-u` (users from the image's /etc/passwd and /etc/group), `--cpus` (the CFS
//! quota runc sets in the container's cgroup), `--init` (tini as PID 1: zombies reaped, TERM forwarded) and
//! `--volumes-from` (shared volumes and binds, modes, anonymous volumes kept until their last user goes, nested
//! mounts), and `exec -e/-w/-u`. Each test starts its own corrald in a throwaway node namespace (the shared harness).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::launcher::Launcher;
use corral_tests::sh;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    app:x:1000:1000:App:/home/app:/bin/sh\n\
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:other,app\nnogroup:x:65534:\n";

/// The busybox image plus /etc/passwd and /etc/group, imported as `users:test`.
fn users_image(l: &Launcher) -> &'static str {
    l.image();
    let root = l.dir.join("rootfs");
    std::fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    std::fs::write(root.join("etc/group"), GROUP).unwrap();
    std::fs::create_dir_all(root.join("home/app")).unwrap();
    let tar = l.dir.join("users.tar.gz");
    sh(
        "tar",
        &["-C", root.to_str().unwrap(), "-czf", tar.to_str().unwrap(), "."],
    );
    l.ok(&["image", "import", tar.to_str().unwrap(), "users:test"]);
    "users:test"
}

/// No container record, container dir, pinned netns or mount is left in the launcher's state.
fn assert_nothing_left(l: &Launcher) {
    assert_eq!(l.ok(&["ps", "-a"]).lines().count(), 1, "{}", l.ok(&["ps", "-a"]));
    for d in ["containers", "netns"] {
        let left: Vec<_> = std::fs::read_dir(l.state().join(d)).unwrap().flatten().collect();
        assert!(left.is_empty(), "{d}: {left:?}");
    }
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
}

#[test]
fn user_by_id_and_by_name_from_the_images_passwd_and_group() {
    let l = Launcher::new();
    let users = users_image(&l);
    let ids = "id -u; id -g; id -G; echo $HOME";
    // A uid the image does not know: gid 0 and HOME=/, like Docker.
    assert_eq!(
        l.ok(&["run", "--rm", "-u", "1000", "bb:test", "sh", "-c", ids]),
        "1000\n0\n0\n/\n"
    );
    // A name: uid, gid, home and the supplementary groups that list it.
    assert_eq!(
        l.ok(&["run", "--rm", "-u", "app", users, "sh", "-c", ids]),
        "1000\n1000\n1000 10 29\n/home/app\n"
    );
    assert_eq!(
        l.ok(&["run", "--rm", "-u", "app:wheel", users, "sh", "-c", ids]),
        "1000\n10\n10 29\n/home/app\n"
    );
    assert_eq!(
        l.ok(&["run", "--rm", "-u", "nobody", users, "sh", "-c", ids]),
        "65534\n65534\n65534\n/nonexistent\n"
    );
    // Without -u: root, HOME from passwd; an explicit HOME is kept.
    assert_eq!(l.ok(&["run", "--rm", users, "sh", "-c", ids]), "0\n0\n0\n/root\n");
    assert_eq!(
        l.ok(&[
            "run",
            "--rm",
            "-u",
            "app",
            "-e",
            "HOME=/x",
            users,
            "sh",
            "-c",
            "echo $HOME"
        ]),
        "/x\n"
    );

    // Files the user creates in a volume are its own.
    l.ok(&["volume", "create", "shared"]);
    let data = l.state().join("volumes/shared/_data");
    sh("chmod", &["1777", data.to_str().unwrap()]);
    l.ok(&[
        "run",
        "--rm",
        "-u",
        "app",
        "-v",
        "shared:/data",
        users,
        "touch",
        "/data/mine",
    ]);
    let meta = std::fs::metadata(data.join("mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));

    // Unknown names are refused at start, bad syntax at create; neither leaves anything behind.
    l.fails(
        &["run", "--name", "ghostly", "-u", "ghost", users, "true"],
        "unable to find user ghost: no matching entries in passwd file",
    );
    l.fails(
        &["run", "-u", "app:ghosts", users, "true"],
        "unable to find group ghosts: no matching entries in group file",
    );
    l.fails(&["run", "-u", "a:b:c", users, "true"], "want user[:group]");
    l.fails(
        &["run", "-u", "app", "bb:test", "true"],
        "unable to find user app: no matching entries in passwd file",
    );
    assert_nothing_left(&l);
}

#[test]
fn cpus_set_the_cfs_quota_and_more_than_the_machine_has_is_refused() {
    let l = Launcher::new();
    let img = l.image();
    let id = l.ok(&[
        "run", "-d", "--name", "half", "--cpus", "0.5", img, "sleep", "1000",
    ]);
    let cg = std::path::Path::new("/sys/fs/cgroup/cpu/corral").join(id.trim());
    let read = |f: &str| std::fs::read_to_string(cg.join(f)).unwrap().trim().to_string();
    assert_eq!(read("cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu.cfs_period_us"), "100000");
    assert_eq!(l.inspect("half")["HostConfig"]["NanoCpus"], 500_000_000);
    l.ok(&["rm", "-f", "half"]);

    l.fails(
        &["run", "--cpus", "1000", img, "true"],
        "range of CPUs is from 0.01 to",
    );
    l.fails(&["run", "--cpus", "0", img, "true"], "range of CPUs");
    l.fails(&["run", "--cpus", "lots", img, "true"], "want a number of CPUs");
    assert_nothing_left(&l);
}

/// A process in a container, from its /proc/PID/stat.
#[derive(Debug)]
struct Proc {
    pid: u32,
    /// `R`, `S`, `Z`, ...
    state: String,
    comm: String,
}

/// The processes of a running container (the `exec`'d shell and cat included).
fn processes(l: &Launcher, name: &str) -> Vec<Proc> {
    let out = l.ok(&["exec", name, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null"]);
    out.lines()
        .filter_map(|line| {
            // `pid (comm) state ...`: comm may contain spaces, so split at the last ')'.
            let (head, tail) = line.rsplit_once(')')?;
            let (pid, comm) = head.split_once(" (")?;
            Some(Proc {
                pid: pid.trim().parse().ok()?,
                state: tail.split_whitespace().next()?.to_string(),
                comm: comm.to_string(),
            })
        })
        .collect()
}

#[test]
fn init_is_pid_1_reaps_zombies_and_forwards_term() {
    let l = Launcher::new();
    let img = l.image();
    let cmdline = l.ok(&["run", "--rm", "--init", img, "cat", "/proc/1/cmdline"]);
    assert_eq!(cmdline, "/dev/init\0--\0cat\0/proc/1/cmdline\0");

    // An orphan ends up with PID 1. `exec sleep` makes the shell's PID 1 (without init) a process that never
    // waits, so its orphan stays a zombie; under init, tini reaps it.
    let orphan = "(sleep 0.2 &); exec sleep 1000";
    l.ok(&["run", "-d", "--name", "bare", img, "sh", "-c", orphan]);
    l.ok(&["run", "-d", "--name", "inited", "--init", img, "sh", "-c", orphan]);
    let end = Instant::now() + Duration::from_secs(10);
    while !processes(&l, "bare").iter().any(|p| p.state == "Z") {
        assert!(
            Instant::now() < end,
            "no zombie without init: {:?}",
            processes(&l, "bare")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Under init the orphan's end is stable too: it is gone (reaped), and no zombie is left.
    let reaped = |procs: &[Proc]| {
        procs.iter().filter(|p| p.comm == "sleep").count() == 1 && !procs.iter().any(|p| p.state == "Z")
    };
    while !reaped(&processes(&l, "inited")) {
        assert!(
            Instant::now() < end,
            "orphan not reaped under init: {:?}",
            processes(&l, "inited")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let procs = processes(&l, "inited");
    assert!(procs.iter().any(|p| p.pid == 1 && p.comm == "init"), "{procs:?}");

    // TERM reaches the shell through init (143 at once); the shell as PID 1 ignores it (KILL after -t: 137).
    l.ok(&[
        "run",
        "-d",
        "--name",
        "term",
        "--init",
        img,
        "sh",
        "-c",
        "sleep 1000",
    ]);
    let t0 = Instant::now();
    l.ok(&["stop", "-t", "30", "term"]);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(l.inspect("term")["State"]["ExitCode"], 143);
    l.ok(&["run", "-d", "--name", "noterm", img, "sh", "-c", "sleep 1000"]);
    l.ok(&["stop", "-t", "1", "noterm"]);
    assert_eq!(l.inspect("noterm")["State"]["ExitCode"], 137);
    l.ok(&["rm", "-f", "bare", "inited", "term", "noterm"]);
    assert_nothing_left(&l);
}

#[test]
fn volumes_from_shares_volumes_and_binds_and_keeps_anonymous_ones_for_the_last_user() {
    let l = Launcher::new();
    let img = l.image();
    let host = l.dir.join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("h"), "from the host\n").unwrap();
    let bind = format!("{}:/h:ro", host.display());
    l.ok(&[
        "run",
        "--name",
        "a",
        "-v",
        "named:/n",
        "-v",
        "/anon",
        "-v",
        &bind,
        "--tmpfs",
        "/t",
        img,
        "sh",
        "-c",
        "echo named > /n/f; echo anon > /anon/g",
    ]);
    let anon = l.inspect("a")["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["anonymous"] == true)
        .map(|m| m["volume"].as_str().unwrap().to_string())
        .unwrap();

    // B sees A's files at the same paths (A has exited: any state will do), and not A's tmpfs.
    let out = l.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "a",
        img,
        "sh",
        "-c",
        "cat /n/f /anon/g /h/h; grep -c ' /t ' /proc/mounts || true",
    ]);
    assert_eq!(out, "named\nanon\nfrom the host\n0\n");
    // A's modes by default (its bind is read-only), `:ro` for all, `:rw` lifts A's read-only.
    let touch =
        |spec: &str, path: &str| l.corral(&["run", "--rm", "--volumes-from", spec, img, "touch", path]);
    assert_eq!(touch("a", "/n/rw-ok").status.code(), Some(0));
    let ro = touch("a:ro", "/n/refused");
    assert_ne!(ro.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&ro.stdout).contains("Read-only file system"),
        "{ro:?}"
    );
    assert_ne!(touch("a", "/h/refused").status.code(), Some(0));
    assert_eq!(touch("a:rw", "/h/written").status.code(), Some(0));
    assert!(host.join("written").exists());
    // The container's own -v wins over a shared mount of the same destination.
    let own = l.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "a",
        "-v",
        "other:/n",
        img,
        "ls",
        "/n",
    ]);
    assert_eq!(own, "");

    // The anonymous volume outlives A while B uses it, and goes with its last user.
    l.ok(&["run", "--name", "b", "--volumes-from", "a", img, "cat", "/anon/g"]);
    l.ok(&["rm", "a"]);
    assert!(l.volume_dirs().contains(&anon), "{:?}", l.volume_dirs());
    assert_eq!(
        l.ok(&["run", "--rm", "--volumes-from", "b", img, "cat", "/anon/g"]),
        "anon\n"
    );
    l.ok(&["rm", "b"]);
    assert!(!l.volume_dirs().contains(&anon), "{:?}", l.volume_dirs());
    assert!(l.volume_dirs().contains(&"named".to_string()));

    l.fails(
        &["run", "--volumes-from", "ghost", img, "true"],
        "no such container: ghost",
    );
    l.fails(
        &["run", "--volumes-from", "a:xx", img, "true"],
        "want container[:ro|rw]",
    );
    assert_nothing_left(&l);
}

#[test]
fn a_volume_under_another_mount_lands_on_top_in_any_order() {
    let l = Launcher::new();
    let img = l.image();
    let write = "echo d > /srv/d; echo l > /srv/logs/l";
    l.ok(&[
        "run",
        "--rm",
        "-v",
        "logs:/srv/logs",
        "-v",
        "data:/srv",
        img,
        "sh",
        "-c",
        write,
    ]);
    let vol =
        |v: &str, f: &str| std::fs::read_to_string(l.state().join("volumes").join(v).join("_data").join(f));
    assert_eq!(vol("data", "d").unwrap(), "d\n");
    assert_eq!(vol("logs", "l").unwrap(), "l\n");
    assert!(
        vol("data", "logs/l").is_err(),
        "the nested volume's file went to the outer one"
    );

    // The same through --volumes-from: the outer volume shared, the inner one the container's own.
    l.ok(&["run", "--name", "outer", "-v", "data:/srv", img, "true"]);
    l.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "outer",
        "-v",
        "logs:/srv/logs",
        img,
        "sh",
        "-c",
        "echo l2 > /srv/logs/l2",
    ]);
    assert_eq!(vol("logs", "l2").unwrap(), "l2\n");
    assert!(vol("data", "logs/l2").is_err());
    l.ok(&["rm", "outer"]);
}

#[test]
fn exec_takes_env_workdir_and_a_user_from_the_containers_passwd() {
    let l = Launcher::new();
    let users = users_image(&l);
    l.ok(&[
        "run", "-d", "--name", "box", "--net", "none", users, "sleep", "1000",
    ]);
    let ids = "id -u; id -g; id -G; echo $HOME";
    // Without options: the container's own user and environment.
    assert_eq!(l.ok(&["exec", "box", "sh", "-c", ids]), "0\n0\n0\n/root\n");
    assert_eq!(
        l.ok(&["exec", "-u", "app", "box", "sh", "-c", ids]),
        "1000\n1000\n1000 10 29\n/home/app\n"
    );
    assert_eq!(
        l.ok(&["exec", "-u", "1000:10", "box", "sh", "-c", "id -u; id -g"]),
        "1000\n10\n"
    );
    assert_eq!(
        l.ok(&[
            "exec",
            "-e",
            "GREETING=hi",
            "-w",
            "/home/app",
            "box",
            "sh",
            "-c",
            "echo $GREETING; pwd"
        ]),
        "hi\n/home/app\n"
    );
    assert_eq!(
        l.ok(&[
            "exec",
            "-u",
            "app",
            "-e",
            "HOME=/x",
            "box",
            "sh",
            "-c",
            "echo $HOME"
        ]),
        "/x\n"
    );
    // Bad input: a clear error, and the container runs on.
    l.fails(
        &["exec", "-u", "ghost", "box", "true"],
        "unable to find user ghost",
    );
    l.fails(&["exec", "-w", "home", "box", "true"], "absolute path");
    l.fails(&["exec", "-e", "=x", "box", "true"], "KEY=VALUE");
    assert_eq!(l.inspect("box")["State"]["Status"], "running");
    l.ok(&["rm", "-f", "box"]);
    assert_nothing_left(&l);
}
