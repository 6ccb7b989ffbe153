//! Which workers may become endpoints: the trust boundary between what workers report and
//! what the cluster routes to. Pure: no I/O.
//!
//! A worker's URL is built by the worker itself from its template's environment and
//! relayed by Vast unchecked, so it is untrusted input. Published as an EndpointSlice, an
//! address becomes a backend that an Ingress, a mesh or any client of the Service will
//! send traffic to with the operator's authority: the confused deputy of CVE-2021-25740.
//! So a URL becomes an endpoint only if its host is an IP literal that is globally
//! routable: private, shared, loopback, link-local, metadata, multicast and reserved
//! ranges are refused by default ([`DEFAULT_REFUSED`]). `--endpoint-allow-cidrs` opts
//! ranges back in (a VPN, a peered network); `--endpoint-deny-cidrs` adds ranges (the
//! cluster's own node or load-balancer ranges). Deny wins over allow, and what the
//! apiserver itself refuses in a slice ([`KUBERNETES_REFUSES`]) can never be allowed:
//! one such address would make the apiserver refuse the whole slice and freeze every
//! other endpoint on its port.
//!
//! [`select`] applies the policy and the per-WorkerGroup cap (`--max-endpoints`, lowest
//! worker ids first) to a worker list; discovery publishes its targets and the plan
//! compares two selections for the `EndpointRefused` and `TooManyEndpoints` events.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::crd::WorkerStatus;

/// Ranges the apiserver refuses in an EndpointSlice address (`ValidateEndpointIP`), or
/// treats as invalid (IPv4-mapped IPv6). No allow list brings them back.
pub const KUBERNETES_REFUSES: &[(&str, &str)] = &[
    ("0.0.0.0/32", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/24", "link-local multicast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped IPv6"),
    ("fe80::/10", "link-local"),
    ("ff02::/16", "link-local multicast"),
];

/// Ranges refused unless `--endpoint-allow-cidrs` names them: not globally routable, or
/// the cloud metadata and DNS services a workload must never be pointed at. The
/// documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)
/// are not among them, so tests and examples use them.
pub const DEFAULT_REFUSED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\", RFC 791"),
    ("10.0.0.0/8", "private-use, RFC 1918"),
    ("100.64.0.0/10", "shared address space, RFC 6598"),
    ("172.16.0.0/12", "private-use, RFC 1918"),
    ("192.0.0.0/24", "IETF protocol assignments, RFC 6890"),
    ("192.168.0.0/16", "private-use, RFC 1918"),
    ("198.18.0.0/15", "benchmarking, RFC 2544"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved and broadcast"),
    ("168.63.129.16/32", "Azure platform and metadata service"),
    ("::/96", "IPv4-compatible IPv6, deprecated"),
    (
        "64:ff9b:1::/48",
        "local-use IPv4/IPv6 translation, RFC 8215",
    ),
    ("100::/64", "discard-only, RFC 6666"),
    ("fc00::/7", "unique local, RFC 4193"),
    ("2001::/32", "Teredo tunnelling, RFC 4380"),
    ("ff00::/8", "multicast"),
];

/// Where a rule comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The apiserver refuses such an address.
    Kubernetes(&'static str),
    /// Not globally routable (or a metadata address): refused by default.
    Default(&'static str),
    /// `--endpoint-deny-cidrs`.
    Denied,
}

/// The rule that refused an address: a range and where it comes from. Its text names the
/// range, never the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// The range.
    pub net: IpNet,
    /// Why it is refused.
    pub source: Source,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Source::Kubernetes(what) => write!(f, "{} ({what}; Kubernetes refuses it)", self.net),
            Source::Default(what) => write!(f, "{} ({what})", self.net),
            Source::Denied => write!(f, "{} (--endpoint-deny-cidrs)", self.net),
        }
    }
}

/// Parses one CIDR of `--endpoint-allow-cidrs` or `--endpoint-deny-cidrs`. A bare address
/// is a single host; a range with host bits set is refused (it is usually a typo).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    let net: IpNet = s.parse().map_err(|_| {
        format!("{s:?} is not a CIDR (an address and a prefix length, like 203.0.113.0/24 or 2001:db8::/48)")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set: did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// The IPv4 address inside a NAT64 (`64:ff9b::/96`, RFC 6052) or 6to4 (`2002::/16`,
