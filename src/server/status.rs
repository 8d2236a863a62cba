//! The one table from every mount failure to what the caller sees: the gRPC code the driver
//! reports in the pod's events (with the error's message) and the bounded label for metrics
//! and logs. Each stage classified its own errors; this only maps those classes.

use tonic::{Code, Status};

use crate::aws::FailureKind;
use crate::error::MountError;
use crate::identity::IdentityError;
use crate::identity::region::RegionError;
use crate::kube::ClusterError;

/// The gRPC code of a failed mount.
pub fn code(err: &MountError) -> Code {
    classify(err).0
}

/// The `error` label of `mounts_total` and the `error_class` of the mount's log line.
pub fn label(err: &MountError) -> &'static str {
    classify(err).1
}

/// The table: every failure's code and label.
fn classify(err: &MountError) -> (Code, &'static str) {
    match err {
        MountError::Request(_) => (Code::InvalidArgument, "bad_request"),
        MountError::Class(_) => (Code::InvalidArgument, "invalid_class"),
        MountError::TooManyObjects(_) => (Code::InvalidArgument, "too_many_objects"),
        MountError::Region(RegionError::Lookup(e)) => (cluster_code(e), "no_region"),
        MountError::Region(RegionError::None { .. } | RegionError::NodeLabel { .. }) => {
            (Code::InvalidArgument, "no_region")
        }
        MountError::Identity(e) => (identity_code(e), "identity"),
        MountError::Fetch { failures, .. } => match failures.first().map(|f| f.primary().kind()) {
            Some(FailureKind::NotFound) => (Code::NotFound, "not_found"),
            Some(FailureKind::Denied) => (Code::PermissionDenied, "access_denied"),
            Some(FailureKind::Unavailable) => (Code::Unavailable, "aws_unavailable"),
            Some(FailureKind::Rejected) => (Code::InvalidArgument, "aws_client_error"),
            None => (Code::Internal, "aws_client_error"),
        },
        MountError::Render(_) => (Code::InvalidArgument, "render"),
        MountError::TooLarge { .. } | MountError::ResponseTooLarge { .. } => {
            (Code::ResourceExhausted, "too_large")
        }
        MountError::Write(_) => (Code::Internal, "write"),
        MountError::Deadline(_) | MountError::CallerDeadline(_) => (Code::DeadlineExceeded, "deadline"),
        MountError::Internal(_) => (Code::Internal, "internal"),
    }
}

fn cluster_code(err: &ClusterError) -> Code {
    match err {
        ClusterError::NotFound { .. } => Code::NotFound,
        ClusterError::Forbidden { .. } => Code::PermissionDenied,
        ClusterError::Unavailable { .. } => Code::Unavailable,
        ClusterError::InvalidName { .. } => Code::InvalidArgument,
    }
}

fn identity_code(err: &IdentityError) -> Code {
    match err {
        IdentityError::NoTokens
        | IdentityError::NoTokenForAudience(_)
        | IdentityError::BadTokens(_)
        | IdentityError::NoPodField(_) => Code::InvalidArgument,
        IdentityError::NoRole { .. }
        | IdentityError::AgentRejected { .. }
        | IdentityError::NoCredentials(_) => Code::PermissionDenied,
        IdentityError::Cluster(e) => cluster_code(e),
        IdentityError::Sts { class, .. } if class.is_transient() => Code::Unavailable,
        IdentityError::Sts { .. } => Code::PermissionDenied,
        IdentityError::AgentUnavailable(_) => Code::Unavailable,
    }
}

