//! Which IP addresses a delivery may connect to: the rule behind the address guard.
//!
//! A webhook URL is chosen by a client, so without a guard it could make Switchboard POST to
//! this host, the private network it runs in, or a cloud metadata service. Only globally
//! reachable unicast addresses are allowed; `--dev` adds loopback (a test receiver on
//! `127.0.0.1`) and nothing else, since the unspecified address (`0.0.0.0`, `::`), private
//! and link-local ranges reach as far inside as loopback does.
//!
//! IPv6 addresses that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by
//! the IPv4 address they lead to, so no spelling of an internal address gets through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which addresses deliveries may reach, set once from `--dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Also allow this host's loopback addresses (`127.0.0.0/8`, `::1`, `::ffff:127.0.0.0/104`),
    /// so a test receiver can run beside the service.
    pub allow_loopback: bool,
}

/// Where an address leads, as far as the guard cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// A global unicast address: the public internet.
    Global,
    /// This host's loopback interface.
    Loopback,
    /// Anything else: private, link-local, shared, reserved, documentation, multicast,
    /// unspecified or broadcast.
    Internal,
}

impl AddressPolicy {
    /// Whether a delivery may connect to `ip` under this policy.
    pub fn allows(self, ip: IpAddr) -> bool {
        match reach(ip) {
            Reach::Global => true,
            Reach::Loopback => self.allow_loopback,
            Reach::Internal => false,
        }
    }
}

fn reach(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => reach_v4(v4),
        IpAddr::V6(v6) => reach_v6(v6),
    }
}

/// IPv4: everything is global except the special-purpose ranges of RFC 6890 and multicast.
fn reach_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, c, _] = ip.octets();
    if a == 127 {
        return Reach::Loopback;
    }
    let internal = a == 0 // "this network", 0.0.0.0 included
        || a == 10
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast, reserved (240.0.0.0/4) and broadcast
    if internal {
        Reach::Internal
    } else {
        Reach::Global
    }
}

