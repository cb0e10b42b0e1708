//! A table of hostile requests against the real stack, each with the status and `code` it must
//! get; afterwards the services are healthy, a normal sign-up still works, and nothing the
//! attacker sent that is secret-shaped appears in any log line.

use serde_json::{Value, json};
use testkit::stack::{PASSWORD, Stack};

/// One hostile request: what it is, and the answer it must get.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: u16,
    code: Option<&'static str>,
}

fn post(
    what: &'static str,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        what,
        method: "POST",
        path: path.to_owned(),
        headers: vec![("content-type", "application/json".to_owned())],
        body: Some(body.into()),
        status,
        code: Some(code),
    }
}

fn signup(
    what: &'static str,
    email: &str,
    password: &str,
    name: &str,
    status: u16,
    code: &'static str,
) -> Case {
    let body = json!({"email": email, "password": password, "name": name}).to_string();
    post(what, "/api/v1/signup", body, status, code)
}

fn me(what: &'static str, authorization: String, code: &'static str) -> Case {
    Case {
        what,
        method: "GET",
        path: "/api/v1/users/me".to_owned(),
        headers: vec![("authorization", authorization)],
        body: None,
        status: 401,
        code: Some(code),
    }
}

fn get(
    what: &'static str,
    method: &'static str,
    path: String,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        what,
        method,
        path,
        headers: vec![],
        body: None,
        status,
        code: Some(code),
    }
}

