//! Parser tests over byte fixtures captured from the kernel (6.x, by the root test
//! `captured_fixtures_match_the_kernel` in `tests/netlink.rs`), and over malformed bytes.

use super::decode::decode;
use super::*;
use crate::element::{Set, Table};

fn fixture(set: Set) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/netlink")
        .join(format!("{}.bin", set.name()));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every element of a fixture as `element counters comment`, sorted, plus whether the dump ended.
fn decoded(set: Set) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut done = false;
    for reply in parse_datagram(&fixture(set)).unwrap() {
        match reply {
            Reply::Elements { elements, .. } => {
                for raw in elements {
                    let element = decode(set, &raw).map(|e| e.to_string());
                    let counters = raw.counters.map(|c| format!(" [{} {}]", c.packets, c.bytes));
                    let comment = raw.comment.map(|c| format!(" #{c}"));
                    out.push(format!(
                        "{}{}{}",
                        element.unwrap_or_else(|| "?".into()),
                        counters.unwrap_or_default(),
                        comment.unwrap_or_default()
                    ));
                }
            }
            Reply::Done { .. } => done = true,
            _ => {}
        }
    }
    out.sort();
    (out, done)
}

#[test]
fn requests_carry_family_table_and_set() {
    let req = get_elements_request(7, NFPROTO_INET, "corral", "hostports4");
    assert_eq!(req.len() % 4, 0);
    assert_eq!(read_u32_ne(&req, 0), Some(req.len() as u32));
    assert_eq!(
        read_u16_ne(&req, 4),
        Some(0x0a0d),
        "NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM"
    );
    assert_eq!(read_u16_ne(&req, 6), Some(0x301), "NLM_F_REQUEST | NLM_F_DUMP");
    assert_eq!(read_u32_ne(&req, 8), Some(7));
    assert_eq!(req[16], NFPROTO_INET);
    let attrs: Vec<(u16, Vec<u8>)> = Attrs::new(&req[20..])
        .map(|(k, v)| (k.unwrap(), v.to_vec()))
        .collect();
    assert_eq!(attrs, [(1, b"corral\0".to_vec()), (2, b"hostports4\0".to_vec())]);
    let req = get_table_request(8, NFPROTO_BRIDGE, "corral");
    assert_eq!(read_u16_ne(&req, 4), Some(0x0a01));
    assert_eq!(read_u16_ne(&req, 6), Some(0x5), "NLM_F_REQUEST | NLM_F_ACK");
}

#[test]
fn port_maps_decode_with_counters_and_comments() {
    let (got, done) = decoded(Set::HostPorts4);
    assert!(done);
    assert_eq!(
        got,
        [
            "inet corral hostports4 { tcp . 7000 : 10.88.0.9 . 70 } [5 300] #by hand",
            "inet corral hostports4 { tcp . 8080 : 10.88.0.2 . 80 } [0 0] #net1/aaaa/eth0",
            "inet corral hostports4 { udp . 53 : 10.99.0.3 . 5353 } [0 0] #net2/bbbb/eth1",
        ]
    );
    assert_eq!(
        decoded(Set::HostIpPorts6).0,
        ["inet corral hostip_ports6 { sctp . fd50::1 . 9999 : fd00:88::2 . 9 } [0 0] #net1/aaaa/eth0"]
    );
    assert_eq!(
        decoded(Set::HostIpPorts4).0,
        ["inet corral hostip_ports4 { udp . 192.168.50.1 . 5353 : 10.88.0.2 . 53 } [0 0] #net1/aaaa/eth0"]
    );
    assert_eq!(decoded(Set::HostPorts6).0.len(), 2);
}

