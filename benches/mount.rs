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
//! `DEPLOYMENTS` (10) service accounts x `REPLICAS` (10) pods.

#[path = "../tests/common/tokens.rs"]
#[allow(dead_code)]
mod tokens;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use csi_provider_aws::proto::MountRequest;
use csi_provider_aws::proto::csi_driver_provider_client::CsiDriverProviderClient;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tonic::transport::Channel;

const REGION: &str = "us-east-1";

/// Counts the AWS calls the fake answered (STS among them).
#[derive(Default)]
struct Calls(AtomicU64, AtomicU64);

impl Calls {
    fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn sts(&self) -> u64 {
        self.1.load(Ordering::SeqCst)
    }
}

/// Serves `answer` on a loopback port; returns its address.
async fn serve<F>(answer: F) -> SocketAddr
where
    F: Fn(hyper::Request<Incoming>) -> futures::future::BoxFuture<'static, hyper::Response<Full<Bytes>>>
        + Send
        + Sync
        + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = answer.clone();
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn response(content_type: &str, body: String) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// A fake AWS endpoint: every call takes `latency`, as a round trip to AWS does.
async fn fake_aws(latency: Duration, calls: Arc<Calls>) -> SocketAddr {
    serve(move |req| {
        let calls = calls.clone();
        Box::pin(async move {
            let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            calls.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(latency).await;
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if target.is_empty() {
                calls.1.fetch_add(1, Ordering::SeqCst);
            }
            match target.as_str() {
                "secretsmanager.GetSecretValue" => {
                    let name = json["SecretId"].as_str().unwrap_or("x");
                    response(
                        "application/x-amz-json-1.1",
                        serde_json::json!({
                            "ARN": format!("arn:aws:secretsmanager:{REGION}:123456789012:secret:{name}-AbCdEf"),
                            "Name": name,
                            "VersionId": "8f0c2a1e-0000-4000-8000-000000000001",
                            "SecretString": format!("{{\"user\":\"{name}\",\"password\":\"correct-horse-battery-staple\"}}"),
                            "VersionStages": ["AWSCURRENT"],
                            "CreatedDate": 1.7e9,
                        })
                        .to_string(),
                    )
                }
                "AmazonSSM.GetParameters" => {
                    let parameters: Vec<serde_json::Value> = json["Names"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|n| n.as_str())
                        .map(|name| {
                            serde_json::json!({
                                "Name": name, "Type": "SecureString", "Value": format!("value of {name}"),
                                "Version": 3, "DataType": "text", "LastModifiedDate": 1.7e9,
                                "ARN": format!("arn:aws:ssm:{REGION}:123456789012:parameter{name}"),
                            })
                        })
                        .collect();
                    response(
                        "application/x-amz-json-1.1",
                        serde_json::json!({"Parameters": parameters, "InvalidParameters": []}).to_string(),
                    )
                }
                _ => response(
                    "text/xml",
                    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                     <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIABENCHMARK0000001</AccessKeyId>\
                     <SecretAccessKey>bench-secret</SecretAccessKey><SessionToken>bench-session</SessionToken>\
                     <Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>\
                     <SubjectFromWebIdentityToken>system:serviceaccount:bench:app</SubjectFromWebIdentityToken>\
                     <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/app/bench</Arn>\
                     <AssumedRoleId>AROABENCH:bench</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult>\
                     <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
                        .to_owned(),
                ),
            }
        })
    })
    .await
}

/// A stand-in Kubernetes API: every service account has an IRSA role; issuer discovery is
/// served when `jwks` is given (else 404: tokens cannot be verified).
async fn fake_kube(jwks: Option<String>) -> SocketAddr {
    let jwks = Arc::new(jwks);
    serve(move |req| {
        let jwks = jwks.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let not_found = || {
                let mut r = response("application/json", r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.into());
                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                r
            };
            match (path.as_str(), jwks.as_ref()) {
                ("/.well-known/openid-configuration", Some(_)) => response("application/json", tokens::openid_configuration()),
                ("/openid/v1/jwks", Some(jwks)) => response("application/json", jwks.clone()),
                (path, _) if path.contains("/serviceaccounts/") => {
                    let parts: Vec<&str> = path.split('/').collect();
                    let (namespace, name) = (parts.get(4).copied().unwrap_or(""), parts.get(6).copied().unwrap_or(""));
                    let metadata = serde_json::json!({"name": name, "namespace": namespace,
                        "uid": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "resourceVersion": "48213",
                        "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::123456789012:role/{name}")}});
                    let accept = req.headers().get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
                    let body = if accept.contains("as=PartialObjectMetadata") {
                        serde_json::json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
                    } else {
                        serde_json::json!({"kind": "ServiceAccount", "apiVersion": "v1", "metadata": metadata})
                    };
                    response("application/json", body.to_string())
                }
                _ => not_found(),
            }
        })
    })
    .await
}

