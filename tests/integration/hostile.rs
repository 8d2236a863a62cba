//! Hostile peers: AWS answers the SDK cannot read (each carrying a marker "secret" that
//! must reach neither the gRPC status nor the log), and attacks on the server — many
//! streams on one connection, HPACK bombs, a slowloris on the metrics port, descriptor
//! exhaustion, idle connections at shutdown — each while other clients keep being served.
//! Everything stays on 127.0.0.1 and Unix sockets; loops are bounded. The attacks print what
//! they measured (`--nocapture`); `HOSTILE_PROVIDER_BIN=path` runs them against another
//! build of the provider, to compare.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use csi_provider_aws::proto::csi_driver_provider_client::CsiDriverProviderClient;
use csi_provider_aws::proto::{MountRequest, VersionRequest};
use csi_provider_aws::request::{DriverRequest, Pod};
use csi_provider_aws::secret::SecretString;
// Raw HTTP/2, as a hostile client writes it.
use h2_authority_shim::wire::{
    FLAG_END_HEADERS as END_HEADERS, FLAG_END_STREAM as END_STREAM, PREFACE, TYPE_DATA as DATA,
    TYPE_HEADERS as HEADERS, TYPE_SETTINGS as SETTINGS, frame, header_block, header_frames,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::Code;

/// A mount request of a pod with its own service account (which `kube` must know) and
/// token, so its credentials are fetched, not cached.
fn request_for(kube: &FakeKube, account: &str, parameters: &[(&str, &str)]) -> MountRequest {
    kube.service_account("shop", account, Some(WEB_ROLE));
    let tokens = Some(SecretString::new(tokens_json(account)));
    let pod = Pod { service_account: account.into(), tokens, ..web_pod() };
    DriverRequest::new("web-secrets", parameters.iter().copied(), pod).target("/t").build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_aws_answers_are_transient_and_leak_nothing_even_at_trace() {
    let fake = FakeAws::start().await;
    let kube = FakeKube::start().await;
    let kubeconfig = kube.kubeconfig.display().to_string();
    let endpoint = fake.url();
    let binary = start(
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
        // Readable, but not what AWS ever answers: no value, no version; no secret at all.
        (
            "GetParameters",
            "ssmparameter",
            "MARK-SSM-EMPTY",
            (200, CONTENT_JSON, r#"{"Parameters":[{"Name":"/p","Type":"String","ARN":"MARK-SSM-EMPTY"}]}"#.into()),
        ),
        ("GetSecretValue", "secretsmanager", "MARK-SM-EMPTY", (200, CONTENT_JSON, r#"{"Name":"MARK-SM-EMPTY"}"#.into())),
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

// ---- raw HTTP/2 over the socket, as a hostile client writes it ----

/// The request headers of a gRPC call of `method` with the given authority.
fn grpc_request(method: &str, authority: &str) -> Vec<u8> {
    let path = format!("/v1alpha1.CSIDriverProvider/{method}");
    header_block(
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", &path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
        false,
    )
}

/// A Version call (stream 1) whose headers also put a 4000-byte entry into the server's HPACK
/// table, at index 62, for blocks of one-byte references to it to follow.
fn version_with_a_large_table_entry() -> Vec<u8> {
    let entry = header_block(&[("x-bomb", &"b".repeat(4000))], true);
    frame(HEADERS, END_HEADERS | END_STREAM, 1, &[grpc_request("Version", "localhost"), entry].concat())
}

/// Connects, sends the preface and empty SETTINGS, and drains what the server sends (so it
/// never blocks writing to us) until it closes; the returned receiver reports how many
/// bytes arrived and when the server closed.
async fn raw_connection(
    socket: &Path,
) -> (tokio::net::unix::OwnedWriteHalf, tokio::sync::oneshot::Receiver<usize>) {
    let stream = UnixStream::connect(socket).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(&[PREFACE, &frame(SETTINGS, 0, 0, &[])].concat()).await.unwrap();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0;
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        let _ = closed_tx.send(total);
    });
    (write, closed)
}

/// Calls Version over a fresh connection repeatedly while `attack` runs; returns the
/// attack's output and the slowest call.
async fn served_meanwhile<T>(socket: &Path, attack: impl std::future::Future<Output = T>) -> (T, Duration) {
    let mut client = CsiDriverProviderClient::new(channel(socket).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_probe = stop.clone();
    let probe = tokio::spawn(async move {
        let mut slowest = Duration::ZERO;
        while !stop_probe.load(std::sync::atomic::Ordering::SeqCst) {
            let started = Instant::now();
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                client.version(VersionRequest { version: "v1alpha1".into() }),
            )
            .await;
            assert!(matches!(answer, Ok(Ok(_))), "Version failed under attack: {answer:?}");
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        slowest
    });
    let out = attack.await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    (out, probe.await.unwrap())
}

/// The provider binary to attack: this build, or `HOSTILE_PROVIDER_BIN` (to measure
/// another build the same way).
fn provider_command() -> Command {
    match std::env::var("HOSTILE_PROVIDER_BIN").ok().filter(|bin| !bin.is_empty()) {
        Some(other) => Command::new(other),
        None => provider_binary(),
    }
}

/// The provider under attack, with `args`, then `env` (no Kubernetes API unless it names one).
fn start(args: &[&str], env: &[(&str, &str)]) -> Binary {
    start_in(provider_command(), args, env)
}

/// As [`start`], run by `command` (the provider, or a shell that execs it).
fn start_in(command: Command, args: &[&str], env: &[(&str, &str)]) -> Binary {
    let mut all = vec![("KUBECONFIG", "/nonexistent")];
    all.extend_from_slice(env);
    Binary::start(command, tempfile::tempdir().unwrap(), args, &all)
}

fn start_provider(args: &[&str]) -> Binary {
    start(args, &[])
}

async fn idle_rss(binary: &Binary) -> u64 {
    let mut client = binary.client().await;
    for _ in 0..20 {
        client.version(VersionRequest { version: "v1alpha1".into() }).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    binary.usage().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_on_one_connection_are_bounded() {
    let binary = start_provider(&[]);
    // The server advertises its stream limit: a client (the driver's grpc-go) queues beyond it.
    let stream = tokio::net::UnixStream::connect(binary.socket()).await.unwrap();
    let (client, mut connection) = h2::client::handshake(stream).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(500), &mut connection).await;
    assert_eq!(connection.max_concurrent_send_streams(), 256, "SETTINGS_MAX_CONCURRENT_STREAMS");
    drop(client);
    let idle = idle_rss(&binary).await;
    let (cpu_before, socket) = (binary.usage().1, binary.socket());
    let attack = async {
        let (mut write, closed) = raw_connection(&socket).await;
        // Mount calls that never send their body: each holds a stream open.
        let block = grpc_request("Mount", "localhost");
        let mut peak = 0;
        for batch in 0..40u32 {
            let mut burst = Vec::new();
            for i in 0..1000u32 {
                burst.extend(frame(HEADERS, END_HEADERS, 2 * (batch * 1000 + i) + 1, &block));
            }
            if write.write_all(&burst).await.is_err() {
                break; // the server gave up on us
            }
            peak = peak.max(binary.usage().0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(binary.usage().0);
        drop(write);
        let _ = tokio::time::timeout(Duration::from_secs(10), closed).await;
        peak
    };
    let (peak, slowest) = served_meanwhile(&socket, attack).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, cpu_after) = binary.usage();
    eprintln!(
        "40k streams on one connection: idle RSS {idle} KiB, peak {peak} KiB, after close {after} KiB, \
         CPU {:.2} s, slowest Version meanwhile {slowest:?}",
        cpu_after - cpu_before
    );
    assert!(peak < idle + 64 * 1024, "RSS grew from {idle} to {peak} KiB");
    assert!(after < idle + 64 * 1024, "RSS stayed at {after} KiB after the connection closed");
    assert!(slowest < Duration::from_secs(2), "other clients waited {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_read_ahead_are_bounded_per_connection_and_in_all() {
    let binary = start_provider(&[]);
    let idle = idle_rss(&binary).await;
    let socket = binary.socket();
    // 200 streams, each a Mount whose message says 4 MiB and brings 1 MiB of it, then waits:
    // 200 MiB held, were every body read ahead. The client keeps to HTTP/2 flow control, so
    // what the server does not read stays with the client.
    let attack = async {
        let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let (client, connection) = h2::client::handshake(stream).await.unwrap();
        tokio::spawn(connection);
        let mut open = Vec::new();
        for _ in 0..200 {
            let mut client = client.clone().ready().await.unwrap();
            let head = http::Request::post("http://localhost/v1alpha1.CSIDriverProvider/Mount")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let (response, mut body) = client.send_request(head, false).unwrap();
            let mut data = vec![0u8];
            data.extend_from_slice(&(4u32 << 20).to_be_bytes());
            data.resize(5 + (1 << 20), b'x');
            body.send_data(data.into(), false).unwrap();
            open.push((response, body));
        }
        let mut peak = 0;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(binary.usage().0);
        }
        drop(open);
        peak
    };
    let (peak, slowest) = served_meanwhile(&socket, attack).await;
    eprintln!(
        "200 x 1 MiB of request bodies: idle RSS {idle} KiB, peak {peak} KiB, slowest Version {slowest:?}"
    );
    // The connection's budget (16 MiB) and HTTP/2's windows, not the 200 MiB offered.
    assert!(peak < idle + 48 * 1024, "RSS grew from {idle} to {peak} KiB");
    assert!(slowest < Duration::from_secs(1), "other clients waited {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpack_bomb_fails_its_connection_quickly() {
    let binary = start_provider(&[]);
    let idle = idle_rss(&binary).await;
    let (cpu_before, socket) = (binary.usage().1, binary.socket());
    let attack = async {
        let (mut write, closed) = raw_connection(&socket).await;
        // One 4000-byte table entry, then a block of a million one-byte references to it,
        // just under the shim's old 1 MiB cap.
        let mut bytes = version_with_a_large_table_entry();
        bytes.extend(header_frames(3, 0, &[], &[0x80 | 62; (1 << 20) - 4096]));
        let started = Instant::now();
        // The server must stop reading once the block passes its cap: far less than the
        // megabyte plus what the socket buffers, so the write fails.
        let wrote_all = write.write_all(&bytes).await.is_ok();
        let closed = tokio::time::timeout(Duration::from_secs(30), closed).await;
        assert!(closed.is_ok(), "the server kept the bomb's connection open");
        (started.elapsed(), wrote_all)
    };
    let ((closed_after, wrote_all), slowest) = served_meanwhile(&socket, attack).await;
    let (rss, cpu_after) = binary.usage();
    let cpu = cpu_after - cpu_before;
    eprintln!(
        "HPACK bomb: connection closed after {closed_after:?}, provider CPU {cpu:.2} s, RSS {idle} -> {rss} KiB, \
         slowest Version meanwhile {slowest:?}"
    );
    assert!(!wrote_all, "the server read the whole bomb before refusing it");
    assert!(cpu < 1.0, "the bomb cost {cpu:.2} s of CPU");
    assert!(slowest < Duration::from_secs(2), "other clients waited {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_driver_requests_are_counted_and_localhost_ones_are_not() {
    let binary = start_provider(&[]);
    let rewrites = |binary: &Binary| {
        let body = http_get(binary.metrics(), "/metrics").1;
        body.lines()
            .find(|l| l.starts_with("csi_provider_aws_authority_rewrites_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(rewrites(&binary), Some(0.0));
    let socket = binary.socket();
    let socket_path = socket.display().to_string();
    for (authority, want) in [("localhost", 0.0), (socket_path.as_str(), 1.0), (socket_path.as_str(), 2.0)] {
        let (mut write, closed) = raw_connection(&socket).await;
        let mut bytes = frame(HEADERS, END_HEADERS, 1, &grpc_request("Version", authority));
        bytes.extend(frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]));
        write.write_all(&bytes).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(write);
        let received = tokio::time::timeout(Duration::from_secs(5), closed).await.unwrap().unwrap_or(0);
        assert!(received > 20, "{authority}: the server answered");
        assert_eq!(rewrites(&binary), Some(want), "{authority}");
    }
}

#[test]
fn a_slowloris_on_the_metrics_port_is_cut_off_while_probes_are_served() {
    let binary = start(&[], &[]);
    let addr = binary.metrics().to_owned();
    // Half-sent requests that never end.
    let mut slow: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(http_get(&addr, "/healthz").0, 200);
        slowest = slowest.max(started.elapsed());
    }
    // Each trickles on; the server must still drop them (header read timeout).
    let started = Instant::now();
    let mut open = slow.len();
    while open > 0 && started.elapsed() < Duration::from_secs(15) {
        open = 0;
        for s in &mut slow {
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
            let _ = s.write_all(b"a");
            let mut buf = [0; 256];
            match s.read(&mut buf) {
                Ok(0) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    open += 1
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "metrics slowloris: slowest /healthz meanwhile {slowest:?}; half-sent requests cut after {:?}",
        started.elapsed()
    );
    assert_eq!(open, 0, "{open} half-sent requests still held open after {:?}", started.elapsed());
    assert!(slowest < Duration::from_secs(2), "/healthz waited {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_hold_shutdown() {
    let mut binary = start_provider(&[]);
    let socket = binary.socket();
    // A client that connects and says nothing; one that did the handshake and then stops
    // reading (so it never answers the shutdown PING); an idle, well-behaved gRPC client.
    let _silent = UnixStream::connect(&socket).await.unwrap();
    let (_mute, _) = raw_connection(&socket).await;
    let mut idle = binary.client().await;
    idle.version(VersionRequest { version: "v1alpha1".into() }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    binary.terminate();
    let status = binary.wait(Duration::from_secs(40));
    let took = started.elapsed();
    eprintln!("shutdown with idle connections took {took:?}");
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(took < Duration::from_secs(5), "idle connections held shutdown for {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed() {
    // Every real client sends the HTTP/2 preface at once; a silent one would otherwise hold
    // a descriptor for ever (keep-alive pings start only after the handshake).
    let binary = start_provider(&[]);
    let mut silent = UnixStream::connect(binary.socket()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut buf)).await;
    let took = started.elapsed();
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the silent connection was not closed: {read:?}");
    assert!(took >= Duration::from_secs(9), "closed after {took:?}: too soon for a slow client");
    // A client that talks is served as before.
    let mut client = binary.client().await;
    client.version(VersionRequest { version: "v1alpha1".into() }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_accept_backs_off_instead_of_spinning() {
    // The provider with a small open-file limit, then more connections than it can take.
    let mut command = Command::new("sh");
    let bin = provider_command().get_program().to_owned();
    command.arg("-c").arg("ulimit -n 48 && exec \"$0\" \"$@\"").arg(bin);
    let binary = start_in(command, &[], &[]);
    let socket = binary.socket();
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(UnixStream::connect(&socket).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before = binary.usage().1;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = binary.usage().1 - cpu_before;
    drop(held);
    // Once descriptors are free again, clients are served.
    let started = Instant::now();
    let mut client = tokio::time::timeout(Duration::from_secs(10), binary.client()).await.expect("connects");
    client.version(VersionRequest { version: "v1alpha1".into() }).await.unwrap();
    let recovered = started.elapsed();
    let log = binary.log();
    let warnings = log.lines().filter(|l| l.contains("cannot accept connections")).count();
    eprintln!(
        "at the fd limit: {cpu:.2} s CPU in 2 s; served again after {recovered:?}; {warnings} warnings"
    );
    assert!(cpu < 0.5, "the accept loop used {cpu:.2} s of CPU in 2 s");
    assert!(log.contains("open-file limit"), "the failure is logged: {log}");
    assert!(warnings <= 2, "{warnings} warnings: not rate limited");
    assert!(recovered < Duration::from_secs(5), "served again only after {recovered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_drivers_4_mib_is_refused_even_with_small_contents() {
    let fake = FakeAws::start().await;
    let kube = FakeKube::start().await;
    let kubeconfig = kube.kubeconfig.display().to_string();
    let endpoint = fake.url();
    let binary =
        start(&["--driver-writes-secrets"], &[("KUBECONFIG", &kubeconfig), ("AWS_ENDPOINT_URL", &endpoint)]);
    // A VersionId of 48 KB (AWS's are 36 bytes; nothing in the provider bounds it): every
    // file carries its parent's version, so 100 one-byte files from a request well under the
    // attribute limit make a response of ~4.8 MiB with ~100 bytes of contents.
    let version = "v".repeat(48 * 1024);
    let secret = serde_json::json!({"Name": "s", "VersionId": version, "SecretString": "{\"k\":\"v\"}"});
    fake.set("GetSecretValue", "*", (200, CONTENT_JSON, secret.to_string()));
    let mut objects =
        String::from("- objectName: s\n  objectType: secretsmanager\n  objectAlias: whole\n  jmesPath:\n");
    for i in 0..100 {
        objects.push_str(&format!("    - {{path: k, objectAlias: f{i:03}}}\n"));
    }
    let mut client = binary.client().await.max_decoding_message_size(64 * 1024 * 1024);
    let request = request_for(&kube, "big", &[("region", "us-east-1"), ("objects", &objects)]);
    let err = client.mount(request).await.expect_err("the response is over 4 MiB");
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("over the CSI driver's limit of 4194304 bytes"), "{}", err.message());
    assert!(err.message().contains("file names and object versions all count"), "{}", err.message());
}

#[test]
fn metrics_connections_are_bounded() {
    let binary = start(&[], &[]);
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", binary.pid())).map_or(0, |d| d.count());
    let before = fds();
    // More idle connections than the listener serves at once: the rest wait unaccepted.
    let flood: Vec<std::net::TcpStream> =
        (0..600).map(|_| std::net::TcpStream::connect(binary.metrics()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = fds();
    eprintln!("600 idle metrics connections: provider descriptors {before} -> {during}");
    assert!(during <= before + 512 + 8, "{during} descriptors (from {before}): connections are not bounded");
    drop(flood);
    let started = Instant::now();
    assert_eq!(http_get(binary.metrics(), "/healthz").0, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_blocks_that_expand_past_the_header_limit_fail_their_connection() {
    let binary = start_provider(&[]);
    let (cpu_before, socket) = (binary.usage().1, binary.socket());
    let attack = async {
        let (mut write, closed) = raw_connection(&socket).await;
        // A 4000-byte table entry, then 20,000 20-byte blocks of 20 references to it:
        // each 80 KiB once decoded, over the 16 KiB header limit.
        let mut bytes = version_with_a_large_table_entry();
        for i in 0..20_000u32 {
            bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 3, &[0x80 | 62; 20]));
        }
        let _ = write.write_all(&bytes).await;
        tokio::time::timeout(Duration::from_secs(30), closed).await.is_ok()
    };
    let (closed, slowest) = served_meanwhile(&socket, attack).await;
    let cpu = binary.usage().1 - cpu_before;
    eprintln!("20000 expanding blocks: provider CPU {cpu:.2} s, slowest Version meanwhile {slowest:?}");
    assert!(closed, "the server kept the connection open");
    assert!(cpu < 0.15, "the blocks cost {cpu:.2} s of CPU");
    assert!(slowest < Duration::from_secs(2), "other clients waited {slowest:?}");
}
