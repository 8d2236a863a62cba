//! Why a mount failed: one enum over every stage's error. Each variant names the object and
//! says what to fix; none carries a value or a token. What the driver sees for each (the
//! gRPC code) is decided in one table at the server boundary, `server::status`.

use std::time::Duration;

use crate::aws::failover::FetchFailure;
use crate::class::{ClassError, ParseFailure, TooManyObjects};
use crate::identity::IdentityError;
use crate::identity::region::RegionError;
use crate::render::RenderError;
use crate::request::RequestError;
use crate::write::WriteError;

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Class(#[from] ClassError),
    #[error(transparent)]
    TooManyObjects(#[from] TooManyObjects),
    #[error(transparent)]
    Region(#[from] RegionError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{}", fetch_message(.failures, *.total))]
    Fetch { failures: Vec<FetchFailure>, total: usize },
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(
        "the mount's files total {size} bytes, over the limit of {limit} bytes (the driver \
         accepts at most 4 MiB per mount): mount fewer or smaller objects, or split them \
         across SecretProviderClasses"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "the mount's response would be {encoded} bytes, over the CSI driver's limit of {limit} bytes: \
         file names and object versions all count, not only the {contents} bytes of file contents; \
         shorten objectAlias and jmesPath aliases, mount fewer objects, or split them across \
         SecretProviderClasses"
    )]
    ResponseTooLarge { encoded: usize, contents: usize, limit: usize },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(
        "the mount did not finish within {0:?} (--mount-timeout): AWS or the Kubernetes API is \
         slow or the node is overloaded; the driver retries the mount"
    )]
    Deadline(Duration),
    #[error(
        "the mount did not finish within its caller's deadline of {0:?} (grpc-timeout: the \
         kubelet's, as the CSI driver passes it): AWS or the Kubernetes API is slow or the node \
         is overloaded; the driver retries the mount"
    )]
    CallerDeadline(Duration),
    /// A bug or a panic in one of the provider's own tasks; never the user's to fix.
    #[error("the provider failed while {0}; the driver retries the mount (please report this)")]
    Internal(&'static str),
}

impl From<ParseFailure> for MountError {
    fn from(failure: ParseFailure) -> Self {
        match failure {
            ParseFailure::Invalid(e) => Self::Class(e),
            ParseFailure::TooManyObjects(e) => Self::TooManyObjects(e),
            ParseFailure::Aborted => Self::Internal("reading the SecretProviderClass"),
        }
    }
}

/// The first few failures, each with what to do about it, and how many more there were.
fn fetch_message(failures: &[FetchFailure], total: usize) -> String {
    const SHOWN: usize = 5;
    let mut text = format!("failed to fetch {} of {total} objects: ", failures.len());
    let details: Vec<String> =
        failures.iter().take(SHOWN).map(|f| format!("{f} ({})", f.primary().kind().hint())).collect();
    text.push_str(&details.join("; "));
    if failures.len() > SHOWN {
        text.push_str(&format!("; and {} more", failures.len() - SHOWN));
    }
    text
}
