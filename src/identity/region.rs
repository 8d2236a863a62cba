//! Where a mount fetches: the class's `region`, else the provider's `AWS_REGION`, else the
//! `topology.kubernetes.io/region` label of the pod's node (read through the cached
//! Kubernetes lookups).

use std::sync::Arc;

use crate::class::{SecretProviderClass, check_region_name};
use crate::kube::{ClusterError, KubeLookup};
use crate::request::Pod;

/// Why a mount has no region; says where to set one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error(
        "no AWS region for this mount: set `region` in the SecretProviderClass parameters, \
         AWS_REGION in the provider's environment, or the topology.kubernetes.io/region label \
         on node of pod {namespace}/{pod}"
    )]
    None { namespace: String, pod: String },
    #[error(
        "cannot find the pod's region ({0}): set `region` in the SecretProviderClass parameters \
         or AWS_REGION in the provider's environment (a secrets-store-sync-controller mount names \
         the controller's pod, which is not in the SecretSync's namespace)"
    )]
    Lookup(ClusterError),
    #[error(
        "the region label of the node of pod {namespace}/{pod} is not an AWS region ({problem}): \
         fix the node's topology.kubernetes.io/region label, or set `region` in the \
         SecretProviderClass or AWS_REGION for the provider"
    )]
    NodeLabel { namespace: String, pod: String, problem: String },
}

/// Resolves a mount's region.
pub struct Regions {
    /// The provider's `AWS_REGION`.
    default: Option<String>,
    /// Finds the pod's node label; `None` where there is no API server (tests of the pipeline).
    cluster: Option<Arc<KubeLookup>>,
}

impl Regions {
    pub fn new(default: Option<String>, cluster: Option<Arc<KubeLookup>>) -> Self {
        Self { default, cluster }
    }

    /// The region `class` is mounted from for `pod`.
    pub async fn resolve(&self, class: &SecretProviderClass, pod: &Pod) -> Result<String, RegionError> {
        if let Some(region) = class.parameters.region.as_ref().or(self.default.as_ref()) {
            return Ok(region.clone());
        }
        let none = || RegionError::None { namespace: pod.namespace.clone(), pod: pod.name.clone() };
        let Some(cluster) = &self.cluster else { return Err(none()) };
        if pod.namespace.is_empty() || pod.name.is_empty() {
            return Err(none());
        }
        let region = cluster.node_region(&pod.namespace, &pod.name).await.map_err(RegionError::Lookup)?;
        let region = region.ok_or_else(none)?;
        check_region_name(&region).map_err(|problem| RegionError::NodeLabel {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            problem,
        })?;
        Ok(region)
    }
}
