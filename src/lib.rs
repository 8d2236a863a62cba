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
//! [`mount`] strings the stages together and maps every stage's error to the gRPC status the
//! driver reports in pod events. The pure stages ([`request`], [`class`], [`render`]) do no
//! I/O and are unit-tested table-style; the I/O sits behind small traits
//! ([`aws::SecretStore`], [`identity::CredentialSource`], [`kube::ClusterLookup`]) so the
//! pipeline runs against fakes as well as against moto and stand-in servers in `tests/`.
//! Around them: [`cache`] (shared in-flight lookups), [`aws::shared`] (shared fetches and the
//! opt-in value cache), [`metrics`] (Prometheus, health), [`secret`] (redacting, zeroizing
//! holders of secret bytes and tokens), and the `check` / `mount` subcommands ([`check`],
//! [`client`]).
#![forbid(unsafe_code)]

pub mod aws;
pub mod check;
pub mod class;
pub mod cli;
pub mod client;
pub mod error;
pub mod identity;
pub mod kube;
pub mod metrics;
pub mod mount;
pub mod provider;
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
