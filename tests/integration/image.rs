//! The image as it ships, run under the Helm chart's own pod spec: `image/build.sh` builds
//! `localhost/csi-provider-aws:dev`, and these tests play the chart's DaemonSet pod with
//! `podman kube play` (runc; what kube play cannot express is in test-kit's `pod` module),
//! then act as the CSI driver on the host through the socket in the hostPath directory.
//!
//! They need root, podman and the image, so a plain `cargo test` skips them as ignored;
//! `.ci/run` builds the image and runs them with `--ignored` (a missing podman or image
//! fails there, loudly).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::tokens::{SigningKey, pod_tokens};
use crate::support::*;
use csi_provider_aws::proto::csi_driver_provider_client::CsiDriverProviderClient;
use csi_provider_aws::proto::{MountRequest, MountResponse};
use csi_provider_aws::request::{DriverRequest, Pod};
use csi_provider_aws::secret::SecretString;
use serde_json::json;
use test_kit::pod::{ChartPod, IMAGE, PodOptions};
use test_kit::tls::TestCa;

const REGION: &str = "us-east-1";
const NEEDS: &str = "needs root, podman and the image (bash image/build.sh); .ci/run runs it";

/// A pod of `namespace`/`service_account` presenting its own signed tokens.
fn pod(key: &SigningKey, namespace: &str, service_account: &str, name: &str) -> Pod {
    Pod {
        namespace: namespace.into(),
        name: name.into(),
        uid: format!("6f1c9a52-1d3e-4b7a-9c0d-{:012x}", name.len() * 7919 + service_account.len()),
        service_account: service_account.into(),
        tokens: Some(SecretString::new(pod_tokens(key, namespace, service_account, name))),
    }
}

fn objects_yaml(secrets: &[String], parameters: &[String]) -> String {
    let mut yaml = String::new();
    for s in secrets {
        yaml.push_str(&format!("- {{objectName: {s}, objectType: secretsmanager}}\n"));
    }
    for p in parameters {
        yaml.push_str(&format!("- {{objectName: {p}, objectType: ssmparameter}}\n"));
    }
    yaml
}

async fn client(socket: &Path) -> CsiDriverProviderClient<tonic::transport::Channel> {
    CsiDriverProviderClient::new(csi_provider_aws::commands::mount::connect(socket).await.unwrap())
}

async fn mount(socket: &Path, request: MountRequest) -> Result<MountResponse, tonic::Status> {
    client(socket).await.mount(request).await.map(tonic::Response::into_inner)
}

/// The stand-in API server over HTTPS (as in-cluster clients reach it) with issuer discovery
/// for `key`, and the CA its certificate is signed by.
async fn cluster(key: &SigningKey) -> (FakeKube, TestCa) {
    let ca = TestCa::new("stand-in cluster CA");
    let kube = FakeKube::start_tls(&ca).await;
    kube.every_service_account_has_a_role();
    kube.issuer(&[key]);
    (kube, ca)
}

/// Chart values: the region, and AWS at `endpoint`.
fn aws_values(endpoint: &str) -> serde_json::Value {
    json!({"awsRegion": REGION, "env": [{"name": "AWS_ENDPOINT_URL", "value": endpoint}]})
}

