//! csi-provider-aws: a Secrets Store CSI driver provider for AWS Secrets Manager and SSM
//! Parameter Store.
//!
//! The CSI driver calls `Mount` over a Unix socket for every pod volume (and again at every
//! rotation poll). One mount flows one way through these modules (ARCHITECTURE.md has the
//! whole map and where each kind of change goes):
//!
//! ```text
//! server ──> mount ──> request ──> class ──> identity ──> aws ──> render ──> write
//! (socket,   (one     (decode     (parse,   (region,     (fetch   (files,   (provider-
//!  gRPC,      line of  the        validate, the pod's    all at   versions)  writes mode
//!  status)    calls)   attributes) cached)   own creds)   once)               only)
//! ```
//!
//! [`mount`] only strings the stages together; a failure anywhere is an
//! [`mount::MountError`], and one table at the server boundary ([`server::status`]) decides
//! the gRPC status the driver reports in pod events. The pure stages ([`request`], [`class`],
//! [`render`], token checks in `identity::verify`) do no I/O and are unit-tested beside
//! their code; the I/O sits behind small traits ([`aws::SecretStore`],
//! `identity::CredentialSource`) so the pipeline runs against fakes as well as against
//! moto and stand-in servers (`tests/integration`). Below the stages: [`kube`] (cached,
//! rate-limited lookups and issuer discovery), [`metrics`], `fetched` (the values aws hands
//! to render), [`secret`] (redacting, zeroizing holders of values and tokens). Around them:
//! [`cli`] (the flags and every default), [`compose`] (the one composition root, used by the
//! binary, the tests and the bench), [`telemetry`], and the subcommands in [`commands`]. The
//! `:authority` fix for old drivers is its own crate, `h2-authority-shim`.

pub mod aws;
mod cause;
pub mod class;
pub mod cli;
pub mod commands;
pub mod compose;
mod echo;
pub(crate) mod error;
pub(crate) mod fetched;
pub(crate) mod identity;
pub mod kube;
pub mod metrics;
pub mod mount;
pub mod render;
pub mod request;
pub mod secret;
pub mod server;
pub mod telemetry;
pub(crate) mod write;

pub mod proto {
    //! The driver's provider API (`v1alpha1`), generated from `proto/` by `build.rs`.
    #![allow(clippy::all)]
    tonic::include_proto!("v1alpha1");

    /// Encoded descriptors of the provider API, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/provider_descriptor.bin"));
}