/// IPv6: only `2000::/3` is global unicast; within it, the IETF protocol assignments
/// (`2001::/23`, Teredo included) and the documentation ranges are not, and 6to4 is judged by
/// its embedded IPv4 address. Outside it, mapped, compatible and NAT64 addresses are judged
/// by their IPv4 address; everything else (ULA, link-local, site-local, multicast,
/// discard-only, reserved) is internal.
fn reach_v6(ip: Ipv6Addr) -> Reach {
    let segments = ip.segments();
    let octets = ip.octets();
    let last_v4 = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if ip == Ipv6Addr::LOCALHOST {
        return Reach::Loopback;
    }
    if ip.is_unspecified() {
        return Reach::Internal;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return reach_v4(v4);
    }
    let embedded = match segments {
        // IPv4-compatible (deprecated ::/96)
        [0, 0, 0, 0, 0, 0, _, _] => Some(last_v4),
        // NAT64, the well-known prefix (RFC 6052)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last_v4),
        // 6to4 (RFC 3056): the IPv4 address is bits 16..48
        [0x2002, high, low, ..] => Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))),
        _ => None,
    };
    if let Some(v4) = embedded {
        // Only a global IPv4 address counts: a translator or tunnel leading to loopback
        // leads to its own host, which is not the loopback of `--dev`.
        return match reach_v4(v4) {
            Reach::Global => Reach::Global,
            Reach::Loopback | Reach::Internal => Reach::Internal,
        };
    }
    let global_unicast = (segments[0] & 0xe000) == 0x2000;
    let ietf_assignments = segments[0] == 0x2001 && segments[1] < 0x0200; // 2001::/23
    let documentation = (segments[0] == 0x2001 && segments[1] == 0x0db8) // 2001:db8::/32
        || (segments[0] & 0xfff0) == 0x3ff0; // 3fff::/20
    if global_unicast && !ietf_assignments && !documentation {
        Reach::Global
    } else {
        // Among others: 64:ff9b:1::/48 (local-use NAT64, whose embedding depends on the
        // operator's prefix length), fc00::/7, fe80::/10, fec0::/10, ff00::/8, 100::/64.
        Reach::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCTION: AddressPolicy = AddressPolicy {
        allow_loopback: false,
    };
    const DEV: AddressPolicy = AddressPolicy {
        allow_loopback: true,
    };

    /// Allowed in production and in dev mode.
    const GLOBAL: &[&str] = &[
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "192.0.1.1",
        "192.0.3.1",
        "192.169.0.1",
        "198.17.255.255",
        "198.20.0.1",
        "198.51.99.1",
        "203.0.112.1",
        "223.255.255.255",
        "2606:2800:220:1::1",
        "2a00:1450:4001::1",
        "2001:200::1",
        "::ffff:1.1.1.1",
        "::8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:0808:0808::1",
    ];

    /// Allowed in dev mode only.
    const LOOPBACK: &[&str] = &[
        "127.0.0.1",
        "127.1.2.3",
        "127.255.255.255",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:127.9.9.9",
    ];

    /// Refused in production and in dev mode.
    const INTERNAL: &[&str] = &[
        // IPv4: this network, unspecified
        "0.0.0.0",
        "0.1.2.3",
        // RFC 1918
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "192.168.255.255",
        // shared (CGNAT), link-local
        "100.64.0.1",
        "100.127.255.255",
        "169.254.169.254",
        "169.254.0.1",
        // IETF protocol assignments, documentation, benchmarking
        "192.0.0.1",
        "192.0.0.170",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",
        "198.19.255.255",
        // multicast, reserved, broadcast
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "250.1.2.3",
        "255.255.255.255",
        // IPv6: unspecified, ULA, link-local, site-local, multicast, discard-only
        "::",
        "fc00::1",
        "fd00::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "feff::1",
        "ff02::1",
        "ff0e::1",
        "100::1",
        // documentation, Teredo and the rest of 2001::/23
        "2001:db8::1",
        "3fff::1",
        "2001::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:2::1",
        "2001:10::1",
        // IPv4-mapped internal
        "::ffff:0.0.0.0",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:192.168.1.1",
        // IPv4-compatible (deprecated), by the embedded address
        "::127.0.0.1",
        "::10.0.0.1",
        "::169.254.169.254",
        "::0.0.0.2",
        // NAT64 with an internal IPv4, and the local-use NAT64 prefix
        "64:ff9b::127.0.0.1",
        "64:ff9b::10.0.0.1",
        "64:ff9b::169.254.169.254",
        "64:ff9b::0.0.0.0",
        "64:ff9b:1::8.8.8.8",
        "64:ff9b:1::10.0.0.1",
        // 6to4 with an internal IPv4 (bits 16..48)
        "2002:7f00:0001::1",
        "2002:0a00:0001::1",
        "2002:a9fe:a9fe::1",
        "2002:c0a8:0101::1",
        "2002::1",
        // outside 2000::/3: reserved
        "4000::1",
        "5f00::1",
        "::2:0:0:1",
    ];

    fn parse(ip: &str) -> IpAddr {
        ip.parse().unwrap_or_else(|_| panic!("{ip} is an address"))
    }

    #[test]
    fn production_allows_global_addresses_only() {
        for ip in GLOBAL {
            assert!(PRODUCTION.allows(parse(ip)), "{ip} should be allowed");
        }
        for ip in LOOPBACK.iter().chain(INTERNAL) {
            assert!(!PRODUCTION.allows(parse(ip)), "{ip} should be refused");
        }
    }

    #[test]
    fn dev_mode_adds_loopback_and_nothing_else() {
        for ip in GLOBAL.iter().chain(LOOPBACK) {
            assert!(DEV.allows(parse(ip)), "{ip} should be allowed in dev mode");
        }
        for ip in INTERNAL {
            assert!(!DEV.allows(parse(ip)), "{ip} should be refused in dev mode");
        }
    }

    #[test]
    fn the_default_is_the_production_policy() {
        assert_eq!(AddressPolicy::default(), PRODUCTION);
    }
}
