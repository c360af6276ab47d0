//! Who gets in, and what comes back: nothing without a session but sign-in, assets and health;
//! one answer for a wrong name or password and a wait for a client that keeps failing; a
//! viewer reads but changes nothing; cross-site requests refused; the security headers; every
//! value escaped; no secret on any page; sessions that end when signed out and survive a
//! console restart.

use hookrelay::config::DEMO_SECRET;
use hookrelay_testkit::{Reply, delivery, eventually, new_uuid, user_created_event};

use crate::helpers::{App, OPERATOR, SECRET_PATH, SECRET_QUERY, VIEWER};

#[tokio::test]
async fn nothing_but_sign_in_assets_and_health_is_served_without_a_session() {
    let app = App::start_with(|_, _| Reply::status(200), "", &[], false).await;
    let anyone = app.console.client();
    for path in [
        "/",
        "/events",
        "/events?q=jane",
        "/events/new?after=0",
        "/events/4ad3d9e2-0c7b-11ee-8a9b-9b0e0b3c1f5a",
        "/dead-letters",
        "/dead-letters/replay?subscriber=crm&all=1",
        "/subscribers",
        "/okta",
        "/no-such-page",
    ] {
        let response = anyone.get(path).await;
        assert_eq!(response.status(), 303, "{path}");
        let to = response.headers()["location"]
            .to_str()
            .expect("text")
            .to_owned();
        assert!(to.starts_with("/login?next="), "{path}: {to}");
        let (status, body) = anyone.get_json(path).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthenticated")),
            "{path}"
        );
    }
    for (path, form) in [
        ("/events/4ad3d9e2/replay", vec![("subscriber", "crm")]),
        (
            "/dead-letters/replay",
            vec![("subscriber", "crm"), ("all", "1"), ("confirm", "1")],
        ),
        (
            "/dead-letters/discard",
            vec![("subscriber", "crm"), ("all", "1"), ("confirm", "1")],
        ),
        ("/subscribers/crm/pause", vec![]),
        ("/subscribers/crm/resume", vec![]),
    ] {
        let response = anyone.post_form(path, &form).await;
        assert_eq!(response.status(), 303, "{path}: to the sign-in");
    }
    let login = anyone.get("/login").await;
    assert_eq!(login.status(), 200);
    let page = login.text().await.expect("a page");
    let asset = |kind: &str| {
        let start = page.find("/assets/console.").expect("an asset link");
        let rest = &page[start..];
        let end = rest.find(kind).expect("its extension") + kind.len();
        rest[..end].to_owned()
    };
    let css = anyone.get(&asset(".css")).await;
    assert_eq!(css.status(), 200);
    assert_eq!(
        css.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(anyone.get("/favicon.ico").await.status(), 200);
    assert_eq!(
        anyone
            .get("/assets/console.000000000000.css")
            .await
            .status(),
        404
    );
    let health = reqwest::get(format!("http://{}/healthz", app.console.admin_addr))
        .await
        .expect("health answers");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_wrong_name_or_password_gets_one_answer_and_a_client_that_keeps_failing_waits() {
    let app = App::start_with(|_, _| Reply::status(200), "", &[], false).await;
    let anyone = app.console.client();
    let mut answers = Vec::new();
    for (name, password) in [
        (OPERATOR.0, "wrong password"),
        ("nobody", OPERATOR.1),
        ("", ""),
        (OPERATOR.0, "wrong again"),
    ] {
        let response = anyone
            .post_form("/login", &[("username", name), ("password", password)])
            .await;
        assert_eq!(response.status(), 401, "{name}");
        assert!(response.headers().get("set-cookie").is_none(), "no session");
        let page = response.text().await.expect("a page");
        let message = page
            .split("role=\"alert\">")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .expect("a message")
            .to_owned();
        answers.push(message);
    }
    answers.dedup();
    assert_eq!(
        answers,
        ["The name or the password is not right."],
        "one answer"
    );
    // The fifth failure makes the client wait, even with the right password.
    let fifth = anyone
        .post_form("/login", &[("username", OPERATOR.0), ("password", "nope")])
        .await;
    assert_eq!(fifth.status(), 401);
    let throttled = anyone
        .post_form(
            "/login",
            &[("username", OPERATOR.0), ("password", OPERATOR.1)],
        )
        .await;
    assert_eq!(throttled.status(), 429);
    let wait: u64 = throttled.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=900).contains(&wait), "{wait}");
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let client = anyone.signed_in(OPERATOR.0, OPERATOR.1).await;
    assert_eq!(client.get("/events").await.status(), 200, "after the wait");
}

