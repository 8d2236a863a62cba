//! The provider's image run as the Helm chart runs it: the chart rendered offline
//! (`.ci/helm.py`, Helm's own SDK), its DaemonSet's pod template turned into a Pod and
//! played by `podman kube play` under runc, with hostPath directories made for the test.
//!
//! What `kube play` cannot express, and how it is covered here:
//! - The pod network. The Pod gets `hostNetwork: true`, so the provider reaches the peers on
//!   127.0.0.1 and the test reaches its metrics port on 127.0.0.1 and ::1.
//! - What kubelet adds to every pod: the service-account volume at
//!   `/var/run/secrets/kubernetes.io/serviceaccount` (token, `ca.crt`, namespace) and
//!   `KUBERNETES_SERVICE_HOST`/`PORT` (added here; the stand-in API server speaks HTTPS with
//!   a certificate of the test's CA, so the provider's in-cluster client runs as in a
//!   cluster), and the `/etc/hosts` it writes (podman ignores `hostAliases` with host
//!   networking; the test's hosts file is mounted where kubelet mounts its own).
//! - `ports`: with host networking the container's port is the host's; podman refuses port
//!   mappings there, so they are dropped (the probes below resolve the named port from the
//!   chart's own `ports`).
//! - Probes. Podman would run an `httpGet` probe as `curl` inside the container (the image has
//!   no curl) and has no readiness gating: the probes are taken out of the played Pod and
//!   [`ChartPod::probe`] performs them from the host as kubelet does, with the path, port
//!   and timeout the chart declares.
//! - Everything else is played as rendered: image, args, env, ports, the securityContext
//!   (uid 0, every capability dropped, no privilege escalation, read-only root filesystem
//!   without podman's tmpfs mounts, RuntimeDefault seccomp), hostPath volumes with their
//!   mountPropagation (a host directory mounted with propagation is made a shared mount, as
//!   the kubelet's is), the memory limit (the container's own cgroup).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::tls::TestCa;
use crate::{FakeKube, free_port};

/// The image `image/build.sh` builds.
pub const IMAGE: &str = "localhost/csi-provider-aws:dev";

/// The repository's root (the chart, `.ci/helm.py`).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Runs `command`; panics with its output unless it succeeds.
fn run(command: &mut Command) -> Output {
    let output =
        command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn podman(args: &[&str]) -> String {
    String::from_utf8(run(Command::new("podman").args(args)).stdout).unwrap()
}

/// The Python of the deploy-lint venv (Helm's SDK), installed on first use.
fn helm_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out =
            run(Command::new("bash").arg(repository().join(".ci/lint-tools.sh")).stderr(Stdio::inherit()));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("bin/python")
    })
}

