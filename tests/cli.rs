//! The `check` and `mount` subcommands as a user runs them.

mod common;

use std::process::Command;

use common::*;

fn check(path: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_csi-provider-aws"))
        .arg("check")
        .arg(path)
        .args(extra)
        .output()
        .unwrap();
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
    let out = Command::new(env!("CARGO_BIN_EXE_csi-provider-aws"))
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
        let provider =
            Provider::start(Options { driver_writes_secrets: driver_writes, ..Options::default() }).await;
        let target = dir.path().join(format!("mnt-{driver_writes}"));
        let socket = provider.socket.clone();
        let spc = spc.clone();
        let target2 = target.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_csi-provider-aws"))
                .arg("mount")
                .arg("--socket")
                .arg(&socket)
                .arg("--spc")
                .arg(&spc)
                .arg("--target")
                .arg(&target2)
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
        provider.stop().await;
    }
}
