//! Kafka over TLS: the `[kafka]` TLS settings reach librdkafka, which is
//! built with OpenSSL (rdkafka's `ssl-vendored`). The local broker (Tansu
//! 0.6) serves no TLS (docs/tls.md), so these tests need no broker: a CA
//! file librdkafka cannot load fails the client's creation, and a client
//! with the right CA file is created.

use std::{path::PathBuf, time::Duration};

use events::producer::Producer;
use platform::settings::{KafkaSecurityProtocol, KafkaSettings};

fn ssl(ca: Option<PathBuf>) -> KafkaSettings {
    KafkaSettings {
        brokers: "127.0.0.1:9".into(),
        topic_suffix: String::new(),
        group_prefix: "t".into(),
        security_protocol: KafkaSecurityProtocol::Ssl,
        ssl_ca_file: ca,
        allow_plaintext: false,
    }
}

#[test]
fn a_producer_configured_for_ssl_loads_its_ca_file_and_refuses_a_missing_one() {
    let dir = std::env::temp_dir().join(devstack::testing::unique_suffix());
    std::fs::create_dir_all(&dir).unwrap();
    let certs = devstack::tls::Certs::ensure(&dir).expect("throw-away certificates");
    let settings = ssl(Some(certs.ca.clone()));
    let properties = settings.client_properties();
    assert!(properties.contains(&("security.protocol", "ssl".to_owned())));
    Producer::new(&settings, Duration::from_secs(1)).expect("an SSL producer with the CA");
    let missing = ssl(Some(dir.join("no-such-ca.pem")));
    let error = Producer::new(&missing, Duration::from_secs(1)).unwrap_err();
    let chain = platform::problem::ErrorChain(&error).to_string();
    assert!(chain.contains("ssl.ca.location"), "{chain}");
    let _ = std::fs::remove_dir_all(dir);
}
