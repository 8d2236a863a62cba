//! EKS Pod Identity: credentials from the node's Pod Identity agent, which takes the pod's
//! `pods.eks.amazonaws.com` token in the `Authorization` header (no scheme prefix).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_smithy_types::date_time::{DateTime, Format};
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::IdentityError;
use crate::class::AddressPreference;
use crate::secret::SecretString;

/// Timeout of each request to the agent when `--pod-identity-http-timeout` is empty or
/// unset (ASCP's default too).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Attempts per endpoint on transient failures (connection refused, timeout, 5xx, 429).
const ATTEMPTS: u32 = 3;
/// The agent's answers are small; anything larger is not the agent.
const MAX_BODY: usize = 64 * 1024;

/// A client of the node's Pod Identity agent.
pub struct PodIdentityAgent {
    ipv4: Uri,
    ipv6: Uri,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentCredentials {
    access_key_id: String,
    secret_access_key: SecretString,
    token: SecretString,
    #[serde(default)]
    expiration: Option<String>,
}

/// What one attempt produced.
enum Attempt {
    Done(Result<Credentials, IdentityError>),
    Transient(String),
}

impl PodIdentityAgent {
    /// `timeout` bounds each attempt (`--pod-identity-http-timeout`).
    pub fn new(ipv4: &str, ipv6: &str, timeout: Duration) -> Result<Self, String> {
        let parse = |flag: &str, url: &str| {
            url.parse::<Uri>()
                .ok()
                .filter(|u| u.scheme_str() == Some("http") && u.host().is_some())
                .ok_or_else(|| format!("{flag} {url:?} is not an http:// URL"))
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Ok(Self {
            ipv4: parse("--pod-identity-agent-ipv4-endpoint", ipv4)?,
            ipv6: parse("--pod-identity-agent-ipv6-endpoint", ipv6)?,
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Fetches the pod's credentials, trying the endpoints `preference` allows in order.
    pub async fn credentials(
        &self,
        token: &SecretString,
        preference: AddressPreference,
    ) -> Result<Credentials, IdentityError> {
        let endpoints: &[&Uri] = match preference {
            AddressPreference::Ipv4 => &[&self.ipv4],
            AddressPreference::Ipv6 => &[&self.ipv6],
            AddressPreference::Auto => &[&self.ipv4, &self.ipv6],
        };
        let mut failures = Vec::new();
        for endpoint in endpoints {
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt))).await;
                }
                match self.attempt(endpoint, token).await {
                    Attempt::Done(result) => return result,
                    Attempt::Transient(reason) => {
                        tracing::debug!(%endpoint, attempt, %reason, "Pod Identity agent attempt failed");
                        if attempt + 1 == ATTEMPTS {
                            failures.push(format!("{endpoint}: {reason}"));
                        }
                    }
                }
            }
        }
        Err(IdentityError::AgentUnavailable(failures.join("; ")))
    }

    async fn attempt(&self, endpoint: &Uri, token: &SecretString) -> Attempt {
        let request = Request::get(endpoint.clone())
            .header(http::header::AUTHORIZATION, token.expose())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new());
        let request = match request {
            Ok(request) => request,
            // Only an unusable header value (a token with control characters) gets here.
            Err(_) => {
                return Attempt::Done(Err(IdentityError::BadTokens(
                    "the Pod Identity token is not a valid header value".into(),
                )));
            }
        };
        let response = match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => return Attempt::Transient(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => return Attempt::Transient(format!("cannot connect: {e}")),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let body =
            match tokio::time::timeout(self.timeout, Limited::new(response.into_body(), MAX_BODY).collect())
                .await
            {
                Ok(Ok(body)) => body.to_bytes(),
                Ok(Err(e)) => return Attempt::Transient(format!("reading the answer failed: {e}")),
                Err(_) => return Attempt::Transient(format!("no complete answer within {:?}", self.timeout)),
            };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Transient(format!("HTTP {status}"));
        }
        if !status.is_success() {
            let message: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Attempt::Done(Err(IdentityError::AgentRejected { status: status.as_u16(), message }));
        }
        Attempt::Done(parse_credentials(&body))
    }
}

fn parse_credentials(body: &[u8]) -> Result<Credentials, IdentityError> {
    // serde's message could quote part of the answer, which holds secrets: leave it out.
    let parsed: AgentCredentials =
        serde_json::from_slice(body).map_err(|_| IdentityError::AgentRejected {
            status: 200,
            message: "the answer is not the agent's credentials JSON".into(),
        })?;
    let expiry = parsed
        .expiration
        .as_deref()
        .and_then(|text| DateTime::from_str(text, Format::DateTime).ok())
        .and_then(|t| SystemTime::try_from(t).ok());
    Ok(Credentials::new(
        parsed.access_key_id,
        parsed.secret_access_key.expose(),
        Some(parsed.token.expose().to_owned()),
        expiry,
        "pod-identity",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_agent_answer() {
        let body = br#"{"AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","AccountId":"1","Expiration":"2030-01-01T00:00:00Z"}"#;
        let credentials = parse_credentials(body).unwrap();
        assert_eq!(credentials.access_key_id(), "ASIA1");
        assert_eq!(credentials.session_token(), Some("t"));
        assert!(credentials.expiry().is_some());
        let err = parse_credentials(b"{\"Token\":\"leak-me\"}").unwrap_err().to_string();
        assert!(!err.contains("leak-me"), "{err}");
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        let t = Duration::from_secs(1);
        assert!(
            PodIdentityAgent::new(
                "http://169.254.170.23/v1/credentials",
                "http://[fd00:ec2::23]/v1/credentials",
                t
            )
            .is_ok()
        );
        assert!(PodIdentityAgent::new("169.254.170.23", "http://[fd00:ec2::23]/", t).is_err());
        assert!(PodIdentityAgent::new("http://a/", "https://b/", t).is_err());
    }
}
