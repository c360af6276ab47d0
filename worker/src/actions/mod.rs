//! The built-in actions, and [`build`], which turns a subscriber's `action` setting into one.

mod log;
mod user_added;

use std::sync::Arc;

use hookrelay::config::ActionSettings;

pub use self::log::LogEvent;
pub use self::user_added::UserAdded;
use crate::action::Action;

/// The action a subscriber's `action = { type = "…" }` names.
pub fn build(settings: &ActionSettings) -> Arc<dyn Action> {
    match settings {
        ActionSettings::UserAdded => Arc::new(UserAdded),
        ActionSettings::Log => Arc::new(LogEvent),
    }
}
