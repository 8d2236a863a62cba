//! The `check` and `mount` subcommands as a user runs them.

use std::process::Command;

use crate::support::*;

fn check(path: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = provider_binary().arg("check").arg(path).args(extra).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn check_passes_every_example() {
    let mut checked = 0;
    for entry in walk(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").as_path()) {
        if entry.extension().is_some_and(|e| e == "yaml")
            && std::fs::read_to_string(&entry).unwrap().contains("kind: SecretProviderClass")
        {
            let (ok, text) = check(&entry, &[]);
            assert!(ok, "{}: {text}", entry.display());
            checked += 1;
        }
    }
    assert!(checked > 0, "no example was checked");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn check_explains_a_broken_class_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spc.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: broken
spec:
  provider: aws
  parameters:
    region: us-east-1
    pathTranslation: "False"
    objects: |
      - objectName: db
      - objectName: arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf
      - objectName: ../../etc/shadow
        objectType: ssmparameter
      - objectName: api
        objectType: secretsmanager
        filePermission: "644"
        jmesPath:
          - path: token
"#,
    )
    .unwrap();
    let (ok, text) = check(&file, &[]);
    assert!(!ok);
    for want in [
        "SecretProviderClass \"broken\"",
        "object \"db\": objectType is missing",
        "ARN's region \"eu-west-1\" does not match the mount's region \"us-east-1\"",
        "may not contain '..'",
        "filePermission \"644\" is invalid",
        "jmesPath[0] needs both path",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn check_accepts_a_bare_objects_list_and_stdin() {
    let out = provider_binary()
        .args(["check", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"- {objectName: /a/b, objectType: ssmparameter}\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("_a_b  0644  ssmparameter \"/a/b\""));
    let (ok, text) = check(std::path::Path::new("/nonexistent.yaml"), &[]);
    assert!(!ok && text.contains("cannot read"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_subcommand_acts_as_the_driver() {
    let name = unique("cli");
    create_secret("us-east-1", &name, r#"{"user":"u1"}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let spc = dir.path().join("spc.yaml");
    std::fs::write(
        &spc,
        format!(
            "kind: SecretProviderClass\nmetadata: {{name: demo}}\nspec:\n  provider: aws\n  parameters:\n    region: us-east-1\n    objects: |\n      - {{objectName: {name}, objectType: secretsmanager, objectAlias: s, jmesPath: [{{path: user, objectAlias: u}}]}}\n"
        ),
    )
    .unwrap();
    for driver_writes in [true, false] {
        let provider = Provider::start(Settings {
            mount: MountSettings { driver_writes_secrets: driver_writes, ..settings().mount },
            ..settings()
        })
        .await;
        // An absolute target, and a relative one (the command resolves it: the provider
        // accepts only absolute, clean paths).
        for relative in [false, true] {
            let name = format!("mnt-{driver_writes}-{relative}");
            let target = dir.path().join(&name);
            let given = if relative {
                std::path::PathBuf::from(format!("./{name}/../{name}"))
            } else {
                target.clone()
            };
            let (socket, spc, cwd) = (provider.socket.clone(), spc.clone(), dir.path().to_owned());
            let out = tokio::task::spawn_blocking(move || {
                provider_binary()
                    .current_dir(cwd)
                    .arg("mount")
                    .arg("--socket")
                    .arg(&socket)
                    .arg("--spc")
                    .arg(&spc)
                    .arg("--target")
                    .arg(&given)
                    .args(["--pod", "web-0", "--namespace", "shop", "--service-account", "web"])
                    .arg("--tokens")
                    .arg(tokens_json("cli"))
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(std::fs::read_to_string(target.join("u")).unwrap(), "u1");
            assert!(String::from_utf8_lossy(&out.stdout).contains("s  version"));
        }
        provider.stop().await;
    }
}

/// `csi-provider-aws mount` with `args`, run off the async runtime.
async fn mount_command(args: Vec<std::ffi::OsString>) -> std::process::Output {
    tokio::task::spawn_blocking(move || provider_binary().arg("mount").args(args).output().unwrap())
        .await
        .unwrap()
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<std::ffi::OsString> {
    args.iter().map(|a| a.as_ref().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_without_a_provider_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spc = dir.path().join("spc.yaml");
    std::fs::write(&spc, "kind: SecretProviderClass\nmetadata: {name: demo}\nspec: {provider: aws}\n")
        .unwrap();
    let target = dir.path().join("a/b/c");
    // No socket at all, and a socket file nobody listens on (a provider that died).
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    for socket in [dir.path().join("missing/aws.sock"), stale] {
        let out = mount_command(os(&[&"--socket", &socket, &"--spc", &spc, &"--target", &target])).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(&format!("no provider listening on {}", socket.display())), "{stderr}");
        assert!(!dir.path().join("a").exists(), "{} was left behind", dir.path().join("a").display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mount_leaves_no_directories_behind() {
    let dir = tempfile::tempdir().unwrap();
    let spc = dir.path().join("spc.yaml");
    let missing = unique("no-such-secret");
    std::fs::write(
        &spc,
        format!(
            "kind: SecretProviderClass\nmetadata: {{name: demo}}\nspec:\n  provider: aws\n  parameters:\n    region: us-east-1\n    objects: |\n      - {{objectName: {missing}, objectType: secretsmanager}}\n"
        ),
    )
    .unwrap();
    // An existing directory stays; the ones the command created go.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    for driver_writes in [true, false] {
        let provider = Provider::start(Settings {
            mount: MountSettings { driver_writes_secrets: driver_writes, ..settings().mount },
            ..settings()
        })
        .await;
        for target in [dir.path().join("new/mnt"), existing.clone()] {
            let out = mount_command(os(&[
                &"--socket",
                &provider.socket,
                &"--spc",
                &spc,
                &"--target",
                &target,
                &"--namespace",
                &"shop",
                &"--service-account",
                &"web",
                &"--tokens",
                &tokens_json("cli"),
            ]))
            .await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success());
            assert!(stderr.contains("ResourceNotFoundException"), "{stderr}");
            assert!(!dir.path().join("new").exists(), "driver_writes={driver_writes}: new/ was left behind");
            assert!(existing.is_dir() && std::fs::read_dir(&existing).unwrap().next().is_none());
        }
        provider.stop().await;
    }
}

#[test]
fn a_repeated_flag_takes_its_last_value_as_in_go() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aws.sock");
    // The harness's --provider-volume (the temporary directory) comes after this one.
    let mut command = provider_binary();
    command.arg("--provider-volume=/nonexistent/first");
    // Served on the last --provider-volume (the first one cannot exist).
    let binary = Binary::start(command, dir, &["--qps=5", "--qps=20", "-burst=7", "-burst=30"], &[]);
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_ok());
    let log = binary.log();
    drop(binary);
    assert!(log.contains("qps=20") && log.contains("burst=30"), "{log}");
}

#[test]
fn sigterm_while_starting_stops_cleanly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = provider_binary()
        .arg(format!("--provider-volume={}", dir.path().display()))
        .arg("--metrics-addr=127.0.0.1:0")
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The kubelet may stop a pod at any time, also before its socket is served: signal at the
    // first log line, long before that.
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("starting csi-provider-aws"), "{first}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let log: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {log:?}");
    assert!(log.iter().any(|l| l.contains("received SIGTERM")), "{log:?}");
    assert!(!dir.path().join("aws.sock").exists(), "the socket was left behind");
}
