//! Bounds before work: hostile SecretProviderClasses against the real binary. Each attack
//! must fail fast with InvalidArgument and a bounded message naming the limit, keep the
//! provider's memory near idle, and leave other clients served meanwhile.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use csi_provider_aws::proto::VersionRequest;
use tonic::Code;

/// The provider binary on its own socket; killed on drop.
fn start() -> Binary {
    // No AWS call may happen: every class here is refused before fetching.
    let env = [("AWS_ENDPOINT_URL", "http://127.0.0.1:9")];
    Binary::start(
        provider_binary(),
        tempfile::tempdir().unwrap(),
        &["--driver-writes-secrets", "--mount-timeout=5s"],
        &env,
    )
}

/// One anchor of `k` items referenced `k` times: `k * k` nodes from `5 * k` bytes.
fn alias_fan_out(bytes: usize) -> String {
    let k = (bytes / 5).max(2);
    let a = vec!["x"; k].join(",");
    let b = vec!["*a"; k].join(",");
    format!("- {{objectName: s, objectType: secretsmanager, a: &a [{a}], b: [{b}]}}\n")
}

fn nested(bytes: usize) -> String {
    format!(
        "- objectName: s\n  objectType: secretsmanager\n  deep: {}{}\n",
        "[".repeat(bytes / 2),
        "]".repeat(bytes / 2)
    )
}

fn empty_objects(bytes: usize) -> String {
    "- {}\n".repeat(bytes / 5)
}

fn bad_objects(count: usize) -> String {
    (0..count).map(|i| format!("- {{objectName: object-number-{i}}}\n")).collect()
}

struct Attack {
    name: &'static str,
    objects: String,
    /// Words the message must contain; none for a class within the limits, which passes
    /// validation and then fails for want of an identity (no AWS call is made).
    want: &'static [&'static str],
}

