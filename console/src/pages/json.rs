//! An event's JSON as collapsible HTML: objects and arrays are `<details>` the reader opens and
//! closes (no script needed), every key and value escaped. What Okta sent is shown as text,
//! never as markup: an event whose `displayName` is `<script>…</script>` reads as that.

use std::fmt::Write as _;

use serde_json::Value;

/// `text` escaped for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Levels open at first: the event and its members; deeper ones are a click away.
const OPEN_LEVELS: usize = 2;

/// The event's bytes as collapsible HTML; bytes that are not JSON as escaped text.
pub fn render(payload: &[u8]) -> String {
    match serde_json::from_slice::<Value>(payload) {
        Ok(value) => {
            let mut html = String::from("<div class=\"json\">");
            write_value(&mut html, &value, 0);
            html.push_str("</div>");
            html
        }
        Err(_) => format!(
            "<pre class=\"json\">{}</pre>",
            escape(&String::from_utf8_lossy(payload))
        ),
    }
}

fn write_value(html: &mut String, value: &Value, depth: usize) {
    let open = if depth < OPEN_LEVELS { " open" } else { "" };
    match value {
        Value::Object(members) if !members.is_empty() => {
            let _ = write!(
                html,
                "<details{open}><summary>{{ {} }}</summary><ul>",
                crate::pages::count(members.len(), "member", "members")
            );
            for (key, value) in members {
                let _ = write!(
                    html,
                    "<li><span class=\"json-key\">{}</span>: ",
                    escape(key)
                );
                write_value(html, value, depth + 1);
                html.push_str("</li>");
            }
            html.push_str("</ul></details>");
        }
        Value::Array(items) if !items.is_empty() => {
            let _ = write!(
                html,
                "<details{open}><summary>[ {} ]</summary><ol start=\"0\">",
                crate::pages::count(items.len(), "item", "items")
            );
            for item in items {
                html.push_str("<li>");
                write_value(html, item, depth + 1);
                html.push_str("</li>");
            }
            html.push_str("</ol></details>");
        }
        Value::Object(_) => html.push_str("<span class=\"json-empty\">{}</span>"),
        Value::Array(_) => html.push_str("<span class=\"json-empty\">[]</span>"),
        Value::String(text) => {
            let _ = write!(
                html,
                "<span class=\"json-string\">\"{}\"</span>",
                escape(text)
            );
        }
        Value::Number(n) => {
            let _ = write!(html, "<span class=\"json-number\">{n}</span>");
        }
        Value::Bool(b) => {
            let _ = write!(html, "<span class=\"json-bool\">{b}</span>");
        }
        Value::Null => html.push_str("<span class=\"json-null\">null</span>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_an_event_is_shown_as_text() {
        let html = render(
            br#"{"target":[{"displayName":"<script>alert(1)</script>","x\"><img src=x onerror=alert(2)>":1}]}"#,
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("x&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"),
            "{html}"
        );
        assert!(
            html.contains("<details open><summary>{ 1 member }</summary>"),
            "{html}"
        );
        let text = render(b"not json <b>");
        assert_eq!(text, "<pre class=\"json\">not json &lt;b&gt;</pre>");
    }
}
