//! The `csi-provider-aws` binary: flags -> configuration -> telemetry -> server.

use std::process::ExitCode;

use csi_provider_aws::cli::{Cli, Command, ServeArgs};
use csi_provider_aws::commands::{check, mount};
use csi_provider_aws::{compose, server, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse_go_style(std::env::args_os());
    match cli.command {
        Some(Command::Check { file, region }) => run_check(&file, region.as_deref()),
        Some(Command::Mount(args)) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime.map_err(|e| e.to_string()).and_then(|rt| rt.block_on(mount::mount(&args))) {
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
    let Ok(text) = text.inspect_err(|e| eprintln!("error: cannot read {}: {e}", file.display())) else {
        return ExitCode::from(2);
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

    let settings = compose::Settings::from_args(&args, std::env::var("AWS_REGION").ok());
    let Ok(built) = compose::build(settings).await.inspect_err(|e| tracing::error!("{e}")) else {
        return ExitCode::FAILURE;
    };
    let (mounter, metrics) = (built.mounter, built.metrics);
    // Metrics and probes matter, but serving the driver matters more: a taken port is
    // reported loudly and the socket is served anyway.
    match server::http::bind(args.metrics_addr) {
        Ok(listener) => {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
            }
            tokio::spawn(server::http::serve(listener, metrics.clone()));
        }
        Err(e) => tracing::error!(
            "cannot listen on --metrics-addr {}: {e}; /metrics, /healthz and /readyz are disabled \
             (choose a free address, or port 0)",
            args.metrics_addr
        ),
    }

    let socket = args.provider_volume.join(server::SOCKET_NAME);
    let Ok(listener) = server::bind(&socket).inspect_err(|e| tracing::error!("{e}")) else {
        return ExitCode::FAILURE;
    };
    if let Err(e) = server::run(listener, &socket, mounter, metrics, shutdown).await {
        tracing::error!("{e}");
        return ExitCode::FAILURE;
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Completes on SIGTERM (the kubelet stopping the pod) or SIGINT. The handlers are installed
/// when this is called, not when the future is first polled: the socket accepts connections
/// as soon as it is bound, so a SIGTERM may come before the server runs.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => tracing::info!("received SIGTERM"),
                _ = int.recv() => tracing::info!("received SIGINT"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot listen for SIGTERM/SIGINT: {e}");
                std::future::pending::<()>().await;
            }
        }
    }
}
