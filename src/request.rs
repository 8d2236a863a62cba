//! The driver's MountRequest, decoded into typed values: the SecretProviderClass parameters,
//! the pod it is for, the default file mode and the target directory. Pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::class::Parameters;
use crate::proto;
use crate::secret::SecretString;

/// The volume-context keys the driver adds to the class parameters.
pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
pub const SERVICE_ACCOUNT: &str = "csi.storage.k8s.io/serviceAccount.name";
pub const TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";

/// `MountRequest.attributes`: class parameters overlaid with the volume context.
#[derive(Debug, Default, Deserialize)]
pub struct Attributes {
    #[serde(flatten)]
    pub parameters: Parameters,
    #[serde(default, rename = "csi.storage.k8s.io/pod.name")]
    pub pod_name: Option<String>,
    #[serde(default, rename = "csi.storage.k8s.io/pod.namespace")]
    pub pod_namespace: Option<String>,
    #[serde(default, rename = "csi.storage.k8s.io/pod.uid")]
    pub pod_uid: Option<String>,
    #[serde(default, rename = "csi.storage.k8s.io/serviceAccount.name")]
    pub service_account: Option<String>,
    #[serde(default, rename = "csi.storage.k8s.io/serviceAccount.tokens")]
    pub tokens: Option<SecretString>,
    #[serde(default, rename = "secretProviderClass")]
    pub secret_provider_class: Option<String>,
}

/// Who the mount is for (for credentials, lookups and logs).
#[derive(Debug, Clone, Default)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub service_account: String,
    /// `serviceAccount.tokens` JSON, from the attributes or `MountRequest.secrets`.
    pub tokens: Option<SecretString>,
}

/// A decoded MountRequest.
#[derive(Debug)]
pub struct MountInput {
    pub parameters: Parameters,
    pub pod: Pod,
    pub class_name: String,
    pub default_mode: u32,
    pub target_path: PathBuf,
}

/// A request the driver should never send; says which field is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("MountRequest.attributes is not a JSON object of strings: {0}")]
    Attributes(String),
    #[error("MountRequest.target_path is empty")]
    NoTargetPath,
    #[error(
        "MountRequest.permission {0:?} is not a file mode: expected the decimal JSON number of a \
         mode from 0 to 511, such as \"420\" for 0644"
    )]
    Permission(String),
    #[error(
        "MountRequest.{field} is {size} bytes, over the limit of {limit} bytes: the \
         SecretProviderClass parameters are too large; split the class"
    )]
    TooLarge { field: &'static str, size: usize, limit: usize },
    #[error(
        "MountRequest.target_path {0:?} is not an absolute, clean path (no '.' or '..'): the \
         provider writes the files there, so it must be the pod's volume directory"
    )]
    TargetPath(String),
}

/// Most bytes of `MountRequest.attributes` (and of `secrets`): far above any real class
/// (1 MiB of `objects`, see `class::Limits`, plus the pod's tokens), checked before the JSON
/// is read.
pub const MAX_ATTRIBUTES_BYTES: usize = 1024 * 1024 + 64 * 1024;

impl MountInput {
    pub fn parse(req: &proto::MountRequest) -> Result<Self, RequestError> {
        if req.target_path.trim().is_empty() {
            return Err(RequestError::NoTargetPath);
        }
        for (field, text) in [("attributes", &req.attributes), ("secrets", &req.secrets)] {
            if text.len() > MAX_ATTRIBUTES_BYTES {
                return Err(RequestError::TooLarge { field, size: text.len(), limit: MAX_ATTRIBUTES_BYTES });
            }
        }
        let attributes: Attributes = serde_json::from_str(&req.attributes).map_err(|e| {
            RequestError::Attributes(e.to_string().replace("struct Attributes", "a JSON object"))
        })?;
        let default_mode = parse_permission(&req.permission)?;
        // Kubernetes >= 1.35 may pass the tokens with the node-publish secrets instead.
        let tokens = attributes.tokens.filter(|t| !t.is_empty()).or_else(|| token_from_secrets(&req.secrets));
        let text = |v: Option<String>| v.unwrap_or_default();
        Ok(Self {
            parameters: attributes.parameters,
            pod: Pod {
                namespace: text(attributes.pod_namespace),
                name: text(attributes.pod_name),
                uid: text(attributes.pod_uid),
                service_account: text(attributes.service_account),
                tokens,
            },
            class_name: text(attributes.secret_provider_class),
            default_mode,
            target_path: PathBuf::from(&req.target_path),
        })
    }
}

