//! A real S3-compatible server for the tests: moto's server (from PyPI, installed by
//! `tests/run.sh`) on 127.0.0.1 and a free port, one per test that needs it, stopped on drop.
//!
//! Why moto: it is one `pip install`, starts in about a second, implements the conditional PUT
//! (`If-None-Match: *` → 412) that Delta commits on S3 rely on, and serves Glue from the same
//! process. The credentials are made up and live only in the child processes' environment.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The secret access key every S3 test uses. `tests/run.sh` greps the whole test log for it:
/// it must never appear in any output of fxpipe.
pub const SECRET_KEY: &str = "fxpipeTestSecret0Q7zWv3Kp9LmN2xR5tY8uB1cD4eF";
pub const ACCESS_KEY: &str = "AKIAFXPIPETESTKEY001";
pub const REGION: &str = "eu-west-1";

/// A moto server; killed when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (bash tests/run.sh installs moto[server])");
        let moto = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http(port, "GET", "/moto-api/", &[]).is_none() {
            assert!(
                Instant::now() < deadline,
                "moto server did not start on 127.0.0.1:{port} (is moto[server] installed?)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket in [`REGION`].
    pub fn create_bucket(&self, name: &str) {
        let body = format!(
            "<CreateBucketConfiguration><LocationConstraint>{REGION}</LocationConstraint></CreateBucketConfiguration>"
        );
        let status =
            http(self.port, "PUT", &format!("/{name}"), body.as_bytes()).expect("moto answers");
        assert_eq!(status.0, 200, "create bucket {name}: {}", status.1);
    }

    /// The environment an AWS tool running against this server gets (and nothing else).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
        ]
    }

    /// Keys (object names) in a bucket under a prefix.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2&prefix={prefix}");
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={t}"));
            }
            let (status, body) = http(self.port, "GET", &path, &[]).expect("moto answers");
            assert_eq!(status, 200, "list {bucket}/{prefix}: {body}");
            for part in body.split("<Key>").skip(1) {
                keys.push(part.split("</Key>").next().unwrap_or_default().to_string());
            }
            token = body
                .split("<NextContinuationToken>")
                .nth(1)
                .and_then(|t| t.split("</NextContinuationToken>").next())
                .map(str::to_string);
            if token.is_none() {
                return keys;
            }
        }
    }

    /// The bytes of an object.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let (status, body) =
            http_bytes(self.port, "GET", &format!("/{bucket}/{key}"), &[]).expect("moto answers");
        assert_eq!(
            status,
            200,
            "get {bucket}/{key}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    /// From now on, every request must be signed with an access key moto's IAM issued, and is
    /// allowed only by that identity's policies (moto's `reset-auth`). The test's own key is
    /// refused after this.
    pub fn enforce_iam(&self) {
        let (status, body) =
            http(self.port, "POST", "/moto-api/reset-auth", b"0").expect("moto answers");
        assert_eq!(status, 200, "reset-auth: {body}");
    }

    /// Puts an object (test inputs).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let (status, body) =
            http(self.port, "PUT", &format!("/{bucket}/{key}"), bytes).expect("moto answers");
        assert_eq!(status, 200, "put {bucket}/{key}: {body}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One plain HTTP/1.1 request (moto accepts unsigned requests); `None` if nothing listens.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let (status, body) = http_bytes(port, method, path, body)?;
    Some((status, String::from_utf8_lossy(&body).to_string()))
}

/// moto does not check signatures, but treats requests without one as anonymous (refused
/// for objects written by a signed-in user): name the test user.
pub fn authorization() -> String {
    format!(
        "Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/{REGION}/s3/aws4_request, SignedHeaders=host, Signature=0"
    )
}

fn http_bytes(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        authorization(),
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Some((status, body))
}

/// The body of a chunked response.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || end + 2 + size > data.len() {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[(end + 4 + size).min(data.len())..];
    }
    out
}
