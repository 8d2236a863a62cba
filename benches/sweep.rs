//! How cost grows with the node (pods, replicas per service account, objects per class), and
//! the node boot under a CPU limit: the provider in a cgroup of its own, and ASCP's call
//! pattern replayed by a child process in one of the same size.

use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// One point of the sweep.
pub struct Point {
    pub pods: usize,
    pub replicas: usize,
    pub objects: usize,
    pub calls: u64,
    pub wall_ms: f64,
    pub cpu_ms: f64,
    pub peak_rss_mib: f64,
    pub ascp_calls: u64,
    pub ascp_wall_ms: f64,
}

/// The sweep as a Markdown table.
pub fn table(points: &[Point]) -> String {
    let mut out = String::from(
        "| pods | replicas per SA | objects | AWS calls | ASCP's calls | wall ms | ASCP's wall ms | provider CPU ms | CPU us per mount | peak RSS MiB |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in points {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} |",
            p.pods,
            p.replicas,
            p.objects,
            p.calls,
            p.ascp_calls,
            p.wall_ms,
            p.ascp_wall_ms,
            p.cpu_ms,
            p.cpu_ms * 1000.0 / p.pods as f64,
            p.peak_rss_mib
        );
    }
    out
}

/// A line of a plot: label, colour, dashed, points (x, y).
type Series = (String, &'static str, bool, Vec<(f64, f64)>);

/// Three log-log panels (AWS calls, node-boot wall, provider CPU) against pods per node.
pub fn plot(points: &[Point]) -> String {
    let colours = [(1, "#1f77b4"), (20, "#2ca02c"), (100, "#d62728")];
    let series = |metric: &dyn Fn(&Point) -> f64, ascp: Option<&dyn Fn(&Point) -> f64>| {
        let mut all: Vec<Series> = Vec::new();
        for &(objects, colour) in &colours {
            for replicas in [1, 10] {
                let line = points
                    .iter()
                    .filter(|p| p.objects == objects && p.replicas == replicas)
                    .map(|p| (p.pods as f64, metric(p)))
                    .collect();
                all.push((format!("{objects} obj, {replicas} repl"), colour, replicas == 10, line));
            }
            if let Some(ascp) = ascp {
                let line = points
                    .iter()
                    .filter(|p| p.objects == objects && p.replicas == 1)
                    .map(|p| (p.pods as f64, ascp(p)))
                    .collect();
                all.push((format!("{objects} obj, ASCP"), colour, false, line));
            }
        }
        all
    };
    let calls = series(&|p| p.calls as f64, Some(&|p| p.ascp_calls as f64));
    let wall = series(&|p| p.wall_ms, Some(&|p| p.ascp_wall_ms));
    let cpu = series(&|p| p.cpu_ms, None);
    let (w, h) = (360.0, 300.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        3.0 * w,
        h + 70.0
    );
    for (i, (title, lines)) in
        [("AWS calls", &calls), ("node-boot wall, ms", &wall), ("provider CPU, ms", &cpu)].iter().enumerate()
    {
        panel(&mut svg, i as f64 * w, w, h, title, lines);
    }
    // The legend: colour is objects per class; solid 1 replica per service account, dashed
    // 10; thin dotted lines ASCP's pattern.
    let y = h + 30.0;
    let _ = writeln!(
        svg,
        "<text x=\"20\" y=\"{y}\">colour: objects per class (blue 1, green 20, red 100) · solid: csi-provider-aws, 1 replica per service account · dashed: 10 replicas · dotted: ASCP's call pattern · x: pods per node (log) · y: log</text>"
    );
    svg.push_str("</svg>\n");
    svg
}

fn panel(svg: &mut String, left: f64, w: f64, h: f64, title: &str, lines: &[Series]) {
    let (x0, x1) = (left + 50.0, left + w - 15.0);
    let (y0, y1) = (h - 10.0, 30.0);
    let ys: Vec<f64> = lines.iter().flat_map(|l| l.3.iter().map(|p| p.1)).filter(|y| *y > 0.0).collect();
    let lo = ys.iter().cloned().fold(f64::MAX, f64::min).max(0.1).log10().floor();
    let hi = ys.iter().cloned().fold(0.1, f64::max).log10().ceil().max(lo + 1.0);
    let (xlo, xhi) = (10f64.log10(), 250f64.log10());
    let x = |v: f64| x0 + (v.log10() - xlo) / (xhi - xlo) * (x1 - x0);
    let y = |v: f64| y0 - (v.max(0.1).log10() - lo) / (hi - lo) * (y0 - y1);
    let _ = writeln!(svg, "<text x=\"{}\" y=\"18\" font-weight=\"bold\">{title}</text>", left + 50.0);
    let _ = writeln!(
        svg,
        "<rect x=\"{x0}\" y=\"{y1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        x1 - x0,
        y0 - y1
    );
    for decade in lo as i32..=hi as i32 {
        let v = 10f64.powi(decade);
        let _ = writeln!(
            svg,
            "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\">{3}</text>",
            y(v),
            x0 - 4.0,
            y(v) + 4.0,
            if v >= 1.0 { format!("{v}") } else { format!("{v:.1}") }
        );
    }
    for pods in [10.0, 50.0, 110.0, 250.0] {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{pods}</text>",
            x(pods),
            y0 + 14.0
        );
    }
    for (label, colour, dashed, points) in lines {
        let path: Vec<String> = points.iter().map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py))).collect();
        let ascp = label.ends_with("ASCP");
        let dash = if ascp {
            " stroke-dasharray=\"2,3\""
        } else if *dashed {
            " stroke-dasharray=\"6,4\""
        } else {
            ""
        };
        let width = if ascp { 1.2 } else { 2.0 };
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash}><title>{label}</title></polyline>",
            path.join(" ")
        );
    }
}

