//! A fault drill on a private 3+3 Redis Cluster (its own ports and folder,
//! so the shared stack's tests are not disturbed): a master killed with
//! `kill -9` is replaced by its replica, `healthy` calls the cluster
//! degraded, and `up` brings the dead node back as a replica without a
//! purge, keeping the data the promoted replica holds.

use std::{process::Command, time::Duration};

use devstack::{StackConfig, redis};

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn role(port: u16) -> String {
    cli(port, &["role"])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `kill -9` of the node on `port`.
fn kill(config: &StackConfig, port: u16) {
    let pid: i32 = std::fs::read_to_string(config.run_dir().join(format!("redis-{port}.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Gone before `up` looks for it.
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn a_killed_master_is_replaced_and_up_rejoins_it_as_a_replica_without_a_purge() {
    let dir = std::env::temp_dir().join(format!(
        "onsale-redis-heal-{}",
        devstack::testing::unique_suffix()
    ));
    // Clear of the shared stack (7000–7005), its TLS twin (7100–7105) and
    // a second checkout's stack (7200–7205).
    let base = StackConfig::default().redis_port + 400;
    let config = StackConfig {
        dir: dir.clone(),
        redis_port: base,
        ..StackConfig::default()
    };
    for folder in [config.logs_dir(), config.run_dir()] {
        std::fs::create_dir_all(folder).unwrap();
    }
    redis::up(&config).expect("the private cluster forms");
    redis::healthy(&config).expect("a new cluster is whole");

    // A key, acknowledged by the replica before the kill.
    let key = "{drill}:seat";
    assert_eq!(cli(base, &["-c", "set", key, "sold"]).trim(), "OK");
    let slot = cli(base, &["cluster", "keyslot", key]).trim().to_owned();
    let owner = (base..base + redis::NODES)
        .find(|&p| {
            role(p) == "master" && cli(p, &["cluster", "countkeysinslot", &slot]).trim() == "1"
        })
        .expect("a master owns the key");
    assert_eq!(cli(owner, &["wait", "1", "5000"]).trim(), "1");

    kill(&config, owner);
    // The replica takes over after the node timeout (5 s).
    let survivor = (base..base + redis::NODES).find(|&p| p != owner).unwrap();
    let promoted = (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        cli(survivor, &["cluster", "info"]).contains("cluster_state:ok")
            && cli(survivor, &["cluster", "nodes"])
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some("master,fail"))
    });
    assert!(promoted, "a replica was promoted");
    let error = redis::healthy(&config).expect_err("a cluster with a dead node is not healthy");
    assert!(format!("{error:#}").contains("degraded"), "{error:#}");

    redis::up(&config).expect("up heals the cluster without a purge");
    redis::healthy(&config).expect("the healed cluster is whole");
    assert_eq!(
        role(owner),
        "slave",
        "the restarted node rejoined as a replica"
    );
    let nodes = cli(survivor, &["cluster", "nodes"]);
    assert!(
        !nodes.contains("fail"),
        "the failed entry is forgotten: {nodes}"
    );
    assert_eq!(nodes.lines().filter(|l| l.contains("master")).count(), 3);
    let value = cli(survivor, &["-c", "get", key]);
    assert_eq!(value.trim(), "sold", "the promoted replica kept the data");

    // Killed and brought back at once, before the cluster has even noticed:
    // `up` promotes the replica itself and rejoins the node.
    let second = (base..base + redis::NODES)
        .find(|&p| role(p) == "master" && p != survivor)
        .unwrap();
    kill(&config, second);
    redis::up(&config).expect("up heals a master killed a moment ago");
    redis::healthy(&config).expect("the cluster is whole again");
    assert_eq!(role(second), "slave");
    let value = cli(survivor, &["-c", "get", key]);
    assert_eq!(value.trim(), "sold");

    // What an older `up` did: the dead node restarted empty and alone, its
    // old entry left without an address, so the cluster never promotes its
    // replica. `up` heals that too.
    let third = (base..base + redis::NODES)
        .find(|&p| role(p) == "master" && p != survivor)
        .unwrap();
    kill(&config, third);
    let alone = dir.join(format!("alone-{third}"));
    std::fs::create_dir_all(&alone).unwrap();
    let started = Command::new("redis-server")
        .args(["--port", &third.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--cluster-enabled",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "yes", "--pidfile"])
        .arg(config.run_dir().join(format!("redis-{third}.pid")))
        .arg("--dir")
        .arg(&alone)
        .status()
        .unwrap();
    assert!(started.success());
    // The survivors meet the new node at the old address and drop the old
    // entry's address (within a few seconds; healing must work either way).
    for _ in 0..75 {
        if cli(survivor, &["cluster", "nodes"]).contains("noaddr") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    redis::up(&config).expect("up heals a node restarted alone");
    redis::healthy(&config).expect("whole again");
    assert_eq!(role(third), "slave");
    assert_eq!(cli(survivor, &["-c", "get", key]).trim(), "sold");

    redis::down(&config);
    let _ = std::fs::remove_dir_all(dir);
}