/// The provider binary, running.
struct Provider {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Provider {
    fn start(aws: SocketAddr, kubeconfig: &Path, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_csi-provider-aws"))
            .arg(format!("--provider-volume={}", dir.path().display()))
            .args(["--driver-writes-secrets", "--metrics-addr=127.0.0.1:0"])
            .args(extra)
            .env("AWS_ENDPOINT_URL", format!("http://{aws}"))
            .env("AWS_ACCESS_KEY_ID", "provider")
            .env("AWS_SECRET_ACCESS_KEY", "provider")
            .env("KUBECONFIG", kubeconfig)
            // PROVIDER_LOG=FILE keeps the provider's log (at PROVIDER_RUST_LOG, default warn).
            .env("RUST_LOG", std::env::var("PROVIDER_RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(match std::env::var("PROVIDER_LOG") {
                Ok(path) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_or_else(|_| Stdio::null(), Stdio::from),
                Err(_) => Stdio::null(),
            })
            .spawn()
            .unwrap();
        let socket = dir.path().join("aws.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the provider did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        Self { child, socket, _dir: dir }
    }

    /// (current RSS, peak RSS) in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    async fn client(&self) -> CsiDriverProviderClient<Channel> {
        CsiDriverProviderClient::new(csi_provider_aws::client::connect(&self.socket).await.unwrap())
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let attributes = serde_json::json!({
        "region": REGION, "objects": yaml,
        "csi.storage.k8s.io/pod.name": pod, "csi.storage.k8s.io/pod.namespace": "bench",
        "csi.storage.k8s.io/pod.uid": "00000000-0000-0000-0000-000000000000",
        "csi.storage.k8s.io/serviceAccount.name": service_account,
        "csi.storage.k8s.io/serviceAccount.tokens": tokens,
        "secretProviderClass": "bench", "providerName": "aws",
    });
    MountRequest {
        attributes: attributes.to_string(),
        secrets: "{}".into(),
        target_path: "/tmp/bench-target".into(),
        permission: "420".into(),
        current_object_version: Vec::new(),
    }
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

/// Runs `samples` mounts one after another: latency percentiles and AWS calls per mount.
async fn measure<F, Fut>(scenario: String, samples: usize, calls: &Calls, mut mount: F) -> Row
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = calls.get();
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        mount(i).await;
        times.push(started.elapsed());
    }
    times.sort();
    let per_mount = (calls.get() - before) as f64 / samples as f64;
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
    calls: u64,
    sts: u64,
    peak_rss_kib: Option<u64>,
    failed: usize,
}

/// Mounts `requests` all at once (each over its own connection, as pods do) and counts.
async fn storm(label: String, provider: &Provider, calls: &Calls, requests: &[MountRequest]) -> Storm {
    let mut clients = Vec::new();
    for _ in requests {
        clients.push(provider.client().await);
    }
    let (before, sts_before) = (calls.get(), calls.sts());
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
            Ok((Ok(20), took)) => times.push(took),
            _ => failed += 1,
        }
    }
    let wall = started.elapsed();
    times.sort();
    if std::env::var_os("STORM_DETAIL").is_some() && !times.is_empty() {
        eprintln!(
            "{label}: per-mount p10 {:?} p50 {:?} max {:?}",
            percentile(&times, 10),
            percentile(&times, 50),
            times[times.len() - 1]
        );
    }
    let (_, peak) = provider.memory();
    Storm {
        label,
        wall,
        calls: calls.get() - before,
        sts: calls.sts() - sts_before,
        peak_rss_kib: Some(peak),
        failed,
    }
}