/// One sample of the metrics text, 0 when absent.
fn sample(metrics: &str, line_start: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root, podman and the image (bash image/build.sh); .ci/run runs it"]
fn the_image_holds_the_static_binary_the_ca_bundle_and_nothing_else() {
    let _ = NEEDS;
    let container = String::from_utf8(
        std::process::Command::new("podman").args(["create", IMAGE]).output().unwrap().stdout,
    )
    .unwrap();
    let container = container.trim();
    assert!(!container.is_empty(), "podman create {IMAGE} failed: build it with bash image/build.sh");
    let export = std::process::Command::new("sh")
        .args(["-c", &format!("podman export {container} | tar -t; podman rm {container} >/dev/null")])
        .output()
        .unwrap();
    let listing = String::from_utf8(export.stdout).unwrap();
    let mut files: Vec<&str> = listing.lines().filter(|l| !l.ends_with('/')).collect();
    files.sort_unstable();
    // podman adds its mount points (empty) to every exported container.
    let ours: Vec<&str> = files
        .into_iter()
        .filter(|f| !matches!(*f, "run/.containerenv" | "etc/hostname" | "etc/hosts" | "etc/resolv.conf"))
        .collect();
    assert_eq!(
        ours,
        ["csi-provider-aws", "etc/nsswitch.conf", "etc/ssl/certs/ca-certificates.crt"],
        "{listing}"
    );

    let inspect = |format: &str| {
        let out = std::process::Command::new("podman")
            .args(["image", "inspect", "--format", format, IMAGE])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(inspect("{{json .Config.Entrypoint}}"), r#"["/csi-provider-aws"]"#);
    assert!(inspect("{{json .Config.Env}}").contains("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"));

    // `check` runs from the image as docs/install.md shows, under the chart's restrictions.
    let class = "- {objectName: db-password, objectType: secretsmanager}\n";
    let mut check = std::process::Command::new("podman")
        .args(["run", "--rm", "-i", "--network", "none", "--read-only", "--read-only-tmpfs=false"])
        .args([
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            IMAGE,
            "check",
            "--region",
            REGION,
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check.stdin.take().unwrap().write_all(class.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(out.status.success(), "check in the image failed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("db-password"));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, podman and the image (bash image/build.sh); .ci/run runs it"]
async fn under_the_chart_pod_spec_it_mounts_probes_and_stops_cleanly() {
    let key = SigningKey::generate("image-key");
    let (kube, ca) = cluster(&key).await;
    let name = unique("image/db");
    let (_, version) = create_secret(REGION, &name, "s3cr3t-from-the-image").await;
    let parameter = unique("/image/param");
    put_parameter(REGION, &parameter, "param-value", aws_sdk_ssm::types::ParameterType::String).await;
    let pod_spec =
        ChartPod::play(&kube, &ca, PodOptions { values: aws_values(moto_url()), ..Default::default() });

    // The probes as kubelet performs them, and the metrics.
    // Over IPv4 and IPv6, as kubelet reaches the pod on either kind of cluster.
    for ipv6 in [false, true] {
        assert_eq!(pod_spec.probe("livenessProbe", ipv6), 200, "liveness, IPv6 {ipv6}");
        assert_eq!(pod_spec.probe("readinessProbe", ipv6), 200, "readiness, IPv6 {ipv6}");
    }
    let (status, metrics) = http_get(&pod_spec.metrics_addr(false), "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("csi_provider_aws_mounts_in_flight"), "{metrics}");

    // A mount in driver-writes mode (the chart's default): the driver gets the files.
    let objects = objects_yaml(std::slice::from_ref(&name), std::slice::from_ref(&parameter));
    let web = pod(&key, "shop", "web", "web-0");
    let request = DriverRequest::new("web-secrets", [("objects", objects.as_str())], web.clone()).build();
    let response = mount(&pod_spec.socket(), request.clone())
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", pod_spec.logs()));
    let translated = name.replace('/', "_");
    let got = files(&response);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&(translated.clone(), 0o644, "s3cr3t-from-the-image".into())), "{got:?}");
    assert!(versions(&response).contains(&(translated.clone(), version.clone())));
    let metrics = http_get(&pod_spec.metrics_addr(false), "/metrics").1;
    assert_eq!(
        sample(&metrics, "csi_provider_aws_token_verifications_total{outcome=\"verified\"}"),
        1,
        "{metrics}"
    );
    assert!(!pod_spec.logs().contains("s3cr3t-from-the-image"));

    // SIGTERM: exits 0 within the grace period and removes its socket.
    let took = pod_spec.stop();
    assert_eq!(pod_spec.exit_code(), 0, "{}", pod_spec.logs());
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    assert!(!pod_spec.socket().exists(), "the socket outlived the provider");

    // SIGKILL leaves the socket behind; the restarted provider replaces it and serves.
    pod_spec.restart();
    pod_spec.kill();
    assert!(pod_spec.socket().exists(), "SIGKILL should leave the stale socket");
    pod_spec.restart();
    let again =
        mount(&pod_spec.socket(), request).await.unwrap_or_else(|e| panic!("{e:?}\n{}", pod_spec.logs()));
    assert_eq!(files(&again), got);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, podman and the image (bash image/build.sh); .ci/run runs it"]
async fn provider_writes_mode_writes_into_the_pods_directory_the_chart_mounts() {
    let key = SigningKey::generate("image-key");
    let (kube, ca) = cluster(&key).await;
    let name = unique("image/writes");
    create_secret(REGION, &name, "written-by-the-provider").await;
    let mut values = aws_values(moto_url());
    values["driverWritesSecrets"] = false.into();
    let pod_spec = ChartPod::play(&kube, &ca, PodOptions { values, ..Default::default() });

    // As the driver does once the provider runs: the volume directory under the kubelet's
    // pods directory, a tmpfs mounted on it (HostToContainer propagation makes it visible in
    // the container; without it the provider would write beneath the tmpfs, where the pod
    // never looks).
    let volume =
        "/var/lib/kubelet/pods/6f1c9a52-1d3e-4b7a-9c0d-8e5a4b3c2d1e/volumes/kubernetes.io~csi/secrets/mount";
    let on_host = pod_spec
        .host_path("/var/lib/kubelet/pods")
        .join(volume.strip_prefix("/var/lib/kubelet/pods/").unwrap());
    std::fs::create_dir_all(&on_host).unwrap();
    let tmpfs = ["-t", "tmpfs", "-o", "size=1m", "tmpfs"];
    let mounted = std::process::Command::new("mount").args(tmpfs).arg(&on_host).status().unwrap();
    assert!(mounted.success(), "mount a tmpfs on {}", on_host.display());
    let objects = format!(
        "- {{objectName: {name}, objectType: secretsmanager, objectAlias: db, filePermission: \"0600\"}}\n"
    );
    let request =
        DriverRequest::new("web-secrets", [("objects", objects.as_str())], pod(&key, "shop", "web", "web-0"))
            .target(volume)
            .build();
    let response =
        mount(&pod_spec.socket(), request).await.unwrap_or_else(|e| panic!("{e:?}\n{}", pod_spec.logs()));
    assert!(response.files.is_empty(), "provider-writes mode returns no files");
    assert_eq!(std::fs::read_to_string(on_host.join("db")).unwrap(), "written-by-the-provider");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(on_host.join("db")).unwrap().permissions().mode() & 0o777, 0o600);
    let _ = std::process::Command::new("umount").arg(&on_host).status();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, podman and the image (bash image/build.sh); .ci/run runs it"]
async fn a_node_boot_of_100_verified_pods_stays_under_the_chart_memory_limit() {
    let key = SigningKey::generate("image-key");
    let (kube, ca) = cluster(&key).await;
    let secrets: Vec<String> = (0..10).map(|i| unique(&format!("boot/s{i}"))).collect();
    let parameters: Vec<String> = (0..10).map(|i| unique(&format!("/boot/p{i}"))).collect();
    for s in &secrets {
        create_secret(REGION, s, "boot-value").await;
    }
    for p in &parameters {
        put_parameter(REGION, p, "boot-param", aws_sdk_ssm::types::ParameterType::SecureString).await;
    }
    let pod_spec =
        ChartPod::play(&kube, &ca, PodOptions { values: aws_values(moto_url()), ..Default::default() });
    let objects = objects_yaml(&secrets, &parameters);
    let requests: Vec<MountRequest> = (0..100)
        .map(|i| {
            let account = format!("app-{}", i / 10);
            let name = format!("{account}-{}", i % 10);
            DriverRequest::new("boot", [("objects", objects.as_str())], pod(&key, "boot", &account, &name))
                .build()
        })
        .collect();
    // One connection for the node's mounts, as the driver dials.
    let client = client(&pod_spec.socket()).await;
    let started = Instant::now();
    let mounts = requests.into_iter().map(|request| {
        let mut client = client.clone();
        async move { client.mount(request).await.map(|r| r.into_inner().files.len()) }
    });
    let results = futures::future::join_all(mounts).await;
    let wall = started.elapsed();
    for result in &results {
        assert_eq!(result.as_ref().map_err(|e| format!("{e:?}")), Ok(&20), "{}", pod_spec.logs());
    }
    let metrics = http_get(&pod_spec.metrics_addr(false), "/metrics").1;
    assert_eq!(sample(&metrics, "csi_provider_aws_token_verifications_total{outcome=\"verified\"}"), 100);
    let (limit, peak) = pod_spec.memory();
    let chart_limit = pod_spec.template["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(chart_limit, "256Mi", "the chart's memory limit");
    assert_eq!(limit, 256 * 1024 * 1024, "the container's cgroup holds the chart's limit");
    assert!(peak < limit / 2, "peak {peak} bytes of {limit}");
    eprintln!(
        "100-pod verified boot in the chart pod: {wall:?}, cgroup peak {} KiB of {} KiB",
        peak / 1024,
        limit / 1024
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, podman and the image (bash image/build.sh); .ci/run runs it"]
async fn tls_to_aws_trusts_the_bundle_ssl_cert_file_names_and_refuses_an_unknown_ca() {
    let key = SigningKey::generate("image-key");
    let (kube, cluster_ca) = cluster(&key).await;
    // moto over HTTPS, its certificate for the host name aws.test from a CA made here.
    let ca = TestCa::new("test AWS endpoint CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key_file) = ca.server(&["aws.test"]).write(dir.path());
    let moto = start_moto(Some((&cert, &key_file)));
    let port = moto.rsplit(':').next().unwrap();
    let endpoint = format!("https://aws.test:{port}");
    // This moto is its own process with its own data: seed it over HTTPS with boto3, which
    // moto brings (certificate checks off on the test's side only).
    let name = unique("tls/db");
    let seed = format!(
        "import boto3; boto3.client('secretsmanager', endpoint_url='{moto}', verify=False, region_name='{REGION}', \
         aws_access_key_id='testing', aws_secret_access_key='testing').create_secret(Name='{name}', SecretString='over-tls')"
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let seeded = std::process::Command::new(python).args(["-W", "ignore", "-c", &seed]).status().unwrap();
    assert!(seeded.success(), "seeding moto over HTTPS failed");

    // The image's bundle plus the test CA, as docs/install.md says: a bundle in a file,
    // SSL_CERT_FILE pointing at it.
    let bundle = dir.path().join("bundle.pem");
    let public = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    std::fs::write(&bundle, format!("{public}\n{}", ca.pem())).unwrap();
    let hosts = vec!["127.0.0.1\taws.test".to_owned()];
    let mut values = aws_values(&endpoint);
    values["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "SSL_CERT_FILE", "value": "/etc/csi-provider-aws/ca-bundle.pem"}));
    let trusted = ChartPod::play(
        &kube,
        &cluster_ca,
        PodOptions {
            values,
            hosts: hosts.clone(),
            files: vec![(bundle, "/etc/csi-provider-aws/ca-bundle.pem".into())],
        },
    );
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: db}}\n");
    let request =
        DriverRequest::new("tls", [("objects", objects.as_str())], pod(&key, "shop", "web", "web-0")).build();
    let response = mount(&trusted.socket(), request.clone())
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", trusted.logs()));
    assert_eq!(files(&response), [("db".into(), 0o644, "over-tls".into())]);

    // The image's own bundle does not hold the test CA: the documented message.
    let untrusted = ChartPod::play(
        &kube,
        &cluster_ca,
        PodOptions { values: aws_values(&endpoint), hosts, ..Default::default() },
    );
    let error = mount(&untrusted.socket(), request).await.unwrap_err();
    assert!(
        error.message().contains("the endpoint's TLS certificate is not trusted (UnknownIssuer)"),
        "{}",
        error.message()
    );
}
