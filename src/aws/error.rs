//! Classifying AWS SDK errors: which ones a failover region may cure (server faults,
//! throttling, timeouts, network) and which are the caller's to fix (client faults).

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::class::ObjectType;

/// The kind of failure, which decides failover and the gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A 4xx answer: wrong name, no permission, bad request. Another region won't help.
    Client,
    /// A 5xx answer or an unreadable response.
    Server,
    /// AWS asked us to slow down (after the SDK's own retries).
    Throttled,
    /// No answer in time.
    Timeout,
    /// Could not connect or the connection broke.
    Network,
}

impl ErrorClass {
    /// Whether another region may succeed where this one failed.
    pub fn is_transient(self) -> bool {
        !matches!(self, Self::Client)
    }

    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
            Self::Throttled => "throttled",
            Self::Timeout => "timeout",
            Self::Network => "network",
        }
    }
}

/// A failed fetch of one object in one region. Carries identifiers, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} in {region}: {message}")]
pub struct FetchError {
    /// "secret \"db\"" or "parameter \"/app/x\" version 3".
    pub what: String,
    pub object_type: ObjectType,
    pub region: String,
    pub class: ErrorClass,
    /// The AWS error code, such as `ResourceNotFoundException`.
    pub code: Option<String>,
    pub message: String,
}

impl FetchError {
    /// A failure fetching `secret` in `region`.
    pub fn for_ref(
        secret: &super::SecretRef,
        region: &str,
        class: ErrorClass,
        code: Option<String>,
        message: String,
    ) -> Self {
        Self {
            what: secret.to_string(),
            object_type: secret.object_type,
            region: region.to_owned(),
            class,
            code,
            message,
        }
    }
}

/// AWS error codes meaning "slow down", across Secrets Manager, SSM and STS.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Classifies an SDK error into (class, AWS code, message without values).
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> (ErrorClass, Option<String>, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().map(str::to_owned);
            let message = service.err().message().unwrap_or("no message").to_owned();
            let class = if code.as_deref().is_some_and(|c| THROTTLING_CODES.contains(&c)) || status == 429 {
                ErrorClass::Throttled
            } else if status >= 500 {
                ErrorClass::Server
            } else {
                ErrorClass::Client
            };
            let text = match &code {
                Some(code) => format!("{code} (HTTP {status}): {message}"),
                None => format!("HTTP {status}: {message}"),
            };
            (class, code, text)
        }
        SdkError::TimeoutError(_) => (ErrorClass::Timeout, None, "the request timed out".to_owned()),
        SdkError::DispatchFailure(failure) => {
            let class = if failure.is_timeout() { ErrorClass::Timeout } else { ErrorClass::Network };
            let text = format!("could not reach AWS: {}", DisplayErrorContext(err));
            (class, None, text)
        }
        SdkError::ResponseError(_) => {
            (ErrorClass::Server, None, format!("unreadable response from AWS: {}", DisplayErrorContext(err)))
        }
        // Construction failures are our own request being invalid (e.g. no region or no
        // credentials could be resolved): no other region helps.
        _ => (ErrorClass::Client, None, DisplayErrorContext(err).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(status: u16, code: &str) -> SdkError<GetSecretValueError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).message("boom").build();
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(GetSecretValueError::generic(meta), raw)
    }

    #[test]
    fn service_errors_by_status_and_code() {
        let cases = [
            (400, "ResourceNotFoundException", ErrorClass::Client),
            (400, "AccessDeniedException", ErrorClass::Client),
            (400, "ThrottlingException", ErrorClass::Throttled),
            (400, "TooManyRequestsException", ErrorClass::Throttled),
            (429, "Whatever", ErrorClass::Throttled),
            (500, "InternalServiceError", ErrorClass::Server),
            (503, "ServiceUnavailable", ErrorClass::Server),
        ];
        for (status, code, want) in cases {
            let (class, got_code, message) = classify(&service_error(status, code));
            assert_eq!(class, want, "{status} {code}");
            assert_eq!(got_code.as_deref(), Some(code));
            assert!(message.contains(code) && message.contains("boom"), "{message}");
        }
    }

    #[test]
    fn timeouts_and_transience() {
        let err: SdkError<GetSecretValueError, HttpResponse> = SdkError::timeout_error("slow");
        assert_eq!(classify(&err).0, ErrorClass::Timeout);
        assert!(ErrorClass::Timeout.is_transient());
        assert!(ErrorClass::Server.is_transient());
        assert!(!ErrorClass::Client.is_transient());
    }
}