#[tokio::main]
async fn main() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let latency = Duration::from_millis(env("LATENCY_MS", 20));
    let samples = env("SAMPLES", 40) as usize;
    let deployments = env("DEPLOYMENTS", 10) as usize;
    let replicas = env("REPLICAS", 10) as usize;

    let key = tokens::SigningKey::generate("bench-key-1");
    let calls = Arc::new(Calls::default());
    let aws = fake_aws(latency, calls.clone()).await;
    let kube_verifiable = fake_kube(Some(tokens::jwks(&[&key]))).await;
    let kube_opaque = fake_kube(None).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = |name: &str, kube: SocketAddr| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: b, cluster: {{server: 'http://{kube}'}}}}]\n\
                 users: [{{name: b, user: {{token: t}}}}]\ncontexts: [{{name: b, context: {{cluster: b, user: b}}}}]\ncurrent-context: b\n"
            ),
        )
        .unwrap();
        path
    };
    let verifiable = kubeconfig("verifiable", kube_verifiable);
    let opaque = kubeconfig("opaque", kube_opaque);
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let token = |sa: &str, pod: &str| tokens::pod_tokens(&key, "bench", sa, pod);

    // Latency of one mount at a time. A new service account per sample would otherwise
    // measure the Kubernetes rate limit (ASCP's default 5/s, burst 10), not the mount.
    let mut rows: Vec<Row> = Vec::new();
    let provider = Provider::start(aws, &verifiable, &["--qps=100", "--burst=100"]);
    let mut client = provider.client().await;
    let sizes: &[usize] = if std::env::var_os("NODE_ONLY").is_some() { &[] } else { &[1, 10, 20, 50] };
    for &n in sizes {
        let steady = token("app-0", "steady");
        client.mount(mount_request(n, "app-0", "steady", &steady)).await.unwrap();
        let scenario = format!("csi-provider-aws, {n} objects, same pod (rotation poll)");
        rows.push(
            measure(scenario, samples, &calls, |_| {
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
            measure(scenario, samples, &calls, |i| {
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
            measure(scenario, samples, &calls, |i| {
                let (mut client, tokens) = (client.clone(), identities[i].clone());
                async move {
                    client.mount(mount_request(n, &format!("sa-{n}-{i}"), "pod-0", &tokens)).await.unwrap();
                }
            })
            .await,
        );
        let scenario = format!("ASCP call pattern, {n} objects");
        rows.push(measure(scenario, samples, &calls, |_| ascp_mount(&http, aws, kube_opaque, n)).await);
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
    let mut runs: Vec<(String, &Path, Vec<String>)> = Vec::new();
    for limit in &limits {
        let flag = limit.map(|n| format!("--max-aws-requests={n}"));
        let suffix = limit.map_or(String::new(), |n| format!(", --max-aws-requests={n}"));
        let with = |more: &[&str]| more.iter().map(|f| f.to_string()).chain(flag.clone()).collect::<Vec<_>>();
        runs.push((format!("verified tokens, no cache (default){suffix}"), verifiable.as_path(), with(&[])));
        runs.push((
            format!("verified tokens, --cache-ttl=2m{suffix}"),
            verifiable.as_path(),
            with(&["--cache-ttl=2m"]),
        ));
        runs.push((
            format!("tokens not verifiable (no issuer discovery){suffix}"),
            opaque.as_path(),
            with(&[]),
        ));
    }
    for (label, kubeconfig, flags) in &runs {
        let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let extra = std::env::var("EXTRA_FLAGS").unwrap_or_default();
        flags.extend(extra.split_whitespace());
        let provider = Provider::start(aws, kubeconfig, &flags);
        tokio::time::sleep(Duration::from_millis(300)).await;
        idle.push(provider.memory().0);
        if std::env::var_os("WARMUP").is_some() {
            let started = Instant::now();
            let mut client = provider.client().await;
            client.mount(mount_request(1, "warmup", "warmup-0", &token("warmup", "warmup-0"))).await.unwrap();
            eprintln!("{label}: first mount after start {:?}", started.elapsed());
        }
        storms
            .push(storm(format!("csi-provider-aws, node boot, {label}"), &provider, &calls, &requests).await);
        storms.push(
            storm(format!("csi-provider-aws, rotation poll, {label}"), &provider, &calls, &requests).await,
        );
    }

    let (before, sts_before) = (calls.get(), calls.sts());
    let started = Instant::now();
    let tasks: Vec<_> = (0..total)
        .map(|_| {
            let http = http.clone();
            tokio::spawn(async move { ascp_mount(&http, aws, kube_opaque, 20).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    storms.push(Storm {
        label: "ASCP call pattern, node boot or rotation poll".into(),
        wall: started.elapsed(),
        calls: calls.get() - before,
        sts: calls.sts() - sts_before,
        peak_rss_kib: None,
        failed: 0,
    });

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
    let idle_mib: Vec<String> = idle.iter().map(|kib| format!("{:.1}", *kib as f64 / 1024.0)).collect();
    out.push_str(&format!(
        "\nNode: {total} pods ({deployments} service accounts x {replicas} replicas) mount 20 objects (10 + 10) at once; \
         the rotation poll mounts them all again. AWS requests in flight: {}. Provider idle RSS: {} MiB.\n\n",
        max_aws.as_deref().unwrap_or("default"),
        idle_mib.join(" / ")
    ));
    out.push_str("| storm | wall ms | AWS calls | of which STS | provider peak RSS MiB | failed |\n|---|---:|---:|---:|---:|---:|\n");
    for s in &storms {
        let peak = s.peak_rss_kib.map_or("n/a".to_owned(), |p| format!("{:.1}", p as f64 / 1024.0));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {peak} | {} |\n",
            s.label,
            ms(s.wall),
            s.calls,
            s.sts,
            s.failed
        ));
    }
    println!("{out}");
}
