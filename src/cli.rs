//! Command-line flags. ASCP's flags keep their names and meanings (`--provider-volume`,
//! `--driver-writes-secrets`, `--qps`, `--burst`, `--eks-addon-version`,
//! `--pod-identity-http-timeout`, `--log-format-json`), Go spellings included: `-flag`,
//! `--flag=value`, and bare boolean flags. As with Go's `flag` package, a flag given twice
//! takes its last value (`--qps=5 --qps=20` means 20), so a chart's `extraArgs` can override
//! a flag the chart already renders.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// Secrets Store CSI driver provider for AWS Secrets Manager and SSM Parameter Store.
#[derive(Debug, Parser)]
#[command(
    name = "csi-provider-aws",
    version,
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a SecretProviderClass offline and print the files it would mount.
    ///
    /// FILE is a Kubernetes manifest (one or more YAML documents; every SecretProviderClass
    /// in it is checked) or just the `objects` list. Exits 1 when a problem is found.
    Check {
        /// The manifest, or `-` for standard input.
        file: PathBuf,
        /// Region to check ARNs against when the class sets none.
        #[arg(long)]
        region: Option<String>,
    },
    /// Act as the CSI driver against a running provider: mount a SecretProviderClass into a
    /// directory (for debugging on a node).
    #[command(args_override_self = true)]
    Mount(crate::commands::mount::MountArgs),
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of the provider server (the default command).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory for the provider socket `aws.sock`, where the CSI driver looks for providers.
    #[arg(long, value_name = "DIR", default_value = "/var/run/secrets-store-csi-providers")]
    pub provider_volume: PathBuf,

    /// Return the files to the driver, which writes them, instead of writing them under the
    /// pod's target path. Accepts `--driver-writes-secrets` or `=true|false`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub driver_writes_secrets: bool,

    /// Queries per second to the Kubernetes API server (service account, pod and node
    /// lookups).
    #[arg(long, default_value_t = 5)]
    pub qps: u32,

    /// Burst of queries to the Kubernetes API server above --qps.
    #[arg(long, default_value_t = 10)]
    pub burst: u32,

    /// EKS add-on version, appended to the AWS user agent.
    #[arg(long, value_name = "VERSION", default_value = "")]
    pub eks_addon_version: String,

    /// Timeout of each request to the EKS Pod Identity agent, as a Go duration (`250ms`,
    /// `2s`). Empty means the default, 1s.
    #[arg(long, value_name = "DURATION", value_parser = optional_go_duration)]
    pub pod_identity_http_timeout: Option<OptionalDuration>,

    /// Address of the HTTP listener for /metrics, /healthz and /readyz (port 0 picks one).
    /// The default `[::]` takes IPv4 and IPv6 (IPv4 alone where the node has no IPv6).
    #[arg(long, value_name = "ADDR", default_value = crate::server::http::DEFAULT_ADDR)]
    pub metrics_addr: SocketAddr,

    /// EKS Pod Identity agent endpoint over IPv4.
    #[arg(long, value_name = "URL", default_value = "http://169.254.170.23/v1/credentials")]
    pub pod_identity_agent_ipv4_endpoint: String,

    /// EKS Pod Identity agent endpoint over IPv6.
    #[arg(long, value_name = "URL", default_value = "http://[fd00:ec2::23]/v1/credentials")]
    pub pod_identity_agent_ipv6_endpoint: String,

    /// Log format; the level comes from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// ASCP's spelling of `--log-format json`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub log_format_json: bool,

    /// Most objects one SecretProviderClass may mount.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub max_objects: usize,

    /// Most bytes of file contents one mount may return (the driver accepts at most 4 MiB
    /// per response, protobuf framing included).
    #[arg(long, value_name = "BYTES", default_value_t = 3_670_016, value_parser = clap::value_parser!(u64).range(1..=4_000_000))]
    pub max_mount_bytes: u64,

    /// Limit for one AWS API call, retries included, as a Go duration.
    #[arg(long, value_name = "DURATION", default_value = "12s", value_parser = go_duration)]
    pub aws_timeout: Duration,

    /// Limit for a whole mount (waiting included); a slower mount fails and the driver retries.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = go_duration)]
    pub mount_timeout: Duration,

    /// Mounts served at once; more wait for a slot within --mount-timeout.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_concurrent_mounts: usize,

    /// AWS requests in flight at once across all mounts (keeps a mount storm within quotas).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_aws_requests: usize,

    /// Serve a value fetched by the same pod identity again for this long (e.g. `2m`), to cut
    /// the cost of the driver's rotation polls. `0` (default) fetches on every mount.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = cache_ttl)]
    pub cache_ttl: Duration,

    /// Let replicas of one service account share its IRSA identity (STS credentials, fetches
    /// and cached values) when the provider verified their tokens against the cluster's
    /// service-account issuer keys. `false` exchanges every pod's token on its own.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true", value_parser = go_bool)]
    pub share_irsa_identity: bool,
}

