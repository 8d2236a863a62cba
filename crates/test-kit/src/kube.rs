//! A stand-in Kubernetes API server with realistic objects.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::http::FakeHttp;
use crate::tls::TestCa;
use crate::tokens;

/// The IRSA role of the default service account shop/web, in moto's account.
pub const WEB_ROLE: &str = "arn:aws:iam::123456789012:role/web";

/// A stand-in Kubernetes API server with service accounts, pods and nodes, and a kubeconfig
/// pointing at it. Default objects ([`FakeKube::start`]): service account shop/web annotated
/// with [`WEB_ROLE`], pod shop/web-0 on node-1 (no region label).
pub struct FakeKube {
    pub http: FakeHttp,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeKube {
    /// On a free loopback port, with the default objects.
    pub async fn start() -> Self {
        let kube = Self::bind("127.0.0.1:0").await;
        kube.service_account("shop", "web", Some(WEB_ROLE));
        kube.pod("shop", "web-0", "node-1");
        kube.node("node-1", None);
        kube
    }

    /// On `bind` (e.g. "127.0.0.1:0"), without objects.
    pub async fn bind(bind: &str) -> Self {
        Self::with_server(FakeHttp::start(bind).await)
    }

    /// On a free loopback port over HTTPS, with a certificate for 127.0.0.1 signed by `ca`
    /// and the default objects: the API server as a pod reaches it in-cluster
    /// (`KUBERNETES_SERVICE_HOST`/`PORT`, the CA from [`FakeKube::write_service_account`]).
    pub async fn start_tls(ca: &TestCa) -> Self {
        let tls = ca.server(&["127.0.0.1", "kubernetes.default.svc"]).server_config();
        let kube = Self::with_server(FakeHttp::start_tls("127.0.0.1:0", tls).await);
        kube.service_account("shop", "web", Some(WEB_ROLE));
        kube.pod("shop", "web-0", "node-1");
        kube.node("node-1", None);
        kube
    }

    /// Writes what kubelet projects into a pod's `/var/run/secrets/kubernetes.io/serviceaccount`
    /// (the client's `token`, `ca.crt` of `ca`, `namespace`) into `dir`.
    pub fn write_service_account(&self, dir: &Path, ca: &TestCa, namespace: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("token"), "provider-service-account-token").unwrap();
        ca.write(&dir.join("ca.crt"));
        std::fs::write(dir.join("namespace"), namespace).unwrap();
    }

    fn with_server(http: FakeHttp) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: '{}'}}\n\
                 users:\n- name: fake\n  user: {{token: fake-token}}\ncontexts:\n- name: fake\n  \
                 context: {{cluster: fake, user: fake}}\ncurrent-context: fake\n",
                http.url()
            ),
        )
        .unwrap();
        Self { http, kubeconfig, _dir: dir }
    }

    pub fn service_account(&self, namespace: &str, name: &str, role: Option<&str>) {
        self.http.route(
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}"),
            200,
            &service_account(namespace, name, role),
        );
    }

    /// Every service account not named with [`FakeKube::service_account`] exists, annotated
    /// with the role of its own name in moto's account (`arn:aws:iam::123456789012:role/NAME`).
    pub fn every_service_account_has_a_role(&self) {
        self.http.fallback(Arc::new(|path: &str| {
            let rest = path.strip_prefix("/api/v1/namespaces/")?;
            let (namespace, name) = rest.split_once("/serviceaccounts/")?;
            if namespace.contains('/') || name.is_empty() || name.contains('/') {
                return None;
            }
            let role = format!("arn:aws:iam::123456789012:role/{name}");
            Some((200, service_account(namespace, name, Some(&role))))
        }));
    }

    pub fn pod(&self, namespace: &str, name: &str, node: &str) {
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": namespace, "uid": "0b1e6a9c-9d0d-4d53-a0f6-b3b5a6b0b001",
                "resourceVersion": "51877", "creationTimestamp": "2026-11-02T09:20:03Z",
                "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5d"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5d",
                                     "uid": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d", "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {
                "nodeName": node, "serviceAccountName": "web", "restartPolicy": "Always",
                "containers": [{"name": "web", "image": "public.ecr.aws/nginx/nginx:1.27",
                                "volumeMounts": [{"name": "secrets", "mountPath": "/mnt/secrets", "readOnly": true}]}],
                "volumes": [{"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
                             "volumeAttributes": {"secretProviderClass": "web-secrets"}}}],
            },
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        });
        self.http.route(&format!("/api/v1/namespaces/{namespace}/pods/{name}"), 200, &body.to_string());
    }

    pub fn node(&self, name: &str, region: Option<&str>) {
        let mut labels = serde_json::json!({
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "m7i.large",
        });
        if let Some(region) = region {
            labels["topology.kubernetes.io/region"] = region.into();
            labels["topology.kubernetes.io/zone"] = format!("{region}a").into();
        }
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels, "uid": "5f0d6a0e-1b8c-4c77-8c8b-0d8e8d2e6a01",
                         "resourceVersion": "50012", "creationTimestamp": "2026-11-01T07:00:00Z"},
            "spec": {"providerID": format!("aws:///us-east-1a/i-0123456789abcdef0")},
            "status": {"nodeInfo": {"kubeletVersion": "v1.33.5-eks-113cf36", "architecture": "amd64",
                                    "operatingSystem": "linux", "osImage": "Amazon Linux 2023",
                                    "kernelVersion": "6.1.155", "containerRuntimeVersion": "containerd://1.7.27",
                                    "kubeProxyVersion": "v1.33.5", "machineID": "ec2", "systemUUID": "ec2", "bootID": "b"}},
        });
        self.http.route(&format!("/api/v1/nodes/{name}"), 200, &body.to_string());
    }

    /// Serves service-account issuer discovery for `keys` (as the API server does for the
    /// built-in system:service-account-issuer-discovery role).
    pub fn issuer(&self, keys: &[&tokens::SigningKey]) {
        self.http.route("/.well-known/openid-configuration", 200, &tokens::openid_configuration());
        self.http.route("/openid/v1/jwks", 200, &tokens::jwks(keys));
    }
}

/// A service account as the API server returns it, IRSA-annotated with `role` if given.
fn service_account(namespace: &str, name: &str, role: Option<&str>) -> String {
    let annotations = match role {
        Some(role) => serde_json::json!({"eks.amazonaws.com/role-arn": role}),
        None => serde_json::json!({}),
    };
    serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {
            "name": name, "namespace": namespace, "annotations": annotations,
            "uid": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "resourceVersion": "48213",
            "creationTimestamp": "2026-11-02T09:14:27Z",
        },
    })
    .to_string()
}
