//! Replicas of one service account share one IRSA identity — but only with tokens the
//! provider verified itself. Tokens are kubelet-like (RS256, per-pod `jti`, pod name and
//! uid), signed by a key the stand-in API server publishes through issuer discovery; STS
//! is moto's, behind a counting proxy.

use std::path::Path;
use std::time::Duration;

use crate::support::tokens::{SigningKey, pod_claims, pod_tokens, tokens_of};
use crate::support::*;
use csi_provider_aws::proto::MountRequest;

const REGION: &str = "us-east-1";
const STS_CALL: &str = "Action=AssumeRoleWithWebIdentity";

/// A mount by pod `pod` of `namespace`/`service_account` presenting `tokens`.
fn mount_as(objects: &str, namespace: &str, service_account: &str, pod: &str, tokens: &str) -> MountRequest {
    let mut request = mount_request(&[("region", REGION), ("objects", objects)], Path::new("/t"));
    let mut attributes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&request.attributes).unwrap();
    for (key, value) in [
        ("csi.storage.k8s.io/pod.namespace", namespace),
        ("csi.storage.k8s.io/serviceAccount.name", service_account),
        ("csi.storage.k8s.io/pod.name", pod),
        ("csi.storage.k8s.io/serviceAccount.tokens", tokens),
    ] {
        attributes.insert(key.into(), value.into());
    }
    request.attributes = serde_json::Value::Object(attributes).to_string();
    request
}

async fn secret() -> String {
    let name = unique("replica");
    create_secret(REGION, &name, "value").await;
    format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}")
}

