//! A fake AWS endpoint: STS, Secrets Manager and Parameter Store.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::http::{Response, response, serve_maybe_tls};
use crate::tokens;
use tokio_rustls::rustls;

/// The content type of Secrets Manager's and Parameter Store's JSON protocol.
pub const CONTENT_JSON: &str = "application/x-amz-json-1.1";

/// One canned answer: HTTP status, content type, body.
pub type Answer = (u16, &'static str, String);

/// A fake AWS endpoint: STS, Secrets Manager and Parameter Store with valid answers, each
/// after an optional per-call latency (as a round trip to AWS takes), any of which a test
/// can replace per operation and region (the region taken from the request's SigV4 scope).
/// Counts the calls it answers.
#[derive(Clone)]
pub struct FakeAws {
    pub addr: SocketAddr,
    state: Arc<State>,
    /// "https" when served over TLS.
    scheme: &'static str,
}

#[derive(Default)]
struct State {
    latency: Duration,
    /// (operation, region or "*") -> answer.
    overrides: Mutex<Vec<(String, String, Answer)>>,
    calls: AtomicU64,
    sts_calls: AtomicU64,
    /// When set, STS accepts only tokens these keys signed (public keys, DER), as AWS trusts
    /// the cluster's OIDC provider.
    trusted: Mutex<Option<Vec<Vec<u8>>>>,
    /// Access key ids whose Secrets Manager and Parameter Store calls are denied.
    denied: Mutex<Vec<String>>,
    /// (operation, access key id, region) of every signed call, in order.
    signed: Mutex<Vec<(String, String, String)>>,
    /// Answers to give the next calls of an operation, one each, before the usual ones.
    next: Mutex<Vec<(String, Answer)>>,
}

impl FakeAws {
    /// Answers at once.
    pub async fn start() -> Self {
        Self::with_latency(Duration::ZERO).await
    }

    /// Answers every call `latency` after it arrived.
    pub async fn with_latency(latency: Duration) -> Self {
        Self::serving(latency, None).await
    }

    /// As [`FakeAws::with_latency`], over HTTPS with `tls` (as AWS's endpoints are): every
    /// new connection costs the client a TLS handshake.
    pub async fn with_latency_tls(latency: Duration, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::serving(latency, Some(tls)).await
    }

    async fn serving(latency: Duration, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Self {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(State { latency, ..State::default() }),
            scheme: if tls.is_some() { "https" } else { "http" },
        };
        let shared = fake.clone();
        serve_maybe_tls(listener, tls, move |req| {
            let fake = shared.clone();
            async move { fake.answer(req).await }
        });
        fake
    }

    /// What `AWS_ENDPOINT_URL` is set to.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Answers `operation` (e.g. "GetSecretValue") in `region` ("*": every region) with `answer`.
    pub fn set(&self, operation: &str, region: &str, answer: Answer) {
        let mut overrides = self.state.overrides.lock().unwrap();
        overrides.retain(|(op, r, _)| !(op == operation && r == region));
        overrides.push((operation.to_owned(), region.to_owned(), answer));
    }

    /// Back to valid answers everywhere.
    pub fn clear(&self) {
        self.state.overrides.lock().unwrap().clear();
    }

    /// The calls answered so far, STS among them.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The STS calls answered so far (those without `x-amz-target`: STS's query protocol).
    pub fn sts_calls(&self) -> u64 {
        self.state.sts_calls.load(Ordering::SeqCst)
    }

    /// From now on STS, as AWS with the cluster's OIDC provider, exchanges only tokens signed
    /// by one of `keys`, with the cluster's issuer, the audience `sts.amazonaws.com` and not
    /// expired, answering anything else with STS's own error (InvalidIdentityToken,
    /// ExpiredTokenException). The credentials it gives are the token's own:
    /// [`FakeAws::access_key_for`].
    pub fn trust(&self, keys: &[&tokens::SigningKey]) {
        *self.state.trusted.lock().unwrap() = Some(keys.iter().map(|k| k.public_der()).collect());
    }

    /// Secrets Manager and Parameter Store refuse calls signed by `access_key`
    /// (AccessDeniedException), as for a role without the permission.
    pub fn deny(&self, access_key: &str) {
        self.state.denied.lock().unwrap().push(access_key.to_owned());
    }

    /// The access key id STS gives for `token` (once it trusts keys): one per token.
    pub fn access_key_for(token: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let hex: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02X}")).collect();
        format!("ASIA{hex}")
    }

    /// The access key ids that signed the calls of `operation` so far, in order.
    pub fn signers(&self, operation: &str) -> Vec<String> {
        let signed = self.state.signed.lock().unwrap();
        signed.iter().filter(|(op, _, _)| op == operation).map(|(_, key, _)| key.clone()).collect()
    }

    /// The signed calls of `operation` made in `region` so far.
    pub fn calls_in(&self, operation: &str, region: &str) -> usize {
        let signed = self.state.signed.lock().unwrap();
        signed.iter().filter(|(op, _, r)| op == operation && r == region).count()
    }

    /// Answers the next call of `operation` (any region) with `answer`, once; calls after it
    /// get the usual answers.
    pub fn answer_next(&self, operation: &str, answer: Answer) {
        self.state.next.lock().unwrap().push((operation.to_owned(), answer));
    }

    async fn answer(&self, req: hyper::Request<Incoming>) -> Response {
        let header =
            |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let target = header("x-amz-target");
        let authorization = header("authorization");
        let scope = authorization.split("Credential=").nth(1);
        let region = scope.and_then(|scope| scope.split('/').nth(2)).unwrap_or("us-east-1").to_owned();
        let access_key = scope.and_then(|scope| scope.split('/').next()).map(str::to_owned);
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        self.state.calls.fetch_add(1, Ordering::SeqCst);
        if target.is_empty() {
            self.state.sts_calls.fetch_add(1, Ordering::SeqCst);
        }
        if !self.state.latency.is_zero() {
            tokio::time::sleep(self.state.latency).await;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        let operation = match target.split('.').nth(1) {
            Some(op) => op.to_owned(),
            None if text.contains("Action=AssumeRoleWithWebIdentity") => "AssumeRoleWithWebIdentity".into(),
            None => "unknown".into(),
        };
        if let Some(key) = &access_key {
            self.state.signed.lock().unwrap().push((operation.clone(), key.clone(), region.clone()));
            if self.state.denied.lock().unwrap().contains(key) {
                let body = format!(
                    r#"{{"__type":"AccessDeniedException","message":"User: {key} is not authorized to perform: {operation}"}}"#
                );
                return response(400, CONTENT_JSON, body);
            }
        }
        let once = {
            let mut next = self.state.next.lock().unwrap();
            next.iter().position(|(op, _)| *op == operation).map(|i| next.remove(i).1)
        };
        let chosen = once.or_else(|| {
            self.state
                .overrides
                .lock()
                .unwrap()
                .iter()
                .find(|(op, r, _)| *op == operation && (*r == region || r == "*"))
                .map(|(_, _, answer)| answer.clone())
        });
        let trusted = self.state.trusted.lock().unwrap().clone();
        let (status, content_type, body) = match (chosen, trusted) {
            (Some(answer), _) => answer,
            (None, Some(trusted)) if operation == "AssumeRoleWithWebIdentity" => exchange(&text, &trusted),
            (None, _) => valid_answer(&operation, &text, &region),
        };
        response(status, content_type, body)
    }
}

/// STS's AssumeRoleWithWebIdentity for a form `request`, trusting tokens of `trusted` keys.
fn exchange(request: &str, trusted: &[Vec<u8>]) -> Answer {
    let token = request
        .split('&')
        .find_map(|pair| pair.strip_prefix("WebIdentityToken="))
        .map(|t| t.replace("%2E", ".").replace("%2D", "-").replace("%5F", "_"))
        .unwrap_or_default();
    match tokens::check(&token, trusted) {
        Ok(()) => {
            let key = FakeAws::access_key_for(&token);
            (200, "text/xml", sts_answer(&key, &format!("secret-of-{key}"), "2099-01-01T00:00:00Z"))
        }
        Err((code, message)) => (400, "text/xml", sts_error(code, message)),
    }
}

/// STS's error document.
pub fn sts_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>4c1a3f52-0d2b-4d0e-9a1b-6e2f3a4b5c6d</RequestId></ErrorResponse>"
    )
}

