//! Each pod's own AWS identity, end to end: IRSA against moto's STS with a stand-in
//! Kubernetes API, EKS Pod Identity against a stand-in agent (IPv4 and IPv6 loopback),
//! region discovery, and the credential cache's boundaries.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use csi_provider_aws::proto::MountRequest;
use tonic::Code;

const REGION: &str = "us-east-1";

fn request(objects: &str, extra: &[(&str, &str)]) -> MountRequest {
    let mut params = vec![("region", REGION), ("objects", objects)];
    params.extend_from_slice(extra);
    mount_request(&params, Path::new("/t"))
}

/// Replaces one attribute of a request.
fn with_attribute(mut request: MountRequest, key: &str, value: Option<&str>) -> MountRequest {
    let mut attributes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&request.attributes).unwrap();
    match value {
        Some(v) => attributes.insert(key.into(), v.into()),
        None => attributes.remove(key),
    };
    request.attributes = serde_json::Value::Object(attributes).to_string();
    request
}

async fn secret() -> (String, String) {
    let name = unique("id");
    create_secret(REGION, &name, "value").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    (name, objects)
}

const STS_CALL: &str = "Action=AssumeRoleWithWebIdentity";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irsa_assumes_the_annotated_role_once_per_token() {
    let proxy = LatencyProxy::start(moto_url(), Duration::ZERO).await;
    let provider = Provider::start(settings_at(&proxy.url())).await;
    let (_, objects) = secret().await;
    let mut client = provider.client().await;
    for _ in 0..5 {
        let response = client.mount(request(&objects, &[])).await.unwrap().into_inner();
        assert_eq!(response.files[0].contents, b"value");
    }
    let sts = proxy.requests_containing(STS_CALL);
    assert_eq!(sts.len(), 1, "repeated mounts by one pod make one STS call");
    assert!(sts[0].contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fweb"), "{}", sts[0]);
    assert!(sts[0].contains("WebIdentityToken=sts-token-web-0"), "the pod's sts.amazonaws.com token is used");
    assert!(
        !sts[0].to_ascii_lowercase().contains("authorization:"),
        "the STS call is not signed with the provider's credentials"
    );
    assert!(sts[0].contains("RoleSessionName=csi-provider-aws%40shop.web"), "{}", sts[0]);
    // Secrets Manager calls are signed with the role's temporary credentials, not the provider's.
    let fetches = proxy.requests_containing("secretsmanager.GetSecretValue");
    assert!(!fetches.is_empty());
    assert!(
        fetches.iter().all(|r| r.contains("Credential=ASIA")),
        "calls must use the role's STS credentials"
    );
    assert_eq!(provider.kube.as_ref().unwrap().http.count("/api/v1/namespaces/shop/serviceaccounts/web"), 1);
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_never_shared_across_tokens_service_accounts_or_methods() {
    let proxy = LatencyProxy::start(moto_url(), Duration::ZERO).await;
    let provider = Provider::start(settings_at(&proxy.url())).await;
    let kube = provider.kube.as_ref().unwrap();
    kube.service_account("shop", "batch", Some("arn:aws:iam::123456789012:role/batch"));
    kube.service_account("other", "web", Some(WEB_ROLE));
    let (_, objects) = secret().await;
    let mut client = provider.client().await;
    let base = request(&objects, &[]);
    let cases = [
        base.clone(),
        // Another pod of the same service account: its own token.
        with_attribute(base.clone(), "csi.storage.k8s.io/serviceAccount.tokens", Some(&tokens_json("web-1"))),
        // Another service account in the namespace.
        with_attribute(base.clone(), "csi.storage.k8s.io/serviceAccount.name", Some("batch")),
        // The same service account name in another namespace.
        with_attribute(base.clone(), "csi.storage.k8s.io/pod.namespace", Some("other")),
    ];
    for case in &cases {
        client.mount(case.clone()).await.unwrap();
    }
    let sts = proxy.requests_containing(STS_CALL);
    assert_eq!(sts.len(), 4, "each identity gets its own STS call");
    assert_eq!(sts.iter().filter(|r| r.contains("role%2Fbatch")).count(), 1);
    for case in &cases {
        client.mount(case.clone()).await.unwrap();
    }
    assert_eq!(proxy.requests_containing(STS_CALL).len(), 4, "and each is then reused");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_misconfigurations_say_what_to_fix() {
    let provider = Provider::start(settings()).await;
    provider.kube.as_ref().unwrap().service_account("shop", "plain", None);
    let (_, objects) = secret().await;
    let mut client = provider.client().await;
    let base = request(&objects, &[]);
    let tokens = "csi.storage.k8s.io/serviceAccount.tokens";
    let cases = [
        (with_attribute(base.clone(), tokens, None), Code::InvalidArgument, "configure tokenRequests"),
        (with_attribute(base.clone(), tokens, Some("")), Code::InvalidArgument, "configure tokenRequests"),
        (
            with_attribute(base.clone(), tokens, Some(r#"{"pods.eks.amazonaws.com":{"token":"x"}}"#)),
            Code::InvalidArgument,
            "no service account token for audience \"sts.amazonaws.com\"",
        ),
        (
            with_attribute(base.clone(), "csi.storage.k8s.io/serviceAccount.name", Some("plain")),
            Code::PermissionDenied,
            "service account shop/plain has no eks.amazonaws.com/role-arn annotation",
        ),
        (
            with_attribute(base.clone(), "csi.storage.k8s.io/serviceAccount.name", Some("ghost")),
            Code::NotFound,
            "service account shop/ghost was not found",
        ),
    ];
    for (req, code, want) in cases {
        let err = client.mount(req).await.unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
        assert!(err.message().contains(want), "{} should contain {want:?}", err.message());
        assert!(!err.message().contains("sts-token-web-0"), "a token leaked into an error");
    }
    // Tokens may arrive in MountRequest.secrets instead (Kubernetes >= 1.35).
    let mut moved = with_attribute(base.clone(), tokens, None);
    moved.secrets = serde_json::json!({ tokens: tokens_json("web-0") }).to_string();
    client.mount(moved).await.unwrap();
    provider.stop().await;
}

/// A stand-in Pod Identity agent answering with credentials moto accepts.
async fn agent(bind: &str) -> FakeHttp {
    let agent = FakeHttp::start(bind).await;
    agent.route(
        "/v1/credentials",
        200,
        r#"{"AccessKeyId":"AKIAPODIDENTITY00001","SecretAccessKey":"pod-secret","Token":"pod-session","AccountId":"123456789012","Expiration":"2099-01-01T00:00:00Z"}"#,
    );
    agent
}

fn dead_endpoint(host: &str) -> String {
    format!("http://{host}:{}/v1/credentials", free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_identity_sends_the_pods_token_over_the_preferred_address_family() {
    let v4 = agent("127.0.0.1:0").await;
    let v6 = agent("[::1]:0").await;
    let proxy = LatencyProxy::start(moto_url(), Duration::ZERO).await;
    let identity =
        pod_identities(&format!("{}/v1/credentials", v4.url()), &format!("{}/v1/credentials", v6.url()));
    let provider = Provider::start(Settings { identity, ..settings_at(&proxy.url()) }).await;
    let (_, objects) = secret().await;
    let mut client = provider.client().await;
    for (preference, token) in [("auto", "a"), ("ipv4", "b"), ("ipv6", "c")] {
        let req = request(&objects, &[("usePodIdentity", "true"), ("preferredAddressType", preference)]);
        let req = with_attribute(req, "csi.storage.k8s.io/serviceAccount.tokens", Some(&tokens_json(token)));
        let response = client.mount(req).await.unwrap().into_inner();
        assert_eq!(response.files[0].contents, b"value");
    }
    let v4_calls = v4.requests();
    let v6_calls = v6.requests();
    assert_eq!(v4_calls.len(), 2, "auto and ipv4 use the IPv4 agent");
    assert_eq!(v6_calls.len(), 1, "ipv6 uses the IPv6 agent");
    assert_eq!(
        v4_calls[0].header("authorization"),
        Some("pod-token-a"),
        "the raw pods.eks.amazonaws.com token"
    );
    assert_eq!(v6_calls[0].header("authorization"), Some("pod-token-c"));
    assert!(proxy.requests_containing(STS_CALL).is_empty(), "Pod Identity makes no STS call");
    assert!(
        proxy
            .requests_containing("secretsmanager.GetSecretValue")
            .iter()
            .all(|r| r.contains("Credential=AKIAPODIDENTITY00001/"))
    );
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_identity_auto_falls_back_to_ipv6_and_failures_are_clear_and_bounded() {
    let v6 = agent("[::1]:0").await;
    let identity = IdentityMode::Pods {
        agent_ipv4: dead_endpoint("127.0.0.1"),
        agent_ipv6: format!("{}/v1/credentials", v6.url()),
        agent_timeout: Duration::from_millis(200),
        share_irsa: true,
    };
    let provider = Provider::start(Settings { identity, ..settings() }).await;
    let (_, objects) = secret().await;
    let mut client = provider.client().await;
    let req = request(&objects, &[("usePodIdentity", "true")]);
    client.mount(req).await.unwrap();
    assert_eq!(v6.requests().len(), 1);

    // IPv4 only, and the agent is down: Unavailable, quickly, naming the agent.
    let req = request(&objects, &[("usePodIdentity", "1"), ("preferredAddressType", "ipv4")]);
    let req = with_attribute(req, "csi.storage.k8s.io/serviceAccount.tokens", Some(&tokens_json("down")));
    let started = Instant::now();
    let err = client.mount(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("Pod Identity agent did not answer"), "{}", err.message());
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    // The agent refuses the token: PermissionDenied with its reason.
    v6.route("/v1/credentials", 400, r#"{"message":"no pod identity association for shop/web"}"#);
    let req = request(&objects, &[("usePodIdentity", "true"), ("preferredAddressType", "ipv6")]);
    let req = with_attribute(req, "csi.storage.k8s.io/serviceAccount.tokens", Some(&tokens_json("refused")));
    let err = client.mount(req).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("no pod identity association"), "{}", err.message());
    // Without the pods.eks.amazonaws.com audience.
    let req = request(&objects, &[("usePodIdentity", "true")]);
    let req = with_attribute(
        req,
        "csi.storage.k8s.io/serviceAccount.tokens",
        Some(r#"{"sts.amazonaws.com":{"token":"x"}}"#),
    );
    let err = client.mount(req).await.unwrap_err();
    assert!(err.message().contains("\"pods.eks.amazonaws.com\""), "{}", err.message());
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_comes_from_the_class_then_the_environment_then_the_node() {
    let name = unique("where");
    for region in ["eu-west-1", "ap-south-1", REGION] {
        create_secret(region, &name, region).await;
    }
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    let t = Path::new("/t");

    let provider = Provider::start(Settings {
        mount: MountSettings { default_region: Some("eu-west-1".into()), ..settings().mount },
        ..settings()
    })
    .await;
    provider.kube.as_ref().unwrap().node("node-1", Some("ap-south-1"));
    let mut client = provider.client().await;
    let from =
        |r: csi_provider_aws::proto::MountResponse| String::from_utf8(r.files[0].contents.clone()).unwrap();
    let r = client.mount(mount_request(&[("objects", &objects), ("region", REGION)], t)).await.unwrap();
    assert_eq!(from(r.into_inner()), REGION, "the class's region wins");
    let r = client.mount(mount_request(&[("objects", &objects)], t)).await.unwrap();
    assert_eq!(from(r.into_inner()), "eu-west-1", "then the provider's AWS_REGION");
    provider.stop().await;

    let provider = Provider::start(settings()).await;
    let kube = provider.kube.as_ref().unwrap();
    kube.node("node-1", Some("ap-south-1"));
    let mut client = provider.client().await;
    for _ in 0..3 {
        let r = client.mount(mount_request(&[("objects", &objects)], t)).await.unwrap();
        assert_eq!(from(r.into_inner()), "ap-south-1", "then the node's topology.kubernetes.io/region");
    }
    assert_eq!(kube.http.count("/api/v1/nodes/node-1"), 1, "node lookups are cached");
    assert_eq!(kube.http.count("/api/v1/namespaces/shop/pods/web-0"), 1, "pod lookups are cached");
    provider.stop().await;

    let provider = Provider::start(settings()).await;
    let err = provider.client().await.mount(mount_request(&[("objects", &objects)], t)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("no AWS region") && err.message().contains("shop/web-0"),
        "{}",
        err.message()
    );
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_api_that_is_down_gives_unavailable_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: x, cluster: {{server: 'http://127.0.0.1:{}'}}}}]\n\
             users: [{{name: x, user: {{token: t}}}}]\ncontexts: [{{name: x, context: {{cluster: x, user: x}}}}]\ncurrent-context: x\n",
            free_port()
        ),
    )
    .unwrap();
    let provider = Provider::start(Settings { kube: KubeSource::Kubeconfig(kubeconfig), ..settings() }).await;
    let (_, objects) = secret().await;
    let started = Instant::now();
    let err = provider.client().await.mount(request(&objects, &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("service account shop/web"), "{}", err.message());
    assert!(started.elapsed() < Duration::from_secs(15));
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_kubernetes_answer_is_refused_not_buffered() {
    let provider = Provider::start(settings()).await;
    // A 4 MiB "service account": far more than any real one; the answer is cut at 1 MiB.
    let padding = "x".repeat(4 * 1024 * 1024);
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "web", "namespace": "shop", "annotations": {"eks.amazonaws.com/role-arn": WEB_ROLE, "padding": padding}},
    });
    provider.kube.as_ref().unwrap().http.route(
        "/api/v1/namespaces/shop/serviceaccounts/web",
        200,
        &body.to_string(),
    );
    let (_, objects) = secret().await;
    let err = provider.client().await.mount(request(&objects, &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("larger than 1048576 bytes"), "{}", err.message());
    assert!(err.message().contains("service account shop/web"), "{}", err.message());
    assert!(!err.message().contains("xxxxxxxx"), "the answer is not echoed");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_credentials_sign_the_next_mounts_calls() {
    // STS credentials that expire in 3 s (short-lived ones are used for half their life),
    // then new ones: the next mount's calls must be signed with the new ones, whatever the
    // provider reuses between mounts (SDK clients).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let at = |secs: i64| {
        aws_smithy_types::DateTime::from_secs(now + secs)
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .unwrap()
    };
    let fake = FakeAws::start().await;
    fake.set(
        "AssumeRoleWithWebIdentity",
        "*",
        (200, "text/xml", sts_answer("ASIAFIRSTKEY00000001", "s1", &at(3))),
    );
    let proxy = LatencyProxy::start(&fake.url(), Duration::ZERO).await;
    let provider = Provider::start(settings_at(&proxy.url())).await;
    let objects = "- {objectName: db, objectType: secretsmanager}";
    let mut client = provider.client().await;
    client.mount(request(objects, &[])).await.unwrap();
    fake.clear();
    fake.set(
        "AssumeRoleWithWebIdentity",
        "*",
        (200, "text/xml", sts_answer("ASIASECONDKEY0000002", "s2", &at(3600))),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client.mount(request(objects, &[])).await.unwrap();
    assert_eq!(proxy.requests_containing(STS_CALL).len(), 2, "the credentials were refreshed");
    let fetches = proxy.requests_containing("secretsmanager.GetSecretValue");
    assert_eq!(fetches.len(), 2);
    assert!(fetches[0].contains("Credential=ASIAFIRSTKEY00000001/"), "{}", fetches[0]);
    assert!(
        fetches[1].contains("Credential=ASIASECONDKEY0000002/"),
        "the refreshed credentials sign: {}",
        fetches[1]
    );
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_shares_one_connection_pool() {
    // Pods whose tokens cannot be shared each get their own STS exchange and SDK clients; all
    // of them must still use the provider's one HTTP client, so calls made one after another
    // reuse keep-alive connections (against AWS a new one is a TLS handshake). With an
    // HTTP client per SDK client, every exchange and every new pod opened its own.
    let fake = FakeAws::start().await;
    let proxy = LatencyProxy::start(&fake.url(), Duration::ZERO).await;
    let provider = Provider::start(settings_at(&proxy.url())).await;
    let objects =
        "- {objectName: db, objectType: secretsmanager}\n- {objectName: /app/flag, objectType: ssmparameter}";
    let mut client = provider.client().await;
    for pod in ["web-0", "web-1", "web-2"] {
        let request = with_attribute(request(objects, &[]), "csi.storage.k8s.io/pod.name", Some(pod));
        let tokens = tokens_json(pod);
        let request = with_attribute(request, "csi.storage.k8s.io/serviceAccount.tokens", Some(&tokens));
        client.mount(request).await.unwrap();
    }
    assert_eq!(proxy.requests_containing(STS_CALL).len(), 3, "each pod's token is exchanged on its own");
    assert_eq!(proxy.requests(), 9);
    // The first mount's two fetches run at once (two connections); every later call reuses
    // them (an HTTP client per SDK client: 9).
    assert_eq!(proxy.connections(), 2, "the calls of 3 identities share one connection pool");
    provider.stop().await;
}

/// A pod of shop/web presenting `sts` (and a Pod Identity token of its own).
fn signed_request(objects: &str, pod: &str, sts: &str) -> MountRequest {
    use csi_provider_aws::request::{DriverRequest, Pod};
    use csi_provider_aws::secret::SecretString;
    let pod = Pod {
        name: pod.into(),
        tokens: Some(SecretString::new(tokens::tokens_of(sts, "eks-token"))),
        ..web_pod()
    };
    DriverRequest::new("web-secrets", [("region", "us-east-1"), ("objects", objects)], pod).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_refusals_and_denials_reach_the_pod_and_each_fetch_is_signed_by_its_own_identity() {
    let key = tokens::SigningKey::generate("cluster");
    let forger = tokens::SigningKey::generate("cluster");
    let aws = FakeAws::start().await;
    aws.trust(&[&key]);
    let kube = FakeKube::start().await;
    kube.issuer(&[&key]);
    let provider = Provider::start_with(settings_at(&aws.url()), Some(kube)).await;
    let mut client = provider.client().await;
    let objects = "- {objectName: db, objectType: secretsmanager}";

    // A valid token: the fetch is signed with the credentials STS gave for that very token.
    let token = key.sign(&tokens::pod_claims("sts.amazonaws.com", "shop", "web", "web-0"));
    client.mount(signed_request(objects, "web-0", &token)).await.unwrap();
    assert_eq!(aws.signers("GetSecretValue"), [FakeAws::access_key_for(&token)]);

    // A forged token (the same kid, another key) does not verify, goes to STS alone, and STS
    // refuses it: no fetch at all, and the pod is told why.
    let forged = forger.sign(&tokens::pod_claims("sts.amazonaws.com", "shop", "web", "web-1"));
    let status = client.mount(signed_request(objects, "web-1", &forged)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{}", status.message());
    assert!(status.message().contains("InvalidIdentityToken"), "{}", status.message());
    assert_eq!(aws.signers("GetSecretValue").len(), 1, "the forged token's pod fetched nothing");

    // An expired one: STS's ExpiredTokenException.
    let mut claims = tokens::pod_claims("sts.amazonaws.com", "shop", "web", "web-2");
    claims["exp"] = (tokens::now() - 600).into();
    let status = client.mount(signed_request(objects, "web-2", &key.sign(&claims))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{}", status.message());
    assert!(status.message().contains("ExpiredTokenException"), "{}", status.message());

    // STS failing is transient: Unavailable.
    aws.set("AssumeRoleWithWebIdentity", "*", (503, "text/xml", tokens_error_503()));
    let fresh = key.sign(&tokens::pod_claims("sts.amazonaws.com", "other-ns-free", "web", "web-3"));
    let request = {
        let mut request = signed_request(objects, "web-3", &fresh);
        request.attributes = request.attributes.replace("\"shop\"", "\"other-ns-free\"");
        request
    };
    provider.kube.as_ref().unwrap().service_account("other-ns-free", "web", Some(WEB_ROLE));
    let status = client.mount(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    aws.clear();

    // A role without the permission: AccessDenied from Secrets Manager, for that identity only.
    aws.deny(&FakeAws::access_key_for(&token));
    let status = client.mount(signed_request(objects, "web-0", &token)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{}", status.message());
    assert!(status.message().contains("AccessDeniedException"), "{}", status.message());
}

fn tokens_error_503() -> String {
    "<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>busy</Message></Error></ErrorResponse>".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_identity_agent_is_retried_on_5xx_and_each_attempt_is_bounded_by_its_timeout() {
    let v4 = agent("127.0.0.1:0").await;
    let identity = IdentityMode::Pods {
        agent_ipv4: format!("{}/v1/credentials", v4.url()),
        agent_ipv6: dead_endpoint("[::1]"),
        agent_timeout: Duration::from_millis(300),
        share_irsa: true,
    };
    let provider = Provider::start(Settings { identity, ..settings() }).await;
    let (_, objects) = secret().await;
    let mut client = provider.client().await;
    let ipv4 = [("usePodIdentity", "true"), ("preferredAddressType", "ipv4")];

    // 500, 500, then credentials: three requests, and the mount succeeds.
    v4.answer_next("/v1/credentials", &[(500, "{}"), (500, "{}")]);
    let req = with_attribute(
        request(&objects, &ipv4),
        "csi.storage.k8s.io/serviceAccount.tokens",
        Some(&tokens_json("retried")),
    );
    client.mount(req).await.unwrap();
    assert_eq!(v4.requests().len(), 3, "two 500s retried, the third answer used");

    // An agent that answers after the timeout: each attempt is cut at it (3 attempts), then
    // the IPv4-only mount fails naming the agent, well before the agent would have answered.
    v4.set_delay(Duration::from_secs(5));
    let before = v4.requests().len();
    let req = with_attribute(
        request(&objects, &ipv4),
        "csi.storage.k8s.io/serviceAccount.tokens",
        Some(&tokens_json("slow")),
    );
    let err = client.mount(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("Pod Identity agent did not answer"), "{}", err.message());
    eventually(Duration::from_secs(3), "three attempts reached the agent", || {
        v4.requests().len() == before + 3
    });
    provider.stop().await;
}
