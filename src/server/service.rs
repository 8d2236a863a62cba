//! The driver's `CSIDriverProvider` gRPC service: `Version` and `Mount`, one log line and one
//! metrics observation per mount.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::metrics::Metrics;
use crate::mount::Mounter;
use crate::proto::csi_driver_provider_server::CsiDriverProvider;
use crate::proto::{MountRequest, MountResponse, VersionRequest, VersionResponse};
use crate::request::MountInput;

/// The provider API version this provider implements.
pub const API_VERSION: &str = "v1alpha1";
/// The name reported by `Version`.
pub const RUNTIME_NAME: &str = "csi-provider-aws";

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
        let result = self.mounter.mount(input).await;
        let elapsed = started.elapsed();
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
