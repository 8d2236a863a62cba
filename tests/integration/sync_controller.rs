//! The provider as kubernetes-sigs/secrets-store-sync-controller uses it: a sidecar of the
//! controller's Deployment, in driver-writes mode, sent exactly the MountRequest the controller
//! builds (its `prepareCSIProviderParams` and `provider.MountContent`):
//! - attributes: the class's `spec.parameters` plus `pod.name`/`pod.uid` of the controller's
//!   *own* pod (from the downward API), `pod.namespace` and `serviceAccount.name` of the
//!   SecretSync, and `serviceAccount.tokens` for the controller's configured audiences only,
//!   each requested for 600 s; nothing else (no `secretProviderClass`, no `providerName`);
//! - `secrets` = `{}`, `permission` = `"420"` (0644), no `current_object_version`;
//! - `target_path` = `/mnt/secrets-store`, a fixed string that is no directory of the
//!   controller: it reads only `MountResponse.files`, and fails without `object_version`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::*;
use aws_sdk_ssm::types::ParameterType;
use csi_provider_aws::proto::MountRequest;

const REGION: &str = "us-east-1";
/// The target path the sync controller always sends.
const TARGET: &str = "/mnt/secrets-store";
/// The controller's own pod (SYNC_CONTROLLER_POD_NAME / _UID), in its own namespace: not the
/// SecretSync's pod, of which there is none.
const CONTROLLER_POD: &str = "secrets-store-sync-controller-manager-6d8f9c7b5-q4x2z";
const CONTROLLER_UID: &str = "3f1c2b7e-8a4d-4c1e-9b0a-5d6e7f8a9b0c";

/// The controller's token attribute: one TokenRequestStatus per configured audience.
fn tokens(audiences: &[&str]) -> String {
    let expiry = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(600);
    let expiry = aws_smithy_types::DateTime::from_secs(expiry.as_secs() as i64)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap();
    let map: serde_json::Map<String, serde_json::Value> = audiences
        .iter()
        .map(|a| {
            let status =
                serde_json::json!({"token": format!("sync-token-{a}"), "expirationTimestamp": expiry});
            ((*a).to_owned(), status)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// The MountRequest the sync controller sends for a SecretSync in `namespace` with
/// `service_account`, whose class has `parameters`.
fn sync_request(parameters: &[(&str, &str)], namespace: &str, service_account: &str) -> MountRequest {
    let mut attributes: std::collections::BTreeMap<&str, String> =
        parameters.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    attributes.insert("csi.storage.k8s.io/pod.name", CONTROLLER_POD.into());
    attributes.insert("csi.storage.k8s.io/pod.uid", CONTROLLER_UID.into());
    attributes.insert("csi.storage.k8s.io/pod.namespace", namespace.into());
    attributes.insert("csi.storage.k8s.io/serviceAccount.name", service_account.into());
    attributes.insert("csi.storage.k8s.io/serviceAccount.tokens", tokens(&["sts.amazonaws.com"]));
    MountRequest {
        attributes: serde_json::to_string(&attributes).unwrap(),
        secrets: "{}".into(),
        target_path: TARGET.into(),
        permission: "420".into(),
        current_object_version: Vec::new(),
    }
}

/// What is at `path` now, to show that a mount wrote nothing there.
fn listing(path: &Path) -> Option<Vec<std::path::PathBuf>> {
    let mut entries: Vec<_> = std::fs::read_dir(path).ok()?.map(|e| e.unwrap().path()).collect();
    entries.sort();
    Some(entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secretsync_mount_returns_the_files_and_writes_nothing() {
    let name = unique("sync/db");
    let (_, version) = create_secret(REGION, &name, r#"{"username":"shop","password":"pw-1"}"#).await;
    let parameter = format!("/{}", unique("sync"));
    put_parameter(REGION, &parameter, "https://api.example.com", ParameterType::String).await;
    let objects = format!(
        "- {{objectName: {name}, objectType: secretsmanager, objectAlias: db.json,\n   \
         jmesPath: [{{path: username, objectAlias: username}}, {{path: password, objectAlias: password}}]}}\n\
         - {{objectName: '{parameter}', objectType: ssmparameter, objectAlias: api-url}}\n"
    );
    let before = listing(Path::new(TARGET));
    let provider = Provider::start(Settings {
        mount: MountSettings { driver_writes_secrets: true, ..settings().mount },
        ..settings()
    })
    .await;
    let request = sync_request(&[("region", REGION), ("objects", &objects)], "shop", "web");
    let response = provider.client().await.mount(request).await.unwrap().into_inner();

    assert_eq!(
        files(&response),
        vec![
            ("api-url".into(), 0o644, "https://api.example.com".into()),
            ("db.json".into(), 0o644, r#"{"username":"shop","password":"pw-1"}"#.into()),
            ("password".into(), 0o644, "pw-1".into()),
            ("username".into(), 0o644, "shop".into()),
        ]
    );
    // The controller fails a response without object versions ("missing object versions").
    let v = versions(&response);
    assert_eq!(v.len(), 4, "{v:?}");
    assert!(v.contains(&("db.json".into(), version.clone())), "{v:?}");
    assert!(v.contains(&("api-url".into(), "1".into())), "{v:?}");

    // Nothing on disk: not at the controller's target path, nor in the shared volume.
    assert_eq!(listing(Path::new(TARGET)), before, "{TARGET} changed");
    assert_eq!(listing(provider.dir.path()), Some(vec![provider.socket.clone()]));
    // The SecretSync's service account gave the IRSA role; the controller's pod name, which
    // names no pod in that namespace, was never looked up (the class sets the region).
    let kube = provider.kube.as_ref().unwrap();
    assert_eq!(kube.http.count("/api/v1/namespaces/shop/serviceaccounts/web"), 1);
    assert!(kube.http.requests().iter().all(|r| !r.path.contains("/pods/")), "{:?}", kube.http.requests());
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_class_region_the_sidecar_needs_aws_region() {
    let name = unique("sync/token");
    create_secret(REGION, &name, "t-1").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: token}}");

    // With AWS_REGION on the sidecar (as the documented values set it): served.
    let provider = Provider::start(Settings {
        mount: MountSettings { default_region: Some(REGION.into()), ..settings().mount },
        ..settings()
    })
    .await;
    let request = sync_request(&[("objects", &objects)], "shop", "web");
    let response = provider.client().await.mount(request).await.unwrap().into_inner();
    assert_eq!(files(&response), vec![("token".into(), 0o644, "t-1".into())]);
    provider.stop().await;

    // Without it, the node of the pod would decide; the controller's pod is not in the
    // SecretSync's namespace, so the mount fails.
    let provider = Provider::start(Settings {
        mount: MountSettings { driver_writes_secrets: true, ..settings().mount },
        ..settings()
    })
    .await;
    let request = sync_request(&[("objects", &objects)], "shop", "web");
    let err = provider.client().await.mount(request).await.unwrap_err();
    assert!(err.message().contains(&format!("pod shop/{CONTROLLER_POD} was not found")), "{}", err.message());
    let kube = provider.kube.as_ref().unwrap();
    assert_eq!(kube.http.count(&format!("/api/v1/namespaces/shop/pods/{CONTROLLER_POD}")), 1);
    provider.stop().await;
}
