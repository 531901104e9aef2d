//! A fault-injecting HTTP proxy between fxpipe and a moto server, for the S3 fault tests.
//!
//! It listens on 127.0.0.1 (a free port) and forwards every request to moto with hyper's
//! client, unchanged (the `Host` header too, so signatures still match), unless a [`Rule`] the test set matches the
//! request: then it answers S3's `503 SlowDown`, drops the connection before or after
//! forwarding, or holds the answer back. Rules can be changed while fxpipe runs.
//!
//! Every request is recorded with what was done to it, so a test can assert that its fault
//! really fired: a fault test whose fault never happened proves nothing.
//!
//! Requests are parsed with httparse rather than hyper's server: hyper's `server` feature
//! would change the hyper build reqwest uses, and so rebuild the whole dependency stack for
//! the tests (see Cargo.toml).
//!
//! The proxy runs on a thread of its own with its own Tokio runtime, so the blocking tests
//! (which run the `fxpipe` binary) can use it; it stops when dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts `fxpipe --lake <lake> ARGS` with its output piped, its S3 requests through `proxy`
/// when given.
pub fn spawn_via(lake: &super::Lake, proxy: Option<&Proxy>, args: &[&str]) -> std::process::Child {
    let mut command = lake.command(args);
    if let Some(proxy) = proxy {
        command.env("AWS_ENDPOINT_URL", proxy.endpoint());
    }
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start fxpipe")
}

/// What the proxy does to a request a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers `503 Slow Down` with S3's XML error body; moto never sees the request.
    SlowDown503,
    /// Answers `412 Precondition Failed` (S3's answer to a conditional PUT of a key that
    /// exists: another writer took that log version); moto never sees the request.
    Taken412,
    /// Closes the connection without an answer; moto never sees the request.
    DropBefore,
    /// Forwards the request (it takes effect in moto), then closes the connection without an
    /// answer: the client cannot know that its request succeeded ("lost answer").
    LostAnswer,
    /// Forwards the request, then holds the answer back this long before sending it: a
    /// response slower than the client's timeout.
    Slow(Duration),
}

/// When a fault applies: an HTTP method (any, if `None`) and a substring of the path and
/// query, for a number of matching requests (`None`: every one, for ever).
#[derive(Debug, Clone)]
pub struct Rule {
    pub fault: Fault,
    pub method: Option<String>,
    pub path_contains: String,
    pub times: Option<usize>,
    fired: usize,
    /// Applies only once a rule added before it has fired: a fault that follows another
    /// (the log unreadable right after a commit's answer was lost).
    pub after_earlier: bool,
}

impl Rule {
    /// `fault` on every request whose method is `method` (`"*"`: any) and whose path and
    /// query contain `path_contains` (`""`: any), `times` times.
    pub fn new(fault: Fault, method: &str, path_contains: &str, times: usize) -> Self {
        Self {
            fault,
            method: (method != "*").then(|| method.to_ascii_uppercase()),
            path_contains: path_contains.to_string(),
            times: Some(times),
            fired: 0,
            after_earlier: false,
        }
    }

    /// This rule, applying only once a rule added before it has fired.
    pub fn after_earlier(self) -> Self {
        Self {
            after_earlier: true,
            ..self
        }
    }