#[test]
fn interval_sets_decode_to_prefixes() {
    assert_eq!(
        decoded(Set::DnatMasq4).0,
        [
            "inet corral dnat_masq4 { 0.0.0.0/0 . 10.99.0.3 } #net2/bbbb/eth1",
            "inet corral dnat_masq4 { 10.88.0.0/16 . 10.88.0.2 } #net1/aaaa/eth0",
            "inet corral dnat_masq4 { 127.0.0.0/8 . 10.88.0.2 } #net1/aaaa/eth0",
        ]
    );
    assert_eq!(
        decoded(Set::DnatMasq6).0,
        [
            "inet corral dnat_masq6 { ::/0 . fd00:99::3 } #net2/bbbb/eth1",
            "inet corral dnat_masq6 { fd00:88::/64 . fd00:88::2 } #net1/aaaa/eth0",
        ]
    );
    assert_eq!(
        decoded(Set::MasqSkip4).0,
        ["inet corral masq_skip4 { 10.88.0.2 . 10.88.0.0/16 } #net1/aaaa/eth0"]
    );
    assert_eq!(
        decoded(Set::MasqSkip6).0,
        ["inet corral masq_skip6 { fd00:88::2 . fd00:88::/64 } #net1/aaaa/eth0"]
    );
}

#[test]
fn plain_sets_decode() {
    assert_eq!(
        decoded(Set::MasqSrc4).0,
        ["inet corral masq_src4 { 10.88.0.2 } #net1/aaaa/eth0"]
    );
    assert_eq!(
        decoded(Set::MasqSrc6).0,
        ["inet corral masq_src6 { fd00:88::2 } #net1/aaaa/eth0"]
    );
    assert_eq!(
        decoded(Set::SpoofPorts).0,
        [
            "bridge corral spoof_ports { \"veth0123456789a\" }",
            "bridge corral spoof_ports { \"veth0a\" } #net1/aaaa/eth0",
        ]
    );
    assert_eq!(
        decoded(Set::SpoofAllowed).0,
        ["bridge corral spoof_allowed { \"veth0a\" . 02:42:ac:11:00:02 } #net1/aaaa/eth0"]
    );
}

#[test]
fn errors_and_acks_parse() {
    // NLMSG_ERROR with -ENOENT (2), then an ACK (error 0), each followed by the original header.
    let mut buf = Vec::new();
    for code in [-2i32, 0] {
        buf.extend_from_slice(&36u32.to_ne_bytes());
        buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        buf.extend_from_slice(&0u16.to_ne_bytes());
        buf.extend_from_slice(&9u32.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&code.to_ne_bytes());
        buf.extend_from_slice(&[0; 16]);
    }
    assert_eq!(
        parse_datagram(&buf).unwrap(),
        [
            Reply::Error { seq: 9, errno: 2 },
            Reply::Error { seq: 9, errno: 0 }
        ]
    );
}

#[test]
fn malformed_bytes_never_panic() {
    for set in Set::ALL {
        let bytes = fixture(set);
        // Every truncation, and every single-byte corruption of the first 160 bytes (headers, lengths, keys).
        for len in 0..bytes.len() {
            let _ = parse_datagram(&bytes[..len]).map(|r| walk(set, r));
        }
        for at in 0..bytes.len().min(160) {
            for value in [0u8, 1, 3, 0x7f, 0xff] {
                let mut bad = bytes.clone();
                bad[at] = value;
                let _ = parse_datagram(&bad).map(|r| walk(set, r));
            }
        }
    }
    assert!(parse_datagram(&[1, 0, 0]).is_err());
    assert!(
        parse_datagram(&[8, 0, 0, 0, 0, 0, 0, 0]).is_err(),
        "length below the header size"
    );
    assert_eq!(comment(&[0, 200, b'x']), None, "TLV longer than its buffer");
}

fn walk(set: Set, replies: Vec<Reply>) {
    for reply in replies {
        if let Reply::Elements { elements, .. } = reply {
            for raw in elements {
                let _ = decode(set, &raw);
            }
        }
    }
}

