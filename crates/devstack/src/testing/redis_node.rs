//! A throw-away one-node Redis Cluster for the tests that stop Redis
//! under a running service: the shared devstack cluster must never be
//! stopped, since other tests run on it at the same time.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

impl PrivateRedisNode {
    /// The node's URL, for `ONSALE__REDIS__URLS`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// A one-node Redis Cluster owning all slots; killed on drop.
pub struct PrivateRedisNode {
    /// The node's port on 127.0.0.1.
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateRedisNode {
    /// A node on a free port, not started yet.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("onsale-redis-node-{}", super::unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            port,
            dir,
            child: None,
        }
    }

    /// Starts `redis-server` (installed by devstack) with cluster mode on.
    ///
    /// # Panics
    /// When `redis-server` cannot be started.
    pub fn start(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
            ])
            .args([
                "--cluster-config-file",
                "nodes.conf",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
    }

    /// Gives the node every slot (kept in `nodes.conf` across restarts)
    /// and waits until the cluster is `ok`.
    ///
    /// # Panics
    /// When the node does not answer within 10 s.
    pub async fn assign_slots(&self) {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
        let mut connection = super::eventually(Duration::from_secs(10), || async {
            client.get_multiplexed_async_connection().await.ok()
        })
        .await;
        // After a restart the node keeps its slots in nodes.conf.
        let _: Result<String, _> = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .query_async(&mut connection)
            .await;
        super::eventually(Duration::from_secs(10), || {
            let mut connection = connection.clone();
            async move {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut connection)
                    .await
                    .ok()?;
                info.contains("cluster_state:ok").then_some(())
            }
        })
        .await;
    }

    /// Kills the node; its slots survive in `nodes.conf` for a restart.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedisNode {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
