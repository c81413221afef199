//! Protobuf and gRPC types shared by the services, generated at build time
//! from the workspace's `proto/` folder.
//!
//! # Layout
//! - [`queue::v1`]: the waiting room's gRPC service (`onsale.queue.v1`),
//!   served by queue-service and called by core-service.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC reflection.
//! - [`MAX_VERIFY_BATCH`]: the limit both sides of `VerifyAccessBatch` use.

/// `onsale.queue.*` packages.
pub mod queue {
    /// Version 1 of the waiting room API.
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("onsale.queue.v1");
    }
}

/// Most checks in one `VerifyAccessBatch` request (the limit documented in
/// `queue.proto`): queue-service refuses more, core-service never sends more.
pub const MAX_VERIFY_BATCH: usize = 256;

/// Encoded `FileDescriptorSet` of every compiled proto, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("onsale_descriptor");
