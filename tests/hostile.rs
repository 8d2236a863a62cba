//! Hostile peers: AWS answers the SDK cannot read (each carrying a marker "secret" that
//! must reach neither the gRPC status nor the log), and attacks on the server — many
//! streams on one connection, HPACK bombs, a slowloris on the metrics port, descriptor
//! exhaustion, idle connections at shutdown — each while other clients keep being served.
//! Everything stays on 127.0.0.1 and Unix sockets; loops are bounded.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use csi_provider_aws::proto::csi_driver_provider_client::CsiDriverProviderClient;
use csi_provider_aws::proto::{MountRequest, VersionRequest};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tonic::Code;

const CONTENT_JSON: &str = "application/x-amz-json-1.1";

/// One canned answer: HTTP status, content type, body.
type Answer = (u16, &'static str, String);

/// A fake AWS endpoint: STS, Secrets Manager and Parameter Store with valid answers, any of
/// which a test can replace, per region (taken from the request's SigV4 scope).
#[derive(Clone, Default)]
struct FakeAws {
    /// (operation, region or "*") -> answer.
    overrides: Arc<Mutex<Vec<(String, String, Answer)>>>,
}

impl FakeAws {
    async fn start() -> (Self, SocketAddr) {
        let fake = Self::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let fake = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let fake = fake.clone();
                        async move { Ok::<_, std::convert::Infallible>(fake.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (fake, addr)
    }

    /// Answers `operation` (e.g. "GetSecretValue") in `region` ("*": every region) with `answer`.
    fn set(&self, operation: &str, region: &str, answer: Answer) {
        let mut overrides = self.overrides.lock().unwrap();
        overrides.retain(|(op, r, _)| !(op == operation && r == region));
        overrides.push((operation.to_owned(), region.to_owned(), answer));
    }

    fn clear(&self) {
        self.overrides.lock().unwrap().clear();
    }

    async fn answer(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>> {
        let header =
            |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let target = header("x-amz-target");
        let region = header("authorization")
            .split("Credential=")
            .nth(1)
            .and_then(|scope| scope.split('/').nth(2))
            .unwrap_or("us-east-1")
            .to_owned();
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&body).into_owned();
        let operation = match target.split('.').nth(1) {
            Some(op) => op.to_owned(),
            None if text.contains("Action=AssumeRoleWithWebIdentity") => "AssumeRoleWithWebIdentity".into(),
            None => "unknown".into(),
        };
        let chosen = self
            .overrides
            .lock()
            .unwrap()
            .iter()
            .find(|(op, r, _)| *op == operation && (*r == region || r == "*"))
            .map(|(_, _, answer)| answer.clone());
        let (status, content_type, body) = chosen.unwrap_or_else(|| valid_answer(&operation, &text, &region));
        hyper::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    }
}

/// What AWS would answer.
fn valid_answer(operation: &str, request: &str, region: &str) -> Answer {
    let json: serde_json::Value = serde_json::from_str(request).unwrap_or_default();
    match operation {
        "GetSecretValue" => {
            let name = json["SecretId"].as_str().unwrap_or("x");
            let body = serde_json::json!({
                "ARN": format!("arn:aws:secretsmanager:{region}:123456789012:secret:{name}-AbCdEf"),
                "Name": name, "VersionId": "v-1", "SecretString": format!("value in {region}"),
                "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.7e9,
            });
            (200, CONTENT_JSON, body.to_string())
        }
        "GetParameters" => {
            let parameters: Vec<serde_json::Value> = json["Names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str())
                .map(|name| serde_json::json!({"Name": name, "Type": "SecureString", "Value": "v", "Version": 3}))
                .collect();
            (
                200,
                CONTENT_JSON,
                serde_json::json!({"Parameters": parameters, "InvalidParameters": []}).to_string(),
            )
        }
        _ => (200, "text/xml", sts_answer("ASIAFAKE", "secret-key", "2099-01-01T00:00:00Z")),
    }
}

fn sts_answer(key: &str, secret: &str, expiration: &str) -> String {
    format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{key}</AccessKeyId>\
         <SecretAccessKey>{secret}</SecretAccessKey><SessionToken>session</SessionToken>\
         <Expiration>{expiration}</Expiration></Credentials>\
         <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/web/x</Arn>\
         <AssumedRoleId>AROA:x</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult>\
         <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
    )
}

/// The provider binary with its log captured.
struct Binary {
    child: Child,
    dir: tempfile::TempDir,
    metrics: String,
    log: Arc<Mutex<String>>,
}

impl Binary {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_csi-provider-aws")), dir, args, env)
    }

    fn start_with(mut command: Command, dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Self {
        command
            .arg(format!("--provider-volume={}", dir.path().display()))
            .arg("--metrics-addr=127.0.0.1:0")
            .args(args)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("KUBECONFIG", "/nonexistent")
            .env("RUST_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("serving /metrics")
                    && let Some(addr) = line.split("addr=").nth(1)
                {
                    let _ = tx.send(addr.split(' ').next().unwrap_or("").to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let metrics =
            rx.recv_timeout(Duration::from_secs(20)).expect("the provider logs its metrics address");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !log.lock().unwrap().contains("serving the CSI driver") {
            assert!(Instant::now() < deadline, "the provider never served: {}", log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, dir, metrics, log }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("aws.sock")
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn terminate(&self) {
        assert!(Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap().success());
    }

    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// (resident KiB, CPU seconds so far) from /proc.
    fn usage(&self) -> (u64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime is the 14th field.
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks: f64 =
            fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
        (rss, ticks / 100.0)
    }

    async fn client(&self) -> CsiDriverProviderClient<tonic::transport::Channel> {
        CsiDriverProviderClient::new(channel(&self.socket()).await)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mount request of a pod with its own service account (which `kube` must know) and
/// token, so its credentials are fetched, not cached.
fn request_for(kube: &FakeKube, account: &str, parameters: &[(&str, &str)]) -> MountRequest {
    kube.service_account("shop", account, Some(WEB_ROLE));
    let tokens = tokens_json(account);
    let mut all = vec![
        ("csi.storage.k8s.io/serviceAccount.tokens", tokens.as_str()),
        ("csi.storage.k8s.io/serviceAccount.name", account),
    ];
    all.extend_from_slice(parameters);
    mount_request(&all, Path::new("/t"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_aws_answers_are_transient_and_leak_nothing_even_at_trace() {
    let (fake, addr) = FakeAws::start().await;
    let kube = FakeKube::start().await;
    let kubeconfig = kube.kubeconfig.display().to_string();
    let endpoint = format!("http://{addr}");
    let binary = Binary::start(
        &["--driver-writes-secrets", "--aws-timeout=5s"],
        &[("RUST_LOG", "trace"), ("KUBECONFIG", &kubeconfig), ("AWS_ENDPOINT_URL", &endpoint)],
    );
    let mut client = binary.client().await;
    let html =
        |marker: &str| (200, "text/html", format!("<html><body><h1>Gateway</h1>{marker}</body></html>"));
    let cases: Vec<(&str, &str, &str, Answer)> = vec![
        // (operation, object type, marker, answer)
        ("GetSecretValue", "secretsmanager", "MARK-SM-JSON", (200, CONTENT_JSON, r#"{"Name":"n","SecretString":"MARK-SM-JSON"#.into())),
        ("GetSecretValue", "secretsmanager", "MARK-SM-HTML", html("MARK-SM-HTML")),
        (
            "GetSecretValue",
            "secretsmanager",
            "MARK-SM-TYPES",
            (200, CONTENT_JSON, r#"{"Name":"n","SecretString":"MARK-SM-TYPES","VersionId":7,"CreatedDate":"soon"}"#.into()),
        ),
        (
            "GetParameters",
            "ssmparameter",
            "MARK-SSM-TYPES",
            (
                200,
                CONTENT_JSON,
                r#"{"Parameters":[{"Name":"/p","Type":"SecureString","Value":"MARK-SSM-TYPES","Version":"three"}],"InvalidParameters":[]}"#.into(),
            ),
        ),
        ("GetParameters", "ssmparameter", "MARK-SSM-JSON", (200, CONTENT_JSON, r#"{"Parameters":[{"Value":"MARK-SSM-JSON"#.into())),
        ("GetParameters", "ssmparameter", "MARK-SSM-HTML", html("MARK-SSM-HTML")),
        ("AssumeRoleWithWebIdentity", "secretsmanager", "MARK-STS-HTML", html("MARK-STS-HTML")),
        (
            "AssumeRoleWithWebIdentity",
            "secretsmanager",
            "MARK-STS-TYPES",
            (200, "text/xml", sts_answer("ASIAFAKE", "MARK-STS-TYPES", "not a date")),
        ),
    ];
    let mut markers = Vec::new();
    for (i, (operation, object_type, marker, answer)) in cases.into_iter().enumerate() {
        fake.clear();
        fake.set(operation, "*", answer);
        let name = if object_type == "ssmparameter" { "/p".to_owned() } else { format!("secret-{i}") };
        let objects = format!("- {{objectName: '{name}', objectType: {object_type}, objectAlias: f}}");
        let request =
            request_for(&kube, &format!("hostile-{i}"), &[("region", "us-east-1"), ("objects", &objects)]);
        let err = client.mount(request).await.expect_err(marker);
        assert_eq!(err.code(), Code::Unavailable, "{marker}: {}", err.message());
        assert!(err.message().contains("malformed answer"), "{marker}: {}", err.message());
        let names =
            if operation == "AssumeRoleWithWebIdentity" { WEB_ROLE.to_owned() } else { format!("{name:?}") };
        assert!(err.message().contains(&names), "{marker}: {} should name {names}", err.message());
        assert!(!err.message().contains(marker), "{marker} leaked into the status: {}", err.message());
        markers.push(marker);
    }

    // A malformed answer in the primary region fails over like a 5xx does.
    fake.clear();
    fake.set("GetSecretValue", "us-east-1", (200, CONTENT_JSON, "{\"SecretString\": tru".into()));
    let objects = "- {objectName: db, objectType: secretsmanager, objectAlias: db}";
    let request = request_for(
        &kube,
        "failover",
        &[("region", "us-east-1"), ("failoverRegion", "us-west-2"), ("objects", objects)],
    );
    let response = client.mount(request).await.expect("the failover region answers").into_inner();
    assert_eq!(response.files[0].contents, b"value in us-west-2");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = binary.log();
    assert!(log.contains(" WARN ") && log.contains("malformed answer"), "the log was captured: {log}");
    for marker in markers {
        assert!(!log.contains(marker), "{marker} leaked into the log:\n{}", excerpt(&log, marker));
    }
}

fn excerpt(log: &str, needle: &str) -> String {
    let at = log.find(needle).unwrap_or(0);
    let start = log[..at].char_indices().rev().nth(400).map_or(0, |(i, _)| i);
    log[start..].chars().take(900).collect()
}
