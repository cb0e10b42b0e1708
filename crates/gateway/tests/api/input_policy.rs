//! The input policy (see the README's Security section): what an email and a name may hold,
//! bodies that must be objects, and requests that must not grow logs, metrics or error bodies.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error};

async fn signup(app: &TestApp, email: &str, name: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/signup",
        &json!({"email": email, "password": PASSWORD, "name": name}),
    )
    .await
}

#[tokio::test]
async fn invisible_reordering_and_control_characters_are_refused_in_emails_and_names() {
    let app = TestApp::spawn().await;
    for (email, name, code) in [
        ("zw\u{200b}@example.com", "Ada", "invalid_email"),
        ("rlo\u{202e}@example.com", "Ada", "invalid_email"),
        ("\u{feff}bom@example.com", "Ada", "invalid_email"),
        ("nul\u{0}@example.com", "Ada", "invalid_email"),
        ("crlf\r\nbcc@example.com", "Ada", "invalid_email"),
        // Non-ASCII addresses: refused (the policy), whatever the script.
        ("josé@example.com", "Ada", "invalid_email"),
        ("аdа@example.com", "Ada", "invalid_email"),
        ("ada@bücher.example", "Ada", "invalid_email"),
        ("ok1@example.com", "Ada\u{200b}", "invalid_name"),
        ("ok2@example.com", "Ada\u{202e}ecalevoL", "invalid_name"),
        ("ok3@example.com", "\u{feff}Ada", "invalid_name"),
        ("ok4@example.com", "Ada\u{1b}[31m", "invalid_name"),
        ("ok5@example.com", "Ada\nLovelace", "invalid_name"),
        ("ok6@example.com", "Ada\u{378}", "invalid_name"),
    ] {
        let body = assert_error(signup(&app, email, name).await, 422, code).await;
        assert!(
            !body.to_string().contains('\u{202e}'),
            "never echoed: {body}"
        );
    }
    // None of them exists afterwards.
    for email in ["ok1@example.com", "ok6@example.com"] {
        assert_eq!(app.login(email, PASSWORD).await.status(), 401);
    }
}

#[tokio::test]
async fn names_of_any_script_are_stored_in_nfc_and_idn_domains_in_ascii_form() {
    let app = TestApp::spawn().await;
    // "José" typed with a combining accent (NFD): stored as the one precomposed character.
    let created = signup(&app, "jose@xn--bcher-kva.example", "Jose\u{301} Ада 李").await;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["name"], "Jos\u{e9} Ада 李");
    assert_eq!(body["email"], "jose@xn--bcher-kva.example");
}

#[tokio::test]
async fn a_body_must_be_a_json_object() {
    let app = TestApp::spawn().await;
    // serde would read a struct from an array of its fields, in order.
    let array = json!(["ada@example.com", PASSWORD, "Ada"]);
    assert_error(
        app.post_json("/api/v1/signup", &array).await,
        400,
        "invalid_request",
    )
    .await;
    let login = json!(["ada@example.com", PASSWORD]);
    assert_error(
        app.post_json("/api/v1/login", &login).await,
        400,
        "invalid_request",
    )
    .await;
    for scalar in [json!("ada@example.com"), json!(42), json!(null)] {
        assert_error(
            app.post_json("/api/v1/login", &scalar).await,
            400,
            "invalid_request",
        )
        .await;
    }
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status(),
        401,
        "nothing was created"
    );
}

#[tokio::test]
async fn a_huge_path_is_not_echoed_whole() {
    let app = TestApp::spawn().await;
    let path = format!("/{}", "a".repeat(20_000));
    let response = app.http.get(app.url(&path)).send().await.unwrap();
    let body = assert_error(response, 404, "not_found").await;
    let message = body["message"].as_str().unwrap();
    assert!(message.len() < 400, "{} bytes echoed", message.len());
    assert!(message.ends_with('…'));
}

#[tokio::test]
async fn made_up_methods_share_one_metric_series() {
    let app = TestApp::spawn().await;
    for i in 0..30 {
        let method = reqwest::Method::from_bytes(format!("PROBE{i}").as_bytes()).unwrap();
        let response = app
            .http
            .request(method, app.url("/api/v1/login"))
            .send()
            .await
            .unwrap();
        let body = assert_error(response, 405, "method_not_allowed").await;
        assert!(
            body["message"].as_str().unwrap().starts_with("_OTHER"),
            "{body}"
        );
    }
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("PROBE"),
        "a made-up method became a label value"
    );
    let other: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains(r#"method="_OTHER""#))
        .collect();
    assert_eq!(other.len(), 1, "{other:?}");
    assert!(other[0].ends_with(" 30"), "{other:?}");
}

#[tokio::test]
async fn a_body_sent_byte_by_byte_times_out_with_a_json_408() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = TestApp::spawn_with(&[("BODY_READ_TIMEOUT_MS", "1000")]).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // A slow-loris client: headers promptly, then the body one byte at a time.
    let trickle = tokio::spawn(async move {
        let head = "POST /api/v1/login HTTP/1.1\r\nHost: gateway\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
        writer.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = async {
        loop {
            let n = reader.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buffer[..n]);
            if response.windows(4).any(|w| w == b"\r\n\r\n") && response.ends_with(b"}") {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("answered, not held open");
    trickle.abort();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"request_timeout""#), "{text}");
}
