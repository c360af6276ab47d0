//! `type = "log"`: logs each event's uuid, type and display message (no personal data), to
//! watch a new event type arrive before writing its action.

use crate::action::{Action, ActionError, Event};

/// Logs one line per event.
pub struct LogEvent;

#[async_trait::async_trait]
impl Action for LogEvent {
    async fn handle(&self, event: &Event) -> Result<(), ActionError> {
        let okta = event.okta()?;
        tracing::info!(
            uuid = %okta.uuid,
            event_type = %okta.event_type,
            display_message = okta.display_message.as_deref().unwrap_or(""),
            "event received"
        );
        Ok(())
    }
}
