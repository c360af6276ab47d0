//! Where each durable consumer stands (its ack floor and the last sequence handed out), read
//! from JetStream and kept for a second, so that a page that asks for many events' fates asks
//! JetStream once per consumer, and many pages at once still only once a second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::Stream;
use hookrelay::stored::{Position, Positions};

/// How long a consumer's position is reused.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// The events stream's consumers' positions.
pub struct PositionCache {
    stream: Stream,
    known: Mutex<HashMap<String, (Instant, Option<Position>)>>,
}

impl PositionCache {
    pub fn new(stream: Stream) -> Self {
        PositionCache {
            stream,
            known: Mutex::new(HashMap::new()),
        }
    }
}

impl Positions for PositionCache {
    async fn position(&self, durable: &str) -> anyhow::Result<Option<Position>> {
        if let Some((at, position)) = self.known.lock().expect("not poisoned").get(durable)
            && at.elapsed() < FRESH_FOR
        {
            return Ok(*position);
        }
        let position = self.stream.position(durable).await?;
        (self.known.lock().expect("not poisoned"))
            .insert(durable.to_owned(), (Instant::now(), position));
        Ok(position)
    }
}
