//! S3 faults: fxpipe against moto through a fault-injecting proxy (tests/common/proxy.rs).
//!
//! Each test asserts that its fault actually fired (a fault test whose fault never happened
//! proves nothing), then the numbers that matter: row counts, sums, table versions.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::moto::Moto;
use common::proxy::{Fault, Proxy, Rule};

/// One plain HTTP/1.1 request; `None` when the connection closes without an answer. moto
/// checks no signature but refuses anonymous reads of objects, so the request names the test
/// user.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={}/20260101/{}/s3/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        common::moto::ACCESS_KEY,
        common::moto::REGION,
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        String::from_utf8_lossy(&response[split + 4..]).to_string(),
    ))
}

/// The object the proxy test writes, read from moto directly.
fn object(moto: &Moto) -> Vec<u8> {
    let (status, body) = http(moto.port, "GET", "/proxy-test/a.txt", &[]).expect("moto answers");
    assert_eq!(status, 200, "{body}");
    body.into_bytes()
}

#[test]
fn the_proxy_forwards_and_injects_each_fault() {
    let moto = Moto::start();
    moto.create_bucket("proxy-test");
    let proxy = Proxy::start(moto.port);

    // Untouched: a PUT and a GET through the proxy reach moto.
    let put = http(proxy.port, "PUT", "/proxy-test/a.txt", b"first").expect("an answer");
    assert_eq!(put.0, 200, "{}", put.1);
    let get = http(proxy.port, "GET", "/proxy-test/a.txt", &[]).expect("an answer");
    assert_eq!(get, (200, "first".to_string()));
    assert_eq!(object(&moto), b"first");

    // 503 SlowDown twice on PUTs, then through; GETs are not matched.
    proxy.set(Rule::new(Fault::SlowDown503, "PUT", "/proxy-test/", 2));
    for _ in 0..2 {
        let (status, body) =
            http(proxy.port, "PUT", "/proxy-test/a.txt", b"second").expect("an answer");
        assert_eq!(status, 503);
        assert!(body.contains("<Code>SlowDown</Code>"), "{body}");
    }
    assert_eq!(object(&moto), b"first", "a 503 must not reach moto");
    assert_eq!(
        http(proxy.port, "GET", "/proxy-test/a.txt", &[]).map(|r| r.0),
        Some(200)
    );
    assert_eq!(
        http(proxy.port, "PUT", "/proxy-test/a.txt", b"second").map(|r| r.0),
        Some(200)
    );
    assert_eq!(object(&moto), b"second");
    assert_eq!(proxy.faulted(Some(Fault::SlowDown503)).len(), 2);

    // Dropped before forwarding: no answer, no effect.
    proxy.set(Rule::new(Fault::DropBefore, "PUT", "a.txt", 1));
    assert_eq!(http(proxy.port, "PUT", "/proxy-test/a.txt", b"third"), None);
    assert_eq!(object(&moto), b"second");

    // The lost answer: no answer, but the request took effect.
    proxy.set(Rule::new(Fault::LostAnswer, "PUT", "a.txt", 1));
    assert_eq!(
        http(proxy.port, "PUT", "/proxy-test/a.txt", b"fourth"),
        None
    );
    assert_eq!(object(&moto), b"fourth");
    let lost = proxy.faulted(Some(Fault::LostAnswer));
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].upstream_status, Some(200));

    // A slow answer arrives, late.
    proxy.set(Rule::always(
        Fault::Slow(Duration::from_millis(700)),
        "GET",
        "",
    ));
    let started = Instant::now();
    assert_eq!(
        http(proxy.port, "GET", "/proxy-test/a.txt", &[]),
        Some((200, "fourth".to_string()))
    );
    assert!(started.elapsed() >= Duration::from_millis(700));

    proxy.clear();
    assert_eq!(
        http(proxy.port, "GET", "/proxy-test/a.txt", &[]).map(|r| r.0),
        Some(200)
    );
    assert_eq!(proxy.faulted(None).len(), 5);
    assert_eq!(proxy.requests("PUT", "a.txt").len(), 6);
}
