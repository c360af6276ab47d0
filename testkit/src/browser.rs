//! A headless Chromium driven over WebDriver, for tests of pages as a user sees them: click,
//! wait for text a script swapped in, take screenshots at a phone's or a desktop's width, and
//! fail on anything the browser's console reports as an error (a script the CSP blocked, an
//! exception, a resource that did not load).
//!
//! Each [`Browser`] is its own `chromedriver` on a free loopback port with a fresh Chromium
//! profile; both go away when it is dropped. The binaries are Debian's `chromium` and
//! `chromium-driver` (`/usr/bin/chromium`, `/usr/bin/chromedriver`), or `$CHROMIUM` and
//! `$CHROMEDRIVER`.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::{PATIENCE, free_port};

/// The window a browser starts with: a laptop's, wide enough for a desktop layout.
const START_SIZE: (u32, u32) = (1280, 800);

/// A headless Chromium under a `chromedriver` of its own, in a fresh profile.
///
/// Dropping it kills chromedriver and the browser at once (their whole process group), so a
/// test that panics leaves no Chromium behind; [`Browser::close`] ends the session politely.
pub struct Browser {
    client: Client,
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver on a free port, waits until it answers `/status`, and opens a
    /// session: headless Chromium, device pixel ratio 1, a 1280×800 viewport, and the browser
    /// log kept for [`Browser::console_errors`].
    ///
    /// Panics, saying what to install, when Chromium or chromedriver is missing: a browser test
    /// that skips itself proves nothing.
    pub async fn start() -> Self {
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let dir = tempfile::tempdir().expect("a temporary directory for the browser profile");
        let port = free_port();
        let output = std::fs::File::create(dir.path().join("chromedriver.log"))
            .expect("chromedriver's output file is created in a fresh directory");
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(
                output
                    .try_clone()
                    .expect("the output file's handle can be duplicated"),
            )
            .stderr(output)
            // Chromium stays in chromedriver's process group, so one kill ends both.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", chromedriver.display()));
        // From here on, a panic drops `driver`, which kills chromedriver and its browser.
        let mut driver = Driver { child, dir };
        let url = format!("http://127.0.0.1:{port}");
        driver.wait_until_ready(&url).await;

        let capabilities = capabilities(&chromium, &driver.dir.path().join("profile"));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver opens a session with {}: {e}\n{}",
                    chromium.display(),
                    driver.output()
                )
            });
        let browser = Browser { client, driver };
        browser.set_size(START_SIZE.0, START_SIZE.1).await;
        browser
    }

    /// The WebDriver session, for everything this harness does not wrap (`goto`, `find`,
    /// forms, `execute`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Makes the viewport (what pages lay out in, and what screenshots show) `width`×`height`
    /// CSS pixels, which with a device pixel ratio of 1 are screenshot pixels.
    ///
    /// WebDriver sizes the outer window, and headless Chromium draws window chrome that the
    /// page does not get (143 px of height with Chromium 156), so the window is corrected by
    /// what the page measures.
    pub async fn set_size(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("chromedriver resizes the window");
        let (inner_width, inner_height) = self.viewport().await;
        if (inner_width, inner_height) != (width, height) {
            let outer_width = (2 * width).saturating_sub(inner_width);
            let outer_height = (2 * height).saturating_sub(inner_height);
            self.client
                .set_window_size(outer_width, outer_height)
                .await
                .expect("chromedriver resizes the window");
        }
        let viewport = self.viewport().await;
        assert_eq!(
            viewport,
            (width, height),
            "the viewport is {width}×{height} after resizing the window"
        );
    }

    /// The page's `innerWidth` and `innerHeight`.
    async fn viewport(&self) -> (u32, u32) {
        let size = self
            .client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .expect("the page runs a script of the harness");
        let dimension = |i: usize| {
            size[i]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or_else(|| panic!("innerWidth and innerHeight are numbers: {size}"))
        };
        (dimension(0), dimension(1))
    }

    /// The browser log's `SEVERE` entries since the last call, each as `source: message`
    /// (`security: … violates the following Content Security Policy directive …`,
    /// `javascript: … Uncaught ReferenceError …`, `network: http://…/favicon.ico - Failed to
    /// load resource: … 404 …`, `console-api: …` for `console.error`).
    ///
    /// Reading the log empties it. Errors from work the page does later (a request after a
    /// click) are there only once it has happened: wait for its visible result first.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries =
            self.client.issue_cmd(BrowserLog).await.expect(
                "chromedriver serves the browser log (goog:loggingPrefs asks it to keep it)",
            );
        let entries = entries
            .as_array()
            .unwrap_or_else(|| panic!("the browser log is a list of entries: {entries}"));
        entries
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| {
                let source = entry["source"].as_str().unwrap_or("unknown");
                let message = entry["message"].as_str().unwrap_or_default();
                format!("{source}: {message}")
            })
            .collect()
    }

    /// Saves what the viewport shows as a PNG at `path`, creating its directory.
    pub async fn screenshot(&self, path: &Path) {
        let png = self
            .client
            .screenshot()
            .await
            .expect("chromedriver takes a screenshot");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("{} can be created: {e}", parent.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{} is written: {e}", path.display()));
    }

    /// Waits, for at most [`PATIENCE`], until an element matching `css` shows `text` (as the
    /// user sees it: hidden elements show none), and returns it. Panics saying what it waited
    /// for, on which page, and what the page showed instead.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> Element {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(element) = self.element_with_text(css, text).await {
                return element;
            }
            if tokio::time::Instant::now() >= deadline {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map_or_else(|e| format!("(no URL: {e})"), String::from);
                let body = match self.client.find(Locator::Css("body")).await {
                    Ok(body) => body
                        .text()
                        .await
                        .unwrap_or_else(|e| format!("(no text: {e})")),
                    Err(e) => format!("(no body: {e})"),
                };
                panic!(
                    "waited {PATIENCE:?} in vain for {css:?} to contain {text:?} on {url}; \
                     the page shows:\n{body}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element matching `css` whose text contains `text`. An element that a script
    /// replaced while it was being read is not an error: the next look finds its successor.
    async fn element_with_text(&self, css: &str, text: &str) -> Option<Element> {
        let elements = self.client.find_all(Locator::Css(css)).await.ok()?;
        for element in elements {
            if element.text().await.is_ok_and(|shown| shown.contains(text)) {
                return Some(element);
            }
        }
        None
    }

    /// Ends the session (chromedriver closes the browser), then stops chromedriver.
    pub async fn close(self) {
        let Browser { client, driver } = self;
        client.close().await.expect("chromedriver ends the session");
        drop(driver);
    }
}

/// chromedriver, leader of a process group that the browser it starts joins, and a directory
/// for the browser's profile (`--user-data-dir`) and chromedriver's output. Dropping it kills
/// the whole group at once, so a test that panics leaves no Chromium behind, then removes the
/// directory.
struct Driver {
    child: Child,
    dir: tempfile::TempDir,
}

impl Driver {
    /// Waits until chromedriver's `/status` says it is ready for a session.
    async fn wait_until_ready(&mut self, url: &str) {
        let http = crate::http_client();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromedriver exited ({status}):\n{}", self.output());
            }
            let status = http
                .get(format!("{url}/status"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if let Ok(response) = status
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer {url}/status within {PATIENCE:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What chromedriver has printed so far.
    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Driver {
    /// Kills chromedriver and everything in its process group (the browser and its helpers)
    /// at once, and reaps chromedriver; the temporary directory goes after.
    fn drop(&mut self) {
        // Even when chromedriver itself is gone, its browser may not be: kill the group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// `$variable` when set, else Debian's path; panics saying what to install when the file is
/// not there.
fn binary(variable: &str, debian: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(debian), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found: browser tests need Debian's chromium and chromium-driver \
         (apt-get install chromium chromium-driver), or ${variable} set to the binary",
        path.display()
    );
    path
}

/// What the session asks of chromedriver: headless Chromium fit for a machine with no
/// network and no GPU, in `profile`, keeping every browser-log entry.
fn capabilities(chromium: &Path, profile: &Path) -> Capabilities {
    let args = [
        "--headless=new".to_string(),
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-dev-shm-usage".to_string(),
        "--disable-quic".to_string(),
        "--no-first-run".to_string(),
        "--disable-background-networking".to_string(),
        "--disable-component-update".to_string(),
        "--disable-sync".to_string(),
        // Screenshot pixels are CSS pixels, whatever the machine's display.
        "--force-device-scale-factor=1".to_string(),
        format!("--window-size={},{}", START_SIZE.0, START_SIZE.1),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": chromium, "args": args},
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    match capabilities {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal is an object"),
    }
}

/// Chromedriver's read of the browser log (Selenium's `POST /session/{id}/se/log`, which
/// W3C-mode chromedriver still serves): every entry since the last read, oldest first.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.expect("the session is open: Browser::start opened it");
        base_url.join(&format!("session/{session}/se/log"))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"type": "browser"}).to_string();
        (http::Method::POST, Some(body))
    }
}
