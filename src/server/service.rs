//! The driver's `CSIDriverProvider` gRPC service: `Version` and `Mount`, one log line and one
//! metrics observation per mount.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::response::{MAX_RESPONSE_BYTES, response};
use super::status;
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
pub struct DriverService {
    mounter: Arc<Mounter>,
    metrics: Arc<Metrics>,
}

impl DriverService {
    pub fn new(mounter: Arc<Mounter>, metrics: Arc<Metrics>) -> Self {
        Self { mounter, metrics }
    }
}

/// The `grpc-timeout` header: at most 8 digits and a unit (gRPC over HTTP/2's
/// `TimeoutValue TimeoutUnit`); anything else is ignored, as gRPC servers do.
fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[tonic::async_trait]
impl CsiDriverProvider for DriverService {
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
        let caller_deadline =
            request.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(grpc_timeout);
        let request = request.into_inner();
        let input = match MountInput::parse(&request) {
            Ok(input) => input,
            Err(e) => {
                let err = crate::mount::MountError::from(e);
                self.metrics.mount_finished(Err(status::label(&err)), started.elapsed());
                tracing::warn!(outcome = "error", error_class = status::label(&err), error = %err, "mount rejected");
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
        let result = self.mounter.mount(input, caller_deadline).instrument(span).await.and_then(|outcome| {
            let (objects, files, bytes) =
                (outcome.objects, outcome.rendered.files.len(), outcome.rendered.size());
            response(outcome, MAX_RESPONSE_BYTES).map(|response| (response, objects, files, bytes))
        });
        let elapsed = started.elapsed();
        match result {
            Ok((response, objects, files, bytes)) => {
                self.metrics.mount_finished(Ok(()), elapsed);
                tracing::info!(
                    namespace = %pod.namespace,
                    pod = %pod.name,
                    service_account = %pod.service_account,
                    secret_provider_class = %class,
                    objects,
                    files,
                    bytes,
                    duration_ms = elapsed.as_millis() as u64,
                    outcome = "success",
                    "mount"
                );
                Ok(Response::new(response))
            }
            Err(err) => {
                self.metrics.mount_finished(Err(status::label(&err)), elapsed);
                tracing::warn!(
                    namespace = %pod.namespace,
                    pod = %pod.name,
                    service_account = %pod.service_account,
                    secret_provider_class = %class,
                    duration_ms = elapsed.as_millis() as u64,
                    outcome = "error",
                    error_class = status::label(&err),
                    error = %err,
                    "mount"
                );
                Err(err.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        for (text, want) in [
            ("300m", Some(Duration::from_millis(300))),
            ("2S", Some(Duration::from_secs(2))),
            ("1M", Some(Duration::from_secs(60))),
            ("1H", Some(Duration::from_secs(3600))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n", Some(Duration::from_nanos(5))),
            ("123456789S", None),
            ("S", None),
            ("", None),
            ("10s", None),
            ("-1S", None),
            ("1.5S", None),
        ] {
            assert_eq!(grpc_timeout(text), want, "{text:?}");
        }
    }
}
