//! One HTTPS client for every SDK client: one connection pool, TLS roots loaded once.
//!
//! Without it, every `Client::from_conf` (two per new identity, one per STS exchange) makes
//! its own HTTPS client: its own connection pool, and a throw-away connector built at once
//! to validate the configuration (the TLS roots read and parsed again). A node's pods whose
//! tokens cannot be shared, and every STS exchange, then opened fresh connections — a TLS
//! handshake each against real AWS. The connector is the SDK default's (rustls on aws-lc-rs,
//! proxies from `HTTPS_PROXY`/`NO_PROXY`), so only the sharing changes.

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, Connector, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared as _;

/// The shared client, for `SdkConfig`.
pub fn shared_client() -> SharedHttpClient {
    Shared(Builder::new().build_with_connector_fn(connector)).into_shared()
}

fn connector(settings: Option<&HttpConnectorSettings>, components: Option<&RuntimeComponents>) -> Connector {
    let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
    connector.set_connector_settings(settings.cloned());
    connector.set_sleep_impl(components.and_then(RuntimeComponents::sleep_impl));
    connector.set_proxy_config(Some(ProxyConfig::from_env()));
    connector.build()
}

/// Does the TLS set-up a process does once, now, on a blocking thread, rather than inside a
/// booting node's first mounts (BENCHMARKS.md, "where the CPU goes"): the CA bundle read and
/// parsed (the SDK does it at the first connector it builds; ~4 ms of CPU), and aws-lc's
/// random generator initialised (its jitter entropy source measures timing for ~30-60 ms of
/// CPU at the first random bytes a process asks for: the first TLS handshake's).
pub fn warm_tls() {
    tokio::task::spawn_blocking(|| {
        drop(connector(None, None));
        let _ = rustls::crypto::aws_lc_rs::default_provider().secure_random.fill(&mut [0; 32]);
    });
}

/// The SDK's client, minus the per-client validation: it builds (and drops) a connector at
/// every `Client::from_conf` so that a misconfiguration shows at construction; this one is
/// built once, and its connectors are cached by connect and read timeout as before.
#[derive(Debug)]
struct Shared(SharedHttpClient);

impl HttpClient for Shared {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}
