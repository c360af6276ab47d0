//! The console's static files, embedded in the binary (`console/assets/`, whose README says what
//! each is, its version and licence): served under `/assets/<name>.<content hash>.<ext>` with a
//! year's cache, so a new build's files get new URLs. The browser loads nothing from elsewhere.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its URL: `/assets/<name>.<hash>.<ext>`.
    pub path: String,
    pub bytes: &'static [u8],
    pub content_type: &'static str,
}

impl Asset {
    fn new(name: &str, ext: &str, bytes: &'static [u8], content_type: &'static str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let hash: String = digest.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Asset {
            path: format!("/assets/{name}.{hash}.{ext}"),
            bytes,
            content_type,
        }
    }
}

/// Every embedded file.
#[derive(Debug)]
pub struct Assets {
    pub htmx: Asset,
    pub script: Asset,
    pub style: Asset,
    pub icon: Asset,
}

pub static ASSETS: LazyLock<Assets> = LazyLock::new(|| Assets {
    htmx: Asset::new(
        "htmx",
        "js",
        include_bytes!("../assets/htmx.min.js"),
        "text/javascript; charset=utf-8",
    ),
    script: Asset::new(
        "console",
        "js",
        include_bytes!("../assets/console.js"),
        "text/javascript; charset=utf-8",
    ),
    style: Asset::new(
        "console",
        "css",
        include_bytes!("../assets/console.css"),
        "text/css; charset=utf-8",
    ),
    icon: Asset::new(
        "favicon",
        "svg",
        include_bytes!("../assets/favicon.svg"),
        "image/svg+xml",
    ),
});

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let path = format!("/assets/{file}");
    let assets = &*ASSETS;
    match [&assets.htmx, &assets.script, &assets.style, &assets.icon]
        .into_iter()
        .find(|a| a.path == path)
    {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /favicon.ico`, which browsers ask for whatever the page says.
pub async fn favicon() -> Response {
    let icon = &ASSETS.icon;
    (
        [
            (header::CONTENT_TYPE, icon.content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        icon.bytes,
    )
        .into_response()
}
