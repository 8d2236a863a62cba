//! The `csi-provider-aws` binary: flags -> configuration -> telemetry -> server.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use csi_provider_aws::aws::shared::{CacheSettings, SharedStore};
use csi_provider_aws::aws::sts_config;
use csi_provider_aws::aws::{AwsSettings, AwsStore, load_sdk_config};
use csi_provider_aws::cli::{Cli, Command, ServeArgs};
use csi_provider_aws::identity::{PodCredentials, PodIdentityAgent};
use csi_provider_aws::kube::{ClusterLookup, KubeLookup, KubeSource};
use csi_provider_aws::metrics::{self, Metrics};
use csi_provider_aws::mount::{MountSettings, Mounter};
use csi_provider_aws::{check, client, server, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse_go_style(std::env::args_os());
    match cli.command {
        Some(Command::Check { file, region }) => run_check(&file, region.as_deref()),
        Some(Command::Mount { socket, spc, target, pod, namespace, service_account, tokens }) => {
            let args = client::MountArgs { socket, spc, target, pod, namespace, service_account, tokens };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime.map_err(|e| e.to_string()).and_then(|rt| rt.block_on(client::mount(&args))) {
                Ok(summary) => {
                    print!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
            match runtime {
                Ok(runtime) => runtime.block_on(serve(cli.serve)),
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_check(file: &std::path::Path, region: Option<&str>) -> ExitCode {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match check::check(&text, region) {
        Ok(reports) => {
            print!("{}", check::format(&reports));
            if reports.iter().any(|r| !r.problems.is_empty()) { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let shutdown = shutdown_signal();
    telemetry::init(args.log_format());
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting csi-provider-aws");
    // The effective values, after repeated flags (the last one wins) and defaults.
    tracing::info!(
        provider_volume = %args.provider_volume.display(),
        driver_writes_secrets = args.driver_writes_secrets,
        qps = args.qps,
        burst = args.burst,
        cache_ttl = ?args.cache_ttl,
        mount_timeout = ?args.mount_timeout,
        max_concurrent_mounts = args.max_concurrent_mounts,
        max_aws_requests = args.max_aws_requests,
        "settings"
    );
    tracing::info!(
        "pods' tokens come from the CSIDriver's tokenRequests (audiences sts.amazonaws.com, \
         pods.eks.amazonaws.com)"
    );

    let settings = AwsSettings {
        app_version: Some(args.eks_addon_version.clone()).filter(|v| !v.is_empty()),
        call_timeout: args.aws_timeout,
        ..AwsSettings::default()
    };
    let sdk = load_sdk_config(&settings).await;
    let default_region = std::env::var("AWS_REGION").ok().filter(|r| !r.trim().is_empty());
    let metrics = Arc::new(Metrics::new());
    let aws = AwsStore::new(sdk.clone(), args.max_aws_requests, metrics.clone());
    let cache = CacheSettings { ttl: args.cache_ttl, ..CacheSettings::default() };
    let store = SharedStore::new(Arc::new(aws), cache).with_metrics(metrics.clone());
    let timeout = args.pod_identity_http_timeout.and_then(|t| t.0).unwrap_or(Duration::from_secs(1));
    let agent = match PodIdentityAgent::new(
        &args.pod_identity_agent_ipv4_endpoint,
        &args.pod_identity_agent_ipv6_endpoint,
        timeout,
    ) {
        Ok(agent) => agent,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Created lazily: start-up never needs a reachable API server.
    let cluster: Arc<dyn ClusterLookup> =
        Arc::new(KubeLookup::new(KubeSource::Infer, args.qps, args.burst, metrics.clone()));
    let credentials = PodCredentials::new(sts_config(&sdk), cluster.clone(), agent, metrics.clone());
    let mount_settings = MountSettings {
        driver_writes_secrets: args.driver_writes_secrets,
        default_region,
        max_objects: args.max_objects,
        max_response_bytes: usize::try_from(args.max_mount_bytes).unwrap_or(usize::MAX),
        timeout: args.mount_timeout,
        max_concurrent: args.max_concurrent_mounts,
    };
    let mounter =
        Arc::new(Mounter::new(mount_settings, Arc::new(store), Arc::new(credentials), Some(cluster)));
    // Metrics and probes matter, but serving the driver matters more: a taken port is
    // reported loudly and the socket is served anyway.
    match metrics::bind(args.metrics_addr).await {
        Ok(listener) => {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
            }
            tokio::spawn(metrics::serve(listener, metrics.clone()));
        }
        Err(e) => tracing::error!(
            "cannot listen on --metrics-addr {}: {e}; /metrics, /healthz and /readyz are disabled \
             (choose a free address, or port 0)",
            args.metrics_addr
        ),
    }

    let socket = args.provider_volume.join(server::SOCKET_NAME);
    let listener = match server::bind(&socket) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match server::run(listener, &socket, mounter, metrics, shutdown).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM (the kubelet stopping the pod) or SIGINT. The handlers are installed
/// when this is called, not when it is first awaited, so a signal that arrives while the
/// provider is still starting stops it cleanly once it serves, instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals =
        signal(SignalKind::terminate()).and_then(|term| Ok((term, signal(SignalKind::interrupt())?)));
    async move {
        match signals {
            Ok((mut term, mut int)) => tokio::select! {
                _ = term.recv() => tracing::info!("received SIGTERM"),
                _ = int.recv() => tracing::info!("received SIGINT"),
            },
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM and SIGINT: {e}; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
