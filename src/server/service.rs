//! The driver's `CSIDriverProvider` gRPC service: `Version` and `Mount`, one log line and one
//! metrics observation per mount.

use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::mount::Mounter;
use crate::proto::csi_driver_provider_server::CsiDriverProvider;
use crate::proto::{MountRequest, MountResponse, VersionRequest, VersionResponse};
use crate::request::MountInput;

/// The provider API version this provider implements.
pub const API_VERSION: &str = "v1alpha1";
/// The name reported by `Version`.
pub const RUNTIME_NAME: &str = "csi-provider-aws";
/// The largest encoded MountResponse the driver accepts: grpc-go's default receive limit,
/// which the driver keeps. `--max-mount-bytes` counts file contents only; names and object
/// versions count here too.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// A response the driver would refuse, caught before it is sent.
#[derive(Debug, thiserror::Error)]
#[error(
    "the mount's response would be {encoded} bytes, over the CSI driver's limit of {limit} bytes: \
     file names and object versions all count, not only the {contents} bytes of file contents; \
     shorten objectAlias and jmesPath aliases, mount fewer objects, or split them across \
     SecretProviderClasses"
)]
pub struct ResponseTooLarge {
    pub encoded: usize,
    pub contents: usize,
    pub limit: usize,
}

impl ResponseTooLarge {
    /// The label of this failure in metrics and logs (the same as for too many file bytes).
    pub const LABEL: &'static str = "too_large";

    /// Checks a response against the driver's limit.
    pub fn check(response: &MountResponse, contents: usize, limit: usize) -> Result<(), Self> {
        let encoded = response.encoded_len();
        if encoded > limit { Err(Self { encoded, contents, limit }) } else { Ok(()) }
    }
}

impl From<ResponseTooLarge> for Status {
    fn from(err: ResponseTooLarge) -> Self {
        Status::new(Code::ResourceExhausted, err.to_string())
    }
}

/// Serves the driver's calls.
pub struct ProviderService {
    mounter: Arc<Mounter>,
    metrics: Arc<Metrics>,
}

impl ProviderService {
    pub fn new(mounter: Arc<Mounter>, metrics: Arc<Metrics>) -> Self {
        Self { mounter, metrics }
    }
}

#[tonic::async_trait]
impl CsiDriverProvider for ProviderService {
    async fn version(&self, _request: Request<VersionRequest>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: API_VERSION.into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    async fn mount(&self, request: Request<MountRequest>) -> Result<Response<MountResponse>, Status> {
        let started = Instant::now();
        let _in_flight = self.metrics.mount_started();
        let request = request.into_inner();
        let input = match MountInput::parse(&request) {
            Ok(input) => input,
            Err(e) => {
                let err = crate::mount::MountError::from(e);
                self.metrics.mount_finished(Err(err.label()), started.elapsed());
                tracing::warn!(outcome = "error", error_class = err.label(), error = %err, "mount rejected");
                return Err(err.into());
            }
        };
        let pod = input.pod.clone();
        let class = input.class_name.clone();
        // Every line logged inside the mount names whose mount it is.
        let span = tracing::info_span!(
            "mount",
            namespace = %pod.namespace,
            pod = %pod.name,
            service_account = %pod.service_account,
            secret_provider_class = %class,
        );
        let result = self.mounter.mount(input).instrument(span).await.map_err(Failure::Mount);
        let elapsed = started.elapsed();
        let result = result.and_then(|outcome| {
            ResponseTooLarge::check(&outcome.response, outcome.bytes, MAX_RESPONSE_BYTES)
                .map(|()| outcome)
                .map_err(Failure::TooLarge)
        });
        match result {
            Ok(outcome) => {
                self.metrics.mount_finished(Ok(()), elapsed);
                tracing::info!(
                    namespace = %pod.namespace,
                    pod = %pod.name,
                    service_account = %pod.service_account,
                    secret_provider_class = %class,
                    objects = outcome.objects,
                    files = outcome.files,
                    bytes = outcome.bytes,
                    duration_ms = elapsed.as_millis() as u64,
                    outcome = "success",
                    "mount"
                );
                Ok(Response::new(outcome.response))
            }
            Err(err) => {
                self.metrics.mount_finished(Err(err.label()), elapsed);
                tracing::warn!(
                    namespace = %pod.namespace,
                    pod = %pod.name,
                    service_account = %pod.service_account,
                    secret_provider_class = %class,
                    duration_ms = elapsed.as_millis() as u64,
                    outcome = "error",
                    error_class = err.label(),
                    error = %err,
                    "mount"
                );
                Err(err.into())
            }
        }
    }
}

/// Why a Mount failed: in the pipeline, or at the server boundary.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Mount(crate::mount::MountError),
    #[error(transparent)]
    TooLarge(ResponseTooLarge),
}

impl Failure {
    fn label(&self) -> &'static str {
        match self {
            Self::Mount(err) => err.label(),
            Self::TooLarge(_) => ResponseTooLarge::LABEL,
        }
    }
}

impl From<Failure> for Status {
    fn from(err: Failure) -> Self {
        match err {
            Failure::Mount(err) => err.into(),
            Failure::TooLarge(err) => err.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{File, ObjectVersion};

    #[test]
    fn responses_are_measured_encoded() {
        // Small contents, long names: what --max-mount-bytes does not see.
        let name = "d/".repeat(2000);
        let response = MountResponse {
            object_version: vec![ObjectVersion { id: name.clone(), version: "1".into() }],
            files: vec![File { path: name, mode: 420, contents: b"x".to_vec() }],
            error: None,
        };
        assert!(ResponseTooLarge::check(&response, 1, 9000).is_ok());
        let err = ResponseTooLarge::check(&response, 1, 7000).unwrap_err();
        assert_eq!(err.encoded, response.encoded_len());
        let status = Status::from(err);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("over the CSI driver's limit of 7000 bytes"),
            "{}",
            status.message()
        );
    }
}
