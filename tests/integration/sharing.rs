//! Node-scale behaviour against moto behind a counting proxy: identical mounts in flight
//! share their fetches, the opt-in cache, rotation with old and new drivers, and bounded
//! time when AWS is slow. Checked by counting AWS calls, never by timing.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use aws_sdk_ssm::types::ParameterType;
use csi_provider_aws::proto::{MountRequest, ObjectVersion};
use tonic::Code;

const REGION: &str = "us-east-1";

/// 10 secrets + 10 parameters; returns the objects YAML.
async fn twenty_objects() -> String {
    let base = unique("storm");
    let mut objects = String::new();
    for i in 0..10 {
        create_secret(REGION, &format!("{base}-s{i}"), &format!("secret-{i}")).await;
        put_parameter(REGION, &format!("/{base}/p{i}"), &format!("param-{i}"), ParameterType::String).await;
        objects.push_str(&format!(
            "- {{objectName: {base}-s{i}, objectType: secretsmanager}}\n- {{objectName: /{base}/p{i}, objectType: ssmparameter}}\n"
        ));
    }
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_identical_mounts_shares_its_fetches() {
    // 100 ms round trips so the mounts overlap even on a loaded machine, as they do when a
    // node boots.
    let proxy = LatencyProxy::start(moto_url(), Duration::from_millis(50)).await;
    let provider = Provider::start(settings_at(&proxy.url())).await;
    let objects = twenty_objects().await;
    let request = mount_request(&[("region", REGION), ("objects", &objects)], Path::new("/t"));
    // Connect first, then mount all at once, as pods starting on a booting node do.
    let mut clients = Vec::new();
    for _ in 0..128 {
        clients.push(provider.client().await);
    }
    let before = proxy.requests();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(128));
    let mut tasks = Vec::new();
    for mut client in clients {
        let (request, start) = (request.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            client.mount(request).await
        }));
    }
    for task in tasks {
        let response = task.await.unwrap().unwrap().into_inner();
        assert_eq!(response.files.len(), 20);
    }
    let calls = proxy.requests() - before;
    eprintln!("128 identical mounts of 20 objects: {calls} AWS calls (ASCP: {})", 128 * 22);
    assert!(calls <= 36, "128 x 20 objects cost {calls} AWS calls; identical fetches must be shared");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cache_every_mount_sees_aws_as_it_is_now() {
    let proxy = LatencyProxy::start(moto_url(), Duration::ZERO).await;
    let provider = Provider::start(settings_at(&proxy.url())).await;
    let name = unique("rotating");
    let (_, v1) = create_secret(REGION, &name, "one").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    let request = mount_request(&[("region", REGION), ("objects", &objects)], Path::new("/t"));
    let mut client = provider.client().await;

    let first = client.mount(request.clone()).await.unwrap().into_inner();
    let again = client.mount(request.clone()).await.unwrap().into_inner();
    assert_eq!(versions(&first), vec![("s".into(), v1.clone())]);
    assert_eq!(versions(&again), versions(&first), "versions are stable while nothing changes");

    let v2 = secrets_manager(REGION)
        .await
        .put_secret_value()
        .secret_id(&name)
        .secret_string("two")
        .send()
        .await
        .unwrap();
    let v2 = v2.version_id.unwrap();
    // Driver 1.6 sends no current versions; drivers <= 1.5 send the mounted ones. Both see v2.
    let old_driver = MountRequest {
        current_object_version: vec![ObjectVersion { id: "s".into(), version: v1.clone() }],
        ..request.clone()
    };
    for req in [request.clone(), old_driver] {
        let rotated = client.mount(req).await.unwrap().into_inner();
        assert_eq!(files(&rotated)[0].2, "two");
        assert_eq!(versions(&rotated), vec![("s".into(), v2.clone())]);
    }
    assert_eq!(proxy.requests_containing("GetSecretValue").len(), 4, "every mount fetched");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opt_in_cache_serves_the_same_identity_only() {
    let proxy = LatencyProxy::start(moto_url(), Duration::ZERO).await;
    let provider = Provider::start(Settings {
        cache: CacheSettings::with_ttl(Duration::from_secs(60)),
        ..settings_at(&proxy.url())
    })
    .await;
    provider.kube.as_ref().unwrap().service_account(
        "shop",
        "batch",
        Some("arn:aws:iam::123456789012:role/batch"),
    );
    let name = unique("cached");
    create_secret(REGION, &name, "one").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    let request = mount_request(&[("region", REGION), ("objects", &objects)], Path::new("/t"));
    let mut client = provider.client().await;
    for _ in 0..5 {
        client.mount(request.clone()).await.unwrap();
    }
    assert_eq!(
        proxy.requests_containing("GetSecretValue").len(),
        1,
        "rotation polls are served from the cache"
    );

    // Another service account never gets the cached value: it fetches with its own identity.
    let mut attributes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&request.attributes).unwrap();
    attributes.insert("csi.storage.k8s.io/serviceAccount.name".into(), "batch".into());
    let other =
        MountRequest { attributes: serde_json::Value::Object(attributes).to_string(), ..request.clone() };
    client.mount(other).await.unwrap();
    assert_eq!(proxy.requests_containing("GetSecretValue").len(), 2);
    assert_eq!(provider.sharing.cached.load(std::sync::atomic::Ordering::SeqCst), 4);
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_aws_fails_mounts_in_bounded_time_and_the_provider_keeps_serving() {
    let proxy = LatencyProxy::start(moto_url(), Duration::from_millis(1500)).await;
    let base = settings_at(&proxy.url());
    let mount = MountSettings { timeout: Duration::from_secs(1), ..base.mount.clone() };
    let provider = Provider::start(Settings { mount, ..base }).await;
    let name = unique("slow");
    create_secret(REGION, &name, "v").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager}}");
    let request = mount_request(&[("region", REGION), ("objects", &objects)], Path::new("/t"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut client = provider.client().await;
        let request = request.clone();
        tasks.push(tokio::spawn(async move { client.mount(request).await }));
    }
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
        assert!(err.message().contains("--mount-timeout"), "{}", err.message());
    }
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let version = provider.client().await.version(csi_provider_aws::proto::VersionRequest::default()).await;
    assert!(version.is_ok(), "the provider still serves");
    provider.stop().await;
}
