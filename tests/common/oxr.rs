//! A real HTTP server on 127.0.0.1 speaking the Open Exchange Rates API
//! (`/api/historical/YYYY-MM-DD.json`, `/api/latest.json`), with answers a test plans per
//! date: rates, error bodies, 429 with `Retry-After`, slow answers, broken JSON. It checks the
//! `Authorization: Token KEY` header like the real API and records every request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One planned answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with the day's rates (SGD 1.35, EUR 0.9, INR 64.5, BTC 0.000016386633, USD 1),
    /// timestamped on the day.
    Rates,
    /// 200 with this body as is.
    Body(String),
    /// This status with OXR's error body (and `Retry-After` seconds, if given).
    Error {
        status: u16,
        message: &'static str,
        retry_after: Option<u64>,
    },
    /// Waits, then answers with the inner reply.
    Slow(Duration, Box<Reply>),
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Plan {
    /// Answers per date (`YYYY-MM-DD`), used in order; `Reply::Rates` once they run out.
    replies: HashMap<String, VecDeque<Reply>>,
    /// A delay before every answer (to make a backfill slow enough to kill).
    delay: Option<Duration>,
    seen: Vec<Seen>,
}

pub struct OxrServer {
    pub port: u16,
    plan: Arc<Mutex<Plan>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The key the server accepts.
pub const KEY: &str = "fxpipeTestSecret-oxr-0123456789abcdef";

pub fn rates_body(date: &str) -> String {
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("a date");
    let timestamp = day.and_hms_opt(23, 59, 59).unwrap().and_utc().timestamp();
    format!(
        r#"{{"disclaimer":"test","license":"test","timestamp":{timestamp},"base":"USD",
        "rates":{{"BTC":0.000016386633,"EUR":0.9,"INR":64.5,"SGD":1.35,"USD":1}}}}"#
    )
}

fn error_body(status: u16, message: &str) -> String {
    format!(
        r#"{{"error":true,"status":{status},"message":"{message}","description":"test server says {message}"}}"#
    )
}

async fn answer(reply: Reply, date: &str) -> Response {
    let mut reply = reply;
    loop {
        match reply {
            Reply::Slow(wait, inner) => {
                tokio::time::sleep(wait).await;
                reply = *inner;
            }
            Reply::Rates => return (StatusCode::OK, rates_body(date)).into_response(),
            Reply::Body(body) => return (StatusCode::OK, body).into_response(),
            Reply::Error {
                status,
                message,
                retry_after,
            } => {
                let code = StatusCode::from_u16(status).expect("a status");
                let mut response = (code, error_body(status, message)).into_response();
                if let Some(seconds) = retry_after {
                    response
                        .headers_mut()
                        .insert("retry-after", seconds.to_string().parse().unwrap());
                }
                return response;
            }
        }
    }
}

async fn serve(plan: Arc<Mutex<Plan>>, file: String, headers: HeaderMap, path: String) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let date = file.trim_end_matches(".json").to_string();
    let (reply, delay) = {
        let mut plan = plan.lock().unwrap();
        plan.seen.push(Seen {
            path: path.clone(),
            authorization: authorization.clone(),
        });
        let reply = plan
            .replies
            .get_mut(&date)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Reply::Rates);
        (reply, plan.delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if authorization.as_deref() != Some(&format!("Token {KEY}")) {
        return answer(
            Reply::Error {
                status: 401,
                message: "invalid_app_id",
                retry_after: None,
            },
            &date,
        )
        .await;
    }
    answer(reply, &date).await
}

impl OxrServer {
    pub fn start() -> Self {
        let plan = Arc::new(Mutex::new(Plan::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = plan.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let historical = shared.clone();
                let latest = shared.clone();
                let app = Router::new()
                    .route(
                        "/api/historical/{file}",
                        get(move |Path(file): Path<String>, headers: HeaderMap| {
                            let path = format!("/api/historical/{file}");
                            serve(historical.clone(), file, headers, path)
                        }),
                    )
                    .route(
                        "/api/latest.json",
                        get(move |headers: HeaderMap| {
                            let today = chrono::Utc::now().date_naive().to_string();
                            serve(
                                latest.clone(),
                                format!("{today}.json"),
                                headers,
                                "/api/latest.json".into(),
                            )
                        }),
                    )
                    .with_state(());
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Self {
            port,
            plan,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The API root to pass as `--oxr-url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }

    /// Plans the next answers for `date` (then `Reply::Rates`).
    pub fn plan(&self, date: &str, replies: Vec<Reply>) {
        self.plan
            .lock()
            .unwrap()
            .replies
            .insert(date.to_string(), replies.into());
    }

    pub fn delay_every_answer(&self, delay: Duration) {
        self.plan.lock().unwrap().delay = Some(delay);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.plan.lock().unwrap().seen.clone()
    }

    /// Requests for one date so far.
    pub fn requests_for(&self, date: &str) -> usize {
        let path = format!("/api/historical/{date}.json");
        self.seen().iter().filter(|s| s.path == path).count()
    }

    pub fn forget_requests(&self) {
        self.plan.lock().unwrap().seen.clear();
    }
}

impl Drop for OxrServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