/// A captured `skeleton-<family>-<dump>.bin` fixture (see `tests/skeleton.rs`).
fn skeleton_fixture(family: &str, dump: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/netlink")
        .join(format!("skeleton-{family}-{dump}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn skeleton_objects(family: &str) -> Vec<Object> {
    let mut out = Vec::new();
    let mut done = 0;
    for dump in ["sets", "chains", "rules"] {
        for reply in parse_datagram(&skeleton_fixture(family, dump)).unwrap() {
            match reply {
                Reply::Object { object, .. } => out.push(object),
                Reply::Done { .. } => done += 1,
                _ => {}
            }
        }
    }
    assert_eq!(done, 3, "every dump ends");
    out
}

#[test]
fn dump_requests_name_message_family_and_table() {
    for (dump, msg) in [
        (Dump::Sets, 0x0a0a),
        (Dump::Chains, 0x0a04),
        (Dump::Rules, 0x0a07),
    ] {
        let req = dump_request(5, dump, NFPROTO_BRIDGE, "corral");
        assert_eq!(read_u32_ne(&req, 0), Some(req.len() as u32));
        assert_eq!(read_u16_ne(&req, 4), Some(msg), "{dump:?}");
        assert_eq!(read_u16_ne(&req, 6), Some(0x301), "NLM_F_REQUEST | NLM_F_DUMP");
        assert_eq!(read_u32_ne(&req, 8), Some(5));
        assert_eq!(req[16], NFPROTO_BRIDGE);
        let attrs: Vec<(u16, Vec<u8>)> = Attrs::new(&req[20..])
            .map(|(k, v)| (k.unwrap(), v.to_vec()))
            .collect();
        assert_eq!(attrs, [(1, b"corral\0".to_vec())], "NFTA_*_TABLE");
    }
}

/// The dumps of a skeleton the planner wrote, captured from the kernel, parse to an intact skeleton.
#[test]
fn captured_skeleton_dumps_are_intact() {
    use crate::plan::skeleton_damage;
    for (family, table) in [("inet", Table::Inet), ("bridge", Table::Bridge)] {
        let observed = ObservedSkeleton::collect("corral", &skeleton_objects(family));
        assert_eq!(
            skeleton_damage(table, Some(&observed)),
            Vec::<String>::new(),
            "{family}"
        );
    }
    let inet = ObservedSkeleton::collect("corral", &skeleton_objects("inet"));
    let postrouting = &inet.chains["postrouting"];
    assert_eq!(postrouting.rules, 8);
    assert_eq!(
        postrouting.hook,
        Some(ChainHook {
            number: 4,
            priority: 100,
            kind: "nat".into(),
            policy: Some(NF_ACCEPT),
        })
    );
    assert_eq!(inet.chains["hostports"].hook, None);
    assert_eq!(inet.chains["hostports"].rules, 4);
    assert!(inet.sets.contains("hostip_ports6"));
    assert!(
        inet.sets.iter().any(|s| s.starts_with("__set")),
        "anonymous sets are dumped too"
    );
    let bridge = ObservedSkeleton::collect("corral", &skeleton_objects("bridge"));
    assert_eq!(
        bridge.chains["prerouting"].hook.as_ref().map(|h| h.priority),
        Some(-300)
    );
    // Objects of another table in the dumps are ignored.
    assert_eq!(
        ObservedSkeleton::collect("other", &skeleton_objects("inet")),
        ObservedSkeleton::default()
    );
}

/// Hand-built `NFT_MSG_NEWCHAIN` with a hook nest, as the kernel encodes it.
fn chain_message(seq: u32, flags: u16, hook: Option<(u32, i32)>) -> Vec<u8> {
    fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align4(out.len()), 0);
    }
    let mut attrs = Vec::new();
    attr(&mut attrs, 1, b"corral\0");
    attr(&mut attrs, 3, b"output\0");
    if let Some((number, priority)) = hook {
        let mut nest = Vec::new();
        attr(&mut nest, 1, &number.to_be_bytes());
        attr(&mut nest, 2, &priority.to_be_bytes());
        attr(&mut attrs, 4 | 0x8000, &nest);
        attr(&mut attrs, 5, &NF_ACCEPT.to_be_bytes());
        attr(&mut attrs, 7, b"nat\0");
    }
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + 4 + attrs.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&0x0a03u16.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[NFPROTO_INET, 0, 0, 0]);
    msg.extend_from_slice(&attrs);
    msg
}

