//! Logging: `tracing` to stderr as text or JSON; the level comes from `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Crates whose debug and trace events print wire data: requests with the pod's token in
/// their body, responses and SDK errors with the raw answer (secret values included),
/// signing material, HTTP/2 frames. They stay at `info` unless `RUST_LOG` names them.
const WIRE_LEVEL_CRATES: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_json",
    "aws_smithy_xml",
    "aws_smithy_types",
    "aws_sigv4",
    "aws_runtime",
    "aws_config",
    "aws_sdk_secretsmanager",
    "aws_sdk_ssm",
    "aws_sdk_sts",
    "hyper",
    "hyper_util",
    "h2",
    "tower",
    "tonic",
    "rustls",
    "kube",
    "kube_client",
    "loona_hpack",
];

/// Installs the global subscriber. Our own code never logs secret values or tokens; the
/// SDK's and hyper's wire-level logs are kept at `info` unless RUST_LOG asks for them by name.
pub fn init(format: LogFormat) {
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = filter(&directives);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
        }
    };
}

/// The filter for `RUST_LOG` = `directives` (default `info`), with the wire-level crates
/// capped at `info` unless a directive names them.
fn filter(directives: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(directives)
        .ok()
        .filter(|_| !directives.trim().is_empty())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for krate in WIRE_LEVEL_CRATES {
        if !names_target(directives, krate)
            && let Ok(directive) = format!("{krate}=info").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Whether a directive of `directives` is about `krate` (or one of its modules).
fn names_target(directives: &str, krate: &str) -> bool {
    directives.split(',').any(|d| {
        let target = d.trim().split(['=', '[']).next().unwrap_or("");
        target == krate || target.starts_with(&format!("{krate}::"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_crates_are_capped_unless_named() {
        assert!(names_target("info,hyper=debug", "hyper"));
        assert!(names_target("aws_smithy_runtime::client=trace", "aws_smithy_runtime"));
        assert!(!names_target("trace", "hyper"));
        assert!(!names_target("hyper_util=trace", "hyper"));
        let shown = filter("trace").to_string();
        assert!(shown.contains("aws_smithy_runtime=info") && shown.contains("h2=info"), "{shown}");
        let shown = filter("trace,h2=trace").to_string();
        assert!(shown.contains("h2=trace") && !shown.contains("h2=info"), "{shown}");
    }
}
