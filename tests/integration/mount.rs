//! Mount semantics end to end: gRPC over a real Unix socket to the provider, which fetches
//! from moto's Secrets Manager and Parameter Store.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::*;
use aws_sdk_ssm::types::ParameterType;
use tonic::Code;

const REGION: &str = "us-east-1";

async fn mount(
    provider: &Provider,
    params: &[(&str, &str)],
    target: &std::path::Path,
) -> Result<csi_provider_aws::proto::MountResponse, tonic::Status> {
    let mut client = provider.client().await;
    client.mount(mount_request(params, target)).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_by_name_arn_version_id_and_stage() {
    let name = unique("sm/app/db");
    let (arn, v1) = create_secret(REGION, &name, "one").await;
    let sm = secrets_manager(REGION).await;
    let v2 =
        sm.put_secret_value().secret_id(&name).secret_string("two").send().await.unwrap().version_id.unwrap();
    let provider = Provider::start(settings()).await;
    let target = tempfile::tempdir().unwrap();
    let objects = format!(
        "- {{objectName: {name}, objectType: secretsmanager}}\n\
         - {{objectName: '{arn}', objectAlias: by-arn}}\n\
         - {{objectName: {name}, objectType: secretsmanager, objectAlias: first, objectVersion: {v1}}}\n\
         - {{objectName: {name}, objectType: secretsmanager, objectAlias: previous, objectVersionLabel: AWSPREVIOUS}}\n"
    );
    let response =
        mount(&provider, &[("region", REGION), ("objects", &objects)], target.path()).await.unwrap();
    let translated = name.replace('/', "_");
    assert_eq!(
        files(&response),
        vec![
            ("by-arn".into(), 0o644, "two".into()),
            ("first".into(), 0o644, "one".into()),
            ("previous".into(), 0o644, "one".into()),
            (translated.clone(), 0o644, "two".into()),
        ]
    );
    assert_eq!(
        versions(&response),
        vec![
            ("by-arn".into(), v2.clone()),
            ("first".into(), v1.clone()),
            ("previous".into(), v1.clone()),
            (translated, v2.clone()),
        ]
    );
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_secrets_are_mounted_byte_for_byte() {
    let name = unique("bin");
    let bytes = vec![0u8, 159, 146, 150, 255, 10];
    secrets_manager(REGION)
        .await
        .create_secret()
        .name(&name)
        .secret_binary(aws_smithy_types::Blob::new(bytes.clone()))
        .send()
        .await
        .unwrap();
    let provider = Provider::start(settings()).await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: keystore}}");
    let response = mount(&provider, &[("region", REGION), ("objects", &objects)], std::path::Path::new("/t"))
        .await
        .unwrap();
    assert_eq!(response.files[0].contents, bytes);
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_store_types_versions_labels_and_batches() {
    let base = format!("/{}", unique("ps"));
    let string = format!("{base}/url");
    let list = format!("{base}/hosts");
    let secure = format!("{base}/key");
    put_parameter(REGION, &string, "https://example", ParameterType::String).await;
    put_parameter(REGION, &list, "a,b,c", ParameterType::StringList).await;
    put_parameter(REGION, &secure, "k1", ParameterType::SecureString).await;
    put_parameter(REGION, &secure, "k2", ParameterType::SecureString).await;
    ssm(REGION)
        .await
        .label_parameter_version()
        .name(&secure)
        .parameter_version(1)
        .labels("old")
        .send()
        .await
        .unwrap();
    // 12 more parameters so the mount needs more than one GetParameters batch.
    let mut many = String::new();
    for i in 0..12 {
        let name = format!("{base}/n{i:02}");
        put_parameter(REGION, &name, &format!("v{i}"), ParameterType::String).await;
        many.push_str(&format!("- {{objectName: {name}, objectType: ssmparameter, objectAlias: n{i:02}}}\n"));
    }
    let objects = format!(
        "- {{objectName: {string}, objectType: ssmparameter, objectAlias: url}}\n\
         - {{objectName: {list}, objectType: ssmparameter, objectAlias: hosts}}\n\
         - {{objectName: {secure}, objectType: ssmparameter, objectAlias: key}}\n\
         - {{objectName: {secure}, objectType: ssmparameter, objectAlias: key-v1, objectVersion: '1'}}\n\
         - {{objectName: {secure}, objectType: ssmparameter, objectAlias: key-old, objectVersionLabel: old}}\n\
         {many}"
    );
    let provider = Provider::start(settings()).await;
    let response = mount(&provider, &[("region", REGION), ("objects", &objects)], std::path::Path::new("/t"))
        .await
        .unwrap();
    let got = files(&response);
    let get = |alias: &str| got.iter().find(|f| f.0 == alias).map(|f| f.2.clone()).unwrap_or_default();
    assert_eq!(get("url"), "https://example");
    assert_eq!(get("hosts"), "a,b,c");
    assert_eq!(get("key"), "k2");
    assert_eq!(get("key-v1"), "k1");
    assert_eq!(get("key-old"), "k1");
    assert_eq!(get("n11"), "v11");
    assert_eq!(got.len(), 17);
    let v = versions(&response);
    assert!(v.contains(&("key".into(), "2".into())), "{v:?}");
    assert!(v.contains(&("key-v1".into(), "1".into())), "{v:?}");
    assert!(v.contains(&("key-old".into(), "1".into())), "{v:?}");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmes_path_files_and_modes() {
    let name = unique("json");
    let (_, version) =
        create_secret(REGION, &name, r#"{"username":"admin","db-password":"s3cret","port":5432}"#).await;
    let objects = format!(
        "- objectName: {name}\n  objectType: secretsmanager\n  objectAlias: all.json\n  filePermission: '0600'\n  jmesPath:\n\
         \x20   - {{path: username, objectAlias: user}}\n\
         \x20   - {{path: '\"db-password\"', objectAlias: password, filePermission: '0400'}}\n"
    );
    let provider = Provider::start(settings()).await;
    let response = mount(&provider, &[("region", REGION), ("objects", &objects)], std::path::Path::new("/t"))
        .await
        .unwrap();
    let got = files(&response);
    assert_eq!(got[0].0, "all.json");
    assert_eq!(got[0].1, 0o600);
    assert_eq!(got[1], ("password".into(), 0o400, "s3cret".into()));
    assert_eq!(got[2], ("user".into(), 0o600, "admin".into()));
    assert!(versions(&response).iter().all(|(_, v)| v == &version));

    // A non-string selection is reported as exactly that, not as a fetch failure.
    let objects = format!(
        "- {{objectName: {name}, objectType: secretsmanager, jmesPath: [{{path: port, objectAlias: port}}]}}"
    );
    let err = mount(&provider, &[("region", REGION), ("objects", &objects)], std::path::Path::new("/t"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("\"port\"") && err.message().contains("only strings"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("s3cret") && !err.message().contains("5432"), "{}", err.message());

    // A secret that is not JSON.
    let plain = unique("plain");
    create_secret(REGION, &plain, "not json").await;
    let objects = format!(
        "- {{objectName: {plain}, objectType: secretsmanager, jmesPath: [{{path: a, objectAlias: a}}]}}"
    );
    let err = mount(&provider, &[("region", REGION), ("objects", &objects)], std::path::Path::new("/t"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("not valid JSON"), "{}", err.message());
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_translation_in_both_write_modes() {
    let base = format!("/{}", unique("pt"));
    let name = format!("{base}/db/password");
    put_parameter(REGION, &name, "pw", ParameterType::SecureString).await;
    let objects = format!("- {{objectName: '{name}', objectType: ssmparameter}}");
    let provider = Provider::start(settings()).await;
    let t = std::path::Path::new("/t");
    let cases = [
        (None, name.replace('/', "_")),
        (Some("-"), name.replace('/', "-")),
        (Some("False"), name[1..].to_owned()),
    ];
    for (translation, want) in cases {
        let mut params = vec![("region", REGION), ("objects", objects.as_str())];
        if let Some(t) = translation {
            params.push(("pathTranslation", t));
        }
        let response = mount(&provider, &params, t).await.unwrap();
        assert_eq!(files(&response)[0].0, want, "{translation:?}");
        assert_eq!(versions(&response)[0].0, want, "{translation:?}");
    }
    provider.stop().await;

    // The provider writes nested directories itself when it writes the files.
    let provider = Provider::start(Settings {
        mount: MountSettings { driver_writes_secrets: false, ..settings().mount },
        ..settings()
    })
    .await;
    let target = tempfile::tempdir().unwrap();
    let params = [("region", REGION), ("objects", objects.as_str()), ("pathTranslation", "False")];
    let response = mount(&provider, &params, target.path()).await.unwrap();
    assert!(response.files.is_empty());
    assert_eq!(std::fs::read_to_string(target.path().join(&name[1..])).unwrap(), "pw");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_writes_mode_is_atomic_and_all_or_nothing() {
    let a = unique("wa");
    let b = unique("wb");
    create_secret(REGION, &a, "A").await;
    create_secret(REGION, &b, "B").await;
    let provider = Provider::start(Settings {
        mount: MountSettings { driver_writes_secrets: false, ..settings().mount },
        ..settings()
    })
    .await;
    let target = tempfile::tempdir().unwrap();
    let objects = format!(
        "- {{objectName: {a}, objectType: secretsmanager, objectAlias: a, filePermission: '0640'}}\n\
         - {{objectName: {b}, objectType: secretsmanager, objectAlias: b}}"
    );
    let response =
        mount(&provider, &[("region", REGION), ("objects", &objects)], target.path()).await.unwrap();
    assert!(response.files.is_empty());
    assert_eq!(versions(&response).len(), 2);
    let mut names: Vec<String> = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["a", "b"], "no temp files may remain");
    let mode = std::fs::metadata(target.path().join("a")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    // One missing object: the mount fails and nothing is written.
    let empty = tempfile::tempdir().unwrap();
    let objects = format!(
        "- {{objectName: {a}, objectType: secretsmanager, objectAlias: a}}\n\
         - {{objectName: {}, objectType: secretsmanager, objectAlias: gone}}",
        unique("missing")
    );
    let err = mount(&provider, &[("region", REGION), ("objects", &objects)], empty.path()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(err.message().contains("missing") && err.message().contains(REGION), "{}", err.message());
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_without_objects_mounts_an_empty_volume() {
    let provider = Provider::start(settings()).await;
    for params in
        [vec![("region", REGION)], vec![("region", REGION), ("objects", "")], vec![("objects", "[]")]]
    {
        let response = mount(&provider, &params, std::path::Path::new("/t")).await.unwrap();
        assert!(response.files.is_empty());
        assert_eq!(response.object_version.len(), 1, "the driver needs at least one object version");
        assert!(!response.object_version[0].version.is_empty());
    }
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_classes_fail_before_any_aws_call() {
    let proxy = LatencyProxy::start(moto_url(), Duration::ZERO).await;
    let provider = Provider::start(settings_at(&proxy.url())).await;
    let t = std::path::Path::new("/t");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("objects", "- {objectName: x}")], "objectType is missing"),
        (&[("objects", "- {objectName: x, objectType: vault}")], "objectType \"vault\" is unknown"),
        (&[("objects", "- objectType: secretsmanager")], "objectName is missing"),
        (
            &[(
                "objects",
                "- {objectName: 'arn:aws:ssm:us-east-1:1:parameter/x', objectType: secretsmanager}",
            )],
            "does not match the ARN",
        ),
        (
            &[("objects", "- {objectName: 'arn:aws:secretsmanager:us-west-2:1:secret:x'}")],
            "does not match the mount's region",
        ),
        (
            &[("objects", "- {objectName: x, objectType: secretsmanager, filePermission: '777'}")],
            "filePermission \"777\"",
        ),
        (
            &[(
                "objects",
                "- {objectName: x, objectType: ssmparameter, objectVersion: '1', objectVersionLabel: l}",
            )],
            "not both",
        ),
        (
            &[
                ("objects", "- {objectName: x, objectType: secretsmanager, objectAlias: ../../etc/x}"),
                ("pathTranslation", "False"),
            ],
            "'..'",
        ),
        (
            &[(
                "objects",
                "- {objectName: x, objectType: secretsmanager, jmesPath: [{path: 'a-b', objectAlias: y}]}",
            )],
            "not a valid JMESPath",
        ),
        (
            &[(
                "objects",
                "- {objectName: x, objectType: secretsmanager, objectVersionLabel: AWSCURRENT}\n- {objectName: x, objectType: secretsmanager, objectVersionLabel: AWSPREVIOUS}",
            )],
            "distinct objectAlias",
        ),
        (
            &[(
                "objects",
                "- {objectName: x, objectType: secretsmanager, objectAlias: a, failoverObject: {objectName: y}}",
            )],
            "no failoverRegion",
        ),
        (
            &[("objects", "- {objectName: x, objectType: secretsmanager}"), ("failoverRegion", REGION)],
            "same as region",
        ),
        (
            &[("objects", "- {objectName: x, objectType: secretsmanager}"), ("usePodIdentity", "yes")],
            "usePodIdentity \"yes\"",
        ),
        (
            &[("objects", "- {objectName: x, objectType: secretsmanager}"), ("pathTranslation", "--")],
            "pathTranslation \"--\"",
        ),
        (&[("objects", "objectName: x")], "must be a YAML list"),
    ];
    for (params, want) in cases {
        let mut all = vec![("region", REGION)];
        all.extend_from_slice(params);
        let err = mount(&provider, &all, t).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{params:?}: {}", err.message());
        assert!(err.message().contains(want), "{params:?}: {} should contain {want:?}", err.message());
    }
    assert_eq!(proxy.requests(), 0, "no AWS call may be made for an invalid class");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_invalid_arguments_and_the_server_survives() {
    let provider = Provider::start(settings()).await;
    let mut client = provider.client().await;
    let good = mount_request(&[("region", REGION)], std::path::Path::new("/t"));
    let cases = [
        (
            csi_provider_aws::proto::MountRequest { attributes: "not json".into(), ..good.clone() },
            "attributes",
        ),
        (csi_provider_aws::proto::MountRequest { attributes: "".into(), ..good.clone() }, "attributes"),
        (
            csi_provider_aws::proto::MountRequest { attributes: "{\"region\": 5}".into(), ..good.clone() },
            "attributes",
        ),
        (csi_provider_aws::proto::MountRequest { target_path: "".into(), ..good.clone() }, "target_path"),
        (csi_provider_aws::proto::MountRequest { permission: "rw".into(), ..good.clone() }, "permission"),
        (csi_provider_aws::proto::MountRequest { permission: "".into(), ..good.clone() }, "permission"),
        (csi_provider_aws::proto::MountRequest { permission: "99999".into(), ..good.clone() }, "permission"),
    ];
    for (request, want) in cases {
        let err = client.mount(request.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{request:?}");
        assert!(err.message().contains(want), "{}", err.message());
    }
    client.version(csi_provider_aws::proto::VersionRequest { version: "v1alpha1".into() }).await.unwrap();
    client.mount(good).await.unwrap();
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_comes_from_the_class_else_the_provider_environment() {
    let name = unique("regional");
    create_secret("eu-west-1", &name, "from-eu").await;
    create_secret(REGION, &name, "from-us").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    let t = std::path::Path::new("/t");

    let provider = Provider::start(Settings {
        mount: MountSettings { default_region: Some("eu-west-1".into()), ..settings().mount },
        ..settings()
    })
    .await;
    let response = mount(&provider, &[("objects", &objects)], t).await.unwrap();
    assert_eq!(files(&response)[0].2, "from-eu");
    let response = mount(&provider, &[("objects", &objects), ("region", REGION)], t).await.unwrap();
    assert_eq!(files(&response)[0].2, "from-us");
    provider.stop().await;

    let provider = Provider::start(settings()).await;
    let err = mount(&provider, &[("objects", &objects)], t).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("no AWS region"), "{}", err.message());
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_object_and_the_fix() {
    let provider = Provider::start(settings()).await;
    let missing = unique("nope");
    let objects = format!(
        "- {{objectName: {missing}, objectType: secretsmanager}}\n- {{objectName: /{missing}, objectType: ssmparameter}}"
    );
    let err = mount(&provider, &[("region", REGION), ("objects", &objects)], std::path::Path::new("/t"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let message = err.message();
    assert!(message.contains(&format!("secret \"{missing}\"")), "{message}");
    assert!(message.contains(&format!("parameter \"/{missing}\"")), "{message}");
    assert!(message.contains("failed to fetch 2 of 2 objects"), "{message}");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_fetches_its_objects_concurrently() {
    // 10 secrets + 10 parameters. Checked by counting, not timing: behind a slow link (200 ms
    // round trips) all 11 calls must be in flight at once. Then the time behind a 20 ms link
    // (ONE_WAY_MS=10 by default) is printed for the README, not asserted.
    let slow = LatencyProxy::start(moto_url(), Duration::from_millis(100)).await;
    let one_way = std::env::var("ONE_WAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let link = LatencyProxy::start(moto_url(), Duration::from_millis(one_way)).await;
    let base = unique("conc");
    let mut objects = String::new();
    for i in 0..10 {
        create_secret(REGION, &format!("{base}-s{i}"), "v").await;
        put_parameter(REGION, &format!("/{base}/p{i}"), "v", ParameterType::String).await;
        objects.push_str(&format!(
            "- {{objectName: {base}-s{i}, objectType: secretsmanager}}\n- {{objectName: /{base}/p{i}, objectType: ssmparameter}}\n"
        ));
    }
    let params = [("region", REGION), ("objects", objects.as_str())];

    let provider = Provider::start(settings_at(&slow.url())).await;
    // The first mount also exchanges the pod's token with STS; later ones reuse the credentials.
    mount(&provider, &params, std::path::Path::new("/t")).await.unwrap();
    let before = slow.requests();
    slow.reset_max_outstanding();
    let response = mount(&provider, &params, std::path::Path::new("/t")).await.unwrap();
    assert_eq!(response.files.len(), 20);
    assert_eq!(slow.requests() - before, 11, "10 GetSecretValue + 1 GetParameters");
    assert_eq!(slow.max_outstanding(), 11, "all 11 calls must be in flight together");
    provider.stop().await;

    let provider = Provider::start(settings_at(&link.url())).await;
    mount(&provider, &params, std::path::Path::new("/t")).await.unwrap();
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        mount(&provider, &params, std::path::Path::new("/t")).await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    eprintln!(
        "10 secrets + 10 parameters behind a {} ms round trip: median {:?}, all {times:?}",
        2 * one_way,
        times[2]
    );
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_parameters_match_with_or_without_their_leading_slash() {
    let name = unique("rootp");
    put_parameter(REGION, &format!("/{name}"), "slashed", ParameterType::String).await;
    let provider = Provider::start(settings()).await;
    let objects = format!("- {{objectName: {name}, objectType: ssmparameter, objectAlias: p}}");
    let params = [("region", REGION), ("objects", objects.as_str())];
    let response = mount(&provider, &params, std::path::Path::new("/t")).await.unwrap();
    assert_eq!(files(&response)[0].2, "slashed");
    provider.stop().await;
}
