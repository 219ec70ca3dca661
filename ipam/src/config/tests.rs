use super::*;
use serde_json::{json, Value};

fn conf(v: Value) -> NetConf {
    serde_json::from_value(v).unwrap()
}

fn parse_json(v: Value) -> Result<IpamConfig, IpamError> {
    parse(&conf(v), None)
}

fn net(ipam: Value) -> Value {
    json!({"cniVersion": "1.0.0", "name": "net1", "ipam": ipam})
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn bad_configs_are_code_7_naming_network_and_value() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no ipam",
            json!({"cniVersion": "1.0.0", "name": "net1"}),
            "missing 'ipam'",
        ),
        (
            "no ranges",
            net(json!({"type": "host-local"})),
            "no IP ranges specified",
        ),
        (
            "bad subnet",
            net(json!({"subnet": "10.1.0.0"})),
            "invalid subnet \"10.1.0.0\"",
        ),
        (
            "host bits",
            net(json!({"subnet": "10.1.0.7/24"})),
            "10.1.0.7/24 has host bits set",
        ),
        (
            "/31",
            net(json!({"subnet": "10.1.0.0/31"})),
            "10.1.0.0/31 is too small",
        ),
        (
            "/32",
            net(json!({"subnet": "10.1.0.0/32"})),
            "10.1.0.0/32 is too small",
        ),
        (
            "/127",
            net(json!({"ranges": [[{"subnet": "fd00::/127"}]]})),
            "fd00::/127 is too small",
        ),
        (
            "/128",
            net(json!({"ranges": [[{"subnet": "fd00::/128"}]]})),
            "fd00::/128 is too small",
        ),
        (
            "bad rangeStart",
            net(json!({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.x"})),
            "invalid rangeStart \"10.1.0.x\"",
        ),
        (
            "start outside",
            net(json!({"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"})),
            "rangeStart 10.2.0.1 is not in network 10.1.0.0/24",
        ),
        (
            "end outside",
            net(json!({"subnet": "10.1.0.0/24", "rangeEnd": "10.1.1.1"})),
            "rangeEnd 10.1.1.1 is not in network",
        ),
        (
            "gateway outside",
            net(json!({"subnet": "10.1.0.0/24", "gateway": "10.9.0.1"})),
            "gateway 10.9.0.1 is not in network",
        ),
        (
            "reversed",
            net(json!({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.9", "rangeEnd": "10.1.0.3"})),
            "rangeStart 10.1.0.9 is after rangeEnd 10.1.0.3",
        ),
        (
            "empty set",
            net(json!({"ranges": [[]]})),
            "invalid range set 0: empty range set",
        ),
        (
            "mixed families",
            net(json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]})),
            "mixed address families",
        ),
        (
            "overlap within a set",
            net(json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/16"}]]})),
            "overlap",
        ),
        (
            "overlap across sets",
            net(json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]})),
            "range set 0 overlaps with 1",
        ),
        (
            "legacy overlaps ranges",
            net(json!({"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "10.1.0.0/24"}]]})),
            "range set 0 overlaps with 1",
        ),
        (
            "bad route",
            net(json!({"subnet": "10.1.0.0/24", "routes": [{"dst": "default"}]})),
            "invalid route dst \"default\"",
        ),
        (
            "bad route gw",
            net(json!({"subnet": "10.1.0.0/24", "routes": [{"dst": "0.0.0.0/0", "gw": "x"}]})),
            "invalid route gw \"x\"",
        ),
        (
            "requested outside",
            json!({"name": "net1", "cniVersion": "1.0.0", "ipam": {"subnet": "10.1.0.0/24"},
                   "args": {"cni": {"ips": ["10.9.0.5"]}}}),
            "requested IP 10.9.0.5 is not in any range set",
        ),
        (
            "requested gateway",
            json!({"name": "net1", "cniVersion": "1.0.0", "ipam": {"subnet": "10.1.0.0/24"},
                   "runtimeConfig": {"ips": ["10.1.0.1/24"]}}),
            "requested IP 10.1.0.1 is the gateway",
        ),
        (
            "requested twice in a set",
            json!({"name": "net1", "cniVersion": "1.0.0", "ipam": {"subnet": "10.1.0.0/24"},
                   "runtimeConfig": {"ips": ["10.1.0.5", "10.1.0.6"]}}),
            "both in range set 0",
        ),
        (
            "requested garbage",
            json!({"name": "net1", "cniVersion": "1.0.0", "ipam": {"subnet": "10.1.0.0/24"},
                   "args": {"cni": {"ips": ["ten"]}}}),
            "invalid requested IP \"ten\" in args.cni.ips",
        ),
    ];
    for (what, v, want) in cases {
        let e = parse_json(v).expect_err(what);
        assert_eq!(e.code(), 7, "{what}: {e}");
        let msg = e.to_string();
        assert!(msg.starts_with("network \"net1\": "), "{what}: {msg}");
        assert!(msg.contains(want), "{what}: {msg} lacks {want}");
    }
}

#[test]
fn more_than_one_address_per_family_needs_0_3_0() {
    let two_v4 = json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]});
    for ver in corral_cni::version::SUPPORTED {
        let mut v = net(two_v4.clone());
        v["cniVersion"] = json!(ver);
        let res = parse_json(v);
        if version::at_least(ver, "0.3.0") {
            assert!(res.is_ok(), "{ver}");
        } else {
            let e = res.expect_err(ver);
            assert_eq!(e.code(), 7, "{ver}");
            assert!(
                e.to_string()
                    .contains("does not support more than 1 address per family"),
                "{ver}"
            );
        }
    }
    let dual = json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]});
    let mut v = net(dual);
    v["cniVersion"] = json!("0.2.0");
    assert!(parse_json(v).is_ok(), "one of each family is fine in 0.2.0");
}

