//! What a slow or hostile peer must not cost: mounts nobody waits for any more, a caller's
//! deadline, a slow API server before the first mounts, long input echoed back.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use csi_provider_aws::proto::MountRequest;
use tonic::Code;

/// A class of `n` secrets with names of their own.
fn secrets(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("- {{objectName: {prefix}-{i}, objectType: secretsmanager}}\n")).collect()
}

fn request(objects: &str) -> MountRequest {
    mount_request(&[("region", "us-east-1"), ("objects", objects)], Path::new("/t"))
}

/// Polls until `condition` holds, within `limit`.
async fn until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_mounts_start_no_more_aws_calls_and_free_the_queue() {
    // AWS takes a second per call; 150 mounts of 20 objects each are 3,000 calls, of which
    // --max-aws-requests (16 here) run at once and the rest queue.
    let aws = FakeAws::with_latency(Duration::from_secs(1)).await;
    let settings = Settings {
        identity: IdentityMode::Fixed(test_credentials()),
        max_aws_requests: 16,
        ..settings_at(&aws.url())
    };
    let provider = Provider::start(settings).await;
    let client = provider.client().await;
    let storm = (0..150).map(|i| {
        let mut client = client.clone();
        let objects = secrets(&format!("storm-{i}"), 20);
        async move { tokio::time::timeout(Duration::from_millis(200), client.mount(request(&objects))).await }
    });
    let cancelled = futures::future::join_all(storm).await;
    assert!(cancelled.iter().all(Result::is_err), "every storm mount was cancelled by its caller");
    until(Duration::from_secs(5), "the cancelled mounts left", || {
        sample(&provider.metrics.encode(), "csi_provider_aws_mounts_in_flight ") == Some(0)
    })
    .await;
    // A request written before its mount went may still be on its way: let it arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_cancel = aws.calls();
    assert!(after_cancel < 300, "{after_cancel} of the storm's 3,000 calls reached AWS");
    // Longer than one AWS call: had queued calls been kept, they would have started by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(aws.calls(), after_cancel, "AWS calls started for mounts nobody waits for");

    // The next mount gets a slot at once: its one call is all it waits for.
    let started = Instant::now();
    let mut next = client.clone();
    next.mount(request(&secrets("after-the-storm", 1))).await.unwrap();
    let took = started.elapsed();
    let calls = aws.calls() - after_cancel;
    assert_eq!(calls, 1, "only the new mount's call; nothing queued for the cancelled ones ran");
    assert!(took < Duration::from_secs(3), "the next mount waited {took:?} behind cancelled work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_deadline_stops_the_mount_with_deadline_exceeded() {
    let aws = FakeAws::with_latency(Duration::from_secs(3)).await;
    let settings = Settings { identity: IdentityMode::Fixed(test_credentials()), ..settings_at(&aws.url()) };
    let provider = Provider::start(settings).await;
    // As the driver sends kubelet's deadline: the grpc-timeout header.
    let started = Instant::now();
    let (status, message) =
        mount_with_grpc_timeout(&provider.socket, request(&secrets("deadline", 1)), "300m").await;
    assert_eq!(status, Some(Code::DeadlineExceeded as i32), "{message:?}");
    assert!(message.unwrap_or_default().contains("caller's deadline of 300ms"));
    // The provider ended the mount at that deadline, not when AWS answered (3 s) or at
    // --mount-timeout (30 s).
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(sample(&provider.metrics.encode(), "csi_provider_aws_mounts_in_flight "), Some(0));
}

/// A Mount as grpc-go's client sends one with a deadline: `grpc-timeout` in the headers, and
/// no cancellation of its own before the answer (so what comes back is the provider's).
/// The answer's `grpc-status` and `grpc-message`.
async fn mount_with_grpc_timeout(
    socket: &Path,
    request: MountRequest,
    timeout: &str,
) -> (Option<i32>, Option<String>) {
    use prost::Message as _;
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let head = http::Request::post("http://localhost/v1alpha1.CSIDriverProvider/Mount")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(head, false).unwrap();
    let message = request.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    body.send_data(frame.into(), true).unwrap();
    let response = response.await.unwrap();
    let header =
        |map: &http::HeaderMap, name: &str| map.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // A trailers-only answer carries the status in its headers.
    let (mut status, mut text) =
        (header(response.headers(), "grpc-status"), header(response.headers(), "grpc-message"));
    if status.is_none() {
        let mut body = response.into_body();
        while body.data().await.is_some() {}
        if let Ok(Some(trailers)) = body.trailers().await {
            (status, text) = (header(&trailers, "grpc-status"), header(&trailers, "grpc-message"));
        }
    }
    let text = text.map(|t| percent_decoded(&t));
    (status.and_then(|s| s.parse().ok()), text)
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_long_object_name_gives_a_short_message_naming_the_limit() {
    let provider = Provider::start(settings_at("http://127.0.0.1:9")).await;
    let long = "n".repeat(20_000);
    let objects = format!("- {{objectName: {long}, objectType: secretsmanager}}");
    let status = provider.client().await.mount(request(&objects)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(status.message().len() < 2048, "a {}-byte message", status.message().len());
    assert!(status.message().contains("objectName is 20000 characters"), "{}", status.message());
    assert!(
        status.message().contains("... (20000 characters)"),
        "the name is echoed cut: {}",
        status.message()
    );
    assert!(status.message().contains("2048"), "{}", status.message());
}

/// One sample of the metrics text.
fn sample(metrics: &str, line_start: &str) -> Option<u64> {
    metrics.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_issuer_discovery_holds_no_first_mount_for_long() {
    use csi_provider_aws::request::{DriverRequest, Pod};
    use csi_provider_aws::secret::SecretString;
    let key = tokens::SigningKey::generate("stalled");
    let kube = FakeKube::start().await;
    kube.issuer(&[&key]);
    // The keys never come in time (the API server's own request timeout is 5 s).
    kube.http.delay_route("/openid/v1/jwks", Duration::from_secs(60));
    let provider = Provider::start_with(settings(), Some(kube)).await;
    let name = unique("stalled");
    create_secret("us-east-1", &name, "v").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager}}");
    let client = provider.client().await;
    let mounts = (0..4).map(|i| {
        let mut client = client.clone();
        let pod_name = format!("web-{i}");
        let pod = Pod {
            name: pod_name.clone(),
            tokens: Some(SecretString::new(tokens::pod_tokens(&key, "shop", "web", &pod_name))),
            ..web_pod()
        };
        let request =
            DriverRequest::new("c", [("region", "us-east-1"), ("objects", objects.as_str())], pod).build();
        async move {
            let started = Instant::now();
            client.mount(request).await.map(|_| started.elapsed())
        }
    });
    for took in futures::future::join_all(mounts).await {
        let took = took.expect("the mount succeeds with the token exchanged on its own");
        assert!(took < Duration::from_secs(3), "a first mount took {took:?} behind issuer discovery");
    }
    let metrics = provider.metrics.encode();
    assert_eq!(
        sample(&metrics, "csi_provider_aws_token_verifications_total{outcome=\"no_discovery\"}"),
        Some(4)
    );
}
