//! The provider binary, started as a test or the bench needs it.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use csi_provider_aws::proto::csi_driver_provider_client::CsiDriverProviderClient;
use tonic::transport::Channel;

/// How long the provider may take to start.
const START_LIMIT: Duration = Duration::from_secs(20);

/// The provider binary serving `aws.sock` in a temporary directory; killed when dropped.
pub struct Binary {
    child: Child,
    dir: tempfile::TempDir,
    /// The metrics listener's address, when the log was captured.
    metrics: Option<String>,
    log: Arc<Mutex<String>>,
}

impl Binary {
    /// Runs `command` (the provider, or a shell that execs it with the arguments after its
    /// own) with `--provider-volume=DIR --metrics-addr=127.0.0.1:0` and then `args`, in an
    /// environment without Kubernetes configuration, with `RUST_LOG=info` and test AWS
    /// credentials, then `env`. Captures its log (stderr) and returns once it serves the
    /// socket, which may have been stale before.
    pub fn start(command: Command, dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = spawn(command, &dir, args, env, Stdio::piped());
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("serving /metrics") {
                    // Text logs say addr=HOST:PORT, JSON logs "addr":"HOST:PORT".
                    let found = line.split("addr=").nth(1).or_else(|| line.split("\"addr\":").nth(1));
                    if let Some(addr) = found {
                        let addr = addr.trim_start_matches('"');
                        let _ = tx.send(addr.split(['"', ' ', ',']).next().unwrap_or("").to_owned());
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let Ok(metrics) = rx.recv_timeout(START_LIMIT) else {
            panic!("the provider did not log its metrics address: {}", log.lock().unwrap());
        };
        let deadline = Instant::now() + START_LIMIT;
        while !log.lock().unwrap().contains("serving the CSI driver") {
            assert!(Instant::now() < deadline, "the provider never served: {}", log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
        let socket = dir.path().join("aws.sock");
        assert!(std::fs::symlink_metadata(&socket).unwrap().file_type().is_socket());
        Self { child, dir, metrics: Some(metrics), log }
    }

    /// As [`Binary::start`], but its log goes to `stderr` (at whatever `RUST_LOG` in `env`
    /// says) instead of being captured, so the metrics address is not known; returns once
    /// the socket exists. For measuring the provider.
    pub fn start_quiet(
        command: Command,
        dir: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        let child = spawn(command, &dir, args, env, stderr);
        let socket = dir.path().join("aws.sock");
        let deadline = Instant::now() + START_LIMIT;
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the provider did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        Self { child, dir, metrics: None, log: Arc::default() }
    }

    /// Its `--provider-volume`, where the socket is.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("aws.sock")
    }

    /// The metrics listener's address (HOST:PORT).
    pub fn metrics(&self) -> &str {
        self.metrics.as_deref().expect("started with Binary::start, which reads the address from the log")
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the signal `name` ("TERM", "INT").
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().unwrap();
        assert!(status.success());
    }

    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Its exit status, if it exits within `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Its exit status; it must exit within `limit`.
    pub fn exit(&mut self, limit: Duration) -> ExitStatus {
        let status = self.wait(limit);
        assert!(status.is_some(), "the provider did not exit in {limit:?}");
        status.unwrap()
    }

    /// (resident KiB, CPU seconds so far) from /proc.
    pub fn usage(&self) -> (u64, f64) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("the provider runs");
        (self.status_kib("VmRSS:"), cpu_seconds(&stat))
    }

    /// CPU time its threads have run so far, in nanoseconds (the sum of every live thread's
    /// `/proc/PID/task/TID/schedstat`): exact where `usage` counts 10 ms ticks. A thread that
    /// exited took its time with it; the provider's threads live as long as it does, and
    /// blocking-pool threads for 10 s idle.
    pub fn cpu_ns(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else { return 0 };
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
            .map(|stat| schedstat_ns(&stat))
            .sum()
    }

    /// Peak resident KiB so far.
    pub fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// A field of /proc/PID/status, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("the provider runs");
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// A client on a new connection, as the driver dials the socket.
    pub async fn client(&self) -> CsiDriverProviderClient<Channel> {
        CsiDriverProviderClient::new(
            csi_provider_aws::commands::mount::connect(&self.socket()).await.unwrap(),
        )
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    mut command: Command,
    dir: &tempfile::TempDir,
    args: &[&str],
    env: &[(&str, &str)],
    stderr: Stdio,
) -> Child {
    command
        .arg(format!("--provider-volume={}", dir.path().display()))
        .arg("--metrics-addr=127.0.0.1:0")
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "info")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(Stdio::null())
        .stderr(stderr);
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

/// CPU seconds (user + system) in the text of a /proc/PID/stat file.
/// Nanoseconds on a CPU from a thread's `schedstat` text (its first field; 0 if unreadable).
pub fn schedstat_ns(stat: &str) -> u64 {
    stat.split_whitespace().next().and_then(|ns| ns.parse().ok()).unwrap_or(0)
}

pub fn cpu_seconds(stat: &str) -> f64 {
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}
