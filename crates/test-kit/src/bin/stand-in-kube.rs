//! A stand-in Kubernetes API server for the local quick start (examples/local/run.sh):
//! answers the provider's service-account lookups with IRSA role annotations, as an EKS
//! cluster would, until killed.
//!
//! usage: stand-in-kube PORT [NAMESPACE/NAME=ROLE_ARN ...]

use std::process::ExitCode;

use test_kit::FakeKube;

const USAGE: &str = "usage: stand-in-kube PORT [NAMESPACE/NAME=ROLE_ARN ...]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(port) = args.next().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut accounts = Vec::new();
    for arg in args {
        match arg.split_once('=').and_then(|(account, role)| Some((account.split_once('/')?, role))) {
            Some(((namespace, name), role)) => {
                accounts.push((namespace.to_owned(), name.to_owned(), role.to_owned()))
            }
            None => {
                eprintln!("{USAGE}\nnot NAMESPACE/NAME=ROLE_ARN: {arg}");
                return ExitCode::from(2);
            }
        }
    }
    let kube = FakeKube::bind(&format!("127.0.0.1:{port}")).await;
    for (namespace, name, role) in &accounts {
        kube.service_account(namespace, name, Some(role));
    }
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
