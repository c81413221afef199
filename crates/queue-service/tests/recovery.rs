//! Self-recovery: queue-service started before Redis, and Redis restarted
//! under it. Uses a throw-away one-node Redis Cluster on a free port (the
//! shared devstack cluster must not be stopped), killed when the test ends.

mod common;

use std::time::Duration;

use common::{event_id, eventually, room, settings_with, spawn_app_with};
use devstack::testing::PrivateRedisNode as Node;
use reqwest::StatusCode;

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