/// The chart rendered as `helm template` with `values` (release csi-provider-aws in
/// kube-system): every document, parsed.
pub fn render_chart(values: &Value) -> Vec<Value> {
    let root = repository();
    let out = run(Command::new(helm_python())
        .arg(root.join(".ci/helm.py"))
        .args(["template", "charts/csi-provider-aws", "csi-provider-aws", "kube-system", "--set-json"])
        .arg(values.to_string())
        .current_dir(&root));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

/// What to play besides the chart's defaults.
#[derive(Default)]
pub struct PodOptions {
    /// Chart values merged over the image and the metrics port the harness sets.
    pub values: Value,
    /// `/etc/hosts` lines to add (as kubelet writes `hostAliases`).
    pub hosts: Vec<String>,
    /// Extra read-only files: (host path, path in the container).
    pub files: Vec<(PathBuf, String)>,
}

/// One played pod: the provider's container under the chart's pod spec.
pub struct ChartPod {
    pub name: String,
    /// The DaemonSet's pod template as the chart rendered it (before the changes above).
    pub template: Value,
    dir: tempfile::TempDir,
    manifest: PathBuf,
    metrics_port: u16,
    /// The container's path of the socket directory (`providerVolume`).
    provider_volume: String,
    /// Host directories made shared mounts for the pod (unmounted when it goes).
    shared: Vec<PathBuf>,
}

impl ChartPod {
    /// Renders the chart for `IMAGE` with `options.values` and a free metrics port, and plays
    /// its pod against the stand-in API server `kube` (HTTPS, certificate of `ca`). Returns
    /// once the provider serves its socket.
    pub fn play(kube: &FakeKube, ca: &TestCa, options: PodOptions) -> Self {
        let metrics_port = free_port();
        let (repository, tag) = IMAGE.rsplit_once(':').unwrap();
        let mut values =
            json!({"image": {"repository": repository, "tag": tag}, "metrics": {"port": metrics_port}});
        merge(&mut values, &options.values);
        let docs = render_chart(&values);
        let daemonset =
            docs.iter().find(|d| d["kind"] == "DaemonSet").expect("the chart renders a DaemonSet");
        let template = daemonset["spec"]["template"].clone();

        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("csi-provider-aws-test-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new().prefix("chart-pod-").tempdir().unwrap();
        let mut spec = template["spec"].clone();
        spec["hostNetwork"] = true.into();
        spec["restartPolicy"] = "Never".into();

        // The chart's hostPath volumes, at directories of this test. One the container
        // mounts with propagation is made a shared mount, as the kubelet's directory is on a
        // node: mounts made there later (the driver's volume tmpfs) then reach the container.
        let hostpaths = dir.path().join("host");
        let propagated: Vec<String> = spec["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m.get("mountPropagation").is_some_and(|p| p != "None"))
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect();
        let mut shared = Vec::new();
        for volume in spec["volumes"].as_array_mut().expect("the pod has volumes") {
            if let Some(path) = volume["hostPath"]["path"].as_str() {
                let host = hostpaths.join(path.trim_start_matches('/'));
                std::fs::create_dir_all(&host).unwrap();
                if volume["name"].as_str().is_some_and(|n| propagated.iter().any(|p| p == n)) {
                    let host = host.to_str().unwrap();
                    run(Command::new("mount").args(["--bind", host, host]));
                    run(Command::new("mount").args(["--make-rshared", host]));
                    shared.push(PathBuf::from(host));
                }
                volume["hostPath"]["path"] = host.display().to_string().into();
            }
        }
        // What kubelet adds: the service-account volume and the API server's address.
        let service_account = dir.path().join("serviceaccount");
        kube.write_service_account(&service_account, ca, "kube-system");
        let hosts = dir.path().join("hosts");
        let mut hosts_text = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        );
        for line in &options.hosts {
            hosts_text.push_str(line);
            hosts_text.push('\n');
        }
        std::fs::write(&hosts, hosts_text).unwrap();
        let mut added = vec![
            (service_account, "/var/run/secrets/kubernetes.io/serviceaccount".to_owned()),
            (hosts, "/etc/hosts".to_owned()),
        ];
        added.extend(options.files.iter().cloned());
        let volumes = spec["volumes"].as_array_mut().unwrap();
        for (i, (host, _)) in added.iter().enumerate() {
            let kind = if host.is_dir() { "Directory" } else { "File" };
            volumes.push(json!({"name": format!("kubelet-{i}"), "hostPath": {"path": host, "type": kind}}));
        }
        let container = &mut spec["containers"][0];
        assert_eq!(container["name"], "provider", "the chart's container");
        // With host networking the container's port is the host's; podman refuses port
        // mappings there (kubelet ignores them), and the probes run from here.
        for field in ["livenessProbe", "readinessProbe", "startupProbe", "ports"] {
            container.as_object_mut().unwrap().remove(field);
        }
        let mounts = container["volumeMounts"].as_array_mut().unwrap();
        for (i, (_, path)) in added.iter().enumerate() {
            mounts.push(json!({"name": format!("kubelet-{i}"), "mountPath": path, "readOnly": true}));
        }
        let mut env = container["env"].as_array().cloned().unwrap_or_default();
        env.push(json!({"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"}));
        env.push(json!({"name": "KUBERNETES_SERVICE_PORT", "value": kube.http.addr.port().to_string()}));
        container["env"] = env.into();
        let provider_volume = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|a| a.as_str()?.strip_prefix("--provider-volume="))
            .expect("the chart passes --provider-volume")
            .to_owned();

        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": template["metadata"]["labels"]},
            "spec": spec,
        });
        let manifest = dir.path().join("pod.yaml");
        std::fs::write(&manifest, serde_yaml::to_string(&pod).unwrap()).unwrap();
        let pod = Self { name, template, dir, manifest, metrics_port, provider_volume, shared };
        podman(&["kube", "play", "--no-hosts", pod.manifest.to_str().unwrap()]);
        pod.wait_for_socket();
        pod
    }

    /// The container's name (podman names it after the pod and the chart's container).
    pub fn container(&self) -> String {
        format!("{}-provider", self.name)
    }

    /// The host directory behind a hostPath volume of the chart mounted at `path`.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.dir.path().join("host").join(path.trim_start_matches('/'))
    }

    /// The socket, as the CSI driver on the host sees it.
    pub fn socket(&self) -> PathBuf {
        self.host_path(&self.provider_volume).join("aws.sock")
    }

    /// The metrics listener on loopback, over IPv4 or IPv6.
    pub fn metrics_addr(&self, ipv6: bool) -> String {
        if ipv6 { format!("[::1]:{}", self.metrics_port) } else { format!("127.0.0.1:{}", self.metrics_port) }
    }

    /// Performs the chart's `kind` probe (`livenessProbe`, `readinessProbe`) as kubelet does:
    /// GET its path on the port it names, within its timeout. The HTTP status.
    pub fn probe(&self, kind: &str, ipv6: bool) -> u16 {
        let container = &self.template["spec"]["containers"][0];
        let probe = &container[kind]["httpGet"];
        let path = probe["path"].as_str().unwrap_or_else(|| panic!("the chart's {kind} has no httpGet path"));
        let port = match &probe["port"] {
            Value::String(name) => container["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| {
                    panic!("the chart's {kind} names the port {name}, which the container lacks")
                }),
            number => number.as_u64().unwrap(),
        };
        let timeout = container[kind]["timeoutSeconds"].as_u64().unwrap_or(1);
        let host = if ipv6 { "[::1]" } else { "127.0.0.1" };
        crate::http_get_within(&format!("{host}:{port}"), path, Duration::from_secs(timeout))
            .map_or(0, |(s, _)| s)
    }

    /// What the provider logged so far.
    pub fn logs(&self) -> String {
        let out = run(Command::new("podman").args(["logs", &self.container()]));
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// Its state: "running", "exited", ...
    pub fn state(&self) -> String {
        podman(&["inspect", "--format", "{{.State.Status}}", &self.container()]).trim().to_owned()
    }

    pub fn exit_code(&self) -> i64 {
        podman(&["inspect", "--format", "{{.State.ExitCode}}", &self.container()]).trim().parse().unwrap()
    }

    /// `podman stop` with the pod's grace period (SIGTERM, then SIGKILL when it passes); how
    /// long it took.
    pub fn stop(&self) -> Duration {
        let grace = self.template["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        let started = Instant::now();
        podman(&["stop", "--time", &grace.to_string(), &self.container()]);
        started.elapsed()
    }

    /// SIGKILL: the provider gets no chance to remove its socket.
    pub fn kill(&self) {
        podman(&["kill", "--signal", "KILL", &self.container()]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.state() == "running" {
            assert!(Instant::now() < deadline, "the container survived SIGKILL");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the stopped container again (as kubelet restarts it); returns once it serves.
    pub fn restart(&self) {
        podman(&["start", &self.container()]);
        self.wait_for_socket();
    }

    fn wait_for_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.state() == "running" && self.probe("readinessProbe", false) == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the provider in {} never became ready:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The container's cgroup memory: (limit, peak usage) in bytes (cgroup v1 or v2).
    pub fn memory(&self) -> (u64, u64) {
        let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &self.container()]);
        let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", pid.trim())).unwrap();
        let read = |path: PathBuf| -> u64 {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            text.trim().parse().unwrap_or(u64::MAX)
        };
        if let Some(v1) = cgroups.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned())) {
            let dir = Path::new("/sys/fs/cgroup/memory").join(v1.trim_start_matches('/'));
            (read(dir.join("memory.limit_in_bytes")), read(dir.join("memory.max_usage_in_bytes")))
        } else {
            let v2 = cgroups.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup");
            let dir = Path::new("/sys/fs/cgroup").join(v2.trim_start_matches('/'));
            (read(dir.join("memory.max")), read(dir.join("memory.peak")))
        }
    }
}

impl Drop for ChartPod {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["pod", "rm", "--force", "--time", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for dir in &self.shared {
            let _ = Command::new("umount").arg("--recursive").arg(dir).stderr(Stdio::null()).status();
        }
    }
}

/// Helm's coalescing: maps merge, anything else is replaced.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (k, v) in over {
                merge(base.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (base, over) if !over.is_null() => *base = over.clone(),
        _ => {}
    }
}