fn b64(json: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn cases() -> Vec<Case> {
    let signup_path = "/api/v1/signup";
    let login_path = "/api/v1/login";
    let alg_none = format!(
        "Bearer {}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(r#"{"sub":"00000000-0000-0000-0000-000000000000","exp":9999999999}"#)
    );
    vec![
        // Bodies that are not what they claim.
        post("truncated JSON", signup_path, "{\"email\": ", 400, "malformed_json"),
        post("not JSON at all", login_path, "email=a&password=b", 400, "malformed_json"),
        post("JSON array of the fields", signup_path, format!(r#"["a@b.co","{PASSWORD}","A"]"#), 400, "invalid_request"),
        post("JSON string", login_path, r#""a@b.co""#, 400, "invalid_request"),
        post("JSON null", login_path, "null", 400, "invalid_request"),
        post("number where a string goes", login_path, r#"{"email":"a@b.co","password":12345678}"#, 400, "invalid_request"),
        post("object where a string goes", signup_path, r#"{"email":{"$ne":""},"password":"x","name":"y"}"#, 400, "invalid_request"),
        post("missing field", signup_path, r#"{"email":"a@b.co","name":"A"}"#, 400, "invalid_request"),
        post("invalid UTF-8", login_path, b"{\"email\":\"\xff\xfe\",\"password\":\"x\"}".to_vec(), 400, "malformed_json"),
        post("deeply nested JSON (not an object)", login_path, format!("{}{}", "[".repeat(5000), "]".repeat(5000)), 400, "invalid_request"),
        post("body over the limit", signup_path, format!(r#"{{"email":"a@b.co","password":"{}","name":"A"}}"#, "x".repeat(40_000)), 413, "payload_too_large"),
        Case {
            what: "form content type",
            method: "POST",
            path: signup_path.to_owned(),
            headers: vec![("content-type", "application/x-www-form-urlencoded".to_owned())],
            body: Some(b"email=a%40b.co".to_vec()),
            status: 415,
            code: Some("unsupported_media_type"),
        },
        // Fields that break the input policy.
        signup("email without a domain", "ada", PASSWORD, "Ada", 422, "invalid_email"),
        signup("email with a NUL", "ada\u{0}@example.com", PASSWORD, "Ada", 422, "invalid_email"),
        signup("email with CRLF (header injection)", "ada@example.com\r\nBcc: x@evil.test", PASSWORD, "Ada", 422, "invalid_email"),
        signup("email with a zero-width space", "ad\u{200b}a@example.com", PASSWORD, "Ada", 422, "invalid_email"),
        signup("email with a right-to-left override", "ada\u{202e}@example.com", PASSWORD, "Ada", 422, "invalid_email"),
        signup("email in Cyrillic look-alikes", "аdа@example.com", PASSWORD, "Ada", 422, "invalid_email"),
        signup("email of 300 bytes", &format!("{}@example.com", "a".repeat(290)), PASSWORD, "Ada", 422, "invalid_email"),
        signup("name with ANSI escapes", "h1@example.com", PASSWORD, "Ada\u{1b}[2J", 422, "invalid_name"),
        signup("name with a BOM", "h2@example.com", PASSWORD, "\u{feff}Ada", 422, "invalid_name"),
        signup("name with a bidi override", "h3@example.com", PASSWORD, "Ada\u{202e}gnp.exe", 422, "invalid_name"),
        signup("name with a newline", "h4@example.com", PASSWORD, "Ada\nLovelace", 422, "invalid_name"),
        signup("name of 101 characters", "h5@example.com", PASSWORD, &"x".repeat(101), 422, "invalid_name"),
        signup("empty name", "h6@example.com", PASSWORD, "   ", 422, "invalid_name"),
        // Names that render as nothing, by Unicode's properties (issue 20: all were accepted).
        signup("name of a Hangul filler", "i1@example.com", PASSWORD, "\u{3164}", 422, "invalid_name"),
        signup("name of a halfwidth Hangul filler", "i2@example.com", PASSWORD, "\u{ffa0}", 422, "invalid_name"),
        signup("name of a Hangul choseong filler", "i3@example.com", PASSWORD, "\u{115f}", 422, "invalid_name"),
        signup("name of a blank Braille pattern", "i4@example.com", PASSWORD, "\u{2800}", 422, "invalid_name"),
        signup("name of a lone combining mark", "i5@example.com", PASSWORD, "\u{301}", 422, "invalid_name"),
        signup("name of a lone variation selector", "i6@example.com", PASSWORD, "\u{fe0f}", 422, "invalid_name"),
        signup("Admin padded with a Hangul filler", "i7@example.com", PASSWORD, "Admin\u{3164}", 422, "invalid_name"),
        signup("password of 7 characters", "h7@example.com", "1234567", "Ada", 422, "password_too_short"),
        signup("password over 72 bytes", "h8@example.com", &"p".repeat(73), "Ada", 422, "password_too_long"),
        // Inputs that are valid text and must be stored as text, never interpreted.
        signup("SQL in the name", "sql@example.com", PASSWORD, "Robert'); DROP TABLE users;--", 201, ""),
        signup("HTML in the name", "html@example.com", PASSWORD, "<script>alert(1)</script>", 201, ""),
        // Credentials.
        post("login with SQL in the email", login_path, json!({"email": "' OR 1=1 --", "password": PASSWORD}).to_string(), 401, "invalid_credentials"),
        post("login with an unknown email", login_path, json!({"email": "nobody@example.com", "password": PASSWORD}).to_string(), 401, "invalid_credentials"),
        post("login with 73-byte password", login_path, json!({"email": "sql@example.com", "password": format!("{PASSWORD}{}", "x".repeat(73))}).to_string(), 401, "invalid_credentials"),
        // Tokens.
        me("no Authorization", String::new(), "missing_token"),
        me("Basic scheme", "Basic YWRhOnB3".to_owned(), "invalid_token"),
        me("garbage bearer", "Bearer not.a.jwt".to_owned(), "invalid_token"),
        me("alg none", alg_none, "invalid_token"),
        me("empty bearer", "Bearer ".to_owned(), "invalid_token"),
        me("bearer of 8 KB", format!("Bearer {}", "a".repeat(8000)), "invalid_token"),
        // Routes and methods.
        get("unknown route", "GET", "/admin".to_owned(), 404, "not_found"),
        get("path traversal", "GET", "/api/v1/../../etc/passwd".to_owned(), 404, "not_found"),
        get("20 KB path", "GET", format!("/{}", "a".repeat(20_000)), 404, "not_found"),
        get("wrong method", "DELETE", "/api/v1/users/me".to_owned(), 405, "method_not_allowed"),
        get("made-up method", "BREW", "/api/v1/login".to_owned(), 405, "method_not_allowed"),
        get("TRACE", "TRACE", "/api/v1/login".to_owned(), 405, "method_not_allowed"),
    ]
}

#[tokio::test]
async fn forty_hostile_requests_get_the_answers_they_should_and_break_nothing() {
    let stack = Stack::start(&testkit::DeadEndpoint::reserve().url()).await;
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut table = Vec::new();
    for case in &cases {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut request = stack
            .http
            .request(method, format!("{}{}", stack.gateway_url, case.path));
        for (name, value) in &case.headers {
            if !value.is_empty() {
                request = request.header(*name, value);
            }
        }
        if let Some(body) = &case.body {
            request = request.body(body.clone());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.what));
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code = body["code"].as_str().unwrap_or("").to_owned();
        table.push(format!("{:>3} {:<24} {}", status, code, case.what));
        assert_eq!(status, case.status, "{}: {body}", case.what);
        if let Some(expected) = case.code.filter(|c| !c.is_empty()) {
            assert_eq!(code, expected, "{}: {body}", case.what);
            assert_eq!(
                body["trace_id"].as_str().map(str::len),
                Some(32),
                "{}: {body}",
                case.what
            );
        }
        assert!(
            status < 500,
            "{}: the client's mistake is never a 5xx",
            case.what
        );
    }
    eprintln!("{}", table.join("\n"));

    // Still healthy, still serving, and what was stored as text comes back as the same text.
    assert_eq!(stack.readyz().await.0, 200);
    let login = stack
        .post(
            "/api/v1/login",
            json!({"email": "sql@example.com", "password": PASSWORD}),
        )
        .await;
    let token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let profile: Value = stack.me(&token).await.json().await.unwrap();
    assert_eq!(profile["name"], "Robert'); DROP TABLE users;--");
    assert_eq!(stack.signup("after@example.com").await.status(), 201);

    // Nothing secret-shaped from the attacks, and no request line longer than bounded, in any log.
    let output = stack.all_output();
    for line in &output {
        assert!(!line.contains(PASSWORD), "a password in the logs: {line}");
        assert!(line.len() < 4096, "a log line of {} bytes", line.len());
    }
    assert!(
        !output.iter().any(|l| l.contains(r#""level":"ERROR""#)),
        "no ERROR from client mistakes"
    );
}
