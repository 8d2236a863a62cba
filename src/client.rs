//! `csi-provider-aws mount`: acts as the CSI driver against a running provider, for debugging
//! on a node. Builds the same attributes the driver would from a SecretProviderClass
//! manifest, calls Mount over the socket and writes the returned files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_yaml::Value;
use tokio::net::UnixStream;
use tonic::transport::Endpoint;

use crate::proto::MountRequest;
use crate::proto::csi_driver_provider_client::CsiDriverProviderClient;
use crate::render::RenderedFile;
use crate::request;
use crate::secret::SecretBytes;

/// What to mount and as whom.
#[derive(Debug, Clone)]
pub struct MountArgs {
    pub socket: PathBuf,
    pub spc: PathBuf,
    pub target: PathBuf,
    pub pod: String,
    pub namespace: String,
    pub service_account: String,
    /// `serviceAccount.tokens` JSON to pass, as the driver's tokenRequests would.
    pub tokens: Option<String>,
}

/// Calls Mount and writes the files; returns a human-readable summary.
pub async fn mount(args: &MountArgs) -> Result<String, String> {
    let text =
        std::fs::read_to_string(&args.spc).map_err(|e| format!("cannot read {}: {e}", args.spc.display()))?;
    let (class_name, mut attributes) = class_parameters(&text)?;
    for (key, value) in [
        (request::POD_NAME, args.pod.as_str()),
        (request::POD_NAMESPACE, args.namespace.as_str()),
        (request::POD_UID, "00000000-0000-0000-0000-000000000000"),
        (request::SERVICE_ACCOUNT, args.service_account.as_str()),
        ("secretProviderClass", class_name.as_str()),
        ("providerName", "aws"),
    ] {
        attributes.insert(key.to_owned(), value.to_owned());
    }
    if let Some(tokens) = &args.tokens {
        attributes.insert(request::TOKENS.to_owned(), tokens.clone());
    }
    std::fs::create_dir_all(&args.target)
        .map_err(|e| format!("cannot create {}: {e}", args.target.display()))?;
    let request = MountRequest {
        attributes: serde_json::to_string(&attributes).unwrap_or_default(),
        secrets: "{}".into(),
        target_path: args.target.display().to_string(),
        permission: "420".into(),
        current_object_version: Vec::new(),
    };
    let socket = args.socket.clone();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.socket.display()))?;
    let response = CsiDriverProviderClient::new(channel)
        .mount(request)
        .await
        .map_err(|status| format!("Mount failed ({:?}): {}", status.code(), status.message()))?
        .into_inner();
    let files: Vec<RenderedFile> = response
        .files
        .into_iter()
        .map(|f| RenderedFile { path: f.path, mode: f.mode as u32, contents: SecretBytes::new(f.contents) })
        .collect();
    let written_by = if files.is_empty() { "the provider" } else { "this command (driver-writes mode)" };
    crate::write::write_all(&args.target, &files).map_err(|e| e.to_string())?;
    let mut summary = format!("mounted into {} (files written by {written_by}):\n", args.target.display());
    for version in &response.object_version {
        summary.push_str(&format!("  {}  version {}\n", version.id, version.version));
    }
    Ok(summary)
}

/// The first SecretProviderClass in a manifest: its name and `spec.parameters`.
fn class_parameters(text: &str) -> Result<(String, BTreeMap<String, String>), String> {
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| format!("not valid YAML: {e}"))?;
        if value.get("kind").and_then(Value::as_str) != Some("SecretProviderClass") {
            continue;
        }
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut parameters = BTreeMap::new();
        if let Some(Value::Mapping(map)) = value.get("spec").and_then(|s| s.get("parameters")) {
            for (k, v) in map {
                if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                    parameters.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        return Ok((name, parameters));
    }
    Err("no SecretProviderClass found in the file".into())
}
