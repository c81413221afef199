//! The devstack's Redis Cluster serves keys on every master through the
//! cluster client, as the services will use it.

use deadpool_redis::cluster::{Config, Runtime};
use redis::AsyncCommands;

#[tokio::test]
async fn keys_on_different_slots_are_served_by_different_masters() {
    let stack = devstack::testing::stack();
    let pool = Config::from_urls(stack.redis_urls.clone())
        .create_pool(Some(Runtime::Tokio1))
        .unwrap();
    let mut connection = pool.get().await.expect("a cluster connection");
    let prefix = devstack::testing::unique_suffix();

    // Hash tags pick the slot: these three spread over the 16384 slots.
    let keys: Vec<String> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|tag| format!("{{{prefix}{tag}}}:k"))
        .collect();
    let mut slots = std::collections::HashSet::new();
    for key in &keys {
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        slots.insert(slot);
    }
    assert!(slots.len() >= 2, "the keys land on several slots");

    for (i, key) in keys.iter().enumerate() {
        let () = connection.set_ex(key, i, 60).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        let value: usize = connection.get(key).await.unwrap();
        assert_eq!(value, i);
    }

    // The slots belong to more than one master: a real cluster, not one node.
    // Each entry: [start, end, [master ip, master port, id, …], replicas…].
    let reply: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut connection)
        .await
        .unwrap();
    let ranges: Vec<(i64, i64, i64)> = reply
        .iter()
        .map(|entry| {
            let int =
                |v: &redis::Value| -> i64 { redis::from_redis_value_ref(v).expect("an integer") };
            let master: Vec<redis::Value> =
                redis::from_redis_value_ref(&entry[2]).expect("a node array");
            (int(&entry[0]), int(&entry[1]), int(&master[1]))
        })
        .collect();
    let masters: std::collections::HashSet<i64> = ranges.iter().map(|r| r.2).collect();
    assert_eq!(masters.len(), 3, "three masters own the slots");
    let owners: std::collections::HashSet<i64> = slots
        .iter()
        .map(|slot| {
            ranges
                .iter()
                .find(|(start, end, _)| start <= slot && slot <= end)
                .expect("every slot is owned")
                .2
        })
        .collect();
    assert!(owners.len() >= 2, "keys are served by at least two masters");
}