/// The value of one sample of the metrics text, 0 when absent.
fn sample(metrics: &str, line_start: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The access key ids that signed the requests seen so far that contain `needle` (SigV4's
/// `Credential=AKID/...`), in order: which identity a fetch was made with.
fn signers(proxy: &LatencyProxy, needle: &str) -> Vec<String> {
    let key = |head: &String| {
        let scope = head.split("Credential=").nth(1)?;
        scope.split('/').next().map(str::to_owned)
    };
    proxy.requests_containing(needle).iter().filter_map(key).collect()
}

/// A provider behind a counting proxy, against a stand-in API server that `cluster` set up
/// before the provider started (it reads the issuer keys at start-up).
async fn provider_with_proxy(options: Settings, cluster: impl FnOnce(&FakeKube)) -> (Provider, LatencyProxy) {
    let proxy = LatencyProxy::start(moto_url(), Duration::ZERO).await;
    let kube = FakeKube::start().await;
    cluster(&kube);
    let aws = AwsSettings { endpoint_url: Some(proxy.url()), ..options.aws.clone() };
    let provider = Provider::start_with(Settings { aws, ..options }, Some(kube)).await;
    (provider, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_verified_replicas_make_one_sts_call_and_share_cached_values() {
    let key = SigningKey::generate("key-1");
    let (provider, proxy) = provider_with_proxy(
        Settings { cache: CacheSettings::with_ttl(Duration::from_secs(60)), ..settings() },
        |kube| kube.issuer(&[&key]),
    )
    .await;
    let objects = secret().await;
    let mut client = provider.client().await;
    for i in 0..10 {
        let pod = format!("web-{i}");
        let request = mount_as(&objects, "shop", "web", &pod, &pod_tokens(&key, "shop", "web", &pod));
        let response = client.mount(request).await.unwrap().into_inner();
        assert_eq!(response.files[0].contents, b"value");
    }
    assert_eq!(proxy.requests_containing(STS_CALL).len(), 1, "one STS call for 10 replicas");
    assert_eq!(proxy.requests_containing("GetSecretValue").len(), 1, "and one fetch with the cache on");
    let metrics = provider.metrics.encode();
    assert_eq!(sample(&metrics, r#"csi_provider_aws_credentials_total{method="irsa",source="fetched"}"#), 1);
    assert_eq!(sample(&metrics, r#"csi_provider_aws_credentials_total{method="irsa",source="shared"}"#), 9);
    assert_eq!(sample(&metrics, r#"csi_provider_aws_token_verifications_total{outcome="verified"}"#), 10);
    assert_eq!(sample(&metrics, r#"csi_provider_aws_object_fetches_total{source="cache"}"#), 9);
    let kube = &provider.kube.as_ref().unwrap().http;
    assert_eq!(kube.count("/openid/v1/jwks"), 1, "the issuer keys are read once");
    assert_eq!(kube.count("/.well-known/openid-configuration"), 1);
    // Another secret: fetched once more, and with the same identity as the first.
    let name = unique("replica-nocache");
    create_secret(REGION, &name, "v").await;
    let uncached = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    for i in 0..3 {
        let pod = format!("web-{i}");
        let request = mount_as(&uncached, "shop", "web", &pod, &pod_tokens(&key, "shop", "web", &pod));
        client.mount(request).await.unwrap();
    }
    let keys = signers(&proxy, "GetSecretValue");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter().all(|k| *k == keys[0] && k.starts_with("ASIA")),
        "one STS identity signed them all: {keys:?}"
    );
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_do_not_verify_are_exchanged_alone() {
    let key = SigningKey::generate("key-1");
    let forger = SigningKey::generate("key-1");
    let unpublished = SigningKey::generate("key-unpublished");
    let (provider, proxy) = provider_with_proxy(settings(), |kube| kube.issuer(&[&key])).await;
    let kube = provider.kube.as_ref().unwrap();
    kube.service_account("shop", "batch", Some("arn:aws:iam::123456789012:role/batch"));
    kube.service_account("other", "web", Some(WEB_ROLE));
    let objects = secret().await;
    let mut client = provider.client().await;
    let sts = || proxy.requests_containing(STS_CALL).len();

    // The class exists: a verified replica made its credentials.
    let good = pod_tokens(&key, "shop", "web", "web-0");
    client.mount(mount_as(&objects, "shop", "web", "web-0", &good)).await.unwrap();
    assert_eq!(sts(), 1);
    let class_key = signers(&proxy, "GetSecretValue").pop().expect("the class's fetch");
    let last_signer = || signers(&proxy, "GetSecretValue").pop().unwrap();

    let claims = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut claims = pod_claims("sts.amazonaws.com", "shop", "web", "web-x");
        f(&mut claims);
        claims
    };
    let eks = key.sign(&pod_claims("pods.eks.amazonaws.com", "shop", "web", "web-x"));
    let cases: Vec<(&str, String, &str)> = vec![
        ("forged signature", forger.sign(&claims(&|_| {})), "bad_signature"),
        (
            "another service account's token",
            key.sign(&pod_claims("sts.amazonaws.com", "shop", "batch", "batch-0")),
            "wrong_subject",
        ),
        (
            "the same account name in another namespace",
            key.sign(&pod_claims("sts.amazonaws.com", "other", "web", "web-0")),
            "wrong_subject",
        ),
        ("expired", key.sign(&claims(&|c| c["exp"] = (tokens::now() - 3600).into())), "expired"),
        ("not yet valid", key.sign(&claims(&|c| c["nbf"] = (tokens::now() + 3600).into())), "not_yet_valid"),
        (
            "another issuer",
            key.sign(&claims(&|c| c["iss"] = "https://kubernetes.default.svc".into())),
            "wrong_issuer",
        ),
        ("wrong audience", key.sign(&claims(&|c| c["aud"] = serde_json::json!(["vault"]))), "wrong_audience"),
        ("unknown key", unpublished.sign(&claims(&|_| {})), "unknown_key"),
        ("not a JWT", "sts-token-opaque".to_owned(), "malformed"),
    ];
    for (what, token, outcome) in &cases {
        let before = sts();
        let request = mount_as(&objects, "shop", "web", "web-x", &tokens_of(token, &eks));
        // moto's STS takes any token, so the mount succeeds, but with credentials of its own.
        client.mount(request.clone()).await.unwrap_or_else(|e| panic!("{what}: {}", e.message()));
        assert_eq!(sts(), before + 1, "{what}: exchanged with STS on its own");
        assert_ne!(last_signer(), class_key, "{what}: fetched with the class's shared credentials");
        client.mount(request).await.unwrap();
        assert_eq!(sts(), before + 1, "{what}: its credentials are reused for the same token only");
        let metrics = provider.metrics.encode();
        let line = format!(r#"csi_provider_aws_token_verifications_total{{outcome="{outcome}"}}"#);
        assert!(sample(&metrics, &line) >= 2, "{what}: {line} missing in\n{metrics}");
    }
    // A verified token of the other namespace's account gets that class's own credentials.
    let other = pod_tokens(&key, "other", "web", "web-0");
    let before = sts();
    client.mount(mount_as(&objects, "other", "web", "web-0", &other)).await.unwrap();
    assert_eq!(sts(), before + 1, "other/web is another identity class");
    assert_ne!(last_signer(), class_key, "other/web fetched with shop/web's credentials");
    // And the verified class still shares.
    let again = pod_tokens(&key, "shop", "web", "web-9");
    let before = sts();
    client.mount(mount_as(&objects, "shop", "web", "web-9", &again)).await.unwrap();
    assert_eq!(sts(), before, "shop/web's class is shared by its verified replicas");
    assert_eq!(last_signer(), class_key, "a verified replica fetches with its class's credentials");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_picked_up() {
    let old = SigningKey::generate("key-old");
    let new = SigningKey::generate("key-new");
    let (provider, proxy) = provider_with_proxy(settings(), |kube| kube.issuer(&[&old])).await;
    let kube = provider.kube.as_ref().unwrap();
    let objects = secret().await;
    let mut client = provider.client().await;
    client
        .mount(mount_as(&objects, "shop", "web", "web-0", &pod_tokens(&old, "shop", "web", "web-0")))
        .await
        .unwrap();
    // The API server starts signing with a new key (and publishes both).
    kube.issuer(&[&old, &new]);
    // Unknown keys are re-read at most every few seconds.
    tokio::time::sleep(Duration::from_secs(6)).await;
    client
        .mount(mount_as(&objects, "shop", "web", "web-1", &pod_tokens(&new, "shop", "web", "web-1")))
        .await
        .unwrap();
    assert_eq!(proxy.requests_containing(STS_CALL).len(), 1, "the new key's token verified and shared");
    assert_eq!(kube.http.count("/openid/v1/jwks"), 2, "the keys were read again for the unknown kid");
    let metrics = provider.metrics.encode();
    assert_eq!(sample(&metrics, r#"csi_provider_aws_token_verifications_total{outcome="verified"}"#), 2);
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_discovery_or_with_sharing_off_every_pod_is_exchanged_alone() {
    let key = SigningKey::generate("key-1");
    let objects = secret().await;
    // No discovery routes (404), discovery forbidden (403), and sharing turned off.
    for case in ["missing", "forbidden", "off"] {
        let mut options = settings();
        if let IdentityMode::Pods { share_irsa, .. } = &mut options.identity {
            *share_irsa = case != "off";
        }
        let (provider, proxy) = provider_with_proxy(options, |kube| match case {
            "forbidden" => {
                let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"forbidden: User \"system:serviceaccount:kube-system:csi-provider-aws\" cannot get path \"/openid/v1/jwks\""}"#;
                kube.http.route("/.well-known/openid-configuration", 403, status);
                kube.http.route("/openid/v1/jwks", 403, status);
            }
            "off" => kube.issuer(&[&key]),
            _ => {}
        })
        .await;
        let kube = provider.kube.as_ref().unwrap();
        let mut client = provider.client().await;
        for i in 0..5 {
            let pod = format!("web-{i}");
            client
                .mount(mount_as(&objects, "shop", "web", &pod, &pod_tokens(&key, "shop", "web", &pod)))
                .await
                .unwrap();
        }
        assert_eq!(proxy.requests_containing(STS_CALL).len(), 5, "{case}: one STS call per pod token");
        if case != "off" {
            // Read at start-up, again by the first mount (the API server may not have been
            // reachable at start-up), then not again for the backoff.
            assert!(
                kube.http.count("/.well-known/openid-configuration") <= 2,
                "{case}: discovery is not retried per mount"
            );
        } else {
            assert_eq!(kube.http.count("/.well-known/openid-configuration"), 0, "sharing off reads no keys");
        }
        provider.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_identity_stays_per_pod_and_role_chains_follow_the_class() {
    let key = SigningKey::generate("key-1");
    let agent = FakeHttp::start("127.0.0.1:0").await;
    agent.route(
        "/v1/credentials",
        200,
        r#"{"AccessKeyId":"AKIAPODIDENTITY00001","SecretAccessKey":"pod-secret","Token":"pod-session","AccountId":"123456789012","Expiration":"2099-01-01T00:00:00Z"}"#,
    );
    let options = Settings {
        identity: pod_identities(&format!("{}/v1/credentials", agent.url()), "http://[::1]:9/v1/credentials"),
        ..settings()
    };
    let (provider, proxy) = provider_with_proxy(options, |kube| kube.issuer(&[&key])).await;
    let objects = secret().await;
    let mut client = provider.client().await;
    let role = "arn:aws:iam::123456789012:role/reader";
    for i in 0..5 {
        let pod = format!("web-{i}");
        let tokens = pod_tokens(&key, "shop", "web", &pod);
        let mut request = mount_as(&objects, "shop", "web", &pod, &tokens);
        let mut attributes: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&request.attributes).unwrap();
        attributes.insert("usePodIdentity".into(), "true".into());
        request.attributes = serde_json::Value::Object(attributes.clone()).to_string();
        client.mount(request.clone()).await.unwrap();
        // The same pod again: its own cached credentials.
        client.mount(request).await.unwrap();
        // IRSA plus role chaining for the same pod.
        attributes.remove("usePodIdentity");
        attributes.insert("assumeRoleArn".into(), role.into());
        let chained = MountRequest {
            attributes: serde_json::Value::Object(attributes).to_string(),
            ..mount_as(&objects, "shop", "web", &pod, &tokens)
        };
        client.mount(chained).await.unwrap();
    }
    assert_eq!(agent.requests().len(), 5, "one Pod Identity agent call per pod token");
    assert_eq!(proxy.requests_containing(STS_CALL).len(), 1, "the IRSA base is shared by the class");
    assert_eq!(proxy.requests_containing("Action=AssumeRole&").len(), 1, "and so is the chained role");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_discovery_does_not_spend_the_kubernetes_rate_limit() {
    // One request a second, no burst: the service-account lookup takes the only token. Were
    // the two discovery reads rate limited too, the mount would wait about two seconds.
    let key = SigningKey::generate("key-1");
    // Discovery is published only after the provider started: the mount reads it.
    let (provider, proxy) =
        provider_with_proxy(Settings { kube_qps: 1, kube_burst: 1, ..settings() }, |_| {}).await;
    provider.kube.as_ref().unwrap().issuer(&[&key]);
    let objects = secret().await;
    let started = std::time::Instant::now();
    let tokens = pod_tokens(&key, "shop", "web", "web-0");
    provider.client().await.mount(mount_as(&objects, "shop", "web", "web-0", &tokens)).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "the mount waited {took:?} for the rate limit");
    let metrics = provider.metrics.encode();
    assert_eq!(sample(&metrics, r#"csi_provider_aws_token_verifications_total{outcome="verified"}"#), 1);
    assert_eq!(proxy.requests_containing(STS_CALL).len(), 1);
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_keys_are_read_at_start_up_not_by_the_first_mount() {
    let key = SigningKey::generate("key-1");
    let (provider, proxy) = provider_with_proxy(settings(), |kube| kube.issuer(&[&key])).await;
    let kube = provider.kube.as_ref().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while kube.http.count("/openid/v1/jwks") == 0 {
        assert!(std::time::Instant::now() < deadline, "no mount yet, and the keys were never read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(kube.http.count("/.well-known/openid-configuration"), 1);
    let objects = secret().await;
    let tokens = pod_tokens(&key, "shop", "web", "web-0");
    provider.client().await.mount(mount_as(&objects, "shop", "web", "web-0", &tokens)).await.unwrap();
    assert_eq!(kube.http.count("/openid/v1/jwks"), 1, "the first mount used the keys read at start-up");
    let metrics = provider.metrics.encode();
    assert_eq!(sample(&metrics, r#"csi_provider_aws_token_verifications_total{outcome="verified"}"#), 1);
    assert_eq!(proxy.requests_containing(STS_CALL).len(), 1);
    provider.stop().await;
}
