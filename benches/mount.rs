//! Mount latency, AWS calls and memory, side by side with ASCP's call pattern, in one run.
//!
//! `cargo bench --bench mount` starts the release provider binary against a local fake AWS
//! endpoint that answers STS, Secrets Manager and Parameter Store after a fixed per-call
//! latency (`LATENCY_MS`, default 20), plus a stand-in Kubernetes API that serves service
//! accounts and (optionally) service-account issuer discovery. Every pod presents its own
//! kubelet-like token (RS256, own `jti`, pod name and uid). The same scenarios are then
//! replayed with ASCP's call pattern against the same fakes: per mount one service account
//! lookup, one STS call, one GetSecretValue per secret in sequence and one GetParameters per
//! 10 parameters. `SAMPLES` (default 40) mounts per latency row; the node rows boot
//! `DEPLOYMENTS` (10) service accounts x `REPLICAS` (10) pods. The fakes and the binary
//! harness are the test kit's (crates/test-kit), shared with the integration tests.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use csi_provider_aws::proto::MountRequest;
use csi_provider_aws::request::{DriverRequest, Pod};
use csi_provider_aws::secret::SecretString;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use test_kit::{Binary, FakeAws, FakeKube, tokens};

mod sweep;

const REGION: &str = "us-east-1";

/// The release provider binary, with `extra` flags, against `aws` (trusting the CA
/// certificate at `ca` when it is served over TLS) and the Kubernetes API of `kubeconfig`.
/// `PROVIDER_LOG=FILE` keeps its log (at `PROVIDER_RUST_LOG`, default warn).
fn start_provider(aws: &FakeAws, ca: Option<&Path>, kubeconfig: &Path, extra: &[&str]) -> Binary {
    let mut args = vec!["--driver-writes-secrets"];
    args.extend_from_slice(extra);
    let endpoint = aws.url();
    let kubeconfig = kubeconfig.display().to_string();
    let log_level = std::env::var("PROVIDER_RUST_LOG").unwrap_or_else(|_| "warn".into());
    let ca = ca.map(|path| path.display().to_string());
    let mut env = vec![
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "provider"),
        ("AWS_SECRET_ACCESS_KEY", "provider"),
        ("KUBECONFIG", kubeconfig.as_str()),
        ("RUST_LOG", log_level.as_str()),
    ];
    if let Some(ca) = &ca {
        env.push(("SSL_CERT_FILE", ca.as_str()));
    }
    let log = match std::env::var("PROVIDER_LOG") {
        Ok(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_or_else(|_| Stdio::null(), Stdio::from),
        Err(_) => Stdio::null(),
    };
    let command = Command::new(env!("CARGO_BIN_EXE_csi-provider-aws"));
    Binary::start_quiet(command, tempfile::tempdir().unwrap(), &args, &env, log)
}

/// A stand-in Kubernetes API: every service account has an IRSA role; issuer discovery is
/// served for `key` when given (else 404: tokens cannot be verified).
async fn stand_in_kube(fakes: &tokio::runtime::Runtime, key: Option<&tokens::SigningKey>) -> FakeKube {
    let kube = fakes.spawn(FakeKube::bind("127.0.0.1:0")).await.unwrap();
    kube.every_service_account_has_a_role();
    if let Some(key) = key {
        kube.issuer(&[key]);
    }
    kube
}

/// A class with `n` objects: half secrets, half parameters (one secret when n = 1).
fn objects(n: usize) -> (Vec<String>, Vec<String>) {
    let secrets = n.div_ceil(2);
    (
        (0..secrets).map(|i| format!("app/secret-{i}")).collect(),
        (0..n - secrets).map(|i| format!("/app/param-{i}")).collect(),
    )
}

