//! The service credential on gRPC between onsale's services: the caller
//! sends `authorization: Bearer <key>` metadata, the server checks it in
//! constant time. The key is a secret from configuration, shared by the
//! services of one deployment.

use std::sync::Arc;

use tonic::{Request, Status, metadata::MetadataValue};

use crate::{
    auth::constant_time_eq,
    settings::{ExposeSecret, Secret},
};

/// A server interceptor that lets through only calls carrying `key`;
/// others get `UNAUTHENTICATED`. Wrap the protected service with it, and
/// leave health and reflection unwrapped, so probes need no secret.
pub fn require(
    key: Secret,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    let expected: Arc<[u8]> = format!("Bearer {}", key.expose_secret())
        .into_bytes()
        .into();
    move |request: Request<()>| {
        let given = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, &expected) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "a valid service credential is required",
            ))
        }
    }
}

/// A client interceptor that adds `key` to every call.
///
/// # Errors
/// The interceptor itself fails a call (`INTERNAL`) only when the key is
/// not valid metadata (a control character in it): settings validation
/// should refuse such a key at start.
pub fn present(
    key: Secret,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    let value: Option<MetadataValue<tonic::metadata::Ascii>> =
        format!("Bearer {}", key.expose_secret()).parse().ok();
    move |mut request: Request<()>| {
        let value = value
            .clone()
            .ok_or_else(|| Status::internal("the service credential is not valid metadata"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_with_the_key_passes_and_others_are_unauthenticated() {
        let key = Secret::from("grpc-key".to_owned());
        let check = require(key.clone());
        let add = present(key);
        let signed = add(Request::new(())).unwrap();
        assert!(check(signed).is_ok());
        let bare = check(Request::new(())).unwrap_err();
        assert_eq!(bare.code(), tonic::Code::Unauthenticated);
        let wrong = present(Secret::from("other".to_owned()))(Request::new(())).unwrap();
        assert_eq!(
            check(wrong).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
