//! The floor of one AWS call: CPU per call of the official SDK as the provider configures it,
//! against the transport alone, with nothing else in the process doing work.
//!
//! `cargo bench --bench sdk_call` makes `CALLS` (default 2000) calls one after another against
//! the test kit's fake AWS (no latency, on a thread of its own) from a single-threaded runtime
//! on this thread, and reads this thread's CPU time from `/proc/thread-self/schedstat` around
//! them: every byte the client side encodes, signs, sends, parses and decodes, and none of the
//! fake's work. Rows:
//!
//! - the SDK with one client for every call (the least any SDK user pays per call);
//! - the SDK with a new client for each call, built from the shared configuration as the
//!   provider builds one per mount and service (src/aws/mod.rs; the HTTPS client shared):
//!   the difference to the row above is what building a client costs;
//! - Parameter Store's GetParameters of 10 names, one client;
//! - the same GetSecretValue request as bare HTTP/1.1 through hyper on a kept-alive
//!   connection, unsigned and unparsed: what is left without the SDK (the transport floor).
//!
//! `ROUNDS` (default 5) repeats each row; the table shows the median and the range.

use std::time::Instant;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use csi_provider_aws::aws::{ATTEMPT_TIMEOUT, AwsSettings, CONNECT_TIMEOUT, load_sdk_config};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use test_kit::{FakeAws, schedstat_ns};

/// Nanoseconds this thread has been on a CPU.
fn thread_cpu_ns() -> u64 {
    schedstat_ns(&std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default())
}

/// Runs `calls` calls of `one` in sequence; returns (CPU us, wall us) per call.
async fn measure<F, Fut>(calls: u32, mut one: F) -> (f64, f64)
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Warm: connections open, lazy state built, caches filled.
    for i in 0..50 {
        one(i).await;
    }
    let (cpu, wall) = (thread_cpu_ns(), Instant::now());
    for i in 0..calls {
        one(i).await;
    }
    let per = |total: f64| total / f64::from(calls);
    (per((thread_cpu_ns() - cpu) as f64 / 1000.0), per(wall.elapsed().as_secs_f64() * 1e6))
}

/// The rows, in the order `main` measures them.
const LABELS: [&str; 4] = [
    "SDK GetSecretValue, one client",
    "SDK GetSecretValue, a new client each call",
    "SDK GetParameters (10 names), one client",
    "bare HTTP/1.1 POST, same request, no SDK",
];

fn env(key: &str, default: u32) -> u32 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let calls = env("CALLS", 2000);
    let rounds = env("ROUNDS", 5).max(1);
    // The fake answers from a thread of its own, as AWS is another machine.
    let fakes = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let aws = fakes.block_on(FakeAws::start());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let rows = runtime.block_on(async {
        let settings = AwsSettings {
            endpoint_url: Some(aws.url()),
            app_version: None,
            attempt_timeout: ATTEMPT_TIMEOUT,
            call_timeout: ATTEMPT_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
        };
        let sdk = load_sdk_config(&settings).await;
        let credentials =
            SharedCredentialsProvider::new(Credentials::new("AKIDBENCH", "bench", None, None, "bench"));
        let region = aws_config::Region::new("us-east-1");
        let sm_config = || {
            aws_sdk_secretsmanager::config::Builder::from(&sdk)
                .region(region.clone())
                .credentials_provider(credentials.clone())
                .build()
        };
        let sm = aws_sdk_secretsmanager::Client::from_conf(sm_config());
        let ssm = aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(&sdk)
                .region(region.clone())
                .credentials_provider(credentials.clone())
                .build(),
        );
        let bare = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let url: hyper::Uri = aws.url().parse().unwrap();
        let names: Vec<String> = (0..10).map(|i| format!("/app/param-{i}")).collect();

        let mut rows: Vec<Vec<(f64, f64)>> = vec![Vec::new(); LABELS.len()];
        for _ in 0..rounds {
            let one_client = measure(calls, |i| {
                let sm = &sm;
                async move {
                    sm.get_secret_value().secret_id(format!("app/secret-{}", i % 10)).send().await.unwrap();
                }
            })
            .await;
            let per_call = measure(calls, |i| {
                let sm = aws_sdk_secretsmanager::Client::from_conf(sm_config());
                async move {
                    sm.get_secret_value().secret_id(format!("app/secret-{}", i % 10)).send().await.unwrap();
                }
            })
            .await;
            let parameters = measure(calls, |_| {
                let (ssm, names) = (&ssm, &names);
                async move {
                    ssm.get_parameters()
                        .set_names(Some(names.clone()))
                        .with_decryption(true)
                        .send()
                        .await
                        .unwrap();
                }
            })
            .await;
            let transport = measure(calls, |i| {
                let (bare, url) = (&bare, &url);
                async move {
                    let body = format!("{{\"SecretId\":\"app/secret-{}\"}}", i % 10);
                    let request = hyper::Request::post(url.clone())
                        .header("content-type", "application/x-amz-json-1.1")
                        .header("x-amz-target", "secretsmanager.GetSecretValue")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    let response = bare.request(request).await.unwrap();
                    assert!(response.status().is_success(), "the fake refused the bare request");
                    response.into_body().collect().await.unwrap();
                }
            })
            .await;
            for (runs, m) in rows.iter_mut().zip([one_client, per_call, parameters, transport]) {
                runs.push(m);
            }
        }
        rows
    });
    println!(
        "{calls} calls in sequence per round, {rounds} rounds; fake AWS with no latency on its own thread\n"
    );
    println!("| call | client CPU us/call | range | wall us/call |");
    println!("|---|---:|---:|---:|");
    for (label, mut runs) in LABELS.into_iter().zip(rows) {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mid = runs[runs.len() / 2];
        let (low, high) = (runs[0].0, runs[runs.len() - 1].0);
        println!("| {label} | {:.1} | {low:.1}-{high:.1} | {:.1} |", mid.0, mid.1);
    }
    drop(fakes);
}
