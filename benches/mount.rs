//! Mount latency, AWS calls and memory, side by side with ASCP's call pattern, in one run.
//!
//! `cargo bench --bench mount` starts the release provider binary against a local fake AWS
//! endpoint that answers STS, Secrets Manager and Parameter Store after a fixed per-call
//! latency (`LATENCY_MS`, default 20), plus a stand-in Kubernetes API. The same scenarios are
//! then replayed with ASCP's call pattern against the same fakes: per mount one service
//! account lookup, one STS call, one GetSecretValue per secret in sequence and one
//! GetParameters per 10 parameters. `SAMPLES` (default 40) mounts per latency row.

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
use tokio::net::{TcpListener, UnixStream};
use tonic::transport::{Channel, Endpoint};

const REGION: &str = "us-east-1";

/// Counts the AWS calls the fake answered.
#[derive(Default)]
struct Calls(AtomicU64);

impl Calls {
    fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
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

/// A stand-in Kubernetes API: every service account has an IRSA role.
async fn fake_kube() -> SocketAddr {
    serve(|_req| {
        Box::pin(async {
            response(
                "application/json",
                serde_json::json!({
                    "apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "app", "namespace": "bench",
                                 "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/app"}},
                })
                .to_string(),
            )
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
    fn start(aws: SocketAddr, kubeconfig: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_csi-provider-aws"))
            .arg(format!("--provider-volume={}", dir.path().display()))
            .args(["--driver-writes-secrets", "--metrics-addr=127.0.0.1:0"])
            .env("AWS_ENDPOINT_URL", format!("http://{aws}"))
            .env("AWS_ACCESS_KEY_ID", "provider")
            .env("AWS_SECRET_ACCESS_KEY", "provider")
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
        let socket = self.socket.clone();
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| {
                let socket = socket.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
            }))
            .await
            .unwrap();
        CsiDriverProviderClient::new(channel)
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

fn mount_request(n: usize, pod: &str) -> MountRequest {
    let (secrets, parameters) = objects(n);
    let mut yaml = String::new();
    for s in &secrets {
        yaml.push_str(&format!("- {{objectName: {s}, objectType: secretsmanager}}\n"));
    }
    for p in &parameters {
        yaml.push_str(&format!("- {{objectName: {p}, objectType: ssmparameter}}\n"));
    }
    let tokens = serde_json::json!({"sts.amazonaws.com": {"token": format!("token-of-{pod}"), "expirationTimestamp": "2099-01-01T00:00:00Z"}});
    let attributes = serde_json::json!({
        "region": REGION, "objects": yaml,
        "csi.storage.k8s.io/pod.name": pod, "csi.storage.k8s.io/pod.namespace": "bench",
        "csi.storage.k8s.io/pod.uid": "00000000-0000-0000-0000-000000000000",
        "csi.storage.k8s.io/serviceAccount.name": "app",
        "csi.storage.k8s.io/serviceAccount.tokens": tokens.to_string(),
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
    let get = hyper::Request::get(format!("http://{kube}/api/v1/namespaces/bench/serviceaccounts/app"))
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

#[tokio::main]
async fn main() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let latency = Duration::from_millis(env("LATENCY_MS", 20));
    let samples = env("SAMPLES", 40) as usize;
    let storm = env("STORM", 100) as usize;

    let calls = Arc::new(Calls::default());
    let aws = fake_aws(latency, calls.clone()).await;
    let kube = fake_kube().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: b, cluster: {{server: 'http://{kube}'}}}}]\n\
             users: [{{name: b, user: {{token: t}}}}]\ncontexts: [{{name: b, context: {{cluster: b, user: b}}}}]\ncurrent-context: b\n"
        ),
    )
    .unwrap();
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

    let mut rows: Vec<Row> = Vec::new();
    let provider = Provider::start(aws, &kubeconfig);
    let mut client = provider.client().await;
    for n in [1usize, 10, 20, 50] {
        // Rotation-poll mounts of one pod (its credentials already cached).
        client.mount(mount_request(n, "steady")).await.unwrap();
        let scenario = format!("csi-provider-aws, {n} objects, same pod");
        rows.push(
            measure(scenario, samples, &calls, |_| {
                let mut client = client.clone();
                async move {
                    let response = client.mount(mount_request(n, "steady")).await.unwrap().into_inner();
                    assert_eq!(response.files.len(), n);
                }
            })
            .await,
        );
        // A new pod each time: STS first.
        let scenario = format!("csi-provider-aws, {n} objects, new pod");
        rows.push(
            measure(scenario, samples, &calls, |i| {
                let mut client = client.clone();
                async move {
                    client.mount(mount_request(n, &format!("pod-{n}-{i}"))).await.unwrap();
                }
            })
            .await,
        );
        let scenario = format!("ASCP call pattern, {n} objects");
        rows.push(measure(scenario, samples, &calls, |_| ascp_mount(&http, aws, kube, n)).await);
    }
    drop(client);
    drop(provider);

    // Storms on a fresh provider: idle memory first.
    let provider = Provider::start(aws, &kubeconfig);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle_rss, _) = provider.memory();
    let mut storms = Vec::new();
    for (label, distinct) in
        [("identical mounts (one pod identity)", false), ("distinct pods (own tokens)", true)]
    {
        let mut clients = Vec::new();
        for _ in 0..storm {
            clients.push(provider.client().await);
        }
        let before = calls.get();
        let start = Arc::new(tokio::sync::Barrier::new(storm));
        let started = Instant::now();
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut client)| {
                let start = start.clone();
                let pod = if distinct { format!("storm-{i}") } else { "storm".to_owned() };
                tokio::spawn(async move {
                    start.wait().await;
                    client.mount(mount_request(20, &pod)).await.map(|_| ())
                })
            })
            .collect();
        let mut failed = 0;
        for task in tasks {
            if task.await.unwrap().is_err() {
                failed += 1;
            }
        }
        let wall = started.elapsed();
        let (_, peak) = provider.memory();
        storms.push((
            format!("csi-provider-aws, {storm} {label}"),
            wall,
            calls.get() - before,
            Some(peak),
            failed,
        ));
    }
    drop(provider);

    let before = calls.get();
    let started = Instant::now();
    let tasks: Vec<_> = (0..storm)
        .map(|_| {
            let http = http.clone();
            tokio::spawn(async move { ascp_mount(&http, aws, kube, 20).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    storms.push((
        format!("ASCP call pattern, {storm} mounts"),
        started.elapsed(),
        calls.get() - before,
        None,
        0,
    ));

    let mut out = String::new();
    out.push_str(&format!(
        "Fake AWS latency {} ms per call, {samples} mounts per row; objects are half Secrets Manager, half Parameter Store.\n\n",
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
    out.push_str(&format!(
        "\nStorm: {storm} concurrent mounts of 20 objects (10 + 10). Provider idle RSS: {:.1} MiB.\n\n",
        idle_rss as f64 / 1024.0
    ));
    out.push_str(
        "| storm | wall ms | AWS calls | provider peak RSS MiB | failed |\n|---|---:|---:|---:|---:|\n",
    );
    for (label, wall, total, peak, failed) in &storms {
        let peak = peak.map_or("n/a".to_owned(), |p| format!("{:.1}", p as f64 / 1024.0));
        out.push_str(&format!("| {label} | {} | {total} | {peak} | {failed} |\n", ms(*wall)));
    }
    println!("{out}");
}
