use super::*;
use std::os::unix::fs::PermissionsExt;

fn att(id: &str, ifname: &str) -> Attachment {
    Attachment {
        container_id: id.into(),
        ifname: ifname.into(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn reservation_file_is_byte_exact_with_mode_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = DiskStore::open(tmp.path(), "net1").unwrap();
    assert!(s.create(ip("10.1.0.2"), &att("abc", "eth0")).unwrap());
    assert!(s.create(ip("fd00::2"), &att("abc", "eth0")).unwrap());
    let path = tmp.path().join("net1/10.1.0.2");
    assert_eq!(std::fs::read(&path).unwrap(), b"abc\r\neth0");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(tmp.path().join("net1/fd00::2").exists());
    assert!(
        !s.create(ip("10.1.0.2"), &att("other", "eth0")).unwrap(),
        "exclusive"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"abc\r\neth0", "untouched");
    assert_eq!(
        names(&tmp.path().join("net1")),
        [".corral", "10.1.0.2", "fd00::2"],
        "no temp left"
    );
}

#[test]
fn hint_and_index_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = DiskStore::open(tmp.path(), "net1").unwrap();
    assert_eq!(s.last_reserved(0).unwrap(), None);
    s.set_last_reserved(0, ip("10.1.0.9")).unwrap();
    s.set_last_reserved(0, ip("10.1.0.10")).unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("net1/last_reserved_ip.0")).unwrap(),
        b"10.1.0.10"
    );
    assert_eq!(s.last_reserved(0).unwrap(), Some(ip("10.1.0.10")));
    let owner = att("abc", "net.1");
    let e = IndexEntry {
        ips: vec![ip("10.1.0.2")],
        boot_id: "b".into(),
        netns: "/n".into(),
        netns_ino: Some(4026531992),
    };
    s.write_index(&owner, &e).unwrap();
    let path = tmp.path().join("net1/.corral/abc@net.1");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(s.read_index(&owner).unwrap(), Some(e));
    assert_eq!(s.indexed().unwrap(), std::slice::from_ref(&owner));
    s.remove_index(&owner).unwrap();
    s.remove_index(&owner).unwrap();
    assert!(s.indexed().unwrap().is_empty());
}

#[test]
fn temp_files_are_dotted_and_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = DiskStore::open(tmp.path(), "net1").unwrap();
    let dir = tmp.path().join("net1");
    assert_eq!(fs::tmp_path(&dir, "10.1.0.2"), dir.join(".10.1.0.2.tmp"));
    // A leftover of a crash between write and link: the next write replaces it, a sweep removes it.
    std::fs::write(dir.join(".10.1.0.2.tmp"), "dead\r\neth0").unwrap();
    std::fs::write(dir.join(".corral/.x@eth0.tmp"), "junk").unwrap();
    assert!(s.create(ip("10.1.0.2"), &att("abc", "eth0")).unwrap());
    assert_eq!(std::fs::read(dir.join("10.1.0.2")).unwrap(), b"abc\r\neth0");
    std::fs::write(dir.join(".10.1.0.3.tmp"), "dead\r\neth0").unwrap();
    assert!(s.sweep().is_empty());
    assert_eq!(names(&dir), [".corral", "10.1.0.2"]);
    assert!(names(&dir.join(".corral")).is_empty());
    assert_eq!(
        s.reservations().unwrap(),
        [(ip("10.1.0.2"), Holder::Attachment(att("abc", "eth0")))]
    );
}

#[test]
fn reservations_skip_everything_that_is_not_an_address() {
    let tmp = tempfile::tempdir().unwrap();
    let s = DiskStore::open(tmp.path(), "net1").unwrap();
    let dir = tmp.path().join("net1");
    let _l = s.lock(DEFAULT_LOCK_TIMEOUT).unwrap();
    for (name, content) in [
        ("last_reserved_ip.0", "10.1.0.2"),
        ("10.1.0.2", "x\r\neth0"),
        ("10.1.0.3", "legacy"),
    ] {
        std::fs::write(dir.join(name), content).unwrap();
    }
    std::fs::create_dir(dir.join("10.1.0.9")).unwrap();
    let mut r = s.reservations().unwrap();
    r.sort_by_key(|(ip, _)| *ip);
    assert_eq!(
        r,
        [
            (ip("10.1.0.2"), Holder::Attachment(att("x", "eth0"))),
            (ip("10.1.0.3"), Holder::LegacyId("legacy".into()))
        ]
    );
}

#[test]
fn lock_is_exclusive_across_handles_and_times_out() {
    let tmp = tempfile::tempdir().unwrap();
    let s = DiskStore::open(tmp.path(), "net1").unwrap();
    let held = s.lock(Duration::from_secs(1)).unwrap();
    let e = s.lock(Duration::from_millis(30)).unwrap_err();
    assert_eq!(e.code(), 11);
    assert!(e.to_string().contains("net1/lock"), "{e}");
    drop(held);
    assert!(s.lock(Duration::from_millis(30)).is_ok());
}

#[test]
fn open_existing_creates_nothing_and_probe_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(DiskStore::open_existing(tmp.path(), "net1").unwrap().is_none());
    assert!(!tmp.path().join("net1").exists());
    let s = DiskStore::open(tmp.path(), "net1").unwrap();
    s.probe_writable().unwrap();
    assert_eq!(names(s.dir()), [".corral"]);
    assert!(DiskStore::open_existing(tmp.path(), "net1").unwrap().is_some());
}
