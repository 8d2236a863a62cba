//! Failover regions against moto behind a fault-injecting proxy: the failover region is
//! asked only when the primary fails with a server error, throttling or a network error.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use aws_sdk_ssm::types::ParameterType;
use tonic::Code;

const PRIMARY: &str = "us-east-1";
const FAILOVER: &str = "us-west-2";

fn signed_for(region: &str) -> String {
    format!("/{region}/")
}

async fn setup() -> (LatencyProxy, Provider) {
    let proxy = LatencyProxy::start(moto_url(), Duration::ZERO).await;
    let provider = Provider::start(settings_at(&proxy.url())).await;
    (proxy, provider)
}

async fn replicated_secret() -> String {
    let name = unique("replicated");
    create_secret(PRIMARY, &name, "primary").await;
    create_secret(FAILOVER, &name, "failover").await;
    name
}

fn params(objects: &str) -> Vec<(&str, &str)> {
    vec![("region", PRIMARY), ("failoverRegion", FAILOVER), ("objects", objects)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_primary_never_asks_the_failover_region() {
    let (proxy, provider) = setup().await;
    let name = replicated_secret().await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    let response =
        provider.client().await.mount(mount_request(&params(&objects), Path::new("/t"))).await.unwrap();
    assert_eq!(response.into_inner().files[0].contents, b"primary");
    assert!(
        proxy.requests_containing(&signed_for(FAILOVER)).is_empty(),
        "ASCP asks both regions; we must not"
    );
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_throttling_fall_over() {
    for status in [500, 503, 429] {
        let (proxy, provider) = setup().await;
        let name = replicated_secret().await;
        let parameter = format!("/{}", unique("fo-param"));
        put_parameter(PRIMARY, &parameter, "p-primary", ParameterType::String).await;
        put_parameter(FAILOVER, &parameter, "p-failover", ParameterType::String).await;
        let objects = format!(
            "- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}\n\
             - {{objectName: '{parameter}', objectType: ssmparameter, objectAlias: p}}"
        );
        proxy.fail_region(PRIMARY, status);
        let response = provider
            .client()
            .await
            .mount(mount_request(&params(&objects), Path::new("/t")))
            .await
            .unwrap()
            .into_inner();
        let got = files(&response);
        assert_eq!(got[0], ("p".into(), 0o644, "p-failover".into()), "HTTP {status}");
        assert_eq!(got[1], ("s".into(), 0o644, "failover".into()), "HTTP {status}");
        provider.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_fail_with_the_primarys_message() {
    let (proxy, provider) = setup().await;
    let name = unique("only-in-failover");
    create_secret(FAILOVER, &name, "failover").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    let err =
        provider.client().await.mount(mount_request(&params(&objects), Path::new("/t"))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(
        err.message().contains(&format!("in {PRIMARY}"))
            && err.message().contains("ResourceNotFoundException"),
        "{}",
        err.message()
    );
    assert!(proxy.requests_containing(&signed_for(FAILOVER)).is_empty(), "a 4xx must not fall over");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_objects_and_arns_use_their_failover_names() {
    let (proxy, provider) = setup().await;
    let primary_name = unique("db-east");
    let failover_name = unique("db-west");
    let (primary_arn, _) = create_secret(PRIMARY, &primary_name, "east").await;
    let (failover_arn, _) = create_secret(FAILOVER, &failover_name, "west").await;
    let objects = format!(
        "- objectName: '{primary_arn}'\n  objectAlias: db\n  failoverObject: {{objectName: '{failover_arn}'}}"
    );
    proxy.fail_region(PRIMARY, 500);
    let response =
        provider.client().await.mount(mount_request(&params(&objects), Path::new("/t"))).await.unwrap();
    assert_eq!(response.into_inner().files[0].contents, b"west");

    // A failoverObject ARN in another region than failoverRegion is refused up front.
    let wrong = format!(
        "- objectName: '{primary_arn}'\n  objectAlias: db\n  failoverObject: {{objectName: '{}'}}",
        failover_arn.replace(FAILOVER, "eu-west-1")
    );
    let err =
        provider.client().await.mount(mount_request(&params(&wrong), Path::new("/t"))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("does not match failoverRegion"), "{}", err.message());
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_regions_down_fails_within_the_drivers_deadline() {
    let (proxy, provider) = setup().await;
    let name = replicated_secret().await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    proxy.fail_region(PRIMARY, 503);
    proxy.fail_region(FAILOVER, 500);
    let started = Instant::now();
    let err =
        provider.client().await.mount(mount_request(&params(&objects), Path::new("/t"))).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains(PRIMARY) && err.message().contains(FAILOVER), "{}", err.message());
    // The driver gives a mount about two minutes; retries with backoff stay far below that.
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    proxy.heal();
    provider.stop().await;
}