/// The target directory the provider writes to must be absolute and clean: a relative path
/// would land in the provider's own working directory, `..` outside the pod's volume.
pub fn check_target_path(path: &Path) -> Result<(), RequestError> {
    let text = path.to_string_lossy();
    let clean =
        text.starts_with('/') && !text.split('/').any(|c| c == "." || c == "..") && !text.contains('\0');
    if clean { Ok(()) } else { Err(RequestError::TargetPath(text.chars().take(256).collect())) }
}

/// The driver sends the default mode as the JSON of a decimal number ("420" = 0644).
pub fn parse_permission(value: &str) -> Result<u32, RequestError> {
    match serde_json::from_str::<u32>(value.trim()) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(RequestError::Permission(value.chars().take(32).collect())),
    }
}

fn token_from_secrets(secrets: &str) -> Option<SecretString> {
    if secrets.trim().is_empty() {
        return None;
    }
    let mut map: BTreeMap<String, SecretString> = serde_json::from_str(secrets).ok()?;
    map.remove(TOKENS).filter(|t| !t.is_empty())
}

/// A MountRequest as the CSI driver builds one, the inverse of [`MountInput::parse`]: the
/// class's parameters overlaid with the pod's volume context, the tokens from the CSIDriver's
/// `tokenRequests`, mode 0644. The one builder of the `mount` subcommand, the test kit and
/// the bench.
#[derive(Debug, Clone)]
pub struct DriverRequest {
    /// `spec.parameters` of the SecretProviderClass.
    pub parameters: BTreeMap<String, String>,
    pub class_name: String,
    pub pod: Pod,
    /// Also pass the tokens in `MountRequest.secrets`, as drivers on Kubernetes >= 1.35 do.
    pub tokens_in_secrets: bool,
    pub target_path: String,
    pub default_mode: u32,
}

impl DriverRequest {
    /// A mount of the class `class_name` with `parameters`, for `pod` (its tokens included).
    pub fn new<K: Into<String>, V: Into<String>>(
        class_name: &str,
        parameters: impl IntoIterator<Item = (K, V)>,
        pod: Pod,
    ) -> Self {
        Self {
            parameters: parameters.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            class_name: class_name.to_owned(),
            pod,
            tokens_in_secrets: false,
            target_path: "/var/lib/kubelet/pods/volume/mount".into(),
            default_mode: 0o644,
        }
    }

    /// Into the pod's volume directory `path`.
    pub fn target(mut self, path: impl Into<String>) -> Self {
        self.target_path = path.into();
        self
    }