/// A mount of `n` objects by `pod` of service account `service_account` (namespace `bench`),
/// presenting `tokens` (the driver's `serviceAccount.tokens` JSON).
fn mount_request(n: usize, service_account: &str, pod: &str, tokens: &str) -> MountRequest {
    let (secrets, parameters) = objects(n);
    let mut yaml = String::new();
    for s in &secrets {
        yaml.push_str(&format!("- {{objectName: {s}, objectType: secretsmanager}}\n"));
    }
    for p in &parameters {
        yaml.push_str(&format!("- {{objectName: {p}, objectType: ssmparameter}}\n"));
    }
    let pod = Pod {
        namespace: "bench".into(),
        name: pod.into(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        service_account: service_account.into(),
        tokens: Some(SecretString::new(tokens.to_owned())),
    };
    DriverRequest::new("bench", [("region", REGION), ("objects", yaml.as_str())], pod)
        .target("/tmp/bench-target")
        .build()
}

/// ASCP's calls for one mount, replayed against the same fakes: service account lookup, STS,
/// then each secret and each batch of 10 parameters, one after another.
async fn ascp_mount(http: &Client<HttpConnector, Full<Bytes>>, aws: SocketAddr, kube: SocketAddr, n: usize) {
    let (secrets, parameters) = objects(n);
    let get = hyper::Request::get(format!("http://{kube}/api/v1/namespaces/bench/serviceaccounts/app-0"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    drain(http.request(get).await.unwrap()).await;
    let post = |target: Option<&str>, body: String| {
        let mut builder = hyper::Request::post(format!("http://{aws}/"));
        builder = match target {
            Some(t) => builder.header("x-amz-target", t).header("content-type", "application/x-amz-json-1.1"),
            None => builder.header("content-type", "application/x-www-form-urlencoded"),
        };
        builder.body(Full::new(Bytes::from(body))).unwrap()
    };
    let sts = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn&RoleSessionName=x&WebIdentityToken=t";
    drain(http.request(post(None, sts.into())).await.unwrap()).await;
    for s in secrets {
        let body = serde_json::json!({"SecretId": s}).to_string();
        drain(http.request(post(Some("secretsmanager.GetSecretValue"), body)).await.unwrap()).await;
    }
    for batch in parameters.chunks(10) {
        let body = serde_json::json!({"Names": batch, "WithDecryption": true}).to_string();
        drain(http.request(post(Some("AmazonSSM.GetParameters"), body)).await.unwrap()).await;
    }
}

async fn drain(response: hyper::Response<Incoming>) {
    let _ = response.into_body().collect().await;
}

/// ASCP's pattern for `pods` pods of `objects` objects each, all at once: the wall.
async fn replay(
    http: &Client<HttpConnector, Full<Bytes>>,
    aws: SocketAddr,
    kube: SocketAddr,
    pods: usize,
    objects: usize,
) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..pods)
        .map(|_| {
            let http = http.clone();
            tokio::spawn(async move { ascp_mount(&http, aws, kube, objects).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// The replay child of [`sweep::replay_in`]: waits for its go, replays, prints the wall.
async fn replay_child(spec: &str) {
    let fields: Vec<&str> = spec.split_whitespace().collect();
    let (aws, kube) = (fields[0].parse().unwrap(), fields[1].parse().unwrap());
    let (pods, objects) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let wall = replay(&http, aws, kube, pods, objects).await;
    println!("{:.1}", wall.as_secs_f64() * 1000.0);
}

/// A node of `pods` pods, `replicas` per service account, each mounting `objects` objects.
fn node(key: &tokens::SigningKey, pods: usize, replicas: usize, objects: usize) -> Vec<MountRequest> {
    (0..pods)
        .map(|i| {
            let (sa, pod) =
                (format!("app-{}", i / replicas), format!("app-{}-{}", i / replicas, i % replicas));
            mount_request(objects, &sa, &pod, &tokens::pod_tokens(key, "bench", &sa, &pod))
        })
        .collect()
}

/// Runs `samples` mounts one after another: latency percentiles and AWS calls per mount.
async fn measure<F, Fut>(scenario: String, samples: usize, aws: &FakeAws, mut mount: F) -> Row
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = aws.calls();
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        mount(i).await;
        times.push(started.elapsed());
    }
    times.sort();
    let per_mount = (aws.calls() - before) as f64 / samples as f64;
    Row { scenario, p50: percentile(&times, 50), p99: percentile(&times, 99), calls: per_mount }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

struct Row {
    scenario: String,
    p50: Duration,
    p99: Duration,
    calls: f64,
}

/// One node-wide storm: every pod mounts at once, as when a node boots or the driver's
/// rotation poll fires.
struct Storm {
    label: String,
    wall: Duration,
    /// Fastest and slowest of the runs `wall` is the median of.
    range: (Duration, Duration),
    calls: u64,
    sts: u64,
    peak_rss_kib: Option<u64>,
    /// Provider CPU ms: this run's, or (after `median`) the median run's, then the range.
    cpu_ms: Option<(f64, f64, f64)>,
    failed: usize,
}

/// Mounts `requests` all at once and counts. As the driver does, every mount is a stream of
/// one HTTP/2 connection (its `PluginClientBuilder` keeps one gRPC connection per provider);
/// `STORM_CONNECTIONS=each` gives every mount its own connection instead.
async fn storm(
    label: String,
    provider: &Binary,
    aws: &FakeAws,
    requests: &[MountRequest],
    files: usize,
) -> Storm {
    let each = std::env::var("STORM_CONNECTIONS").is_ok_and(|v| v == "each");
    let shared = provider.client().await;
    let mut clients = Vec::new();
    for _ in requests {
        clients.push(if each { provider.client().await } else { shared.clone() });
    }
    let (before, sts_before) = (aws.calls(), aws.sts_calls());
    let cpu_before = (provider.cpu_ns(), own_cpu_seconds());
    let start = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(requests.iter().cloned())
        .map(|(mut client, request)| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let started = Instant::now();
                let files = client.mount(request).await.map(|r| r.into_inner().files.len());
                (files, started.elapsed())
            })
        })
        .collect();
    let mut failed = 0;
    let mut times = Vec::new();
    for task in tasks {
        match task.await {
            Ok((Ok(n), took)) if n == files => times.push(took),
            _ => failed += 1,
        }
    }
    let wall = started.elapsed();
    // Read once every answer is in: what the provider spent on this storm, and nothing else.
    let cpu_ms = (provider.cpu_ns() - cpu_before.0) as f64 / 1e6;
    times.sort();
    if std::env::var_os("STORM_DETAIL").is_some() && !times.is_empty() {
        eprintln!(
            "{label}: per-mount p10 {:?} p50 {:?} max {:?}; CPU ms: provider {cpu_ms:.1}, bench {:.0}",
            percentile(&times, 10),
            percentile(&times, 50),
            times[times.len() - 1],
            (own_cpu_seconds() - cpu_before.1) * 1000.0,
        );
    }
    let peak = provider.peak_rss();
    Storm {
        label,
        wall,
        range: (wall, wall),
        calls: aws.calls() - before,
        sts: aws.sts_calls() - sts_before,
        peak_rss_kib: Some(peak),
        cpu_ms: Some((cpu_ms, cpu_ms, cpu_ms)),
        failed,
    }
}

/// One row for several runs of a storm: the median wall and the range; calls are the same in
/// every run (the bench says so if not), peak RSS the highest, failures summed.
fn median(mut runs: Vec<Storm>) -> Storm {
    runs.sort_by_key(|s| s.wall);
    let range = (runs[0].wall, runs[runs.len() - 1].wall);
    if runs.iter().any(|s| (s.calls, s.sts) != (runs[0].calls, runs[0].sts)) {
        eprintln!("{}: AWS calls differ between runs", runs[0].label);
    }
    let peak = runs.iter().filter_map(|s| s.peak_rss_kib).max();
    let failed = runs.iter().map(|s| s.failed).sum();
    let mut cpus: Vec<f64> = runs.iter().filter_map(|s| s.cpu_ms.map(|c| c.0)).collect();
    cpus.sort_by(f64::total_cmp);
    let cpu_ms = (!cpus.is_empty()).then(|| (cpus[cpus.len() / 2], cpus[0], cpus[cpus.len() - 1]));
    let mid = runs.swap_remove(runs.len() / 2);
    Storm { range, peak_rss_kib: peak, cpu_ms, failed, ..mid }
}

/// `PERF_DATA=FILE` profiles the first node boot and rotation poll of each scenario: `perf
/// record` of the provider alone (cpu-clock at 4999 Hz, DWARF call stacks) from just before the storm to
/// just after it (the returned recording stops when dropped), into FILE.<scenario>;
/// `benches/stages.py` sums it by stage.
fn profile(provider: &Binary, label: &str, run: usize) -> Option<Recording> {
    let file = std::env::var("PERF_DATA").ok().filter(|_| run == 0)?;
    let name: String = label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let child = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "4999", "--call-graph", "dwarf,16384"])
        .args(["-p", &provider.pid().to_string(), "-o", &format!("{file}.{name}")])
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // perf needs a moment to attach to every thread.
    std::thread::sleep(Duration::from_millis(500));
    Some(Recording(child))
}

