//! The one table from every mount failure to what the caller sees: the gRPC code the driver
//! reports in the pod's events (with the error's message) and the bounded label for metrics
//! and logs. Each stage classified its own errors; this only maps those classes.

use tonic::{Code, Status};

use crate::aws::FailureKind;
use crate::error::MountError;
use crate::identity::IdentityError;
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
        MountError::NoRegion { .. } | MountError::NodeRegion { .. } => (Code::InvalidArgument, "no_region"),
        MountError::Region(e) => (cluster_code(e), "no_region"),
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
        MountError::Deadline(_) => (Code::DeadlineExceeded, "deadline"),
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
        Status::new(code(&err), err.to_string())
    }
}
