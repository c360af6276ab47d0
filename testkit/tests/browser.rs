//! The browser harness sees what a user would and fails on what the console reports: a tiny
//! site served here under the console's CSP (`script-src 'self'`, no inline script) has one
//! clean page whose script swaps text in on a click, and one page that breaks every rule.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use hookrelay_testkit::PATIENCE;
use hookrelay_testkit::browser::Browser;

const CLEAN_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>clean</title>
<link rel="icon" href="/favicon.svg">
<script src="/app.js" defer></script>
</head><body>
<button id="greet">Greet</button>
<p id="status">not greeted yet</p>
</body></html>"#;

/// Asks the server for a greeting on a click and swaps it in, as htmx would.
const APP_JS: &str = r#"document.getElementById("greet").addEventListener("click", async () => {
  const response = await fetch("/greeting");
  document.getElementById("status").textContent = await response.text();
});"#;

/// An inline script (the CSP blocks it), an image that is not there, a script that throws,
/// and no icon (so the browser asks for `/favicon.ico`, which is not there either).
const BROKEN_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>broken</title></head><body>
<p id="status">inline script blocked</p>
<script>document.getElementById("status").textContent = "inline script ran";</script>
<img src="/missing.png" alt="missing">
<script src="/throws.js"></script>
</body></html>"#;

const FAVICON: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"><rect width="1" height="1"/></svg>"#;

/// Serves the site on a free loopback port, every response with the console's CSP.
async fn serve_site() -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { Html(CLEAN_PAGE) }))
        .route("/app.js", get(|| async { javascript(APP_JS) }))
        .route("/greeting", get(|| async { "hello from the server" }))
        .route(
            "/favicon.svg",
            get(|| async { ([(CONTENT_TYPE, "image/svg+xml")], FAVICON) }),
        )
        .route("/broken", get(|| async { Html(BROKEN_PAGE) }))
        .route(
            "/throws.js",
            get(|| async { javascript("throw new Error('thrown on purpose');") }),
        )
        .layer(axum::middleware::map_response(
            |mut response: Response| async move {
                response.headers_mut().insert(
                    CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'self'; script-src 'self'"),
                );
                response
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn javascript(source: &'static str) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/javascript")], source)
}

/// The width and height in a PNG's header (IHDR, right after the 8-byte signature).
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "a PNG starts with its signature and IHDR"
    );
    let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("four bytes"));
    (word(16), word(20))
}

#[tokio::test]
async fn a_click_swaps_in_text_from_the_server_and_a_clean_page_logs_no_console_errors() {
    let site = serve_site().await;
    let browser = Browser::start().await;
    browser
        .client()
        .goto(&format!("http://{site}/"))
        .await
        .expect("the page loads");
    browser.wait_for_text("#status", "not greeted yet").await;

    let button = browser.wait_for_text("button#greet", "Greet").await;
    button.click().await.expect("the button takes a click");
    let status = browser
        .wait_for_text("#status", "hello from the server")
        .await;

    assert_eq!(
        status.text().await.expect("the status has text"),
        "hello from the server"
    );
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
}

#[tokio::test]
async fn a_blocked_inline_script_a_thrown_error_and_missing_images_are_console_errors() {
    let site = serve_site().await;
    let browser = Browser::start().await;
    browser
        .client()
        .goto(&format!("http://{site}/broken"))
        .await
        .expect("the page loads");

    let expected = [
        "security: http://{site}/broken",
        "Executing inline script violates the following Content Security Policy directive",
        "javascript: http://{site}/throws.js",
        "Uncaught Error: thrown on purpose",
        "network: http://{site}/missing.png - Failed to load resource: the server responded with a status of 404",
        "network: http://{site}/favicon.ico - Failed to load resource: the server responded with a status of 404",
    ]
    .map(|part| part.replace("{site}", &site.to_string()));
    let mut errors = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !expected
        .iter()
        .all(|part| errors.join("\n").contains(part.as_str()))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the console did not report every error of the broken page; it reported {errors:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        errors.extend(browser.console_errors().await);
    }

    browser
        .wait_for_text("#status", "inline script blocked")
        .await;
    assert_eq!(errors.len(), 4, "one entry per error: {errors:#?}");
    assert_eq!(
        browser.console_errors().await,
        Vec::<String>::new(),
        "a read empties the log"
    );
    browser.close().await;
}

#[tokio::test]
async fn screenshots_are_as_wide_as_the_size_set_a_phone_s_390_px_or_a_laptop_s_1280_px() {
    let site = serve_site().await;
    let browser = Browser::start().await;
    browser
        .client()
        .goto(&format!("http://{site}/"))
        .await
        .expect("the page loads");
    let dir = tempfile::tempdir().expect("a temporary directory");

    for (width, height) in [(390, 844), (1280, 800)] {
        browser.set_size(width, height).await;
        let path = dir.path().join(format!("shots/{width}.png"));
        browser.screenshot(&path).await;
        let png = std::fs::read(&path).expect("the screenshot was written");
        assert_eq!(png_size(&png), (width, height), "{}", path.display());
    }
    browser.close().await;
}

#[tokio::test]
async fn waiting_in_vain_for_text_fails_saying_what_it_waited_for_and_what_the_page_shows() {
    let site = serve_site().await;
    let browser = Browser::start().await;
    let url = format!("http://{site}/");
    browser.client().goto(&url).await.expect("the page loads");

    let started = tokio::time::Instant::now();
    let waited = tokio::spawn(async move {
        browser.wait_for_text("#status", "never shown").await;
    })
    .await;

    let panic = waited.expect_err("the wait fails").into_panic();
    let message = panic
        .downcast_ref::<String>()
        .expect("the panic has a formatted message");
    for part in [
        "\"#status\" to contain \"never shown\"",
        &url,
        "not greeted yet",
    ] {
        assert!(message.contains(part), "{part:?} in: {message}");
    }
    assert!(
        started.elapsed() >= PATIENCE,
        "it waited {PATIENCE:?} first"
    );
}