/// A cgroup holding processes to `millicores` of CPU (cgroup v2, else v1's cpu controller),
/// removed when dropped. `None` where no cgroup can be made (not root, no controller).
pub struct CpuLimit {
    dir: PathBuf,
}

impl CpuLimit {
    pub fn new(millicores: u64, name: &str) -> Option<Self> {
        let name = format!("csi-bench-{name}-{}", std::process::id());
        let period = 100_000u64;
        let quota = millicores * period / 1000;
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let (dir, settings): (PathBuf, Vec<(&str, String)>) =
            if std::fs::read_to_string(v2).is_ok_and(|c| c.contains("cpu")) {
                (Path::new("/sys/fs/cgroup").join(&name), vec![("cpu.max", format!("{quota} {period}"))])
            } else {
                (
                    Path::new("/sys/fs/cgroup/cpu").join(&name),
                    vec![("cpu.cfs_period_us", period.to_string()), ("cpu.cfs_quota_us", quota.to_string())],
                )
            };
        std::fs::create_dir(&dir).ok()?;
        let limit = Self { dir };
        for (file, value) in settings {
            std::fs::write(limit.dir.join(file), value).ok()?;
        }
        Some(limit)
    }

    /// Moves process `pid` (all its threads) into the cgroup.
    pub fn hold(&self, pid: u32) -> bool {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).is_ok()
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // The processes have exited or are killed by now; a cgroup with none left goes.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `REPLAY_CHILD="AWS_ADDR KUBE_ADDR PODS OBJECTS"`: this process is the replay child. It
/// waits for a line on stdin (by then it sits in its cgroup), replays ASCP's pattern for
/// PODS pods at once and prints the wall in ms.
pub const REPLAY_CHILD: &str = "REPLAY_CHILD";

/// Runs ASCP's pattern for `pods` pods in a child process held to `limit`; its wall in ms.
pub fn replay_in(
    limit: &CpuLimit,
    aws: std::net::SocketAddr,
    kube: std::net::SocketAddr,
    pods: usize,
    objects: usize,
) -> Option<f64> {
    let mut child = Command::new(std::env::current_exe().ok()?)
        .env(REPLAY_CHILD, format!("{aws} {kube} {pods} {objects}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    if !limit.hold(child.id()) {
        let _ = child.kill();
        return None;
    }
    writeln!(child.stdin.as_mut()?).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take()?).read_line(&mut line).ok()?;
    let _ = child.wait();
    line.trim().parse().ok()
}
