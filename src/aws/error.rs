//! Classifying AWS SDK errors: which ones a failover region may cure (server faults,
//! throttling, timeouts, network) and which are the caller's to fix (client faults).

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::cause::find_cause;
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
    /// A failure fetching `secret` in `region`, as [`classify`] (or the caller) classed it.
    pub fn for_ref(secret: &super::SecretRef, region: &str, (class, code, message): Classified) -> Self {
        let (what, object_type, region) = (secret.to_string(), secret.object_type, region.to_owned());
        Self { what, object_type, region, class, code, message }
    }

    /// A result the store did not produce for an object it was asked for: a bug, reported
    /// as a server error rather than panicked on.
    pub fn missing(what: &str, object_type: ObjectType, region: &str) -> Self {
        let message = "no result was produced for this object".into();
        Self {
            what: what.to_owned(),
            object_type,
            region: region.to_owned(),
            class: ErrorClass::Server,
            code: None,
            message,
        }
    }

    /// What the failure means for the user; decided here, where the AWS codes are known.
    pub fn kind(&self) -> FailureKind {
        if self.class.is_transient() {
            return FailureKind::Unavailable;
        }
        match self.code.as_deref() {
            Some(code) if NOT_FOUND_CODES.contains(&code) => FailureKind::NotFound,
            Some(code) if DENIED_CODES.contains(&code) => FailureKind::Denied,
            _ => FailureKind::Rejected,
        }
    }
}

/// What a failed fetch means for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No such object, version or label in that region.
    NotFound,
    /// The pod's role may not read it (or decrypt it).
    Denied,
    /// AWS failed, throttled or did not answer: retried, failed over, temporary.
    Unavailable,
    /// AWS refused the request for another reason (a malformed name, say).
    Rejected,
}

impl FailureKind {
    /// What to do about it, for the message.
    pub fn hint(self) -> &'static str {
        match self {
            Self::NotFound => "check objectName, objectVersion/objectVersionLabel and the region",
            Self::Denied => {
                "allow the pod's IAM role secretsmanager:GetSecretValue / ssm:GetParameters on it \
                 (and kms:Decrypt for a customer-managed key)"
            }
            Self::Unavailable => "AWS did not answer in time or failed; the driver retries the mount",
            Self::Rejected => "check the object's settings",
        }
    }
}

/// AWS error codes meaning the object (or version, or label) does not exist.
const NOT_FOUND_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "ParameterNotFound",
    "ParameterVersionNotFound",
    "ParameterVersionLabelNotFound",
];

/// AWS error codes meaning the credentials may not read or decrypt the object.
const DENIED_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "DecryptionFailure",
    "KMSAccessDeniedException",
    "InvalidKeyId",
];

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

/// Most characters of AWS's own error message that reach a status or a log line.
const MAX_AWS_MESSAGE_CHARS: usize = 200;

/// A failure's class, AWS error code and message.
pub type Classified = (ErrorClass, Option<String>, String);

/// Classifies an SDK error into (class, AWS code, message).
///
/// The one redaction rule for SDK errors crossing our boundary: the message is our own,
/// built from the AWS error code, the HTTP status and fixed text — never the SDK error's
/// `Display`/`Debug`, which carry the raw response body (a Parameter Store answer the SDK
/// cannot read holds the decrypted value) or the request. The only text taken from AWS is a
/// service error's message, which says what to fix ("Secrets Manager can't find the
/// specified secret."), capped and stripped to printable characters.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> Classified
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        // A success status with an error means the SDK could not read the answer (broken
        // JSON or XML, an HTML page, a field of the wrong type): AWS's fault, or a proxy's,
        // like a 5xx — worth a retry and a failover, not a "fix your class".
        SdkError::ServiceError(service) if service.raw().status().is_success() => {
            (ErrorClass::Server, None, malformed(service.raw().status().as_u16()))
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().map(sanitize).filter(|c| !c.is_empty());
            let class = if code.as_deref().is_some_and(|c| THROTTLING_CODES.contains(&c)) || status == 429 {
                ErrorClass::Throttled
            } else if status >= 500 {
                ErrorClass::Server
            } else {
                ErrorClass::Client
            };
            let text = match (&code, service.err().message().map(sanitize)) {
                (Some(code), Some(message)) if !message.is_empty() => {
                    format!("{code} (HTTP {status}): {message}")
                }
                (Some(code), _) => format!("{code} (HTTP {status})"),
                // No AWS error in the body: not AWS's answer as such (a proxy's page, a
                // truncated body). Its class follows the status.
                (None, _) => format!("HTTP {status} without an AWS error code (an unreadable error answer)"),
            };
            (class, code, text)
        }
        SdkError::ResponseError(response) => {
            (ErrorClass::Server, None, malformed(response.raw().status().as_u16()))
        }
        SdkError::TimeoutError(_) => (ErrorClass::Timeout, None, "the request timed out".to_owned()),
        SdkError::DispatchFailure(failure) => {
            let (class, what) = if failure.is_timeout() {
                (ErrorClass::Timeout, "the connection timed out".to_owned())
            } else if let Some(rustls::Error::InvalidCertificate(problem)) =
                failure.as_connector_error().and_then(|e| find_cause::<rustls::Error>(e))
            {
                (
                    ErrorClass::Network,
                    format!(
                        "the endpoint's TLS certificate is not trusted ({problem:?}): a TLS-intercepting \
                         proxy or an endpoint override needs its CA in the provider's trust store \
                         (SSL_CERT_FILE)"
                    ),
                )
            } else if failure.is_io() {
                // The I/O error's kind: an enum, so it names no host, path or data.
                let kind = failure
                    .as_connector_error()
                    .and_then(|e| find_cause::<std::io::Error>(e))
                    .map_or_else(String::new, |e| format!(" ({:?})", e.kind()));
                (ErrorClass::Network, format!("connection failed{kind}"))
            } else {
                (ErrorClass::Network, "the request could not be sent".to_owned())
            };
            (class, None, format!("could not reach AWS: {what}"))
        }
        // Construction failures are our own request being invalid (e.g. no region or no
        // credentials could be resolved): no other region helps.
        _ => (
            ErrorClass::Client,
            None,
            "the request could not be built (region, endpoint or credentials configuration)".to_owned(),
        ),
    }
}