/// Parses `--cache-ttl`: a Go duration, or zero to disable.
fn cache_ttl(value: &str) -> Result<Duration, String> {
    match value.trim() {
        "" | "0" | "0s" => Ok(Duration::ZERO),
        other => go_duration(other),
    }
}

impl ServeArgs {
    /// The flags' defaults: what the binary runs with when given no arguments.
    pub fn defaults() -> Self {
        Cli::parse_from(["csi-provider-aws"]).serve
    }

    pub fn log_format(&self) -> LogFormat {
        if self.log_format_json { LogFormat::Json } else { self.log_format }
    }
}

/// A duration flag that may be given empty (meaning "the default").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalDuration(pub Option<Duration>);

impl Cli {
    /// Parses arguments, first turning Go's single-dash long flags (`-qps=5`) into `--qps=5`.
    pub fn parse_go_style(args: impl IntoIterator<Item = OsString>) -> Self {
        let command = Self::command();
        let long_names: Vec<String> =
            command.get_arguments().filter_map(|a| a.get_long().map(str::to_owned)).collect();
        let args = args.into_iter().enumerate().map(|(i, arg)| {
            let Some(text) = arg.to_str().filter(|_| i > 0) else { return arg };
            let name = text.strip_prefix('-').filter(|rest| !rest.starts_with('-'));
            match name.map(|n| n.split('=').next().unwrap_or(n)) {
                Some(n) if n.len() > 1 && long_names.iter().any(|l| l == n) => {
                    OsString::from(format!("-{text}"))
                }
                _ => arg,
            }
        });
        Self::parse_from(args)
    }
}

/// Parses a boolean as Go's `strconv.ParseBool` does.
pub fn go_bool(value: &str) -> Result<bool, String> {
    crate::class::parse_go_bool(value)
        .ok_or_else(|| format!("{value:?} is not a boolean (use true or false)"))
}

fn optional_go_duration(value: &str) -> Result<OptionalDuration, String> {
    if value.trim().is_empty() {
        return Ok(OptionalDuration(None));
    }
    go_duration(value).map(|d| OptionalDuration(Some(d)))
}