#[test]
fn hand_built_chain_messages_parse() {
    let mut buf = chain_message(3, 0x2, Some((3, -100)));
    buf.extend(chain_message(3, 0x2 | NLM_F_DUMP_INTR, None));
    assert_eq!(
        parse_datagram(&buf).unwrap(),
        [
            Reply::Object {
                seq: 3,
                interrupted: false,
                object: Object::Chain {
                    table: "corral".into(),
                    name: "output".into(),
                    hook: Some(ChainHook {
                        number: 3,
                        priority: -100,
                        kind: "nat".into(),
                        policy: Some(NF_ACCEPT),
                    }),
                },
            },
            Reply::Object {
                seq: 3,
                interrupted: true,
                object: Object::Chain {
                    table: "corral".into(),
                    name: "output".into(),
                    hook: None,
                },
            },
        ]
    );
}

#[test]
fn malformed_skeleton_dumps_never_panic() {
    let mut inputs: Vec<Vec<u8>> = vec![chain_message(1, 0, Some((0, -300)))];
    for family in ["inet", "bridge"] {
        for dump in ["sets", "chains", "rules"] {
            inputs.push(skeleton_fixture(family, dump));
        }
    }
    for bytes in inputs {
        for len in 0..bytes.len().min(2000) {
            let _ = parse_datagram(&bytes[..len]);
        }
        for at in 0..bytes.len().min(200) {
            for value in [0u8, 1, 3, 0x7f, 0xff] {
                let mut bad = bytes.clone();
                bad[at] = value;
                if let Ok(replies) = parse_datagram(&bad) {
                    let objects: Vec<Object> = replies
                        .into_iter()
                        .filter_map(|r| match r {
                            Reply::Object { object, .. } => Some(object),
                            _ => None,
                        })
                        .collect();
                    let _ = ObservedSkeleton::collect("corral", &objects);
                }
            }
        }
    }
    // A chain message cut after its table attribute has no name: an error, not an unnamed chain.
    let mut no_name = chain_message(1, 0, None);
    no_name.truncate(16 + 4 + 12);
    let len = no_name.len() as u32;
    no_name[..4].copy_from_slice(&len.to_ne_bytes());
    assert!(parse_datagram(&no_name).is_err());
}

/// Every element kind of every set of ours, in both address families where it has them.
fn one_of_each() -> Vec<crate::element::Element> {
    use crate::element::Element;
    use crate::model::Protocol;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
    vec![
        Element::MasqSource(ip("10.88.0.2")),
        Element::MasqSource(ip("fd00:88::2")),
        Element::MasqSkip {
            ip: ip("10.88.0.2"),
            subnet: net("10.88.0.0/16"),
        },
        Element::MasqSkip {
            ip: ip("fd00:88::2"),
            subnet: net("fd00:88::/64"),
        },
        Element::HostPort {
            protocol: Protocol::Tcp,
            host_ip: None,
            port: 8080,
            dest: ip("10.88.0.2"),
            dest_port: 80,
        },
        Element::HostPort {
            protocol: Protocol::Sctp,
            host_ip: None,
            port: 9999,
            dest: ip("fd00:88::2"),
            dest_port: 9,
        },
        Element::HostPort {
            protocol: Protocol::Udp,
            host_ip: Some(ip("192.168.50.1")),
            port: 5353,
            dest: ip("10.88.0.2"),
            dest_port: 53,
        },
        Element::HostPort {
            protocol: Protocol::Tcp,
            host_ip: Some(ip("fd50::1")),
            port: 443,
            dest: ip("fd00:88::2"),
            dest_port: 8443,
        },
        Element::DnatMasq {
            source: net("127.0.0.0/8"),
            dest: ip("10.88.0.2"),
        },
        Element::DnatMasq {
            source: net("::/0"),
            dest: ip("fd00:99::3"),
        },
        Element::SpoofPort("veth0a".into()),
        Element::SpoofAllowed {
            port: "vethabcdefghijk".into(),
            mac: [0x02, 0x42, 0xac, 0x11, 0x00, 0x02],
        },
    ]
}

#[test]
fn encoding_round_trips_for_every_set() {
    let elements = one_of_each();
    for set in Set::ALL {
        assert!(elements.iter().any(|e| e.set() == set), "no sample for {set:?}");
    }
    for element in elements {
        let raw = super::decode::encode(&element);
        assert_eq!(raw.key.len() % 4, 0, "{element}: register-aligned");
        assert_eq!(decode(element.set(), &raw), Some(element.clone()), "{raw:?}");
    }
}