    /// The same, on every matching request for as long as the rule is set.
    pub fn always(fault: Fault, method: &str, path_contains: &str) -> Self {
        Self {
            times: None,
            ..Self::new(fault, method, path_contains, 0)
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && path.contains(&self.path_contains)
            && self.times.is_none_or(|t| self.fired < t)
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
    /// moto's status, when the request was forwarded and moto answered.
    pub upstream_status: Option<u16>,
    /// When the proxy received it.
    pub at: std::time::Instant,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

/// The proxy; stops when dropped.
pub struct Proxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on a free port of 127.0.0.1 in front of moto at `upstream_port`.
    pub fn start(upstream_port: u16) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, port) = std::sync::mpsc::channel::<u16>();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                runtime.block_on(serve(shared, upstream_port, ready, stopped));
            })
            .expect("proxy thread");
        let port = port
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy listens");
        Self {
            port,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The endpoint fxpipe should use (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces every rule with `rule` (and resets nothing else).
    pub fn set(&self, rule: Rule) {
        self.lock().rules = vec![rule];
    }

    /// Adds a rule; rules are tried in the order they were added, the first matching one
    /// that has not used up its `times` applies.
    pub fn add(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule: requests pass through untouched.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Every request seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Requests a fault was applied to (optionally only that fault).
    pub fn faulted(&self, fault: Option<Fault>) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.fault.is_some() && (fault.is_none() || s.fault == fault))
            .collect()
    }

    /// Requests with this method whose path contains `path_contains`.
    pub fn requests(&self, method: &str, path_contains: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.path.contains(path_contains))
            .collect()
    }

    /// Forgets the requests seen so far.
    pub fn reset_seen(&self) {
        self.lock().seen.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread may poison the lock; the state is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    state: Arc<Mutex<State>>,
    upstream_port: u16,
    ready: std::sync::mpsc::Sender<u16>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the proxy");
    let port = listener.local_addr().expect("proxy address").port();
    let _ = ready.send(port);
    let upstream = SocketAddr::from(([127, 0, 0, 1], upstream_port));
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        // An error ends the connection: one the proxy dropped on purpose, or one the client
        // closed. Nothing to report either way.
        tokio::spawn(connection(state.clone(), upstream, stream));
    }
}

/// A request as read from the client.
struct Incoming {
    method: String,
    /// Path and query.
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Bytes,
    close: bool,
}

/// What to send back.
enum Answer {
    Respond(Response<Full<Bytes>>),
    /// Close the connection without an answer.
    Drop,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Serves the HTTP/1.1 requests of one client connection, one after the other (keep-alive).
async fn connection(
    state: Arc<Mutex<State>>,
    upstream: SocketAddr,
    mut stream: TcpStream,
) -> Result<(), Failure> {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await? else {
            return Ok(());
        };
        let close = request.close;
        let head_only = request.method == "HEAD";
        match handle(&state, upstream, request).await {
            Answer::Drop => return Ok(()),
            Answer::Respond(response) => {
                write_response(&mut stream, response, head_only, close).await?
            }
        }
        if close {
            return Ok(());
        }
    }
}

/// Reads one request (head and whole body); `None` when the client closed the connection.
async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Result<Option<Incoming>, Failure> {
    let (head_length, method, path, headers) = loop {
        let mut parsed_headers = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Request::new(&mut parsed_headers);
        if let httparse::Status::Complete(length) = parsed.parse(buffer)? {
            let headers: Vec<(String, Vec<u8>)> = parsed
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect();
            break (
                length,
                parsed.method.unwrap_or("GET").to_string(),
                parsed.path.unwrap_or("/").to_string(),
                headers,
            );
        }
        if !fill(stream, buffer).await? {
            return Ok(None);
        }
    };
    buffer.drain(..head_length);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
    };
    let body = if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        read_chunked(stream, buffer).await?
    } else {
        let length: usize = header("content-length")
            .map(|l| l.trim().parse())
            .transpose()?
            .unwrap_or(0);
        while buffer.len() < length {
            if !fill(stream, buffer).await? {
                return Err("connection closed inside a request body".into());
            }
        }
        buffer.drain(..length).collect()
    };
    let close = header("connection").is_some_and(|c| c.contains("close"));
    Ok(Some(Incoming {
        method,
        path,
        headers,
        body: Bytes::from(body),
        close,
    }))
}

/// Reads more bytes into the buffer; `false` at the end of the stream.
async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<bool, Failure> {
    let mut chunk = [0u8; 64 * 1024];
    let read = stream.read(&mut chunk).await?;
    buffer.extend_from_slice(&chunk[..read]);
    Ok(read > 0)
}

