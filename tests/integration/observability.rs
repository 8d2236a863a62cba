//! Operability: metrics that move with mounts, and faults of every peer — AWS errors,
//! throttling, slow answers, connection resets — each giving the right gRPC code, a clear
//! message and a bounded time while the provider keeps serving other mounts.
//! (Kubernetes API down / 404 and Pod Identity agent down are in tests/identity.rs.)

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use tonic::Code;

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_mounts() {
    let provider = Provider::start(settings()).await;
    let name = unique("metrics");
    create_secret("us-east-1", &name, "v").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager}}");
    let mut client = provider.client().await;
    for _ in 0..2 {
        client
            .mount(mount_request(&[("region", "us-east-1"), ("objects", &objects)], Path::new("/t")))
            .await
            .unwrap();
    }
    let missing = format!("- {{objectName: {}, objectType: secretsmanager}}", unique("gone"));
    let _ =
        client.mount(mount_request(&[("region", "us-east-1"), ("objects", &missing)], Path::new("/t"))).await;
    let _ = client.mount(mount_request(&[("objects", "- {objectName: x}")], Path::new("/t"))).await;

    let text = provider.metrics.encode();
    let expect = [
        ("csi_provider_aws_mounts_total{result=\"success\",error=\"\"}", 2.0),
        ("csi_provider_aws_mounts_total{result=\"error\",error=\"not_found\"}", 1.0),
        ("csi_provider_aws_mounts_total{result=\"error\",error=\"invalid_class\"}", 1.0),
        ("csi_provider_aws_mount_duration_seconds_count", 4.0),
        (
            "csi_provider_aws_aws_requests_total{service=\"secretsmanager\",operation=\"GetSecretValue\",outcome=\"success\"}",
            2.0,
        ),
        (
            "csi_provider_aws_aws_requests_total{service=\"secretsmanager\",operation=\"GetSecretValue\",outcome=\"client\"}",
            1.0,
        ),
        (
            "csi_provider_aws_aws_requests_total{service=\"sts\",operation=\"AssumeRoleWithWebIdentity\",outcome=\"success\"}",
            1.0,
        ),
        (
            "csi_provider_aws_aws_request_duration_seconds_count{service=\"sts\",operation=\"AssumeRoleWithWebIdentity\"}",
            1.0,
        ),
        ("csi_provider_aws_credentials_total{method=\"irsa\",source=\"fetched\"}", 1.0),
        ("csi_provider_aws_credentials_total{method=\"irsa\",source=\"cached\"}", 2.0),
        ("csi_provider_aws_kubernetes_requests_total{resource=\"serviceaccounts\",outcome=\"success\"}", 1.0),
        ("csi_provider_aws_object_fetches_total{source=\"aws\"}", 3.0),
        ("csi_provider_aws_mounts_in_flight", 0.0),
    ];
    for (series, want) in expect {
        assert_eq!(metric(&text, series), want, "{series}\n{text}");
    }
    assert!(!text.contains(&name), "object names must not become labels");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_fault_fails_clearly_in_bounded_time_while_other_mounts_work() {
    let proxy = LatencyProxy::start(moto_url(), Duration::ZERO).await;
    let base = settings_at(&proxy.url());
    let aws = AwsSettings {
        call_timeout: Duration::from_secs(4),
        attempt_timeout: Duration::from_secs(4),
        ..base.aws.clone()
    };
    let provider = Provider::start(Settings { aws, ..base }).await;
    let name = unique("fault");
    for region in ["us-east-1", "us-east-2"] {
        create_secret(region, &name, region).await;
    }
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    let faulty = mount_request(&[("region", "us-east-2"), ("objects", &objects)], Path::new("/t"));
    let healthy = mount_request(&[("region", "us-east-1"), ("objects", &objects)], Path::new("/t"));
    let mut client = provider.client().await;
    client.mount(healthy.clone()).await.unwrap(); // credentials cached before the faults

    let cases = [
        (Fault::Status(500), "InternalServiceError (HTTP 500)"),
        (Fault::Status(503), "HTTP 503"),
        (Fault::Status(429), "ThrottlingException"),
        (Fault::Reset, "could not reach AWS"),
        (Fault::Delay(Duration::from_secs(8)), "timed out"),
        // The answer starts and then stalls: the call's own deadline ends it.
        (Fault::Stall, "timed out"),
    ];
    for (fault, want) in cases {
        proxy.fault("us-east-2", fault);
        let started = Instant::now();
        let (bad, good) = tokio::join!(
            {
                let mut c = client.clone();
                let r = faulty.clone();
                async move { c.mount(r).await }
            },
            {
                let mut c = client.clone();
                let r = healthy.clone();
                async move { c.mount(r).await }
            },
        );
        let elapsed = started.elapsed();
        let err = bad.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{fault:?}: {}", err.message());
        assert!(err.message().contains(want), "{fault:?}: {} should mention {want:?}", err.message());
        assert!(err.message().contains(&format!("secret \"{name}\" in us-east-2")), "{}", err.message());
        assert!(elapsed < Duration::from_secs(20), "{fault:?} took {elapsed:?}");
        assert_eq!(
            good.unwrap().into_inner().files[0].contents,
            b"us-east-1",
            "{fault:?}: other mounts keep working"
        );
    }
    proxy.heal();
    client.mount(faulty).await.expect("the region works again once healed");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_protect_the_node_with_clear_errors() {
    let provider = Provider::start(Settings {
        mount: MountSettings { max_contents_bytes: 1000, max_objects: 3, ..settings().mount },
        ..settings()
    })
    .await;
    let name = unique("big");
    create_secret("us-east-1", &name, &"x".repeat(1500)).await;
    let mut client = provider.client().await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager}}");
    let err = client
        .mount(mount_request(&[("region", "us-east-1"), ("objects", &objects)], Path::new("/t")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("1500 bytes, over the limit of 1000"), "{}", err.message());

    let many: String =
        (0..4).map(|i| format!("- {{objectName: n{i}, objectType: secretsmanager}}\n")).collect();
    let err = client
        .mount(mount_request(&[("region", "us-east-1"), ("objects", &many)], Path::new("/t")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("4 objects; the limit is 3"), "{}", err.message());
    provider.stop().await;
}
