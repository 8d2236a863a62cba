//! `csi-provider-aws mount`: acts as the CSI driver against a running provider, for debugging
//! on a node. Builds the request the driver would from a SecretProviderClass manifest
//! ([`DriverRequest`]), calls Mount over the socket and writes the returned files.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_yaml::Value;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::proto::csi_driver_provider_client::CsiDriverProviderClient;
use crate::render::RenderedFile;
use crate::request::{DriverRequest, Pod};
use crate::secret::{SecretBytes, SecretString};

// What to mount and as whom: the `mount` subcommand's flags (its help is the subcommand's
// doc in `cli`, so this struct has no doc comment of its own).
#[derive(Debug, Clone, clap::Args)]
pub struct MountArgs {
    /// The provider's socket.
    #[arg(long, default_value = "/var/run/secrets-store-csi-providers/aws.sock")]
    pub socket: PathBuf,
    /// A manifest holding the SecretProviderClass.
    #[arg(long, value_name = "FILE")]
    pub spc: PathBuf,
    /// Directory to mount into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Pod name to present.
    #[arg(long, default_value = "debug")]
    pub pod: String,
    /// Pod namespace to present.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Service account to present.
    #[arg(long, default_value = "default")]
    pub service_account: String,
    /// `serviceAccount.tokens` JSON to pass, as the driver's tokenRequests would.
    #[arg(long, value_name = "JSON")]
    pub tokens: Option<String>,
}

/// Calls Mount and writes the files; returns a human-readable summary. On failure nothing is
/// left behind: directories this call created for the target are removed again.
pub async fn mount(args: &MountArgs) -> Result<String, String> {
    let text =
        std::fs::read_to_string(&args.spc).map_err(|e| format!("cannot read {}: {e}", args.spc.display()))?;
    let (class_name, parameters) = class_parameters(&text)?;
    let pod = Pod {
        namespace: args.namespace.clone(),
        name: args.pod.clone(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        service_account: args.service_account.clone(),
        tokens: args.tokens.clone().map(SecretString::new),
    };
    let request = DriverRequest::new(&class_name, parameters, pod);
    // Connect before creating anything, so a missing provider leaves no trace.
    let channel = connect(&args.socket).await?;
    let created = create_target(&args.target)?;
    // The provider writes only under an absolute, clean path (as the driver's always is).
    let result = match std::fs::canonicalize(&args.target) {
        Ok(target) => mount_into(&target, channel, request.target(target.display().to_string())).await,
        Err(e) => Err(format!("cannot resolve {}: {e}", args.target.display())),
    };
    if result.is_err() {
        remove_created(created.as_deref());
    }
    result
}

/// The Mount call, then the writes when the provider returned the files (driver-writes mode).
async fn mount_into(target: &Path, channel: Channel, request: DriverRequest) -> Result<String, String> {
    let request = request.build();
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
    crate::write::write_all(target, &files).map_err(|e| e.to_string())?;
    let mut summary = format!("mounted into {} (files written by {written_by}):\n", target.display());
    for version in &response.object_version {
        summary.push_str(&format!("  {}  version {}\n", version.id, version.version));
    }
    Ok(summary)
}

/// A channel to the provider's socket, as the driver dials it (authority `localhost`): the
/// one Unix-socket connector of `mount`, the integration tests and the benchmark.
pub async fn connect(socket: &Path) -> Result<Channel, String> {
    let path = socket.to_owned();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| match crate::cause::find_cause::<std::io::Error>(&e).map(std::io::Error::kind) {
            Some(ErrorKind::NotFound | ErrorKind::ConnectionRefused) => format!(
                "no provider listening on {} (start the provider, or pass --socket with its \
                 --provider-volume directory and aws.sock)",
                socket.display()
            ),
            _ => format!("cannot connect to {}: {e}", socket.display()),
        })
}

/// Creates `target` and any missing parents; returns the outermost directory it created.
fn create_target(target: &Path) -> Result<Option<PathBuf>, String> {
    let missing = |dir: &&Path| !dir.as_os_str().is_empty() && std::fs::symlink_metadata(dir).is_err();
    let outermost = target.ancestors().take_while(missing).last().map(Path::to_owned);
    std::fs::create_dir_all(target).map_err(|e| {
        remove_created(outermost.as_deref());
        format!("cannot create {}: {e}", target.display())
    })?;
    Ok(outermost)
}

/// Removes the directories [`create_target`] made. Everything below them was made by this
/// command (or the provider on its behalf), since they did not exist before.
fn remove_created(outermost: Option<&Path>) {
    if let Some(dir) = outermost {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The first SecretProviderClass in a manifest: its name and `spec.parameters`.
fn class_parameters(text: &str) -> Result<(String, BTreeMap<String, String>), String> {
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| format!("not valid YAML: {e}"))?;
        if value.get("kind").and_then(Value::as_str) != Some("SecretProviderClass") {
            continue;
        }
        // Indexing a missing key (or a non-mapping) gives null.
        let name = value["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let mut parameters = BTreeMap::new();
        if let Value::Mapping(map) = &value["spec"]["parameters"] {
            let texts =
                map.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())));
            parameters.extend(texts);
        }
        return Ok((name, parameters));
    }
    Err("no SecretProviderClass found in the file".into())
}