#[tokio::test]
async fn a_viewer_reads_everything_and_changes_nothing() {
    let app = App::start(|_, _| Reply::status(400)).await;
    let uuid = new_uuid();
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&uuid, "jane@example.com")],
        ))
        .await;
    app.stack.wait_for_dead_letters(1).await;
    let viewer = app.viewer().await;
    for path in [
        "/events",
        &format!("/events/{uuid}"),
        "/dead-letters",
        "/subscribers",
        "/okta",
    ] {
        assert_eq!(viewer.get(path).await.status(), 200, "{path}");
    }
    let page = viewer
        .get(&format!("/events/{uuid}"))
        .await
        .text()
        .await
        .expect("page");
    assert!(
        !page.contains("Replay to this subscriber"),
        "no button a viewer cannot use"
    );
    for (path, form) in [
        (
            format!("/events/{uuid}/replay"),
            vec![("subscriber", "crm")],
        ),
        (
            "/dead-letters/replay".to_owned(),
            vec![("subscriber", "crm"), ("all", "1"), ("confirm", "1")],
        ),
        (
            "/dead-letters/discard".to_owned(),
            vec![("subscriber", "crm"), ("all", "1"), ("confirm", "1")],
        ),
        ("/subscribers/crm/pause".to_owned(), vec![]),
    ] {
        let response = viewer.post_form(&path, &form).await;
        assert_eq!(response.status(), 403, "{path}");
    }
    assert_eq!(
        app.stack.dead_letters().await.len(),
        1,
        "nothing replayed or discarded"
    );
    let states = hookrelay::pause::states(
        &hookrelay::pause::open(&app.stack.js, &app.stack.settings.nats)
            .await
            .expect("bucket"),
    )
    .await
    .expect("states");
    assert!(states.is_empty(), "nothing paused");
}

#[tokio::test]
async fn a_request_from_another_site_changes_nothing() {
    let app = App::start_with(|_, _| Reply::status(200), "", &[], false).await;
    let operator = app.operator().await;
    let cross = operator
        .post_form_from("/subscribers/crm/pause", &[], "https://evil.example")
        .await;
    assert_eq!(cross.status(), 403);
    let response = reqwest::Client::new()
        .post(format!("{}/subscribers/crm/pause", app.console.url))
        .header("cookie", operator.cookie.clone().expect("signed in"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 403);
    let store = hookrelay::pause::open(&app.stack.js, &app.stack.settings.nats)
        .await
        .expect("bucket");
    assert!(
        hookrelay::pause::states(&store)
            .await
            .expect("states")
            .is_empty(),
        "not paused"
    );
    assert_eq!(
        operator
            .post_form("/subscribers/crm/pause", &[])
            .await
            .status(),
        303,
        "same site"
    );
}

#[tokio::test]
async fn every_page_sends_the_security_headers_and_a_strict_cookie() {
    let app = App::start_with(|_, _| Reply::status(200), "", &[], false).await;
    let anyone = app.console.client();
    let login = anyone
        .post_form(
            "/login",
            &[("username", OPERATOR.0), ("password", OPERATOR.1)],
        )
        .await;
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("text")
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "over plain HTTP on localhost: {cookie}"
    );
    let operator = app.operator().await;
    for path in ["/events", "/subscribers", "/login"] {
        let response = operator.get(path).await;
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().expect("text");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "same-origin");
        let page = response.text().await.expect("a page");
        assert!(!page.contains("<script>"), "no inline script: {path}");
        for handler in [
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            " onchange=",
            " style=",
        ] {
            assert!(!page.contains(handler), "{handler} on {path}");
        }
    }
}

