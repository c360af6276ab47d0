//! `type = "user_added"`: the guide's sample action. For each user a `user.lifecycle.create`
//! event targets it logs `The user <alternateId> has been added to the Okta org!`.
//!
//! Unlike the guide's sample, it handles every event of a batch and every user target. An event
//! whose targets include no `User` falls back to the first target, as the guide's hand-edited
//! Preview (`"target": [{"alternateId": "john.doe@example.com"}]`) has no `type`.

use hookrelay::event::OktaEvent;

use crate::action::{Action, ActionError, Event};

/// Logs the guide's line for each added user.
pub struct UserAdded;

#[async_trait::async_trait]
impl Action for UserAdded {
    async fn handle(&self, event: &Event) -> Result<(), ActionError> {
        for login in added_users(event.okta()?)? {
            tracing::info!("The user {login} has been added to the Okta org!");
        }
        Ok(())
    }
}

/// The alternateIds (logins) of the users `event` added, with control characters escaped so
/// that a login cannot forge a log line.
pub fn added_users(event: &OktaEvent) -> Result<Vec<String>, ActionError> {
    let targets = event.targets();
    let mut users: Vec<_> = targets
        .iter()
        .filter(|target| target.kind.as_deref() == Some("User"))
        .collect();
    if users.is_empty() {
        users.extend(targets.first());
    }
    if users.is_empty() {
        return Err(ActionError::Permanent(
            "the event has no target, so no user to report (Okta's Preview sends `target: null` \
             when it has no real event: create a user first, or add \
             \"target\": [{\"alternateId\": \"john.doe@example.com\"}] to the preview)"
                .into(),
        ));
    }
    users
        .into_iter()
        .map(|user| {
            user.alternate_id
                .as_deref()
                .map(escape_controls)
                .ok_or_else(|| ActionError::Permanent("a target has no alternateId".into()))
        })
        .collect()
}

fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(target: serde_json::Value) -> OktaEvent {
        serde_json::from_value(serde_json::json!({
            "uuid": "u1", "eventType": "user.lifecycle.create", "target": target
        }))
        .expect("an event")
    }

    #[test]
    fn every_user_target_is_reported() {
        let event = event(serde_json::json!([
            {"type": "User", "alternateId": "jane.doe@example.com"},
            {"type": "AppInstance", "alternateId": "Salesforce"},
            {"type": "User", "alternateId": "john.doe@example.com"},
        ]));
        assert_eq!(
            added_users(&event),
            Ok(vec![
                "jane.doe@example.com".into(),
                "john.doe@example.com".into()
            ])
        );
    }

    #[test]
    fn the_guides_untyped_preview_target_is_reported() {
        let event = event(serde_json::json!([{"alternateId": "john.doe@example.com"}]));
        assert_eq!(added_users(&event), Ok(vec!["john.doe@example.com".into()]));
    }

    #[test]
    fn no_target_is_a_permanent_failure() {
        for target in [serde_json::Value::Null, serde_json::json!([])] {
            let error = added_users(&event(target)).expect_err("no user");
            assert!(matches!(&error, ActionError::Permanent(m) if m.contains("Preview")));
        }
        let error = added_users(&event(serde_json::json!([{"type": "User"}]))).expect_err("no id");
        assert!(matches!(error, ActionError::Permanent(_)));
    }

    #[test]
    fn a_login_cannot_forge_a_log_line() {
        let event = event(serde_json::json!([{"type": "User", "alternateId": "a\nINFO fake"}]));
        assert_eq!(added_users(&event), Ok(vec!["a\\nINFO fake".into()]));
    }
}
