//! csi-provider-aws: a Secrets Store CSI driver provider for AWS Secrets Manager and SSM
//! Parameter Store.
//!
//! The CSI driver calls `Mount` over a Unix socket for every pod volume (and again at every
//! rotation poll). One mount flows through these stages, each a module:
//!
//! ```text
//! server ──> request ──> class ──> identity ──> aws ──> render ──> write
//! (socket,   (decode    (parse +   (the pod's   (fetch   (files,    (provider-writes
//!  gRPC)      attrs)     validate)  own creds)   all at   versions)  mode only)
//!                                                once)
//! ```
//!
//! [`mount`] only strings the stages together; a failure anywhere is an [`error::MountError`],
//! and one table at the server boundary ([`server::status`]) decides the gRPC status the
//! driver reports in pod events; [`server::response`] builds the driver's response. The pure
//! stages ([`request`], [`class`], [`render`], token checks in [`identity::verify`]) do no I/O
//! and are tested table-style through their public API (`tests/stages.rs`, `tests/class.rs`;
//! the unit tests in `src/` are those of private code); the I/O sits behind small traits
//! ([`aws::SecretStore`], [`identity::CredentialSource`]) so the pipeline runs against fakes
//! as well as against moto and stand-in servers in `tests/` (Kubernetes only against a
//! stand-in API server). [`provider`] is the one
//! composition root (used by the binary, the tests and the bench). Around the stages:
//! [`aws::shared`] (shared in-flight fetches and the opt-in value cache), [`kube`] (cached,
//! rate-limited API lookups and issuer discovery), [`metrics`] (Prometheus, health),
//! [`secret`] (redacting, zeroizing holders of secret bytes and tokens), [`telemetry`], and
//! the `check` / `mount` subcommands ([`check`], [`client`]). The `:authority` fix for old
//! drivers is its own crate, `h2-authority-shim`.

pub mod aws;
mod cause;
pub mod class;
pub mod cli;
pub mod commands;
pub mod compose;
pub mod error;
pub mod fetched;
pub mod identity;
pub mod kube;
pub mod metrics;
pub mod mount;
pub mod render;
pub mod request;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod write;

pub mod proto {
    //! The driver's provider API (`v1alpha1`), generated from `proto/` by `build.rs`.
    #![allow(clippy::all)]
    tonic::include_proto!("v1alpha1");

    /// Encoded descriptors of the provider API, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/provider_descriptor.bin"));
}