#[test]
fn encoding_matches_the_bytes_the_kernel_dumps() {
    // The fixtures hold what nft added and the kernel dumped: the encoder must produce the same key, key_end
    // and data, or a removal would name elements that are not there.
    let mut checked = 0;
    for set in Set::ALL {
        for reply in parse_datagram(&fixture(set)).unwrap() {
            let Reply::Elements { elements, .. } = reply else {
                continue;
            };
            for raw in elements {
                let Some(element) = decode(set, &raw) else {
                    continue;
                };
                let encoded = super::decode::encode(&element);
                assert_eq!(
                    (&encoded.key, &encoded.key_end, &encoded.data),
                    (&raw.key, &raw.key_end, &raw.data),
                    "{element}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= Set::ALL.len(), "only {checked} elements checked");
}

/// `(type, flags, seq, family, res_id, attributes)` of every message of a batch.
fn batch_messages(bytes: &[u8]) -> Vec<(u16, u16, u32, u8, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = read_u32_ne(rest, 0).unwrap() as usize;
        assert_eq!(len % 4, 0);
        out.push((
            read_u16_ne(rest, 4).unwrap(),
            read_u16_ne(rest, 6).unwrap(),
            read_u32_ne(rest, 8).unwrap(),
            rest[16],
            u16::from_be_bytes([rest[18], rest[19]]),
            rest[20..len].to_vec(),
        ));
        rest = &rest[len..];
    }
    out
}

fn removal(family: u8, set: Set, elements: &[crate::element::Element]) -> SetRemoval {
    SetRemoval {
        family,
        table: "corral".into(),
        set: set.name().into(),
        elements: elements.iter().map(super::decode::encode).collect(),
    }
}

#[test]
fn destroy_batch_is_begin_one_message_per_set_end() {
    let elements = one_of_each();
    let skips: Vec<_> = elements
        .iter()
        .filter(|e| e.set() == Set::MasqSkip4)
        .cloned()
        .collect();
    let spoof: Vec<_> = elements
        .iter()
        .filter(|e| e.set() == Set::SpoofPorts)
        .cloned()
        .collect();
    let removals = [
        removal(NFPROTO_INET, Set::MasqSkip4, &skips),
        removal(NFPROTO_BRIDGE, Set::SpoofPorts, &spoof),
    ];
    let messages = batch_messages(&destroy_elements_batch(40, &removals));
    let kinds: Vec<(u16, u16, u32, u8, u16)> = messages.iter().map(|m| (m.0, m.1, m.2, m.3, m.4)).collect();
    assert_eq!(
        kinds,
        [
            (0x10, 0x1, 40, 0, 10),
            (0x0a1e, 0x5, 41, NFPROTO_INET, 0),
            (0x0a1e, 0x5, 42, NFPROTO_BRIDGE, 0),
            (0x11, 0x1, 43, 0, 10),
        ],
        "BATCH_BEGIN/END with res_id NFNL_SUBSYS_NFTABLES; DESTROYSETELEM with NLM_F_REQUEST | NLM_F_ACK"
    );
    assert!(messages[0].5.is_empty() && messages[3].5.is_empty());

    // masq_skip4's message: table, set, one list element with key and key_end.
    let attrs: Vec<(u16, u16, Vec<u8>)> = raw_attrs(&messages[1].5);
    assert_eq!(attrs[0], (1, 1, b"corral\0".to_vec()));
    assert_eq!(attrs[1], (2, 2, b"masq_skip4\0".to_vec()));
    assert_eq!(
        (attrs[2].0, attrs[2].1),
        (0x8003, 3),
        "nested NFTA_SET_ELEM_LIST_ELEMENTS"
    );
    let list = raw_attrs(&attrs[2].2);
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].0, list[0].1), (0x8001, 1), "nested NFTA_LIST_ELEM");
    let elem = raw_attrs(&list[0].2);
    let key = raw_attrs(&elem[0].2);
    let end = raw_attrs(&elem[1].2);
    assert_eq!(
        (elem[0].1, elem[1].1),
        (1, 10),
        "NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_KEY_END"
    );
    assert_eq!(
        key,
        [(1, 1, vec![10, 88, 0, 2, 10, 88, 0, 0])],
        "NFTA_DATA_VALUE ip . start"
    );
    assert_eq!(end, [(1, 1, vec![10, 88, 0, 2, 10, 88, 255, 255])], "ip . end");

    // The same message parsed back as elements by the dump parser gives the same element.
    let spoof_attrs = raw_attrs(&messages[2].5);
    let list = raw_attrs(&spoof_attrs[2].2);
    let parsed = parse_element(&list[0].2).unwrap();
    assert_eq!(decode(Set::SpoofPorts, &parsed), Some(spoof[0].clone()));
    assert_eq!(parsed.key_end, None);
}