/// What AWS would answer.
fn valid_answer(operation: &str, request: &str, region: &str) -> Answer {
    let json: serde_json::Value = serde_json::from_str(request).unwrap_or_default();
    match operation {
        "GetSecretValue" => {
            let name = json["SecretId"].as_str().unwrap_or("x");
            let body = serde_json::json!({
                "ARN": format!("arn:aws:secretsmanager:{region}:123456789012:secret:{name}-AbCdEf"),
                "Name": name,
                "VersionId": "8f0c2a1e-0000-4000-8000-000000000001",
                "SecretString": format!("value in {region}"),
                "VersionStages": ["AWSCURRENT"],
                "CreatedDate": 1.7e9,
            });
            (200, CONTENT_JSON, body.to_string())
        }
        "GetParameters" => {
            let parameters: Vec<serde_json::Value> = json["Names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str())
                .map(|name| {
                    serde_json::json!({
                        "Name": name, "Type": "SecureString", "Value": format!("value of {name}"),
                        "Version": 3, "DataType": "text", "LastModifiedDate": 1.7e9,
                        "ARN": format!("arn:aws:ssm:{region}:123456789012:parameter{name}"),
                    })
                })
                .collect();
            let body = serde_json::json!({"Parameters": parameters, "InvalidParameters": []});
            (200, CONTENT_JSON, body.to_string())
        }
        _ => (200, "text/xml", sts_answer("ASIAFAKE", "secret-key", "2099-01-01T00:00:00Z")),
    }
}

/// An AssumeRoleWithWebIdentity answer with these credentials.
pub fn sts_answer(key: &str, secret: &str, expiration: &str) -> String {
    format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{key}</AccessKeyId>\
         <SecretAccessKey>{secret}</SecretAccessKey><SessionToken>session-of-{key}</SessionToken>\
         <Expiration>{expiration}</Expiration></Credentials>\
         <SubjectFromWebIdentityToken>system:serviceaccount:shop:web</SubjectFromWebIdentityToken>\
         <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/web/x</Arn>\
         <AssumedRoleId>AROA:x</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult>\
         <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
    )
}