/// RFC 3056) address, with its prefix.
fn embedded_ipv4(a: std::net::Ipv6Addr) -> Option<(IpNet, std::net::Ipv4Addr)> {
    let s = a.segments();
    let v4 = |hi: u16, lo: u16| std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let net = "64:ff9b::/96".parse().ok()?;
        return Some((net, v4(s[6], s[7])));
    }
    if s[0] == 0x2002 {
        let net = "2002::/16".parse().ok()?;
        return Some((net, v4(s[1], s[2])));
    }
    None
}

fn table(rows: &[(&str, &'static str)], source: fn(&'static str) -> Source) -> Vec<Rule> {
    rows.iter()
        .filter_map(|(net, what)| {
            Some(Rule {
                net: net.parse().ok()?,
                source: source(what),
            })
        })
        .collect()
}

/// Which worker addresses may be published, and how many per WorkerGroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    kubernetes: Vec<Rule>,
    defaults: Vec<Rule>,
    /// Most endpoints per WorkerGroup.
    pub max_endpoints: usize,
}

impl Default for EndpointPolicy {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new(), 500)
    }
}

impl EndpointPolicy {
    /// The default refusals, with `allow` opted back in and `deny` added.
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>, max_endpoints: usize) -> Self {
        Self {
            allow,
            deny,
            kubernetes: table(KUBERNETES_REFUSES, Source::Kubernetes),
            defaults: table(DEFAULT_REFUSED, Source::Default),
            max_endpoints,
        }
    }

    /// The rule that refuses `addr`, if one does. Order: what Kubernetes refuses, then
    /// `--endpoint-deny-cidrs`, then `--endpoint-allow-cidrs` (which ends the search),
    /// then the default refusals; the most specific range of a step names the rule.
    pub fn refuses(&self, addr: IpAddr) -> Option<Rule> {
        let most_specific = |rules: &mut dyn Iterator<Item = Rule>| {
            rules
                .filter(|r| r.net.contains(&addr))
                .max_by_key(|r| r.net.prefix_len())
        };
        if let Some(rule) = most_specific(&mut self.kubernetes.iter().copied()) {
            return Some(rule);
        }
        let denied = self.deny.iter().map(|&net| Rule {
            net,
            source: Source::Denied,
        });
        if let Some(rule) = most_specific(&mut denied.into_iter()) {
            return Some(rule);
        }
        if self.allow.iter().any(|n| n.contains(&addr)) {
            return None;
        }
        if let IpAddr::V6(v6) = addr
            && let Some((net, v4)) = embedded_ipv4(v6)
            && self.refuses(IpAddr::V4(v4)).is_some()
        {
            // A translator or relay would take it to that IPv4 address.
            return Some(Rule {
                net,
                source: Source::Default("embeds an IPv4 address the policy refuses"),
            });
        }
        most_specific(&mut self.defaults.iter().copied())
    }

    /// `url` as `status.readyUrls` lists it: `<scheme>://<address>:<port>` as parsed, when
    /// it is an http(s) URL with an IP address this policy lets through; None otherwise
    /// (a hostname could name anything in the cluster, and a client of `readyUrls` must
    /// not be sent where an endpoint could not be). Rebuilt from what was parsed, so
    /// that a client with another URL parser reads the same host.
    pub fn ready_url(&self, url: &str) -> Option<String> {
        let (addr, port) = parse_endpoint(Some(url)).ok()?;
        if self.refuses(addr).is_some() {
            return None;
        }
        let scheme = url::Url::parse(url).ok()?.scheme().to_string();
        Some(match addr {
            IpAddr::V4(a) => format!("{scheme}://{a}:{port}"),
            IpAddr::V6(a) => format!("{scheme}://[{a}]:{port}"),
        })
    }
}