#[tokio::test]
async fn a_cookie_is_secure_when_the_console_is_reached_over_tls() {
    let app = App::start_with(
        |_, _| Reply::status(200),
        "",
        &[("HOOKRELAY__CONSOLE__URL", "https://hookrelay.example.com")],
        false,
    )
    .await;
    let login = app
        .console
        .client()
        .post_form(
            "/login",
            &[("username", OPERATOR.0), ("password", OPERATOR.1)],
        )
        .await;
    let cookie = login.headers()["set-cookie"].to_str().expect("text");
    assert!(
        cookie.starts_with("__Host-hookrelay_session=") && cookie.contains("Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn markup_in_an_event_is_shown_as_text_everywhere() {
    let app = App::start(|_, _| Reply::status(200)).await;
    let uuid = new_uuid();
    let mut event = user_created_event(&uuid, "<script>alert('target')</script>@example.com");
    event["target"][0]["displayName"] = "<img src=x onerror=alert(1)>".into();
    event["actor"]["alternateId"] = "\"><script>alert('actor')</script>".into();
    app.receiver
        .deliver(&delivery(&new_uuid(), vec![event]))
        .await;
    let operator = app.operator().await;
    eventually("listed", || async {
        operator.get_json("/events").await.1["events"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    })
    .await;
    for path in [
        "/events",
        &format!("/events/{uuid}"),
        "/events?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ] {
        let page = operator.get(path).await.text().await.expect("a page");
        assert!(!page.contains("<script>alert"), "{path}");
        assert!(!page.contains("<img src=x"), "{path}");
        // askama writes `<` as `&#60;`, the JSON view as `&lt;`.
        let escaped =
            page.contains("&#60;script&#62;alert(") || page.contains("&lt;script&gt;alert(");
        assert!(escaped || path.contains("q="), "{path}: shown as text");
    }
}

#[tokio::test]
async fn no_secret_is_on_any_page_or_in_any_answer() {
    let app = App::start(|_, n| Reply::status(if n == 0 { 503 } else { 200 })).await;
    let uuid = new_uuid();
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&uuid, "jane@example.com")],
        ))
        .await;
    app.stack
        .wait_until_settled("crm_user_lifecycle_create")
        .await;
    let operator = app.operator().await;
    let mut seen = String::new();
    for path in [
        "/events",
        &format!("/events/{uuid}"),
        "/dead-letters",
        "/subscribers",
        "/okta",
    ] {
        seen.push_str(&operator.get(path).await.text().await.expect("a page"));
        seen.push_str(&operator.get_json(path).await.1.to_string());
    }
    assert!(
        seen.contains("127.0.0.1"),
        "the downstream is named, by its origin"
    );
    for secret in [
        SECRET_PATH,
        "XXXXSECRETPATH",
        SECRET_QUERY,
        "sekrit",
        DEMO_SECRET,
        "argon2",
        OPERATOR.1,
        VIEWER.1,
    ] {
        assert!(!seen.contains(secret), "{secret} shown");
    }
}

#[tokio::test]
async fn signing_out_ends_the_session_and_sessions_outlive_a_console_restart() {
    let mut app = App::start_with(|_, _| Reply::status(200), "", &[], false).await;
    let operator = app.operator().await;
    let kept = operator.clone();
    // The console restarts: the session is in NATS, not in the process.
    app.console.stop().await.expect("stopped").expect("cleanly");
    let settings = {
        let mut settings = app.stack.settings.clone();
        settings.console.listen = app
            .console
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("addr");
        settings
    };
    app.console = hookrelay_testkit::Console::start(&settings).await;
    assert_eq!(
        operator.get("/events").await.status(),
        200,
        "still signed in"
    );
    let out = operator.post_form("/logout", &[]).await;
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .expect("text")
            .contains("Max-Age=0")
    );
    assert_eq!(
        kept.get("/events").await.status(),
        303,
        "the old cookie no longer works"
    );
}

#[tokio::test]
async fn a_session_ends_after_its_idle_time() {
    let app = App::start_with(
        |_, _| Reply::status(200),
        "",
        &[("HOOKRELAY__CONSOLE__SESSION_IDLE", "2s")],
        false,
    )
    .await;
    let operator = app.operator().await;
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        assert_eq!(operator.get("/events").await.status(), 200, "in use: alive");
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(operator.get("/events").await.status(), 303, "idle: ended");
}

#[tokio::test]
async fn behind_a_proxy_failures_are_counted_per_client_and_its_own_origin_is_same_site() {
    let app = App::start_with(
        |_, _| Reply::status(200),
        "",
        &[
            ("HOOKRELAY__CONSOLE__CLIENT_IP_HEADER", "x-forwarded-for"),
            ("HOOKRELAY__CONSOLE__URL", "https://hookrelay.example.com"),
        ],
        false,
    )
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let sign_in = |client: &'static str, password: &'static str| {
        let http = http.clone();
        let url = format!("{}/login", app.console.url);
        async move {
            http.post(url)
                .header("origin", "https://hookrelay.example.com")
                // A forged first address; the proxy appends the real one last.
                .header("x-forwarded-for", format!("203.0.113.99, {client}"))
                .form(&[("username", OPERATOR.0), ("password", password)])
                .send()
                .await
                .expect("answers")
                .status()
        }
    };
    for _ in 0..5 {
        assert_eq!(sign_in("198.51.100.1", "wrong").await, 401);
    }
    assert_eq!(
        sign_in("198.51.100.1", OPERATOR.1).await,
        429,
        "that client waits"
    );
    assert_eq!(
        sign_in("198.51.100.2", OPERATOR.1).await,
        303,
        "another does not"
    );
}
