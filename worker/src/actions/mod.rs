//! The built-in actions, and [`build`], which turns a subscriber's `action` setting into one.

mod http;
mod log;
mod user_added;

use std::sync::Arc;

use hookrelay::config::ActionSettings;

pub use self::http::HttpPost;
pub use self::log::LogEvent;
pub use self::user_added::UserAdded;

/// `type = "noop"`: succeeds at once.
pub struct Noop;

#[async_trait::async_trait]
impl Action for Noop {
    async fn handle(
        &self,
        _event: &crate::action::Event,
    ) -> Result<(), crate::action::ActionError> {
        Ok(())
    }
}
use crate::action::Action;

/// The action a subscriber's `action = { type = "…" }` names. Fails on settings that cannot
/// work, such as a URL that does not parse.
pub fn build(settings: &ActionSettings) -> Result<Arc<dyn Action>, String> {
    Ok(match settings {
        ActionSettings::UserAdded => Arc::new(UserAdded),
        ActionSettings::Log => Arc::new(LogEvent),
        ActionSettings::Noop => Arc::new(Noop),
        ActionSettings::Http(http) => Arc::new(HttpPost::new(http)?),
    })
}