#[test]
fn runtime_ranges_then_legacy_then_ranges() {
    let v = json!({"name": "net1", "cniVersion": "1.0.0",
        "ipam": {"subnet": "10.2.0.0/24", "gateway": "10.2.0.254", "ranges": [[{"subnet": "10.3.0.0/24"}]]},
        "runtimeConfig": {"ipRanges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10"}]]}});
    let cfg = parse_json(v).unwrap();
    let subnets: Vec<String> = cfg
        .range_sets
        .iter()
        .map(|s| s.ranges()[0].subnet.to_string())
        .collect();
    assert_eq!(subnets, ["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"]);
    assert_eq!(cfg.range_sets[0].ranges()[0].start, ip("10.1.0.10"));
    assert_eq!(cfg.range_sets[1].ranges()[0].gateway, ip("10.2.0.254"));
    assert_eq!(cfg.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(cfg.requested, [None, None, None]);
}

#[test]
fn requested_ips_merge_from_every_source_into_their_sets() {
    let v = json!({"name": "net1", "cniVersion": "1.0.0",
        "ipam": {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}], [{"subnet": "10.2.0.0/24"}]]},
        "args": {"cni": {"ips": ["fd00::9/64", "10.1.0.5"]}},
        "runtimeConfig": {"ips": ["10.1.0.5/24"]}});
    let cfg = parse(&conf(v), Some("10.2.0.7")).unwrap();
    assert_eq!(
        cfg.requested,
        [Some(ip("10.1.0.5")), Some(ip("fd00::9")), Some(ip("10.2.0.7"))]
    );
}

#[test]
fn cni_args_ip_takes_a_comma_separated_list() {
    let v = net(json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}));
    let cfg = parse(&conf(v.clone()), Some("10.1.0.9,fd00::4")).unwrap();
    assert_eq!(cfg.requested, [Some(ip("10.1.0.9")), Some(ip("fd00::4"))]);
    let e = parse(&conf(v), Some("10.1.0.9,nope")).unwrap_err();
    assert!(
        e.to_string()
            .contains("invalid requested IP \"nope\" in CNI_ARGS IP"),
        "{e}"
    );
}

#[test]
fn routes_pass_1_1_fields_through_and_paths_are_read() {
    let v = net(
        json!({"subnet": "10.1.0.0/24", "dataDir": "/tmp/x", "resolvConf": "/etc/r.conf",
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.254", "mtu": 1400,
                    "advmss": 1360, "priority": 10, "table": 100, "scope": 253}]}),
    );
    let cfg = parse_json(v).unwrap();
    assert_eq!(cfg.routes[0], Route::new("0.0.0.0/0".parse().unwrap(), None));
    let r = &cfg.routes[1];
    assert_eq!(r.gw, Some(ip("10.1.0.254")));
    assert_eq!(
        (r.mtu, r.advmss, r.priority, r.table, r.scope),
        (Some(1400), Some(1360), Some(10), Some(100), Some(253))
    );
    assert_eq!(cfg.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(cfg.resolv_conf, Some(PathBuf::from("/etc/r.conf")));
}

#[test]
fn empty_strings_count_as_absent() {
    let v = net(json!({"subnet": "10.1.0.0/24", "rangeStart": "", "gateway": "", "dataDir": ""}));
    let cfg = parse_json(v).unwrap();
    assert_eq!(cfg.range_sets[0].ranges()[0].start, ip("10.1.0.1"));
    assert_eq!(cfg.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
}

#[test]
fn data_dir_alone_survives_bad_ranges() {
    let c = conf(net(json!({"subnet": "10.1.0.7/24", "dataDir": "/d"})));
    assert_eq!(parse_data_dir(&c).unwrap(), PathBuf::from("/d"));
    let e = parse_data_dir(&conf(json!({"name": "net1"}))).unwrap_err();
    assert_eq!(e.code(), 7);
}
