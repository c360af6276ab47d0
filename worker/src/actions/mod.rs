//! The built-in actions, and [`build`], which turns a subscriber's `action` setting into one.

mod http;
mod log;
mod user_added;

use std::sync::Arc;

use hookrelay::config::ActionSettings;

pub use self::http::HttpPost;
pub use self::log::LogEvent;
pub use self::user_added::UserAdded;
use crate::action::Action;

/// The action a subscriber's `action = { type = "…" }` names. Fails on settings that cannot
/// work, such as a URL that does not parse.
pub fn build(settings: &ActionSettings) -> Result<Arc<dyn Action>, String> {
    Ok(match settings {
        ActionSettings::UserAdded => Arc::new(UserAdded),
        ActionSettings::Log => Arc::new(LogEvent),
        ActionSettings::Http(http) => Arc::new(HttpPost::new(http)?),
    })
}
