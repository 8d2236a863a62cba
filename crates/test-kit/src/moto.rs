//! moto in server mode: the real Secrets Manager, Parameter Store and STS wire protocols.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// Starts a moto server on a free loopback port, over HTTPS with `tls` (certificate and key
/// files) when given, and returns its URL once it accepts connections. A watcher shell
/// kills moto when this process is gone, so no server outlives the tests.
pub fn start_moto(tls: Option<(&Path, &Path)>) -> String {
    let port = free_port();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let tls_args = tls.map_or(String::new(), |(cert, key)| {
        format!(" --ssl-cert '{}' --ssl-key '{}'", cert.display(), key.display())
    });
    let script = format!(
        "{python} -m moto.server -H 127.0.0.1 -p {port}{tls_args} >/dev/null 2>&1 & m=$!; \
         while kill -0 {pid} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m 2>/dev/null",
        pid = std::process::id()
    );
    let mut watcher = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto (pip install 'moto[server]')");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            watcher.try_wait().unwrap().is_none(),
            "moto exited at start (is moto[server] installed for {python}?)"
        );
        assert!(Instant::now() < deadline, "moto did not start on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::spawn(move || watcher.wait());
    let scheme = if tls.is_some() { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{port}")
}
