//! Remedies: the smallest arp_announce change whose replay through the rule table stops a
//! foreign sender, or an address for the egress device when no level can; and how to run it
//! in the request's namespace. Commands are built word by word through `shell`, so a name
//! cannot turn one command into another.

use std::borrow::Cow;

use arp_trace_model::Remedy;

use super::ctx::{is_foreign, Ctx};
use super::shell;

fn sysctl_key(conf: &str) -> String {
    // sysctl(8) and sysctl.d(5) read '/' in a key as a literal '.', as in VLAN names eth0.100.
    format!("net.ipv4.conf.{}.arp_announce", conf.replace('.', "/"))
}

/// The smallest arp_announce level whose replay (through [`RULES`]) gives this request a sender
/// inside the egress interface's subnets; an address change when no level can.
pub(super) fn raise_announce(c: &Ctx<'_>) -> Option<Remedy<'static>> {
    if !c.foreign() {
        return None;
    }
    for level in [1i32, 2] {
        let Some((settings, resulting)) = c.settings_for(level) else {
            continue;
        };
        let facts = c.with_settings(&settings);
        let outcome = c.senders_under(&facts);
        let fixed = !outcome.is_empty()
            && outcome
                .iter()
                .all(|(a, _)| !a.is_unspecified() && !is_foreign(&facts, c.dev(), *a));
        if fixed {
            return Some(sysctl_remedy(c, level, resulting, &settings));
        }
    }
    Some(address_remedy(c))
}

fn sysctl_remedy(
    c: &Ctx<'_>,
    level: i32,
    resulting: i32,
    settings: &[(String, i32)],
) -> Remedy<'static> {
    let dev = c.dev();
    let mut writes = vec!["sysctl".to_string(), "-w".into()];
    writes.extend(
        settings
            .iter()
            .map(|(conf, v)| format!("{}={v}", sysctl_key(conf))),
    );
    let lines: Vec<String> = settings
        .iter()
        .map(|(conf, v)| format!("{} = {v}", sysctl_key(conf)))
        .collect();
    // One file per interface, so remedies for several interfaces do not overwrite each other.
    let file = shell::quote(&format!("/etc/sysctl.d/90-arp-announce-{dev}.conf")).into_owned();
    // echo reads backslashes in some shells (dash): printf '%s' never does.
    let persistent = if lines.len() == 1 && !lines[0].contains('\\') {
        format!("echo {} > {file}", shell::command(&lines))
    } else {
        format!("printf '%s\\n' {} > {file}", shell::command(&lines))
    };
    let mut tradeoff = match (level, resulting) {
        (1, 1) => format!(
            "1 is the smallest change that stops this: {dev} still announces a packet's own source when one of {dev}'s subnets holds both it and the target (a secondary address, say) and its primary address otherwise, while 2 would also work and keeps secondary and VIP addresses out of every request (the usual LVS-DR/keepalived advice), at the cost of peers learning those addresses only from replies or gratuitous ARP."
        ),
        (1, _) => format!(
            "{dev}'s own arp_announce={} then takes effect, so {dev} always announces its primary address for the target's subnet and keeps secondary and VIP addresses out of requests, which peers then learn only from replies or gratuitous ARP.",
            c.dev_level
        ),
        _ => format!(
            "2 always announces {dev}'s primary address for the target's subnet, so secondary and VIP addresses never appear in requests and peers learn them only from replies or gratuitous ARP; 1 would not change this request's sender."
        ),
    };
    if c.all > 2 {
        tradeoff.push_str(&format!(
            " net.ipv4.conf.all.arp_announce={} acts like 0 and max(all, {dev}) keeps it in force over any per-interface value, so all itself comes down to {level}, which also raises every other interface to at least {level}.",
            c.all
        ));
    }
    Remedy {
        command: shell::command(&writes).into(),
        persistent: persistent.into(),
        tradeoff: tradeoff.into(),
    }
}

fn address_remedy(c: &Ctx<'_>) -> Remedy<'static> {
    let (dev, target) = (c.dev(), c.target());
    let elsewhere = c
        .facts
        .addrs
        .iter()
        .find(|a| a.ifname != dev && a.contains(target))
        .map(|a| format!(" (here {}, {})", a.ifname, super::text::subnet(a)))
        .unwrap_or_default();
    Remedy {
        command: shell::address_command(&target.to_string(), dev).into(),
        persistent: shell::comment(&format!(
            "Add that address to {dev}'s persistent network configuration (systemd-networkd .network file, NetworkManager connection, netplan or /etc/network/interfaces)."
        )).into(),
        tradeoff: format!(
            "arp_announce cannot help, because with no address on {dev} every level ends in inet_select_addr() borrowing one from another interface; give {dev} an address in {target}'s subnet, or route {target} via an interface that has one{elsewhere}."
        ).into(),
    }
}

/// Makes the remedy runnable for a request seen in another network namespace: sysctls and
/// addresses are per namespace, and /etc/sysctl.d only configures the host's. A namespace
/// with an `ip netns` name is entered by that name, any other through a process found inside
/// it by its inode when the command runs (a PID found now may be another process's by then).
pub fn run_in_namespace(r: &mut Remedy<'_>, inode: u32, name: Option<&str>) {
    let (prefix, what) = match name {
        Some(n) => (shell::by_name(n), format!("namespace {n}")),
        None => (shell::by_inode(inode), format!("namespace {inode}")),
    };
    if !r.command.starts_with('#') {
        r.command = Cow::Owned(format!("{prefix}{}", r.command));
    }
    if r.command.contains("sysctl -w") {
        r.persistent = Cow::Owned(shell::comment(&format!(
            "/etc/sysctl.d configures only the host's namespace: apply the setting where \
             {what} is set up (after `ip netns add`, in the container runtime's or pod's \
             sysctls, e.g. securityContext.sysctls)"
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remedies_for_other_namespaces_say_where_to_run() {
        let base = Remedy {
            command: "sysctl -w net.ipv4.conf.eth3.arp_announce=1".into(),
            persistent: "echo x > /etc/sysctl.d/90-arp-announce-eth3.conf".into(),
            tradeoff: "".into(),
        };
        let mut r = base.clone();
        run_in_namespace(&mut r, 7, Some("srv"));
        assert_eq!(
            r.command,
            "ip netns exec srv sysctl -w net.ipv4.conf.eth3.arp_announce=1"
        );
        assert!(r.persistent.starts_with("# /etc/sysctl.d configures only"));
        assert!(r.persistent.contains("namespace srv"), "{}", r.persistent);
        let mut r = base.clone();
        run_in_namespace(&mut r, 7, Some("a b;$(id)"));
        assert!(r.command.starts_with("ip netns exec 'a b;$(id)' sysctl -w"));
        let mut r = base;
        run_in_namespace(&mut r, 4026532281, None);
        assert_eq!(
            r.command,
            "nsenter --net=/proc/\"$(lsns -n -t net -o NS,PID | awk '$1 == 4026532281 { print \
             $2; exit }')\"/ns/net sysctl -w net.ipv4.conf.eth3.arp_announce=1"
        );
        assert!(
            r.persistent.contains("namespace 4026532281"),
            "{}",
            r.persistent
        );
    }
}