/// `(raw type, type without flags, value)` of every attribute.
fn raw_attrs(bytes: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = usize::from(read_u16_ne(rest, 0).unwrap());
        let kind = read_u16_ne(rest, 2).unwrap();
        out.push((kind, kind & NLA_TYPE_MASK, rest[4..len].to_vec()));
        rest = &rest[align4(len)..];
    }
    out
}

fn error_message(seq: u32, code: i32) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(&36u32.to_ne_bytes());
    buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&code.to_ne_bytes());
    buf.extend_from_slice(&[0; 16]);
    buf
}

#[test]
fn batch_acks_need_every_message_and_name_the_failing_set() {
    let removals = [
        removal(NFPROTO_INET, Set::MasqSrc4, &one_of_each()[..1]),
        removal(NFPROTO_INET, Set::MasqSrc6, &one_of_each()[1..2]),
    ];
    // Both acknowledged, in two datagrams.
    let mut acks = BatchAcks::new(5, &removals);
    acks.feed(&parse_datagram(&error_message(6, 0)).unwrap());
    assert!(!acks.finished());
    acks.feed(&parse_datagram(&error_message(99, 0)).unwrap());
    assert!(!acks.finished(), "a stray sequence number acknowledges nothing");
    acks.feed(&parse_datagram(&error_message(7, 0)).unwrap());
    assert!(acks.finished());
    assert!(acks.failures().is_empty());

    // One refused: finished at once, naming the set.
    let mut acks = BatchAcks::new(5, &removals);
    acks.feed(&parse_datagram(&error_message(7, -22)).unwrap());
    assert!(acks.finished());
    assert_eq!(acks.failures(), [("masq_src6".to_owned(), 22)]);

    // A failed commit is reported on the batch begin, before the messages' own (zero) acknowledgements.
    let mut datagram = error_message(5, -16);
    datagram.extend(error_message(6, 0));
    datagram.extend(error_message(7, 0));
    let mut acks = BatchAcks::new(5, &removals);
    acks.feed(&parse_datagram(&datagram).unwrap());
    assert_eq!(acks.failures(), [("the batch".to_owned(), 16)]);

    // Sequence numbers wrap.
    let mut acks = BatchAcks::new(u32::MAX, &removals);
    acks.feed(&parse_datagram(&error_message(0, 0)).unwrap());
    acks.feed(&parse_datagram(&error_message(1, 0)).unwrap());
    assert!(acks.finished() && acks.failures().is_empty());
}

#[test]
fn malformed_acks_never_panic() {
    let removals = [removal(NFPROTO_INET, Set::MasqSrc4, &one_of_each()[..1])];
    let good = error_message(2, -2);
    for len in 0..good.len() {
        if let Ok(replies) = parse_datagram(&good[..len]) {
            BatchAcks::new(1, &removals).feed(&replies);
        }
    }
    for at in 0..good.len() {
        for value in [0u8, 1, 0x7f, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[at] = value;
            if let Ok(replies) = parse_datagram(&bad) {
                BatchAcks::new(1, &removals).feed(&replies);
            }
        }
    }
    let mut acks = BatchAcks::new(1, &[]);
    acks.feed(&parse_datagram(&error_message(2, 0)).unwrap());
    assert!(acks.finished(), "an empty batch has nothing to wait for");
}
