//! The integration tests, one binary with a module per area: the provider over a real Unix
//! socket (in this process, or the real binary) against real peers — moto for AWS, stand-in
//! Kubernetes API and Pod Identity agent servers, the image under podman — sending the
//! requests the CSI driver and the sync controller send. Pure stages are tested beside their
//! code in `src/`.

mod support;

mod beyond;
mod cli;
mod failover;
mod fuzz;
mod hardening;
mod hostile;
mod identity;
mod image;
mod limits;
mod mount;
mod observability;
mod replicas;
mod server;
mod sharing;
mod sync_controller;