/// Parses a positive Go duration such as `250ms`, `1.5s` or `1m30s`.
pub fn go_duration(value: &str) -> Result<Duration, String> {
    let bad = || format!("{value:?} is not a duration: use a Go duration such as 250ms, 2s or 1m30s");
    let mut rest = value.trim();
    if rest.is_empty() || rest.starts_with('-') {
        return Err(bad());
    }
    rest = rest.strip_prefix('+').unwrap_or(rest);
    if rest == "0" {
        return Err(format!("{value:?} must be longer than zero"));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (number, tail) = rest.split_at(number_len);
        let amount: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += amount * seconds;
        rest = tail;
    }
    if total <= 0.0 || !total.is_finite() || total > 1e9 {
        return Err(format!("{value:?} must be longer than zero and reasonable"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        Cli::parse_go_style(
            std::iter::once("csi-provider-aws").chain(args.iter().copied()).map(OsString::from),
        )
    }

    #[test]
    fn durations() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
        ];
        for (input, want) in ok {
            assert_eq!(go_duration(input), Ok(want), "{input}");
        }
        for input in ["", "5", "-1s", "1x", "ms", "0", "1.2.3s", "0s"] {
            assert!(go_duration(input).is_err(), "{input} should be rejected");
        }
    }

    #[test]
    fn ascp_flags_and_spellings() {
        let cli = parse(&[
            "--provider-volume=/p",
            "--driver-writes-secrets",
            "--qps=20",
            "-burst=30",
            "--eks-addon-version=v1.2.3-eksbuild.1",
            "--pod-identity-http-timeout=250ms",
        ]);
        let s = &cli.serve;
        assert_eq!(s.provider_volume, PathBuf::from("/p"));
        assert!(s.driver_writes_secrets);
        assert_eq!((s.qps, s.burst), (20, 30));
        assert_eq!(s.eks_addon_version, "v1.2.3-eksbuild.1");
        assert_eq!(s.pod_identity_http_timeout, Some(OptionalDuration(Some(Duration::from_millis(250)))));

        for (flag, want) in [
            ("--driver-writes-secrets=true", true),
            ("--driver-writes-secrets=false", false),
            ("--driver-writes-secrets=1", true),
            ("-driver-writes-secrets=False", false),
        ] {
            assert_eq!(parse(&[flag]).serve.driver_writes_secrets, want, "{flag}");
        }
        assert!(!parse(&[]).serve.driver_writes_secrets);
        assert_eq!(
            parse(&["--pod-identity-http-timeout="]).serve.pod_identity_http_timeout,
            Some(OptionalDuration(None))
        );
        assert_eq!(parse(&["--log-format-json"]).serve.log_format(), LogFormat::Json);
        assert_eq!(parse(&["--log-format", "json"]).serve.log_format(), LogFormat::Json);
        assert_eq!(parse(&["--metrics-addr=127.0.0.1:0"]).serve.metrics_addr.port(), 0);
        assert_eq!(parse(&[]).serve.cache_ttl, Duration::ZERO);
        assert_eq!(parse(&["--cache-ttl=2m"]).serve.cache_ttl, Duration::from_secs(120));
        assert_eq!(parse(&["--cache-ttl=0s"]).serve.cache_ttl, Duration::ZERO);
    }

    #[test]
    fn bad_values_are_refused() {
        let args = |a: &[&str]| {
            Cli::try_parse_from(std::iter::once("csi-provider-aws").chain(a.iter().copied())).map(|_| ())
        };
        assert!(args(&["--pod-identity-http-timeout=soon"]).is_err());
        assert!(args(&["--driver-writes-secrets=maybe"]).is_err());
        assert!(args(&["--qps=-1"]).is_err());
        assert!(args(&["--metrics-addr=nowhere"]).is_err());
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value() {
        let s = parse(&["--qps=5", "--qps=20", "-burst=1", "-burst", "30"]).serve;
        assert_eq!((s.qps, s.burst), (20, 30));
        let s = parse(&["--driver-writes-secrets", "--driver-writes-secrets=false"]).serve;
        assert!(!s.driver_writes_secrets);
        let s = parse(&["--cache-ttl=1m", "--cache-ttl=0", "--log-format=json", "--log-format=text"]).serve;
        assert_eq!((s.cache_ttl, s.log_format()), (Duration::ZERO, LogFormat::Text));
        let Some(Command::Mount(crate::commands::mount::MountArgs { pod, .. })) =
            parse(&["mount", "--spc=s", "--target=t", "--pod=a", "--pod=b"]).command
        else {
            panic!("mount subcommand")
        };
        assert_eq!(pod, "b");
    }

    #[test]
    fn check_subcommand() {
        let cli = parse(&["check", "spc.yaml", "--region", "us-east-1"]);
        assert!(matches!(cli.command, Some(Command::Check { .. })));
    }
}
