//! Self-recovery: queue-service started before Redis, and Redis restarted
//! under it. Uses a throw-away one-node Redis Cluster on a free port (the
//! shared devstack cluster must not be stopped), killed when the test ends.

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{event_id, eventually, room, settings_with, spawn_app_with};
use reqwest::StatusCode;

/// A one-node Redis Cluster owning all slots; killed on drop.
struct Node {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Node {
    fn new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "queue-recovery-{}",
            devstack::testing::unique_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            port,
            dir,
            child: None,
        }
    }

    fn start(&mut self) {
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

    async fn assign_slots(&self) {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
        let mut connection = eventually(Duration::from_secs(10), || async {
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
        eventually(Duration::from_secs(10), || {
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

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_service_recovers_by_itself_when_redis_comes_back() {
    let mut node = Node::new();
    let app = spawn_app_with(settings_with(
        &format!("redis://127.0.0.1:{}", node.port),
        "recovery:",
    ))
    .await;

    // Started before Redis: 503 and not ready, but serving.
    let event = event_id();
    assert_eq!(
        app.enter(&event, "fan-1").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        app.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    node.start();
    node.assign_slots().await;
    eventually(Duration::from_secs(15), || async {
        (app.get("/readyz").await.status == StatusCode::OK).then_some(())
    })
    .await;
    app.open_room(&event, room(5, 100.0)).await;
    assert_eq!(app.enter(&event, "fan-1").await.status, StatusCode::CREATED);

    // Redis dies under an established connection, then returns empty.
    node.stop();
    let down = app.enter(&event, "fan-2").await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.body
    );
    assert_eq!(down.code(), "unavailable");
    node.start();
    node.assign_slots().await;
    eventually(Duration::from_secs(15), || async {
        (app.get("/readyz").await.status == StatusCode::OK).then_some(())
    })
    .await;
    app.open_room(&event, room(5, 100.0)).await;
    let back = app.enter(&event, "fan-2").await;
    assert_eq!(back.status, StatusCode::CREATED, "{}", back.body);
    app.stop().await;
}
