//! A stand-in Kubernetes API server for the local quick start (examples/local/run.sh):
//! answers the provider's service-account lookups with IRSA role annotations and serves
//! service-account issuer discovery, as an EKS cluster would, until killed. For each
//! `--pod NAMESPACE/SERVICE_ACCOUNT/POD` it writes the tokens kubelet would give that pod
//! (RS256, signed by this cluster's key) as the CSI driver passes them
//! (`serviceAccount.tokens` JSON) to `TOKENS_DIR/POD.json`.
//!
//! usage: stand-in-kube PORT [NAMESPACE/NAME=ROLE_ARN ...] [--pod NS/SA/POD ... --tokens-dir DIR]

use std::path::PathBuf;
use std::process::ExitCode;

use test_kit::{FakeKube, tokens};

const USAGE: &str =
    "usage: stand-in-kube PORT [NAMESPACE/NAME=ROLE_ARN ...] [--pod NS/SA/POD ... --tokens-dir DIR]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(port) = args.next().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (mut accounts, mut pods, mut tokens_dir) = (Vec::new(), Vec::new(), None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pod" => match args.next().as_deref().map(|p| p.splitn(3, '/').collect::<Vec<_>>()) {
                Some(parts) if parts.len() == 3 => {
                    pods.push((parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned()))
                }
                _ => {
                    eprintln!("{USAGE}\n--pod takes NAMESPACE/SERVICE_ACCOUNT/POD");
                    return ExitCode::from(2);
                }
            },
            "--tokens-dir" => tokens_dir = args.next().map(PathBuf::from),
            _ => match arg.split_once('=').and_then(|(account, role)| Some((account.split_once('/')?, role)))
            {
                Some(((namespace, name), role)) => {
                    accounts.push((namespace.to_owned(), name.to_owned(), role.to_owned()))
                }
                None => {
                    eprintln!("{USAGE}\nnot NAMESPACE/NAME=ROLE_ARN: {arg}");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let kube = FakeKube::bind(&format!("127.0.0.1:{port}")).await;
    for (namespace, name, role) in &accounts {
        kube.service_account(namespace, name, Some(role));
    }
    let key = tokens::SigningKey::generate("stand-in-kube");
    kube.issuer(&[&key]);
    if !pods.is_empty() {
        let Some(dir) = tokens_dir else {
            eprintln!("{USAGE}\n--pod needs --tokens-dir");
            return ExitCode::from(2);
        };
        for (namespace, service_account, pod) in &pods {
            let path = dir.join(format!("{pod}.json"));
            if let Err(e) = std::fs::write(&path, tokens::pod_tokens(&key, namespace, service_account, pod)) {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