/// The message for an answer the SDK could not read.
fn malformed(status: u16) -> String {
    format!("malformed answer from AWS (HTTP {status}): the response could not be read")
}

/// Text from AWS made safe to show: printable ASCII only (AWS's messages are English; no
/// control or bidirectional characters that could forge or hide log lines), at most
/// [`MAX_AWS_MESSAGE_CHARS`].
fn sanitize(text: &str) -> String {
    let printable = || text.chars().filter(|c| c.is_ascii_graphic() || *c == ' ');
    let mut out: String = printable().take(MAX_AWS_MESSAGE_CHARS).collect();
    if printable().nth(MAX_AWS_MESSAGE_CHARS).is_some() {
        out.push_str("...");
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use crate::aws::*;
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    type Sdk = SdkError<GetSecretValueError, HttpResponse>;

    fn service_error(status: u16, code: &str) -> Sdk {
        error_with(status, ErrorMetadata::builder().code(code).message("boom").build(), "")
    }

    fn error_with(status: u16, meta: ErrorMetadata, body: &str) -> Sdk {
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body.to_owned()));
        SdkError::service_error(GetSecretValueError::generic(meta), raw)
    }

    const MARKER: &str = "MARKER-s3cr3t";

    #[test]
    fn unreadable_success_answers_are_server_faults_without_the_body() {
        // What the SDK makes of a 200 it cannot deserialize: an unhandled error holding
        // the raw answer and a source that quotes it.
        let body = format!(r#"{{"Parameters":[{{"Value":"{MARKER}","Version":"x"}}]}}"#);
        let meta = ErrorMetadata::builder().message(format!("failed to parse {body}")).build();
        let (class, code, message) = classify(&error_with(200, meta, &body));
        assert_eq!((class, code), (ErrorClass::Server, None));
        assert!(message.contains("malformed answer from AWS (HTTP 200)"), "{message}");
        assert!(!message.contains(MARKER));

        let response: Sdk = SdkError::response_error(
            format!("invalid JSON: {body}"),
            HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from(body.clone())),
        );
        let (class, _, message) = classify(&response);
        assert_eq!(class, ErrorClass::Server);
        assert!(message.contains("malformed answer") && !message.contains(MARKER), "{message}");
    }

    #[test]
    fn aws_messages_are_capped_and_printable_only() {
        let long = format!("line one\nforged line \u{202e}{}", "x".repeat(500));
        let meta = ErrorMetadata::builder().code("ValidationException").message(long).build();
        let (_, _, message) = classify(&error_with(400, meta, ""));
        assert!(!message.contains('\n') && !message.contains('\u{202e}'), "{message:?}");
        assert!(message.len() < 300 && message.ends_with("..."), "{message}");
        assert!(message.starts_with("ValidationException (HTTP 400): line oneforged line"), "{message}");
    }

    #[test]
    fn error_answers_without_an_aws_code_keep_their_status_class_but_not_their_body() {
        let meta = ErrorMetadata::builder().message(format!("<html>{MARKER}</html>")).build();
        for (status, want) in [(403, ErrorClass::Client), (502, ErrorClass::Server)] {
            let (class, code, message) = classify(&error_with(status, meta.clone(), MARKER));
            assert_eq!((class, code), (want, None), "{status}");
            assert!(message.contains(&format!("HTTP {status} without an AWS error code")), "{message}");
            assert!(!message.contains(MARKER), "{message}");
        }
    }

    #[test]
    fn dispatch_and_construction_failures_are_our_own_words() {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, format!("to {MARKER}"));
        let err: Sdk = SdkError::dispatch_failure(ConnectorError::io(io.into()));
        let (class, _, message) = classify(&err);
        assert_eq!(class, ErrorClass::Network);
        assert_eq!(message, "could not reach AWS: connection failed (ConnectionRefused)");
        // As hyper-rustls hands it over: tokio-rustls's io::Error inside another.
        let tls = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let err: Sdk = SdkError::dispatch_failure(ConnectorError::io(tls.into()));
        let (class, _, message) = classify(&err);
        assert_eq!(class, ErrorClass::Network);
        assert!(message.contains("TLS certificate is not trusted (UnknownIssuer)"), "{message}");
        assert!(message.contains("SSL_CERT_FILE"), "{message}");
        let err: Sdk = SdkError::construction_failure(format!("bad input {MARKER}"));
        let (class, _, message) = classify(&err);
        assert_eq!(class, ErrorClass::Client);
        assert!(!message.contains(MARKER), "{message}");
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
        let err: Sdk = SdkError::timeout_error("slow");
        assert_eq!(classify(&err).0, ErrorClass::Timeout);
        assert!(ErrorClass::Timeout.is_transient());
        assert!(ErrorClass::Server.is_transient());
        assert!(!ErrorClass::Client.is_transient());
    }
}
