//! The subcommands besides serving: `check` (validate a SecretProviderClass offline) and
//! `mount` (act as the CSI driver against a running provider, for debugging on a node).

pub mod check;
pub mod mount;