/// Why a worker is not published, apart from the address policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// Vast gave no URL.
    NoUrl,
    /// The URL names a host, not an IP address (FQDN slices are ignored by kube-proxy).
    Hostname,
    /// The URL cannot be parsed, or is not http(s).
    BadUrl,
    /// Beyond `--max-endpoints`.
    TooMany,
}

impl Skip {
    /// The words after "N workers" in `status.discovery.reason`.
    pub fn describe(self) -> &'static str {
        match self {
            Skip::NoUrl => "without URL",
            Skip::Hostname => "with a hostname URL (not an IP address)",
            Skip::BadUrl => "with an unparsable or non-HTTP URL",
            Skip::TooMany => "beyond --max-endpoints",
        }
    }
}

/// Parses a worker URL into an address and port (no policy applied). Only http and https
/// URLs: the `url` crate reads the host of other schemes as an opaque name.
pub fn parse_endpoint(url: Option<&str>) -> Result<(IpAddr, u16), Skip> {
    let url = url.ok_or(Skip::NoUrl)?;
    let parsed = url::Url::parse(url).map_err(|_| Skip::BadUrl)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Skip::BadUrl);
    }
    let addr = match parsed.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
        Some(url::Host::Domain(_)) => return Err(Skip::Hostname),
        None => return Err(Skip::BadUrl),
    };
    let port = parsed.port_or_known_default().ok_or(Skip::BadUrl)?;
    Ok((addr, port))
}

/// One worker as an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Worker id.
    pub id: i64,
    /// Its address.
    pub addr: IpAddr,
    /// Its port.
    pub port: u16,
    /// Ready state (`idle`, `running`).
    pub ready: bool,
    /// Going away (`stopping`, `destroying`).
    pub terminating: bool,
}

/// A worker list split by the policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// What is published, by worker id.
    pub targets: Vec<Target>,
    /// Workers left out by cause, counted.
    pub skipped: BTreeMap<Skip, i64>,
    /// Workers the address policy refused: worker id and rule.
    pub refused: BTreeMap<i64, Rule>,
    /// Publishable workers before the cap.
    pub publishable: usize,
}

impl Selection {
    /// Workers left out by the cap.
    pub fn over_limit(&self) -> i64 {
        self.skipped.get(&Skip::TooMany).copied().unwrap_or(0)
    }
}

/// Splits `workers` into endpoints, refusals and skips; at most
/// `policy.max_endpoints` targets, lowest worker ids first.
pub fn select(workers: &[WorkerStatus], policy: &EndpointPolicy) -> Selection {
    let mut out = Selection::default();
    let mut targets = Vec::new();
    for w in workers {
        match parse_endpoint(w.url.as_deref()) {
            Ok((addr, port)) => match policy.refuses(addr) {
                Some(rule) => {
                    out.refused.insert(w.id, rule);
                }
                None => targets.push(Target {
                    id: w.id,
                    addr,
                    port,
                    ready: w.ready,
                    terminating: matches!(w.status.as_str(), "stopping" | "destroying"),
                }),
            },
            Err(skip) => *out.skipped.entry(skip).or_insert(0) += 1,
        }
    }
    targets.sort_by_key(|t| t.id);
    out.publishable = targets.len();
    if targets.len() > policy.max_endpoints {
        let over = (targets.len() - policy.max_endpoints) as i64;
        out.skipped.insert(Skip::TooMany, over);
        targets.truncate(policy.max_endpoints);
    }
    out.targets = targets;
    out
}

/// The workers refused in `now` and not (or by another rule) in `before`, as the note of
/// an `EndpointRefused` event; None when there are none. Names worker ids and rules,
/// never addresses.
pub fn newly_refused(before: &Selection, now: &Selection) -> Option<String> {
    let new: Vec<(&i64, &Rule)> = now
        .refused
        .iter()
        .filter(|(id, rule)| before.refused.get(id) != Some(rule))
        .collect();
    if new.is_empty() {
        return None;
    }
    let mut by_rule: BTreeMap<&Rule, Vec<i64>> = BTreeMap::new();
    for (id, rule) in &new {
        by_rule.entry(rule).or_default().push(**id);
    }
    const SHOWN: usize = 10;
    let parts: Vec<String> = by_rule
        .iter()
        .map(|(rule, ids)| {
            let mut shown: Vec<String> = ids.iter().take(SHOWN).map(i64::to_string).collect();
            if ids.len() > SHOWN {
                shown.push(format!("and {} more", ids.len() - SHOWN));
            }
            format!(
                "worker{} {} by {rule}",
                if ids.len() == 1 { "" } else { "s" },
                shown.join(", ")
            )
        })
        .collect();
    Some(format!(
        "not published, the address policy refuses the reported address: {}",
        parts.join("; ")
    ))
}

