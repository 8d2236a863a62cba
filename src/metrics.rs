//! The provider's Prometheus metrics and its readiness (the socket is serving), which
//! [`crate::server::http`] serves on `--metrics-addr`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label names and values, in order: each family's names are fixed at its call site.
type Labels<const N: usize> = [(&'static str, &'static str); N];

/// The provider's metrics and readiness. Labels are bounded sets of static strings: no
/// object names, pods or namespaces (unbounded cardinality), and never values.
pub struct Metrics {
    registry: Registry,
    mounts: Family<Labels<2>, Counter>,
    mount_duration: Histogram,
    in_flight: Gauge,
    aws_requests: Family<Labels<3>, Counter>,
    aws_duration: Family<Labels<2>, Histogram>,
    credentials: Family<Labels<2>, Counter>,
    kube_requests: Family<Labels<2>, Counter>,
    object_fetches: Family<Labels<1>, Counter>,
    token_verifications: Family<Labels<1>, Counter>,
    authority_rewrites: Counter,
    ready: AtomicBool,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("csi_provider_aws");
        let mounts = Family::<Labels<2>, Counter>::default();
        registry.register("mounts", "Mount calls by result and error class", mounts.clone());
        let mount_duration = latency_histogram();
        registry.register("mount_duration_seconds", "Time to serve a Mount call", mount_duration.clone());
        let in_flight = Gauge::default();
        registry.register("mounts_in_flight", "Mount calls being served", in_flight.clone());
        let aws_requests = Family::<Labels<3>, Counter>::default();
        registry.register(
            "aws_requests",
            "AWS API calls by service, operation and outcome (success, client, server, throttled, timeout, network)",
            aws_requests.clone(),
        );
        let aws_duration =
            Family::<Labels<2>, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "aws_request_duration_seconds",
            "AWS API call latency, retries included",
            aws_duration.clone(),
        );
        let credentials = Family::<Labels<2>, Counter>::default();
        registry.register(
            "credentials",
            "Pod credentials by auth method and source (fetched, cached, shared, error)",
            credentials.clone(),
        );
        let kube_requests = Family::<Labels<2>, Counter>::default();
        registry.register(
            "kubernetes_requests",
            "Kubernetes API reads by resource and outcome",
            kube_requests.clone(),
        );
        let object_fetches = Family::<Labels<1>, Counter>::default();
        registry.register(
            "object_fetches",
            "Objects a mount needed, by where they came from (aws, shared in-flight fetch, cache)",
            object_fetches.clone(),
        );
        let token_verifications = Family::<Labels<1>, Counter>::default();
        registry.register(
            "token_verifications",
            "IRSA tokens checked against the cluster's issuer keys: verified (shares its service \
             account's identity) or why not (exchanged alone)",
            token_verifications.clone(),
        );
        let authority_rewrites = Counter::default();
        registry.register(
            "authority_rewrites",
            "Requests whose :authority (a socket path, sent by CSI drivers <= v1.5.x) was rewritten \
             to localhost; 0 for long means no old driver is left",
            authority_rewrites.clone(),
        );
        Self {
            registry,
            token_verifications,
            mounts,
            mount_duration,
            in_flight,
            aws_requests,
            aws_duration,
            credentials,
            kube_requests,
            object_fetches,
            authority_rewrites,
            ready: AtomicBool::new(false),
        }
    }

    /// Records one AWS API call.
    pub fn aws_request(
        &self,
        service: &'static str,
        operation: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        self.aws_requests
            .get_or_create(&[("service", service), ("operation", operation), ("outcome", outcome)])
            .inc();
        self.aws_duration
            .get_or_create(&[("service", service), ("operation", operation)])
            .observe(elapsed.as_secs_f64());
    }

    /// Records where a pod's credentials came from.
    pub fn credential(&self, method: &'static str, source: &'static str) {
        self.credentials.get_or_create(&[("method", method), ("source", source)]).inc();
    }

    /// Records one IRSA token verification (`verified`, or why it was not).
    pub fn token_verification(&self, outcome: &'static str) {
        self.token_verifications.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// Records one Kubernetes API read.
    pub fn kube_request(&self, resource: &'static str, outcome: &'static str) {
        self.kube_requests.get_or_create(&[("resource", resource), ("outcome", outcome)]).inc();
    }

    /// Records `count` objects served from `source`.
    pub fn object_fetches(&self, source: &'static str, count: u64) {
        if count > 0 {
            self.object_fetches.get_or_create(&[("source", source)]).inc_by(count);
        }
    }

    /// Counts one request from an old driver whose `:authority` was rewritten.
    pub fn authority_rewritten(&self) {
        self.authority_rewrites.inc();
    }

    /// Counts a mount as in flight until the guard drops.
    pub fn mount_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Records a finished mount: `Err` carries the error class label.
    pub fn mount_finished(&self, result: Result<(), &'static str>, elapsed: Duration) {
        let (result, error) = match result {
            Ok(()) => ("success", ""),
            Err(class) => ("error", class),
        };
        self.mounts.get_or_create(&[("result", result), ("error", error)]).inc();
        self.mount_duration.observe(elapsed.as_secs_f64());
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether the socket is serving (what `/readyz` answers).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements the in-flight gauge when dropped (also when a mount is cancelled).
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
