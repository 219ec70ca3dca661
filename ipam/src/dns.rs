//! resolv.conf to the result's `dns`, as the reference reads it: `nameserver` (each), `domain` (last wins),
//! `search` and `options` (all words); comments (`#`, `;`) and short lines skipped.

use corral_cni::Dns;

/// Parses resolv.conf text.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [key, first, rest @ ..] = fields.as_slice() else {
            continue;
        };
        let all = || {
            std::iter::once(*first)
                .chain(rest.iter().copied())
                .map(String::from)
        };
        match *key {
            "nameserver" => dns.nameservers.push(first.to_string()),
            "domain" => dns.domain = first.to_string(),
            "search" => dns.search.extend(all()),
            "options" => dns.options.extend(all()),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_four_keys_like_the_reference() {
        let text = "# comment\n; other\nnameserver 10.0.0.1\nnameserver   fd00::1 extra\n\
                    domain a.example\ndomain b.example\nsearch x.example y.example\n\
                    options ndots:5 timeout:1\nsortlist 1.2.3.4\nnameserver\n";
        let dns = parse_resolv_conf(text);
        assert_eq!(dns.nameservers, ["10.0.0.1", "fd00::1"]);
        assert_eq!(dns.domain, "b.example");
        assert_eq!(dns.search, ["x.example", "y.example"]);
        assert_eq!(dns.options, ["ndots:5", "timeout:1"]);
        assert!(parse_resolv_conf("").is_empty());
    }
}
