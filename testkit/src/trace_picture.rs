//! A trace drawn as a waterfall (SVG), from the spans an [`OtlpReceiver`](crate::OtlpReceiver)
//! received: each span a row under its parent, its bar where it ran on the trace's timeline.
//! The README's picture of one event's trace is drawn by a test with this.

use std::fmt::Write as _;

use crate::otlp::ReceivedSpan;

const WIDTH: f64 = 980.0;
const LABEL: f64 = 430.0;
const ROW: f64 = 38.0;
const TOP: f64 = 84.0;

/// The waterfall of `spans` (one trace), titled `title`.
pub fn waterfall_svg(spans: &[ReceivedSpan], title: &str) -> String {
    let rows = in_tree_order(spans);
    let start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.end_unix_nanos)
        .max()
        .unwrap_or(start + 1);
    let total = (end - start).max(1) as f64;
    let timeline = WIDTH - LABEL - 90.0;
    let x = |nanos: u64| LABEL + (nanos - start) as f64 / total * timeline;
    let height = TOP + rows.len() as f64 * ROW + 40.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="ui-sans-serif, system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="13">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="16" y="26" font-size="16" font-weight="600" fill="#111827">{}</text>
<text x="16" y="44" fill="#6b7280">trace {} · {} spans · {}</text>
"##,
        escape(title),
        spans.first().map_or("", |s| s.trace_id.as_str()),
        spans.len(),
        millis(end - start),
    );
    // The time axis: five ticks.
    for tick in 0..=4 {
        let at = LABEL + timeline * tick as f64 / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{}" x2="{at:.1}" y2="{}" stroke="#e5e7eb"/><text x="{at:.1}" y="{}" fill="#9ca3af" font-size="11" text-anchor="middle">{}</text>"##,
            TOP - 6.0,
            TOP + rows.len() as f64 * ROW,
            TOP + rows.len() as f64 * ROW + 16.0,
            millis((end - start) * tick / 4),
        );
    }
    for (row, (span, depth)) in rows.iter().enumerate() {
        let y = TOP + row as f64 * ROW;
        let colour = colour_of(&span.service);
        let indent = 16.0 + *depth as f64 * 16.0;
        let (x0, x1) = (x(span.start_unix_nanos), x(span.end_unix_nanos));
        let error = span.status == "error";
        let _ = write!(
            svg,
            r##"<rect x="0" y="{y}" width="{WIDTH}" height="{ROW}" fill="{}"/>
<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"/>
<text x="{:.1}" y="{:.1}" fill="#111827" font-weight="600">{}</text><text x="{:.1}" y="{:.1}" fill="#6b7280" font-size="11">{}</text>
<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="12" rx="2" fill="{colour}"{}/>
<text x="{:.1}" y="{:.1}" fill="{}" font-size="11">{}</text>
"##,
            if row % 2 == 0 { "#f9fafb" } else { "#ffffff" },
            indent + 4.0,
            y + 12.0,
            indent + 14.0,
            y + 16.0,
            escape(&span.name),
            indent + 14.0,
            y + 30.0,
            escape(&detail(span)),
            y + ROW / 2.0 - 6.0,
            (x1 - x0).max(2.0),
            if error {
                r##" stroke="#dc2626" stroke-width="2""##
            } else {
                ""
            },
            x1.max(x0 + 2.0) + 6.0,
            y + ROW / 2.0 + 4.0,
            if error { "#dc2626" } else { "#6b7280" },
            millis(span.end_unix_nanos - span.start_unix_nanos),
        );
    }
    // The legend: one colour per service.
    let mut services: Vec<&str> = rows.iter().map(|(s, _)| s.service.as_str()).collect();
    services.dedup();
    services.sort_unstable();
    services.dedup();
    let mut at = 21.0;
    for service in services {
        let _ = writeln!(
            svg,
            r##"<circle cx="{at:.1}" cy="60" r="5" fill="{}"/><text x="{:.1}" y="64" fill="#374151">{}</text>"##,
            colour_of(service),
            at + 9.0,
            escape(service)
        );
        at += 18.0 + service.len() as f64 * 7.2;
    }
    svg.push_str("</svg>\n");
    svg
}

/// Spans parent first, then children by start time; spans whose parent is not among them
/// (the trace's root, or a span whose parent is in another process) are roots.
fn in_tree_order(spans: &[ReceivedSpan]) -> Vec<(&ReceivedSpan, usize)> {
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut sorted: Vec<&ReceivedSpan> = spans.iter().collect();
    sorted.sort_by_key(|s| s.start_unix_nanos);
    let mut out = Vec::new();
    fn visit<'a>(
        span: &'a ReceivedSpan,
        depth: usize,
        all: &[&'a ReceivedSpan],
        out: &mut Vec<(&'a ReceivedSpan, usize)>,
    ) {
        out.push((span, depth));
        for child in all
            .iter()
            .filter(|c| c.parent_span_id.as_deref() == Some(span.span_id.as_str()))
        {
            visit(child, depth + 1, all, out);
        }
    }
    for root in sorted
        .iter()
        .filter(|s| !s.parent_span_id.as_deref().is_some_and(|p| ids.contains(p)))
    {
        visit(root, 0, &sorted, &mut out);
    }
    out
}

/// What a row says beside the span's name.
fn detail(span: &ReceivedSpan) -> String {
    let service = span.service.trim_start_matches("hookrelay-");
    let more = match span.kind {
        "consumer" => format!(
            "{} · attempt {} · {}",
            span.attribute("messaging.consumer.group.name")
                .unwrap_or_default(),
            span.attribute("attempt").unwrap_or("?"),
            span.attribute("hookrelay.outcome").unwrap_or("?"),
        ),
        "client" | "server" => (span.attribute("http.response.status_code"))
            .map(|status| format!("→ {status}"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    match more.is_empty() {
        true => format!("{service} · {}", span.kind),
        false => format!("{service} · {} · {more}", span.kind),
    }
}

fn colour_of(service: &str) -> &'static str {
    match service {
        "hookrelay-receiver" => "#2563eb",
        "hookrelay-worker" => "#059669",
        "hookrelay-reconciler" => "#d97706",
        "hookrelayctl" => "#7c3aed",
        _ => "#6b7280",
    }
}

fn millis(nanos: u64) -> String {
    let ms = nanos as f64 / 1e6;
    match ms {
        ms if ms < 10.0 => format!("{ms:.2} ms"),
        ms if ms < 1000.0 => format!("{ms:.0} ms"),
        ms => format!("{:.2} s", ms / 1000.0),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
