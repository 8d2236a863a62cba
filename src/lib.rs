//! csi-provider-aws: a Secrets Store CSI driver provider for AWS Secrets Manager and SSM
//! Parameter Store.
#![forbid(unsafe_code)]

pub mod aws;
pub mod cache;
pub mod check;
pub mod class;
pub mod cli;
pub mod client;
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