impl From<MountError> for Status {
    fn from(err: MountError) -> Self {
        Status::new(code(&err), crate::echo::bounded(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::aws::failover::FetchFailure;
    use crate::aws::{ErrorClass, FetchError};
    use crate::class::{ClassError, ObjectType};
    use crate::error::MountError;
    use crate::identity::IdentityError;
    use crate::kube::ClusterError;
    use crate::render::RenderError;
    use crate::request::RequestError;
    use crate::write::WriteError;
    use tonic::{Code, Status};

    fn fetch(class: ErrorClass, code: Option<&str>) -> MountError {
        let error = FetchError {
            what: "secret \"db\"".into(),
            object_type: ObjectType::SecretsManager,
            region: "us-east-1".into(),
            class,
            code: code.map(str::to_owned),
            message: "m".into(),
        };
        MountError::Fetch { failures: vec![FetchFailure::Primary(error)], total: 1 }
    }

    fn sts(class: ErrorClass) -> MountError {
        MountError::Identity(IdentityError::Sts {
            role: "r".into(),
            region: "us-east-1".into(),
            class,
            code: None,
            message: "m".into(),
        })
    }

    #[test]
    fn every_failure_has_its_code_and_label() {
        let what = || "service account shop/web".to_owned();
        let mut cases: Vec<(MountError, Code, &str)> = vec![
            (RequestError::NoTargetPath.into(), Code::InvalidArgument, "bad_request"),
            (
                ClassError::new(vec!["objectType is missing".into()]).into(),
                Code::InvalidArgument,
                "invalid_class",
            ),
            (
                RegionError::None { namespace: "shop".into(), pod: "web-0".into() }.into(),
                Code::InvalidArgument,
                "no_region",
            ),
            (
                RegionError::NodeLabel { namespace: "shop".into(), pod: "web-0".into(), problem: "p".into() }
                    .into(),
                Code::InvalidArgument,
                "no_region",
            ),
            (IdentityError::NoTokens.into(), Code::InvalidArgument, "identity"),
            (
                IdentityError::NoTokenForAudience("sts.amazonaws.com".into()).into(),
                Code::InvalidArgument,
                "identity",
            ),
            (IdentityError::BadTokens("b".into()).into(), Code::InvalidArgument, "identity"),
            (IdentityError::NoPodField("pod.namespace").into(), Code::InvalidArgument, "identity"),
            (
                IdentityError::NoRole { namespace: "shop".into(), service_account: "web".into() }.into(),
                Code::PermissionDenied,
                "identity",
            ),
            (sts(ErrorClass::Client), Code::PermissionDenied, "identity"),
            (sts(ErrorClass::Server), Code::Unavailable, "identity"),
            (sts(ErrorClass::Throttled), Code::Unavailable, "identity"),
            (
                IdentityError::AgentRejected { status: 400, message: "m".into() }.into(),
                Code::PermissionDenied,
                "identity",
            ),
            (IdentityError::AgentUnavailable("down".into()).into(), Code::Unavailable, "identity"),
            (IdentityError::NoCredentials("none".into()).into(), Code::PermissionDenied, "identity"),
            (fetch(ErrorClass::Client, Some("ResourceNotFoundException")), Code::NotFound, "not_found"),
            (fetch(ErrorClass::Client, Some("ParameterVersionLabelNotFound")), Code::NotFound, "not_found"),
            (
                fetch(ErrorClass::Client, Some("AccessDeniedException")),
                Code::PermissionDenied,
                "access_denied",
            ),
            (
                fetch(ErrorClass::Client, Some("KMSAccessDeniedException")),
                Code::PermissionDenied,
                "access_denied",
            ),
            (
                fetch(ErrorClass::Client, Some("ValidationException")),
                Code::InvalidArgument,
                "aws_client_error",
            ),
            (fetch(ErrorClass::Client, None), Code::InvalidArgument, "aws_client_error"),
            (fetch(ErrorClass::Server, None), Code::Unavailable, "aws_unavailable"),
            (fetch(ErrorClass::Throttled, Some("ThrottlingException")), Code::Unavailable, "aws_unavailable"),
            (fetch(ErrorClass::Timeout, None), Code::Unavailable, "aws_unavailable"),
            (fetch(ErrorClass::Network, None), Code::Unavailable, "aws_unavailable"),
            (MountError::Fetch { failures: Vec::new(), total: 0 }, Code::Internal, "aws_client_error"),
            (RenderError::NotJson { object: "db".into() }.into(), Code::InvalidArgument, "render"),
            (MountError::TooLarge { size: 2, limit: 1 }, Code::ResourceExhausted, "too_large"),
            (
                MountError::ResponseTooLarge { encoded: 2, contents: 1, limit: 1 },
                Code::ResourceExhausted,
                "too_large",
            ),
            (
                WriteError::Io { path: "/t/x".into(), source: std::io::Error::other("full") }.into(),
                Code::Internal,
                "write",
            ),
            (MountError::Deadline(Duration::from_secs(30)), Code::DeadlineExceeded, "deadline"),
            (MountError::Internal("writing the files"), Code::Internal, "internal"),
        ];
        for (e, code) in [
            (ClusterError::NotFound { what: what() }, Code::NotFound),
            (ClusterError::Forbidden { what: what(), status: 403 }, Code::PermissionDenied),
            (ClusterError::Unavailable { what: what(), message: "m".into() }, Code::Unavailable),
            (ClusterError::InvalidName { what: what() }, Code::InvalidArgument),
        ] {
            cases.push((RegionError::Lookup(e.clone()).into(), code, "no_region"));
            cases.push((IdentityError::Cluster(e).into(), code, "identity"));
        }
        cases.push((
            crate::class::TooManyObjects { count: 3, limit: 2, complete: true }.into(),
            Code::InvalidArgument,
            "too_many_objects",
        ));
        for (err, want_code, want_label) in cases {
            let shown = err.to_string();
            assert_eq!((code(&err), label(&err)), (want_code, want_label), "{shown}");
            let status = Status::from(err);
            assert_eq!((status.code(), status.message()), (want_code, shown.as_str()));
        }
    }
}