/// Mounts `objects` while another client calls Version every 10 ms; returns what it saw.
async fn attack(binary: &Binary, objects: &str) -> (Code, String, Duration, Duration) {
    let target = binary.dir().join("target");
    let request = mount_request(&[("objects", objects), ("region", "us-east-1")], &target);
    let mut client = binary.client().await.max_encoding_message_size(16 << 20);
    let mut prober = binary.client().await;
    let started = Instant::now();
    let mount = tokio::spawn(async move { client.mount(request).await });
    let mut slowest = Duration::ZERO;
    while !mount.is_finished() {
        let asked = Instant::now();
        prober.version(VersionRequest { version: "v1alpha1".into() }).await.unwrap();
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let result = mount.await.unwrap();
    let took = started.elapsed();
    match result {
        Ok(_) => (Code::Ok, String::new(), took, slowest),
        Err(status) => (status.code(), status.message().to_owned(), took, slowest),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_classes_fail_fast_within_memory_and_others_are_served() {
    let attacks = [
        Attack { name: "alias fan-out 10 KB", objects: alias_fan_out(10_000), want: &["alias", "nodes"] },
        Attack { name: "alias fan-out 25 KB", objects: alias_fan_out(25_000), want: &["alias", "nodes"] },
        Attack { name: "3 MB of `- {}`", objects: empty_objects(3_000_000), want: &["bytes"] },
        Attack { name: "600 KB of `- {}`", objects: empty_objects(600_000), want: &["limit"] },
        Attack { name: "200 KB nesting", objects: nested(200_000), want: &["nest", "depth"] },
        Attack { name: "10k bad objects", objects: bad_objects(10_000), want: &["--max-objects"] },
        Attack {
            name: "500 bad objects",
            objects: bad_objects(500),
            want: &["objectType is missing", "more"],
        },
        Attack { name: "fan-out within limits", objects: alias_fan_out(1_500), want: &[] },
    ];
    let mut report = String::new();
    for attack in &attacks {
        let binary = start();
        // Warm up: one valid mount of nothing.
        let warm = self::attack(&binary, "").await;
        assert_eq!(warm.0, Code::Ok, "{}", warm.1);
        let idle = binary.usage().0;
        let (code, message, took, slowest) = self::attack(&binary, &attack.objects).await;
        let peak = binary.peak_rss();
        let grown = peak.saturating_sub(idle) / 1024;
        report.push_str(&format!(
            "{:<22} {:>8} bytes: {code:?} in {took:?}, +{grown} MiB peak RSS, Version waited at most {slowest:?}, message {} bytes\n",
            attack.name,
            attack.objects.len(),
            message.len()
        ));
        if attack.want.is_empty() {
            assert_ne!(code, Code::InvalidArgument, "{}: {message:.300}", attack.name);
        } else {
            assert_eq!(code, Code::InvalidArgument, "{}: {message:.300}", attack.name);
        }
        for want in attack.want {
            assert!(message.contains(want), "{}: {message:.600} should mention {want:?}", attack.name);
        }
        assert!(message.len() < 16 * 1024, "{}: message of {} bytes", attack.name, message.len());
        assert!(took < Duration::from_secs(3), "{}: took {took:?}", attack.name);
        assert!(grown < 64, "{}: +{grown} MiB", attack.name);
        assert!(slowest < Duration::from_millis(500), "{}: Version waited {slowest:?}", attack.name);
    }
    println!("{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_writes_mode_refuses_a_relative_or_unclean_target_path() {
    let base = settings_at("http://127.0.0.1:9");
    let provider = Provider::start(Settings {
        mount: MountSettings { driver_writes_secrets: false, ..base.mount.clone() },
        ..base
    })
    .await;
    let mut client = provider.client().await;
    for target in ["reldir", "./x", "/tmp/a/../b"] {
        let request = mount_request(&[("objects", ""), ("region", "us-east-1")], Path::new(target));
        let status = client.mount(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{target}: {}", status.message());
        assert!(status.message().contains("target_path"), "{target}: {}", status.message());
    }
    let dir = tempfile::tempdir().unwrap();
    let request = mount_request(&[("objects", ""), ("region", "us-east-1")], dir.path());
    client.mount(request).await.unwrap();
    provider.stop().await;
}

/// A class of `n` secrets named `prefix-0..n`.
fn many_secrets(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("- {{objectName: {prefix}-{i}, objectType: secretsmanager}}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_aws_requests_and_max_concurrent_mounts_are_the_most_outstanding() {
    // AWS behind a slow link: requests pile up unless the provider holds them back.
    let aws = FakeAws::start().await;
    let proxy = LatencyProxy::start(&aws.url(), Duration::from_millis(100)).await;
    for (max_aws, max_mounts, mounts, objects, want) in [(3, 128, 4, 10, 3), (256, 2, 6, 1, 2)] {
        let base = settings_at(&proxy.url());
        let settings = Settings {
            identity: IdentityMode::Fixed(test_credentials()),
            max_aws_requests: max_aws,
            mount: MountSettings { max_concurrent: max_mounts, ..base.mount.clone() },
            ..base
        };
        let provider = Provider::start(settings).await;
        let client = provider.client().await;
        proxy.reset_max_outstanding();
        let all = (0..mounts).map(|i| {
            let mut client = client.clone();
            let objects = many_secrets(&format!("bound-{max_aws}-{i}"), objects);
            async move {
                client
                    .mount(mount_request(&[("region", "us-east-1"), ("objects", &objects)], Path::new("/t")))
                    .await
            }
        });
        for result in futures::future::join_all(all).await {
            result.unwrap();
        }
        assert_eq!(
            proxy.max_outstanding(),
            want,
            "--max-aws-requests={max_aws} --max-concurrent-mounts={max_mounts}: the most AWS requests outstanding"
        );
        provider.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_retried_by_the_sdk_in_the_primary_region_without_failing_over() {
    let aws = FakeAws::start().await;
    let provider = Provider::start(Settings {
        identity: IdentityMode::Fixed(test_credentials()),
        ..settings_at(&aws.url())
    })
    .await;
    aws.answer_next(
        "GetSecretValue",
        (503, CONTENT_JSON, r#"{"__type":"ServiceUnavailable","message":"busy"}"#.into()),
    );
    let objects = "- {objectName: db, objectType: secretsmanager, objectAlias: db}";
    let request = mount_request(
        &[("region", "us-east-1"), ("failoverRegion", "us-west-2"), ("objects", objects)],
        Path::new("/t"),
    );
    let response = provider.client().await.mount(request).await.unwrap().into_inner();
    assert_eq!(response.files[0].contents, b"value in us-east-1", "served by the primary region");
    assert_eq!(aws.calls_in("GetSecretValue", "us-east-1"), 2, "the 503, then its retry");
    assert_eq!(aws.calls_in("GetSecretValue", "us-west-2"), 0, "no failover traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_api_that_does_not_answer_fails_the_lookup_at_its_timeout() {
    let kube = FakeKube::start().await;
    kube.http.delay_route("/api/v1/namespaces/shop/serviceaccounts/web", Duration::from_secs(60));
    let provider = Provider::start_with(settings(), Some(kube)).await;
    let objects = "- {objectName: db, objectType: secretsmanager}";
    let request = mount_request(&[("region", "us-east-1"), ("objects", objects)], Path::new("/t"));
    let status = provider.client().await.mount(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    assert!(status.message().contains("no whole answer within 5s"), "{}", status.message());
    let metrics = provider.metrics.encode();
    assert!(
        metrics.contains(
            r#"csi_provider_aws_kubernetes_requests_total{resource="serviceaccounts",outcome="error"} 1"#
        ),
        "{metrics}"
    );
}
