//! Healing the cluster after a node died, instead of recreating it.
//!
//! 1. [`settle`], before the dead nodes are started again: every slot must
//!    be served by a live master. A dead master's replica is promoted with
//!    `CLUSTER FAILOVER TAKEOVER` (devstack knows the process is gone, so
//!    it need not wait out the node timeout; and an entry that lost its
//!    address, `noaddr`, is never gossiped as failed, so the cluster alone
//!    would never promote its replica). Then every survivor forgets the
//!    dead entries (`CLUSTER FORGET`, which bans the id for 60 s).
//! 2. [`rejoin`], once the nodes run again, empty: each joins as a replica
//!    of a master lacking one (`redis-cli --cluster add-node
//!    --cluster-slave` picks the master with the fewest replicas).
//!
//! If a master and its replica both died, their slots are lost with the
//! data; [`settle`] says so and `devstack down --purge` is the way out.

use std::{collections::HashSet, time::Duration};

use anyhow::{Context, Result, bail};

use super::{cli, info_field, redis_cli};
use crate::{process, tls::Certs};

/// One line of `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <master|-> …
/// <slot ranges…>`.
struct NodeLine<'a> {
    id: &'a str,
    address: &'a str,
    flags: Vec<&'a str>,
    master: &'a str,
    has_slots: bool,
}

impl NodeLine<'_> {
    fn is_master(&self) -> bool {
        self.flags.contains(&"master")
    }

    /// Flagged failed, suspected (`fail?`) or without an address.
    fn is_failing(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f.starts_with("fail") || *f == "noaddr")
    }

    /// Listens on one of `ports` of 127.0.0.1.
    fn is_at(&self, ports: &[u16]) -> bool {
        ports
            .iter()
            .any(|p| self.address.starts_with(&format!("127.0.0.1:{p}@")))
    }
}

fn node_lines(nodes: &str) -> Vec<NodeLine<'_>> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 8).then(|| NodeLine {
                id: fields[0],
                address: fields[1],
                flags: fields[2].split(',').collect(),
                master: fields[3],
                has_slots: fields.len() > 8,
            })
        })
        .collect()
}

/// Why the cluster in `nodes` (a `CLUSTER NODES` reply) is degraded: a
/// node flagged failed or without an address, or a master without a
/// replica; `None` when whole.
pub(super) fn degraded(nodes: &str) -> Option<String> {
    let lines = node_lines(nodes);
    if let Some(failed) = lines.iter().find(|n| n.is_failing()) {
        return Some(format!(
            "degraded: node {} ({}) has failed",
            failed.address, failed.id
        ));
    }
    lines
        .iter()
        .find(|m| m.is_master() && m.has_slots && !lines.iter().any(|r| r.master == m.id))
        .map(|m| format!("degraded: master {} has no replica", m.address))
}

/// Makes the `survivors` serve every slot without the `gone` nodes (dead,
/// or restarted empty), then forgets the entries of the gone nodes on
/// every survivor.
///
/// # Errors
/// When a master with slots has no surviving replica, or the survivors do
/// not reach `cluster_state:ok` within 30 s.
pub(super) fn settle(survivors: &[u16], gone: &[u16], tls: Option<&Certs>) -> Result<()> {
    let mut promoted = HashSet::new();
    let mut anchor = None;
    let settled = process::wait_until(
        "redis failover among the surviving nodes",
        Duration::from_secs(30),
        || {
            let Some((port, nodes)) = survivors
                .iter()
                .find_map(|&p| cli(p, tls, &["cluster", "nodes"]).ok().map(|n| (p, n)))
            else {
                return false;
            };
            let lines = node_lines(&nodes);
            let lost: Vec<&NodeLine<'_>> = lines
                .iter()
                .filter(|m| m.is_master() && m.has_slots && (m.is_failing() || m.is_at(gone)))
                .collect();
            for master in &lost {
                let replica = lines
                    .iter()
                    .find(|r| r.master == master.id && !r.is_failing() && r.is_at(survivors));
                if let Some(replica) = replica
                    && let Some(replica_port) = port_of(replica.address)
                    && promoted.insert(replica.id.to_owned())
                {
                    let _ = cli(replica_port, tls, &["cluster", "failover", "takeover"]);
                }
            }
            let ok = cli(port, tls, &["cluster", "info"])
                .is_ok_and(|info| info_field(&info, "cluster_state").as_deref() == Some("ok"));
            anchor = Some(port);
            ok && lost.is_empty()
        },
    );
    if settled.is_err() {
        bail!(
            "the surviving Redis nodes do not serve every slot (a master and its replica both \
             died, so their keys are gone); `devstack down --purge` resets the cluster"
        );
    }
    let anchor = anchor.context("no surviving Redis node answered")?;
    let nodes = cli(anchor, tls, &["cluster", "nodes"])?;
    let forget: Vec<String> = node_lines(&nodes)
        .iter()
        .filter(|n| !n.flags.contains(&"myself") && (n.is_failing() || n.is_at(gone)))
        .map(|n| n.id.to_owned())
        .collect();
    for id in &forget {
        for &port in survivors {
            // A replica refuses to forget its own master, and a node
            // itself; neither is among the dead here.
            let _ = cli(port, tls, &["cluster", "forget", id]);
        }
    }
    Ok(())
}

/// Adds each of the `gone` nodes, running again and empty, to the
/// survivors' cluster as a replica.
///
/// # Errors
/// When `redis-cli --cluster add-node` fails.
pub(super) fn rejoin(survivors: &[u16], gone: &[u16], tls: Option<&Certs>) -> Result<()> {
    let anchor = survivors[0];
    for &port in gone {
        // A node restarted empty by an earlier `up` is reset first, so
        // that add-node accepts it.
        let _ = cli(port, tls, &["cluster", "reset", "hard"]);
        let mut add = redis_cli(tls);
        add.args([
            "--cluster",
            "add-node",
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{anchor}"),
            "--cluster-slave",
        ]);
        process::run(&mut add)
            .with_context(|| format!("adding the restarted node {port} as a replica failed"))?;
        eprintln!("devstack: redis node {port} rejoined the cluster as a replica");
    }
    Ok(())
}

fn port_of(address: &str) -> Option<u16> {
    address.split_once('@')?.0.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHOLE: &str = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
d 127.0.0.1:7003@17003 slave a 0 0 1 connected
e 127.0.0.1:7004@17004 slave b 0 0 2 connected
f 127.0.0.1:7005@17005 slave c 0 0 3 connected
";

    #[test]
    fn a_whole_cluster_is_not_degraded() {
        assert_eq!(degraded(WHOLE), None);
    }

    #[test]
    fn a_failed_node_or_a_master_without_replica_is_degraded() {
        let failed = WHOLE.replace(
            "b 127.0.0.1:7001@17001 master",
            "b :0@0 master,fail?,noaddr",
        );
        assert!(degraded(&failed).unwrap().contains("has failed"));
        let alone: String = WHOLE
            .lines()
            .filter(|l| !l.starts_with('f'))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            degraded(&alone).as_deref(),
            Some("degraded: master 127.0.0.1:7002@17002 has no replica")
        );
    }

    #[test]
    fn a_node_line_gives_its_port_and_whether_it_is_at_a_gone_port() {
        let lines = node_lines(WHOLE);
        assert_eq!(port_of(lines[1].address), Some(7001));
        assert!(lines[1].is_at(&[7001]));
        assert!(!lines[1].is_at(&[7000, 7002]));
        assert!(lines[0].has_slots && !lines[3].has_slots);
    }
}
