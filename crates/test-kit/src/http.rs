//! A tiny HTTP/1.1 server: fixed routes (and an optional fallback), every request recorded.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::rustls;

pub(crate) type Response = hyper::Response<Full<Bytes>>;

/// Serves HTTP/1.1 on `listener` (over TLS when `tls` is given), one task per connection,
/// answering each request with `answer`.
pub(crate) fn serve_maybe_tls<F, Fut>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    answer: F,
) where
    F: Fn(hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = answer.clone();
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                let _ = match acceptor {
                    None => http.serve_connection(TokioIo::new(stream), service).await,
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                        Err(_) => return,
                    },
                };
            });
        }
    });
}

/// A response with `status`, `content_type` and `body`.
pub(crate) fn response(status: u16, content_type: &str, body: String) -> Response {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// One request a fake HTTP server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

type Routes = HashMap<String, (u16, String)>;
/// Answers queued for one path.
type Queued = std::collections::VecDeque<(u16, String)>;
/// Answers a path no route names, or `None` for a 404.
pub(crate) type Fallback = Arc<dyn Fn(&str) -> Option<(u16, String)> + Send + Sync>;

const NOT_FOUND: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"not found","reason":"NotFound","code":404}"#;

/// A tiny HTTP/1.1 server answering fixed routes, recording every request.
#[derive(Clone)]
pub struct FakeHttp {
    pub addr: SocketAddr,
    routes: Arc<Mutex<Routes>>,
    fallback: Arc<Mutex<Option<Fallback>>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    delay: Arc<Mutex<Duration>>,
    /// path -> how long that path's answers take.
    route_delays: Arc<Mutex<HashMap<String, Duration>>>,
    /// path -> answers to give first, one per request, before its route's.
    sequences: Arc<Mutex<HashMap<String, Queued>>>,
    tls: bool,
}

impl FakeHttp {
    /// Binds `bind` (e.g. "127.0.0.1:0" or "[::1]:0").
    pub async fn start(bind: &str) -> Self {
        Self::start_with(bind, None).await
    }

    /// As [`FakeHttp::start`], serving HTTPS with `tls`.
    pub async fn start_tls(bind: &str, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start_with(bind, Some(tls)).await
    }

    async fn start_with(bind: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind(bind).await.unwrap();
        let server = Self {
            tls: tls.is_some(),
            addr: listener.local_addr().unwrap(),
            routes: Arc::default(),
            fallback: Arc::default(),
            requests: Arc::default(),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
            route_delays: Arc::default(),
            sequences: Arc::default(),
        };
        let shared = server.clone();
        serve_maybe_tls(listener, tls, move |req| {
            let server = shared.clone();
            async move { server.answer(req).await }
        });
        server
    }

    async fn answer(&self, req: hyper::Request<Incoming>) -> Response {
        let path = req.uri().path().to_owned();
        let recorded = Recorded {
            method: req.method().to_string(),
            path: path.clone(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
        };
        self.requests.lock().unwrap().push(recorded);
        let route_delay = self.route_delays.lock().unwrap().get(&path).copied().unwrap_or_default();
        let delay = *self.delay.lock().unwrap() + route_delay;
        tokio::time::sleep(delay).await;
        let next =
            self.sequences.lock().unwrap().get_mut(&path).and_then(std::collections::VecDeque::pop_front);
        let routed = next.or_else(|| self.routes.lock().unwrap().get(&path).cloned());
        let fallback = self.fallback.lock().unwrap().clone();
        let (status, mut body) = routed
            .or_else(|| fallback.and_then(|answer| answer(&path)))
            .unwrap_or_else(|| (404, NOT_FOUND.into()));
        // As an API server does: a metadata-only GET gets the object's PartialObjectMetadata.
        let accept = req.headers().get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
        if status == 200
            && accept.contains("as=PartialObjectMetadata")
            && let Ok(object) = serde_json::from_str::<serde_json::Value>(&body)
        {
            body = serde_json::json!({
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": object["metadata"],
            })
            .to_string();
        }
        response(status, "application/json", body)
    }

    pub fn route(&self, path: &str, status: u16, body: &str) {
        self.routes.lock().unwrap().insert(path.to_owned(), (status, body.to_owned()));
    }

    /// Answers paths no route names with `answer` (`None`: 404).
    pub(crate) fn fallback(&self, answer: Fallback) {
        *self.fallback.lock().unwrap() = Some(answer);
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Answers the next requests for `path` with `answers`, one each, then as its route says.
    pub fn answer_next(&self, path: &str, answers: &[(u16, &str)]) {
        let answers = answers.iter().map(|(status, body)| (*status, (*body).to_owned())).collect();
        self.sequences.lock().unwrap().insert(path.to_owned(), answers);
    }

    /// Answers `path` only after `delay` (a stalled endpoint of an otherwise healthy server).
    pub fn delay_route(&self, path: &str, delay: Duration) {
        self.route_delays.lock().unwrap().insert(path.to_owned(), delay);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        match self.addr {
            SocketAddr::V4(a) => format!("{scheme}://{a}"),
            SocketAddr::V6(a) => format!("{scheme}://[{}]:{}", a.ip(), a.port()),
        }
    }
}