/// The note of a `TooManyEndpoints` event.
pub fn over_limit_note(now: &Selection, max: usize) -> String {
    format!(
        "{} workers could be published, at most {max} are (--max-endpoints): the {} with the highest ids are left out",
        now.publishable,
        now.over_limit()
    )
}

/// The note of a `TooManyEndpoints` event when `now` goes over the cap and `before` did
/// not.
pub fn newly_over_limit(before: &Selection, now: &Selection, max: usize) -> Option<String> {
    (now.over_limit() > 0 && before.over_limit() == 0).then(|| over_limit_note(now, max))
}

/// The distinct rules of a selection's refusals (for the status reason).
pub fn refused_summary(sel: &Selection) -> String {
    let rules: BTreeSet<&Rule> = sel.refused.values().collect();
    if rules.is_empty() {
        return String::new();
    }
    let n = sel.refused.len();
    format!(
        "{n} worker{} refused by the address policy ({})",
        if n == 1 { "" } else { "s" },
        rules
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::workers::test_worker as w;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    fn refused_by(p: &EndpointPolicy, addr: &str) -> Option<String> {
        p.refuses(ip(addr)).map(|r| r.net.to_string())
    }

    #[test]
    fn every_default_range_is_refused_at_both_ends_and_the_documentation_ranges_pass() {
        let p = EndpointPolicy::default();
        for (range, _) in KUBERNETES_REFUSES.iter().chain(DEFAULT_REFUSED) {
            let n = net(range);
            for addr in [n.network(), n.broadcast()] {
                assert!(
                    p.refuses(addr).is_some(),
                    "{addr} (in {range}) must be refused"
                );
            }
        }
        // The ranges the issue names, each with an address inside.
        for addr in [
            "0.1.2.3",
            "10.96.0.1",
            "100.100.100.200",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.5.4",
            "172.31.255.255",
            "192.0.0.8",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.254",
            "224.0.0.251",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
            "168.63.129.16",
            "::",
            "::1",
            "::ffff:203.0.113.9",
            "::ffff:10.0.0.1",
            "64:ff9b:1::1",
            "100::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "ff05::2",
            // Translated or relayed to a refused IPv4 address: 10.0.0.5, 127.0.0.1,
            // 169.254.169.254, 192.168.1.1; and Teredo.
            "64:ff9b::a00:5",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:101::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(p.refuses(ip(addr)).is_some(), "{addr} must be refused");
        }
        for addr in [
            "192.0.2.1",
            "198.51.100.200",
            "203.0.113.9",
            "2001:db8::7",
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "198.20.0.1",
            "168.63.129.17",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "64:ff9b::cb00:7109",
            "2002:cb00:7109::1",
        ] {
            assert_eq!(refused_by(&p, addr), None, "{addr} must be allowed");
        }
        // Edges: just outside each private range.
        assert_eq!(refused_by(&p, "9.255.255.255"), None);
        assert_eq!(refused_by(&p, "11.0.0.0"), None);
        assert_eq!(refused_by(&p, "172.15.255.255"), None);
        assert_eq!(refused_by(&p, "192.167.255.255"), None);
        assert_eq!(refused_by(&p, "192.169.0.0"), None);
        assert_eq!(refused_by(&p, "100.63.255.255"), None);
        assert_eq!(refused_by(&p, "223.255.255.255"), None);
    }

    #[test]
    fn the_rule_is_the_most_specific_range_and_names_no_address() {
        let p = EndpointPolicy::default();
        assert_eq!(refused_by(&p, "::1").as_deref(), Some("::1/128"));
        assert_eq!(
            refused_by(&p, "::ffff:203.0.113.9").as_deref(),
            Some("::ffff:0.0.0.0/96")
        );
        assert_eq!(refused_by(&p, "224.0.0.1").as_deref(), Some("224.0.0.0/24"));
        assert_eq!(refused_by(&p, "225.0.0.1").as_deref(), Some("224.0.0.0/4"));
        let text = p.refuses(ip("10.1.2.3")).expect("refused").to_string();
        assert_eq!(text, "10.0.0.0/8 (private-use, RFC 1918)");
        assert!(!text.contains("10.1.2.3"));
    }

    #[test]
    fn allow_opts_back_in_deny_wins_and_kubernetes_refusals_stay() {
        let p = EndpointPolicy::new(
            vec![
                net("10.8.0.0/16"),
                net("127.0.0.0/8"),
                net("fd00::/8"),
                net("203.0.113.0/24"),
            ],
            vec![net("10.8.1.0/24"), net("203.0.113.128/25")],
            500,
        );
        assert_eq!(refused_by(&p, "10.8.0.5"), None, "allowed back");
        assert_eq!(refused_by(&p, "fd00::5"), None, "allowed back");
        assert_eq!(refused_by(&p, "10.9.0.5").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(
            refused_by(&p, "10.8.1.5").as_deref(),
            Some("10.8.1.0/24"),
            "deny wins"
        );
        let denied = p.refuses(ip("203.0.113.200")).expect("denied");
        assert_eq!(denied.source, Source::Denied);
        assert_eq!(
            denied.to_string(),
            "203.0.113.128/25 (--endpoint-deny-cidrs)"
        );
        assert_eq!(refused_by(&p, "203.0.113.5"), None);
        assert_eq!(
            refused_by(&p, "127.0.0.1").as_deref(),
            Some("127.0.0.0/8"),
            "what the apiserver refuses cannot be allowed"
        );
        assert!(matches!(
            p.refuses(ip("127.0.0.1")).map(|r| r.source),
            Some(Source::Kubernetes(_))
        ));
    }

    #[test]
    fn cidrs_parse_or_say_why_not() {
        assert_eq!(parse_cidr("10.0.0.0/8"), Ok(net("10.0.0.0/8")));
        assert_eq!(parse_cidr(" 2001:db8::/32 "), Ok(net("2001:db8::/32")));
        assert_eq!(parse_cidr("203.0.113.7"), Ok(net("203.0.113.7/32")));
        assert_eq!(parse_cidr("2001:db8::1"), Ok(net("2001:db8::1/128")));
        let e = parse_cidr("10.1.2.3/8").expect_err("host bits");
        assert!(e.contains("10.0.0.0/8"), "{e}");
        for bad in ["", "10.0.0.0/33", "ten", "10.0.0/8", "::/129"] {
            assert!(parse_cidr(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn selection_splits_and_one_refusal_never_takes_the_others_with_it() {
        let workers = [
            w(1, "idle", Some("http://203.0.113.1:7000")),
            w(2, "idle", Some("http://10.96.0.1:443")),
            w(3, "idle", Some("http://[::ffff:203.0.113.9]:7000")),
            w(4, "idle", Some("http://[2001:db8::4]:7000")),
            w(5, "idle", Some("http://169.254.169.254:80")),
            w(6, "idle", Some("http://host.example:1")),
            w(7, "idle", None),
            w(8, "idle", Some("http://[fd00::8]:7000")),
        ];
        let s = select(&workers, &EndpointPolicy::default());
        assert_eq!(s.targets.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(s.refused.keys().copied().collect::<Vec<_>>(), [2, 3, 5, 8]);
        assert_eq!(s.skipped.get(&Skip::Hostname), Some(&1));
        assert_eq!(s.skipped.get(&Skip::NoUrl), Some(&1));
        let note = newly_refused(&Selection::default(), &s).expect("note");
        assert!(note.contains("worker 2 by 10.0.0.0/8"), "{note}");
        assert!(note.contains("worker 3 by ::ffff:0.0.0.0/96"), "{note}");
        for addr in ["10.96.0.1", "203.0.113.9", "169.254.169.254", "fd00::8"] {
            assert!(!note.contains(addr), "the note names no address: {note}");
        }
        assert_eq!(newly_refused(&s, &s), None, "no change, no event");
        let summary = refused_summary(&s);
        assert!(
            summary.starts_with("4 workers refused by the address policy"),
            "{summary}"
        );
    }

    #[test]
    fn the_cap_keeps_the_lowest_ids_and_warns_once() {
        let workers: Vec<WorkerStatus> = [9, 3, 7, 1, 5]
            .iter()
            .map(|&i| w(i, "idle", Some(&format!("http://203.0.113.{i}:7000"))))
            .collect();
        let mut sorted = workers.clone();
        sorted.sort_by_key(|w| w.id);
        let p = EndpointPolicy::new(Vec::new(), Vec::new(), 3);
        let s = select(&sorted, &p);
        assert_eq!(
            s.targets.iter().map(|t| t.id).collect::<Vec<_>>(),
            [1, 3, 5]
        );
        assert_eq!(s.over_limit(), 2);
        assert_eq!(s.publishable, 5);
        let under = select(&sorted[..3], &p);
        assert_eq!(under.over_limit(), 0);
        assert!(
            newly_over_limit(&under, &s, 3)
                .is_some_and(|n| n.contains("the 2 with the highest ids"))
        );
        assert_eq!(newly_over_limit(&s, &s, 3), None);
        assert_eq!(newly_over_limit(&s, &under, 3), None);
    }

    #[test]
    fn ready_urls_are_only_what_could_be_published_rebuilt_from_the_parse() {
        let p = EndpointPolicy::default();
        let r = |u: &str| p.ready_url(u);
        assert_eq!(
            r("http://203.0.113.1:80").as_deref(),
            Some("http://203.0.113.1:80")
        );
        assert_eq!(
            r("https://203.0.113.1").as_deref(),
            Some("https://203.0.113.1:443")
        );
        assert_eq!(
            r("http://[2001:db8::8]:7000/").as_deref(),
            Some("http://[2001:db8::8]:7000")
        );
        // Refused, a hostname, not a URL, not http: none is listed.
        for bad in [
            "http://10.0.0.1:80",
            "http://worker.example.com",
            "http://kubernetes.default.svc:443",
            "not a url",
            "tcp://10.96.0.1:443",
            "grpc://169.254.169.254:80",
            "tcp://203.0.113.1:443",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
        // A backslash is a path separator to the url crate but not to every client's
        // parser: the listed URL is rebuilt from the address the policy checked.
        assert_eq!(
            r("http://203.0.113.1\\@10.0.0.1:80/").as_deref(),
            Some("http://203.0.113.1:80")
        );
    }

    #[test]
    fn exactly_at_the_cap_nothing_is_left_out() {
        let workers: Vec<WorkerStatus> = (1..=3)
            .map(|i| w(i, "idle", Some(&format!("http://203.0.113.{i}:7000"))))
            .collect();
        let s = select(&workers, &EndpointPolicy::new(Vec::new(), Vec::new(), 3));
        assert_eq!(s.targets.len(), 3);
        assert!(
            !s.skipped.contains_key(&Skip::TooMany),
            "{:?}: no \"0 workers beyond --max-endpoints\"",
            s.skipped
        );
        assert_eq!(newly_over_limit(&s, &s, 3), None, "not over: no warning");
    }

    #[test]
    fn a_refusal_note_names_ten_workers_a_rule_then_counts_the_rest() {
        let refused = |n: i64| {
            let workers: Vec<WorkerStatus> = (1..=n)
                .map(|i| w(i, "idle", Some(&format!("http://10.0.0.{i}:80"))))
                .collect();
            newly_refused(
                &Selection::default(),
                &select(&workers, &EndpointPolicy::default()),
            )
            .expect("a note")
        };
        let ten = refused(10);
        assert!(
            ten.contains(": workers 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 by 10.0.0.0/8"),
            "{ten}"
        );
        let eleven = refused(11);
        assert!(
            eleven.contains(": workers 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, and 1 more by 10.0.0.0/8"),
            "{eleven}"
        );
    }
}