    /// The driver's attributes: the parameters, then the volume context over them.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        let mut attributes = self.parameters.clone();
        for (key, value) in [
            (POD_NAME, &self.pod.name),
            (POD_NAMESPACE, &self.pod.namespace),
            (POD_UID, &self.pod.uid),
            (SERVICE_ACCOUNT, &self.pod.service_account),
            ("secretProviderClass", &self.class_name),
        ] {
            attributes.insert(key.to_owned(), value.clone());
        }
        attributes.insert("providerName".into(), "aws".into());
        if let Some(tokens) = &self.pod.tokens {
            attributes.insert(TOKENS.to_owned(), tokens.expose().to_owned());
        }
        attributes
    }

    pub fn build(&self) -> proto::MountRequest {
        let secrets = match (&self.pod.tokens, self.tokens_in_secrets) {
            (Some(tokens), true) => serde_json::json!({ TOKENS: tokens.expose() }).to_string(),
            _ => "{}".into(),
        };
        proto::MountRequest {
            attributes: serde_json::to_string(&self.attributes()).unwrap_or_default(),
            secrets,
            target_path: self.target_path.clone(),
            permission: self.default_mode.to_string(),
            current_object_version: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::proto;

    fn request(attributes: &str, permission: &str, target: &str) -> proto::MountRequest {
        proto::MountRequest {
            attributes: attributes.into(),
            permission: permission.into(),
            target_path: target.into(),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_parameters_and_volume_context() {
        let attributes = serde_json::json!({
            "objects": "- objectName: x",
            "region": "us-east-1",
            "usePodIdentity": "true",
            POD_NAME: "web-0",
            POD_NAMESPACE: "shop",
            POD_UID: "123",
            SERVICE_ACCOUNT: "web",
            TOKENS: "{\"sts.amazonaws.com\":{\"token\":\"t\"}}",
            "secretProviderClass": "web-secrets",
            "providerName": "aws",
        });
        let input = MountInput::parse(&request(&attributes.to_string(), "420", "/t")).unwrap();
        assert_eq!(input.parameters.region.as_deref(), Some("us-east-1"));
        assert_eq!(input.parameters.use_pod_identity.as_deref(), Some("true"));
        assert_eq!(input.pod.namespace, "shop");
        assert_eq!(input.pod.service_account, "web");
        assert_eq!(input.class_name, "web-secrets");
        assert_eq!(input.default_mode, 0o644);
        assert!(input.pod.tokens.unwrap().expose().contains("sts.amazonaws.com"));
    }

    #[test]
    fn tokens_may_come_from_the_secrets_field() {
        let mut req = request("{}", "420", "/t");
        req.secrets = serde_json::json!({ TOKENS: "{}" }).to_string();
        assert_eq!(MountInput::parse(&req).unwrap().pod.tokens.unwrap().expose(), "{}");
    }

    #[test]
    fn malformed_requests() {
        let cases = [
            (request("not json", "420", "/t"), "attributes is not a JSON object"),
            (request("{\"region\": 1}", "420", "/t"), "attributes is not a JSON object"),
            (request("[]", "420", "/t"), "attributes is not a JSON object"),
            (request("{}", "420", ""), "target_path is empty"),
            (request("{}", "", "/t"), "permission \"\""),
            (request("{}", "\"420\"", "/t"), "permission"),
            (request("{}", "-1", "/t"), "permission"),
            (request("{}", "512", "/t"), "permission \"512\""),
            (request("{}", "4.5", "/t"), "permission"),
        ];
        for (req, want) in cases {
            let err = MountInput::parse(&req).unwrap_err().to_string();
            assert!(err.contains(want), "{req:?}: {err}");
        }
    }

    #[test]
    fn target_paths_must_be_absolute_and_clean() {
        let ok = ["/var/lib/kubelet/pods/1/volumes/kubernetes.io~csi/s/mount", "/mnt/secrets-store", "/t/"];
        let bad = ["reldir", "./x", "x/../y", "/a/../b", "/a/./b", "/..", "", "/a\0b"];
        for path in ok {
            assert_eq!(check_target_path(Path::new(path)), Ok(()), "{path:?}");
        }
        for path in bad {
            assert!(
                matches!(check_target_path(Path::new(path)), Err(RequestError::TargetPath(_))),
                "{path:?}"
            );
        }
    }

    #[test]
    fn oversized_attributes_are_refused_before_parsing() {
        let big = format!("{{\"objects\": \"{}\"}}", "x".repeat(MAX_ATTRIBUTES_BYTES));
        let err = MountInput::parse(&request(&big, "420", "/t")).unwrap_err();
        assert!(matches!(err, RequestError::TooLarge { field: "attributes", .. }), "{err}");
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn permission_values() {
        assert_eq!(parse_permission("420"), Ok(0o644));
        assert_eq!(parse_permission("0"), Ok(0));
        assert_eq!(parse_permission(" 511 "), Ok(0o777));
    }
}
