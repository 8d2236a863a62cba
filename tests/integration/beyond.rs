//! What ASCP's users have asked for, against moto: path and prefix/tag objects (with
//! rotation of a path mount), JSON expansion, decoding, non-string jmesPath results, and
//! cross-account role chaining. Every field is optional; ASCP classes are unchanged (the
//! other test files run ASCP syntax).

use std::path::Path;
use std::time::Duration;

use crate::support::*;
use aws_sdk_ssm::types::ParameterType;
use tonic::Code;

const REGION: &str = "us-east-1";

async fn mount(
    provider: &Provider,
    params: &[(&str, &str)],
) -> Result<csi_provider_aws::proto::MountResponse, tonic::Status> {
    let mut all = vec![("region", REGION)];
    all.extend_from_slice(params);
    provider.client().await.mount(mount_request(&all, Path::new("/t"))).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_path_mounts_every_parameter_and_rotation_sees_adds_changes_and_removals() {
    let base = format!("/{}", unique("app"));
    put_parameter(REGION, &format!("{base}/db/url"), "postgres://db", ParameterType::String).await;
    put_parameter(REGION, &format!("{base}/db/password"), "pw1", ParameterType::SecureString).await;
    put_parameter(REGION, &format!("{base}/flag"), "on", ParameterType::String).await;
    let provider = Provider::start(settings()).await;
    let recursive = format!("- {{objectType: ssmparameter, path: '{base}/', recursive: true}}");
    let response = mount(&provider, &[("objects", &recursive)]).await.unwrap();
    assert_eq!(
        files(&response),
        vec![
            ("db_password".into(), 0o644, "pw1".into()),
            ("db_url".into(), 0o644, "postgres://db".into()),
            ("flag".into(), 0o644, "on".into()),
        ]
    );
    let first = versions(&response);

    // One level only, and directories kept.
    let shallow = format!("- {{objectType: ssmparameter, path: '{base}/'}}");
    let response = mount(&provider, &[("objects", &shallow)]).await.unwrap();
    assert_eq!(files(&response).into_iter().map(|f| f.0).collect::<Vec<_>>(), vec!["flag".to_string()]);
    let response = mount(&provider, &[("objects", &recursive), ("pathTranslation", "False")]).await.unwrap();
    assert!(files(&response).iter().any(|f| f.0 == "db/password"));

    // Rotation: change one, add one, remove one.
    put_parameter(REGION, &format!("{base}/db/password"), "pw2", ParameterType::SecureString).await;
    put_parameter(REGION, &format!("{base}/new"), "fresh", ParameterType::String).await;
    ssm(REGION).await.delete_parameter().name(format!("{base}/flag")).send().await.unwrap();
    let response = mount(&provider, &[("objects", &recursive)]).await.unwrap();
    let got = files(&response);
    assert_eq!(got.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), vec!["db_password", "db_url", "new"]);
    assert_eq!(got[0].2, "pw2");
    let rotated = versions(&response);
    assert_ne!(rotated, first, "the object versions tell the driver something changed");
    assert!(rotated.contains(&("db_password".into(), "2".into())), "{rotated:?}");
    assert!(rotated.contains(&("new".into(), "1".into())));
    assert!(!rotated.iter().any(|(id, _)| id == "flag"));

    // Bounded.
    let bounded = format!("- {{objectType: ssmparameter, path: '{base}/', recursive: true, maxCount: 2}}");
    let err = mount(&provider, &[("objects", &bounded)]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains("more than maxCount (2)"), "{}", err.message());
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_by_name_prefix_and_by_tag() {
    let prefix = format!("{}/", unique("team"));
    let sm = secrets_manager(REGION).await;
    for (name, team) in [("a", "payments"), ("b", "payments"), ("c", "search")] {
        sm.create_secret()
            .name(format!("{prefix}{name}"))
            .secret_string(format!("value-{name}"))
            .tags(aws_sdk_secretsmanager::types::Tag::builder().key("team").value(team).build())
            .send()
            .await
            .unwrap();
    }
    create_secret(REGION, &format!("{}other", prefix.trim_end_matches('/')), "not-under-prefix").await;
    let provider = Provider::start(settings()).await;
    let by_prefix = format!("- {{objectType: secretsmanager, path: '{prefix}'}}");
    let response = mount(&provider, &[("objects", &by_prefix)]).await.unwrap();
    assert_eq!(files(&response).iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), vec!["a", "b", "c"]);

    let by_tag = format!("- {{objectType: secretsmanager, path: '{prefix}', tags: {{team: payments}}}}");
    let response = mount(&provider, &[("objects", &by_tag)]).await.unwrap();
    assert_eq!(
        files(&response),
        vec![("a".into(), 0o644, "value-a".into()), ("b".into(), 0o644, "value-b".into())]
    );
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_expansion_decoding_and_non_string_selections() {
    let name = unique("json");
    let cert = "-----BEGIN CERT-----\nabc\n-----END CERT-----\n";
    let b64 = base64_encode(cert.as_bytes());
    let value = serde_json::json!({"user": "admin", "port": 5432, "tls": {"on": true}, "cert-b64": b64, "hex": "cafe"}).to_string();
    create_secret(REGION, &name, &value).await;
    let provider = Provider::start(settings()).await;

    let expand = format!(
        "- {{objectName: {name}, objectType: secretsmanager, objectAlias: all.json, expandJson: true}}"
    );
    let got = files(&mount(&provider, &[("objects", &expand)]).await.unwrap());
    let get = |f: &str| got.iter().find(|x| x.0 == f).map(|x| x.2.clone());
    assert_eq!(get("user").as_deref(), Some("admin"));
    assert_eq!(get("port").as_deref(), Some("5432"));
    assert_eq!(get("tls").as_deref(), Some("{\"on\":true}"));
    assert_eq!(get("all.json").as_deref(), Some(value.as_str()), "the whole secret is mounted too");

    let allow = format!(
        "- {{objectName: {name}, objectType: secretsmanager, objectAlias: s, expandJsonKeys: [user]}}"
    );
    let got = files(&mount(&provider, &[("objects", &allow)]).await.unwrap());
    assert_eq!(got.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), vec!["s", "user"]);
    let missing = format!(
        "- {{objectName: {name}, objectType: secretsmanager, objectAlias: s, expandJsonKeys: [nope]}}"
    );
    let err = mount(&provider, &[("objects", &missing)]).await.unwrap_err();
    assert!(err.message().contains("expandJsonKeys lists \"nope\""), "{}", err.message());

    let decoded = format!(
        "- objectName: {name}\n  objectType: secretsmanager\n  objectAlias: s\n  jmesPath:\n\
         \x20   - {{path: '\"cert-b64\"', objectAlias: cert.pem, encoding: base64}}\n\
         \x20   - {{path: hex, objectAlias: bytes, encoding: hex}}\n\
         \x20   - {{path: port, objectAlias: port, allowNonString: true}}\n\
         \x20   - {{path: tls, objectAlias: tls.json, allowNonString: true}}\n"
    );
    let response = mount(&provider, &[("objects", &decoded)]).await.unwrap();
    let raw = |f: &str| response.files.iter().find(|x| x.path == f).map(|x| x.contents.clone()).unwrap();
    assert_eq!(raw("cert.pem"), cert.as_bytes());
    assert_eq!(raw("bytes"), vec![0xca, 0xfe]);
    assert_eq!(raw("port"), b"5432");
    assert_eq!(raw("tls.json"), br#"{"on":true}"#);

    // Without the opt-in, ASCP's behaviour stays: a non-string selection is an error.
    let strict = format!(
        "- {{objectName: {name}, objectType: secretsmanager, jmesPath: [{{path: port, objectAlias: p}}]}}"
    );
    assert_eq!(mount(&provider, &[("objects", &strict)]).await.unwrap_err().code(), Code::InvalidArgument);

    // A decoding error names the object and the file, never the value.
    let bad =
        format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s, encoding: base64}}");
    let err = mount(&provider, &[("objects", &bad)]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains(&format!("object \"{name}\"")) && err.message().contains("base64"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("admin"), "{}", err.message());
    provider.stop().await;
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_account_role_chaining_assumes_the_role_with_the_pods_credentials() {
    let proxy = LatencyProxy::start(moto_url(), Duration::ZERO).await;
    let provider = Provider::start(settings_at(&proxy.url())).await;
    let name = unique("xacct");
    create_secret(REGION, &name, "shared").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    let role = "arn:aws:iam::123456789012:role/reader";
    let params = [("objects", objects.as_str()), ("assumeRoleArn", role), ("assumeRoleExternalId", "ext-42")];
    for _ in 0..3 {
        let response = mount(&provider, &params).await.unwrap();
        assert_eq!(files(&response)[0].2, "shared");
    }
    let chained = proxy.requests_containing("Action=AssumeRole&");
    assert_eq!(chained.len(), 1, "chained credentials are cached like the pod's own");
    assert!(
        chained[0].contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Freader"),
        "{}",
        chained[0]
    );
    assert!(chained[0].contains("ExternalId=ext-42"), "{}", chained[0]);
    assert!(
        chained[0].to_ascii_lowercase().contains("authorization: aws4-hmac-sha256 credential=asia"),
        "signed with the pod's STS credentials"
    );
    assert_eq!(proxy.requests_containing("AssumeRoleWithWebIdentity").len(), 1);

    let bad = [("objects", objects.as_str()), ("assumeRoleArn", "not-an-arn")];
    let err = mount(&provider, &bad).await.unwrap_err();
    assert!(
        err.message().contains("assumeRoleArn \"not-an-arn\" is not an IAM role ARN"),
        "{}",
        err.message()
    );
    provider.stop().await;
}