/// A `perf record` under way; dropping it stops perf (SIGINT: it writes its file) and waits.
struct Recording(std::process::Child);

impl Drop for Recording {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// CPU seconds this process (fakes and clients) used so far.
fn own_cpu_seconds() -> f64 {
    test_kit::cpu_seconds(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

#[tokio::main]
async fn main() {
    if let Ok(spec) = std::env::var(sweep::REPLAY_CHILD) {
        return replay_child(&spec).await;
    }
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let latency = Duration::from_millis(env("LATENCY_MS", 20));
    let samples = env("SAMPLES", 40) as usize;
    let deployments = env("DEPLOYMENTS", 10) as usize;
    let replicas = env("REPLICAS", 10) as usize;

    let key = tokens::SigningKey::generate("bench-key-1");
    // The fakes serve from a runtime (and OS thread) of their own, as AWS and the API server
    // are other machines: their answers never queue behind the load generator's tasks.
    let fakes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fakes")
        .enable_all()
        .build()
        .unwrap();
    let aws = fakes.spawn(FakeAws::with_latency(latency)).await.unwrap();
    // The same fake over HTTPS, its certificate from a CA made for this run.
    let ca = test_kit::tls::TestCa::new("bench");
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(&ca_dir.path().join("ca.pem"));
    let tls = ca.server(&["127.0.0.1"]).server_config();
    let aws_tls = fakes.spawn(FakeAws::with_latency_tls(latency, tls)).await.unwrap();
    let kube_verifiable = stand_in_kube(&fakes, Some(&key)).await;
    let kube_opaque = stand_in_kube(&fakes, None).await;
    let (verifiable, opaque) = (&kube_verifiable.kubeconfig, &kube_opaque.kubeconfig);
    let (aws_addr, opaque_addr) = (aws.addr, kube_opaque.http.addr);
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let token = |sa: &str, pod: &str| tokens::pod_tokens(&key, "bench", sa, pod);

    // Latency of one mount at a time. A new service account per sample would otherwise
    // measure the Kubernetes rate limit (ASCP's default 5/s, burst 10), not the mount.
    let mut rows: Vec<Row> = Vec::new();
    let provider = start_provider(&aws, None, verifiable, &["--qps=100", "--burst=100"]);
    let mut client = provider.client().await;
    let sizes: &[usize] = if std::env::var_os("NODE_ONLY").is_some() { &[] } else { &[1, 10, 20, 50] };
    for &n in sizes {
        let steady = token("app-0", "steady");
        client.mount(mount_request(n, "app-0", "steady", &steady)).await.unwrap();
        let scenario = format!("csi-provider-aws, {n} objects, same pod (rotation poll)");
        rows.push(
            measure(scenario, samples, &aws, |_| {
                let (mut client, steady) = (client.clone(), steady.clone());
                async move {
                    let response = client.mount(mount_request(n, "app-0", "steady", &steady)).await.unwrap();
                    assert_eq!(response.into_inner().files.len(), n);
                }
            })
            .await,
        );
        let replicas: Vec<String> =
            (0..samples).map(|i| token("app-0", &format!("replica-{n}-{i}"))).collect();
        let scenario = format!("csi-provider-aws, {n} objects, new replica (verified token)");
        rows.push(
            measure(scenario, samples, &aws, |i| {
                let (mut client, tokens) = (client.clone(), replicas[i].clone());
                async move {
                    client
                        .mount(mount_request(n, "app-0", &format!("replica-{n}-{i}"), &tokens))
                        .await
                        .unwrap();
                }
            })
            .await,
        );
        let identities: Vec<String> = (0..samples).map(|i| token(&format!("sa-{n}-{i}"), "pod-0")).collect();
        let scenario = format!("csi-provider-aws, {n} objects, new service account (STS first)");
        rows.push(
            measure(scenario, samples, &aws, |i| {
                let (mut client, tokens) = (client.clone(), identities[i].clone());
                async move {
                    client.mount(mount_request(n, &format!("sa-{n}-{i}"), "pod-0", &tokens)).await.unwrap();
                }
            })
            .await,
        );
        let scenario = format!("ASCP call pattern, {n} objects");
        rows.push(measure(scenario, samples, &aws, |_| ascp_mount(&http, aws_addr, opaque_addr, n)).await);
    }
    drop(client);
    drop(provider);

    // A node: `deployments` service accounts x `replicas` pods, each pod its own token.
    let pods: Vec<(String, String)> = (0..deployments)
        .flat_map(|d| (0..replicas).map(move |r| (format!("app-{d}"), format!("app-{d}-{r}"))))
        .collect();
    let requests: Vec<MountRequest> =
        pods.iter().map(|(sa, pod)| mount_request(20, sa, pod, &token(sa, pod))).collect();
    let total = pods.len();
    let mut storms: Vec<Storm> = Vec::new();
    let mut idle = Vec::new();
    // MAX_AWS_REQUESTS="64,256" compares --max-aws-requests values (default: the default).
    let max_aws = std::env::var("MAX_AWS_REQUESTS").ok();
    let limits: Vec<Option<&str>> = match &max_aws {
        Some(list) => list.split(',').map(|n| Some(n.trim())).collect(),
        None => vec![None],
    };
    // (label, Kubernetes API, flags, AWS over TLS)
    let mut runs: Vec<(String, &Path, Vec<String>, bool)> = Vec::new();
    for limit in &limits {
        let flag = limit.map(|n| format!("--max-aws-requests={n}"));
        let suffix = limit.map_or(String::new(), |n| format!(", --max-aws-requests={n}"));
        let with = |more: &[&str]| more.iter().map(|f| f.to_string()).chain(flag.clone()).collect::<Vec<_>>();
        runs.push((
            format!("verified tokens, no cache (default){suffix}"),
            verifiable.as_path(),
            with(&[]),
            false,
        ));
        runs.push((
            format!("verified tokens, --cache-ttl=2m{suffix}"),
            verifiable.as_path(),
            with(&["--cache-ttl=2m"]),
            false,
        ));
        runs.push((
            format!("tokens not verifiable (no issuer discovery){suffix}"),
            opaque.as_path(),
            with(&[]),
            false,
        ));
        // As AWS is reached: over HTTPS, every new connection a TLS handshake.
        runs.push((
            format!("verified tokens, no cache, AWS over TLS{suffix}"),
            verifiable.as_path(),
            with(&[]),
            true,
        ));
        runs.push((
            format!("tokens not verifiable, AWS over TLS{suffix}"),
            opaque.as_path(),
            with(&[]),
            true,
        ));
    }
    // Each node scenario runs NODE_RUNS times on a fresh provider (one storm on 2 shared
    // cores varies by +-15%): the tables show the median and the range.
    let node_runs = env("NODE_RUNS", 5).max(1) as usize;
    // NODE_FILTER=TEXT runs only the node scenarios whose label contains TEXT.
    let filter = std::env::var("NODE_FILTER").unwrap_or_default();
    for (label, kubeconfig, flags, tls) in runs.iter().filter(|(label, ..)| label.contains(&filter)) {
        let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let extra = std::env::var("EXTRA_FLAGS").unwrap_or_default();
        flags.extend(extra.split_whitespace());
        let (mut boots, mut polls) = (Vec::new(), Vec::new());
        for _ in 0..node_runs {
            let (aws, ca) = if *tls { (&aws_tls, Some(ca_file.as_path())) } else { (&aws, None) };
            let provider = start_provider(aws, ca, kubeconfig, &flags);
            tokio::time::sleep(Duration::from_millis(300)).await;
            idle.push(provider.usage().0);
            if std::env::var_os("WARMUP").is_some() {
                let started = Instant::now();
                let mut client = provider.client().await;
                let warmup = mount_request(1, "warmup", "warmup-0", &token("warmup", "warmup-0"));
                client.mount(warmup).await.unwrap();
                eprintln!("{label}: first mount after start {:?}", started.elapsed());
            }
            let perf = profile(&provider, label, boots.len());
            boots.push(
                storm(format!("csi-provider-aws, node boot, {label}"), &provider, aws, &requests, 20).await,
            );
            drop(perf);
            let perf = profile(&provider, &format!("{label} poll"), polls.len());
            polls.push(
                storm(format!("csi-provider-aws, rotation poll, {label}"), &provider, aws, &requests, 20)
                    .await,
            );
            drop(perf);
        }
        storms.push(median(boots));
        storms.push(median(polls));
    }

    let mut replays = Vec::new();
    for _ in 0..node_runs {
        let (before, sts_before) = (aws.calls(), aws.sts_calls());
        let wall = replay(&http, aws_addr, opaque_addr, total, 20).await;
        replays.push(Storm {
            label: "ASCP call pattern, node boot or rotation poll".into(),
            wall,
            range: (wall, wall),
            calls: aws.calls() - before,
            sts: aws.sts_calls() - sts_before,
            peak_rss_kib: None,
            cpu_ms: None,
            failed: 0,
        });
    }
    storms.push(median(replays));

    // The verified node boot with the provider held to a CPU limit (ASCP's chart ships
    // 50m; users copy it), beside ASCP's pattern replayed by a child process under the same.
    let mut limited: Vec<(u64, Storm, Option<f64>)> = Vec::new();
    let limits_m: Vec<u64> = std::env::var("CPU_LIMITS")
        .unwrap_or_else(|_| "50,200".into())
        .split(',')
        .filter_map(|m| m.trim().parse().ok())
        .collect();
    let mut limit_note = String::new();
    for &millicores in &limits_m {
        let (mut boots, mut walls) = (Vec::new(), Vec::new());
        for run in 0..node_runs.min(3) {
            let Some(limit) = sweep::CpuLimit::new(millicores, &format!("provider-{millicores}-{run}"))
            else {
                limit_note =
                    "CPU-limited rows skipped: no cgroup could be made (run as root on cgroup v1 or v2).\n\n"
                        .into();
                break;
            };
            let provider = start_provider(&aws, None, verifiable, &[]);
            assert!(limit.hold(provider.pid()), "cannot move the provider into its cgroup");
            tokio::time::sleep(Duration::from_millis(500)).await;
            let label = format!("csi-provider-aws, node boot, verified tokens, {millicores}m CPU");
            boots.push(storm(label, &provider, &aws, &requests, 20).await);
            drop(provider);
            let replay_limit = sweep::CpuLimit::new(millicores, &format!("replay-{millicores}-{run}"));
            let wall = replay_limit.and_then(|l| sweep::replay_in(&l, aws_addr, opaque_addr, total, 20));
            walls.extend(wall);
        }
        if !boots.is_empty() {
            walls.sort_by(f64::total_cmp);
            limited.push((millicores, median(boots), walls.get(walls.len() / 2).copied()));
        }
    }

    // The scaling curve: pods per node x replicas per service account x objects per class,
    // each point one node boot on a fresh provider. Service-account lookups are not rate
    // limited here (--qps/--burst 1000), as in the replay: the curve shows the provider, not
    // the Kubernetes client's limiter.
    let mut points = Vec::new();
    if std::env::var("SWEEP").map_or(true, |v| v != "0") {
        for &pods in &[10usize, 50, 110, 250] {
            for &replicas in &[1usize, 10] {
                for &objects in &[1usize, 20, 100] {
                    let requests = node(&key, pods, replicas, objects);
                    let provider = start_provider(&aws, None, verifiable, &["--qps=1000", "--burst=1000"]);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let label = format!("sweep {pods} pods, {replicas} replicas, {objects} objects");
                    let boot = storm(label.clone(), &provider, &aws, &requests, objects).await;
                    drop(provider);
                    if boot.failed > 0 {
                        eprintln!("{label}: {} mounts failed", boot.failed);
                    }
                    let before = aws.calls();
                    let ascp_wall = replay(&http, aws_addr, opaque_addr, pods, objects).await;
                    points.push(sweep::Point {
                        pods,
                        replicas,
                        objects,
                        calls: boot.calls,
                        wall_ms: boot.wall.as_secs_f64() * 1000.0,
                        cpu_ms: boot.cpu_ms.map_or(0.0, |c| c.0),
                        peak_rss_mib: boot.peak_rss_kib.unwrap_or(0) as f64 / 1024.0,
                        ascp_calls: aws.calls() - before,
                        ascp_wall_ms: ascp_wall.as_secs_f64() * 1000.0,
                    });
                }
            }
        }
    }

    let mut out = String::new();
    out.push_str(&format!(
        "Fake AWS latency {} ms per call, {samples} mounts per row; objects are half Secrets Manager, half Parameter Store; every pod has its own RS256 token.\n\n",
        latency.as_millis()
    ));
    out.push_str("| scenario | p50 ms | p99 ms | AWS calls / mount |\n|---|---:|---:|---:|\n");
    for row in &rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} |\n",
            row.scenario,
            ms(row.p50),
            ms(row.p99),
            row.calls
        ));
    }
    let mib = |kib: Option<&u64>| kib.map_or(0.0, |k| *k as f64 / 1024.0);
    let idle_mib = format!("{:.1}-{:.1}", mib(idle.iter().min()), mib(idle.iter().max()));
    out.push_str(&format!(
        "\nNode: {total} pods ({deployments} service accounts x {replicas} replicas) mount 20 objects (10 + 10) at once; \
         the rotation poll mounts them all again. AWS requests in flight: {}. Provider idle RSS: {} MiB.\n\n",
        max_aws.as_deref().unwrap_or("default"),
        idle_mib
    ));
    out.push_str(&format!(
        "Each storm ran {node_runs} times, each time on a freshly started provider: wall is the median, then the range.\n\n"
    ));
    out.push_str("| storm | wall ms | range ms | provider CPU ms | range ms | AWS calls | of which STS | provider peak RSS MiB | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in &storms {
        let peak = s.peak_rss_kib.map_or("n/a".to_owned(), |p| format!("{:.1}", p as f64 / 1024.0));
        let (cpu, cpu_range) = s.cpu_ms.map_or(("n/a".to_owned(), "n/a".to_owned()), |(m, lo, hi)| {
            (format!("{m:.1}"), format!("{lo:.1}-{hi:.1}"))
        });
        out.push_str(&format!(
            "| {} | {} | {}-{} | {cpu} | {cpu_range} | {} | {} | {peak} | {} |\n",
            s.label,
            ms(s.wall),
            ms(s.range.0),
            ms(s.range.1),
            s.calls,
            s.sts,
            s.failed
        ));
    }
    if !limited.is_empty() || !limit_note.is_empty() {
        out.push_str(&format!(
            "\nThe verified node boot with the provider held to a CPU limit (a cgroup of its own: CFS quota per 100 ms), \
             beside ASCP's pattern replayed by a child process held to the same; each the median of {} runs.\n\n",
            node_runs.min(3)
        ));
        out.push_str(&limit_note);
        out.push_str("| CPU limit | wall ms | range ms | provider CPU ms | ASCP's pattern, wall ms |\n|---:|---:|---:|---:|---:|\n");
        for (m, s, ascp) in &limited {
            out.push_str(&format!(
                "| {m}m | {} | {}-{} | {:.1} | {} |\n",
                ms(s.wall),
                ms(s.range.0),
                ms(s.range.1),
                s.cpu_ms.map_or(0.0, |c| c.0),
                ascp.map_or("n/a".into(), |w| format!("{w:.1}"))
            ));
        }
    }
    if !points.is_empty() {
        out.push_str("\nThe scaling curve: one node boot per point, verified tokens, on a fresh provider; ASCP's pattern for the same pods beside it.\n\n");
        out.push_str(&sweep::table(&points));
        let dir = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench".into());
        let svg = Path::new(&dir).join("scaling.svg");
        if std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&svg, sweep::plot(&points))).is_ok() {
            out.push_str(&format!("\nPlot: {}\n", svg.display()));
        }
    }
    println!("{out}");
    fakes.shutdown_background();
}