/// A chunked request body (`Transfer-Encoding: chunked`), decoded.
async fn read_chunked(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(end) = buffer.windows(2).position(|w| w == b"\r\n") {
                break end;
            }
            if !fill(stream, buffer).await? {
                return Err("connection closed inside a chunked body".into());
            }
        };
        let size_text = String::from_utf8_lossy(&buffer[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        buffer.drain(..line_end + 2);
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            loop {
                if let Some(end) = buffer.windows(2).position(|w| w == b"\r\n") {
                    let empty = end == 0;
                    buffer.drain(..end + 2);
                    if empty {
                        return Ok(body);
                    }
                } else if !fill(stream, buffer).await? {
                    return Ok(body);
                }
            }
        }
        while buffer.len() < size + 2 {
            if !fill(stream, buffer).await? {
                return Err("connection closed inside a chunk".into());
            }
        }
        body.extend_from_slice(&buffer[..size]);
        buffer.drain(..size + 2);
    }
}

async fn write_response(
    stream: &mut TcpStream,
    response: Response<Full<Bytes>>,
    head_only: bool,
    close: bool,
) -> Result<(), Failure> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        // The body is sent whole with its length; a HEAD answer keeps the object's length.
        let framing = name == hyper::header::TRANSFER_ENCODING
            || name == hyper::header::CONNECTION
            || (name == hyper::header::CONTENT_LENGTH && !head_only);
        if !framing {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    if !head_only {
        head.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    stream.write_all(&head).await?;
    if !head_only {
        stream.write_all(&body).await?;
    }
    stream.flush().await?;
    Ok(())
}

async fn handle(state: &Arc<Mutex<State>>, upstream: SocketAddr, request: Incoming) -> Answer {
    let (fault, index) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let mut earlier_fired = false;
        let mut fault = None;
        for rule in state.rules.iter_mut() {
            let armed = !rule.after_earlier || earlier_fired;
            if armed && rule.matches(&request.method, &request.path) {
                rule.fired += 1;
                fault = Some(rule.fault);
                break;
            }
            earlier_fired |= rule.fired > 0;
        }
        state.seen.push(Seen {
            method: request.method.clone(),
            path: request.path.clone(),
            fault,
            upstream_status: None,
            at: std::time::Instant::now(),
        });
        (fault, state.seen.len() - 1)
    };
    match fault {
        Some(Fault::SlowDown503) => return Answer::Respond(slow_down(&request.path)),
        Some(Fault::Taken412) => return Answer::Respond(precondition_failed(&request.path)),
        Some(Fault::DropBefore) => return Answer::Drop,
        _ => {}
    }
    let response = match forward(upstream, request).await {
        Ok(response) => response,
        Err(_) => return Answer::Drop,
    };
    {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = state.seen.get_mut(index) {
            seen.upstream_status = Some(response.status().as_u16());
        }
    }
    match fault {
        Some(Fault::LostAnswer) => Answer::Drop,
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            Answer::Respond(response)
        }
        _ => Answer::Respond(response),
    }
}

/// S3's answer when it wants a client to slow down.
fn precondition_failed(path: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PreconditionFailed</Code>\
         <Message>At least one of the pre-conditions you specified did not hold</Message>\
         <Resource>{path}</Resource><RequestId>FAULTPROXY</RequestId></Error>"
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::PRECONDITION_FAILED;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

fn slow_down(path: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
         <Message>Please reduce your request rate.</Message><Resource>{path}</Resource>\
         <RequestId>FAULTPROXY</RequestId></Error>"
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

/// Sends the request to moto on a fresh connection (hyper's client) and reads the whole
/// answer. The headers go unchanged (`Host` included: the signature covers it), except the
/// framing ones: the body goes whole, with its length.
async fn forward(
    upstream: SocketAddr,
    request: Incoming,
) -> Result<Response<Full<Bytes>>, Failure> {
    let mut builder = Request::builder()
        .method(request.method.as_str())
        .uri(request.path.as_str());
    for (name, value) in &request.headers {
        if name != "transfer-encoding" && name != "content-length" && name != "connection" {
            builder = builder.header(name.as_str(), value.as_slice());
        }
    }
    let outgoing = builder
        .header(hyper::header::CONTENT_LENGTH, request.body.len())
        .body(Full::new(request.body))?;
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(outgoing).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}
