//! A running subscriber: one durable pull consumer per event type, at most `concurrency`
//! actions at once, and the rule that turns an action's result into an acknowledgement.
//!
//! | action result                          | what happens                                   |
//! |----------------------------------------|------------------------------------------------|
//! | `Ok`                                   | ack (sent; flushed at shutdown)                |
//! | `Transient`, attempts left             | nak with the backoff delay: retried later      |
//! | `Permanent`, or no attempts left       | dead letter stored, then the original is termed |
//! | dead letter not stored                 | nak with the backoff delay: tried again later  |
//!
//! The worker, not the server, enforces `max_deliver`: the consumers deliver without limit and
//! an event delivered more often than allowed (its last attempt died with a worker) is
//! dead-lettered without running the action. So no event is ever stranded in the stream
//! unseen, which a server-side limit would do to the event whose last attempt crashed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_nats::jetstream::consumer::{PullConsumer, pull::Batch};
use async_nats::jetstream::{self, AckKind};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use hookrelay::config::{ActionSettings, AttemptRecords, SubscriberSettings};
use hookrelay::jq::{Fields, Jq};
use hookrelay::subject::{self, header};
use hookrelay::{attempts, telemetry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, PollSemaphore};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::action::{Action, ActionError, Event};
use crate::dead_letter::DeadLetter;
use crate::gate::Gate;
use crate::metrics::{Metrics, Outcome, SubscriberMetrics};
use crate::settle::{self, Settlement};

/// How long one pull waits at the server for events before it expires and is made again. It
/// also bounds how long a pull lost with a restarted broker goes unnoticed: this plus the
/// client's 5 s of slack.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// The pause after a pull that could not be made or that failed.
const PULL_RETRY: Duration = Duration::from_secs(1);

/// Whether to run an event's first steps in the consume loop: kept while the action finishes
/// there (`noop`, `log`), dropped once it has to wait (`http`: its steps then run on the
/// loop's thread for nothing), tried again every 256th event.
#[derive(Default)]
struct AtOnce {
    waits: bool,
    skipped: u8,
}

impl AtOnce {
    fn worth_trying(&mut self) -> bool {
        if !self.waits {
            return true;
        }
        self.skipped = self.skipped.wrapping_add(1);
        self.skipped == 0
    }

    /// Learns from one poll. An event that waited only because the loop's task had used up
    /// its turn (tokio's cooperative budget: 128 channel operations, such as acks, per poll)
    /// says nothing about the action.
    fn finished(&mut self, finished: bool) {
        if finished || tokio::task::coop::has_budget_remaining() {
            self.waits = !finished;
        }
    }
}

/// The next event of the open pull.
async fn next_of(
    pull: &mut Option<Batch>,
) -> Option<Result<jetstream::Message, async_nats::Error>> {
    match pull {
        Some(batch) => batch.next().await,
        None => std::future::pending().await,
    }
}

/// Until `after`, if set (made lazily: no clock read or timer when not polled).
async fn pause_until(after: Option<Instant>) {
    match after {
        Some(after) => tokio::time::sleep_until(after).await,
        None => std::future::pending().await,
    }
}

/// What jq reads of each event for `settings`: its filter's and its action's transform's fields.
fn jq_fields(settings: &SubscriberSettings) -> Fields {
    let none = || Fields::Only(Vec::new());
    let filter = (settings.filter.as_deref()).map_or_else(none, Fields::read_by);
    let action = match &settings.action {
        ActionSettings::Http(http) => {
            (http.transform.as_deref()).map_or_else(none, Fields::read_by)
        }
        // These read the event as `Event::okta`, not as jq. (An action of yours that calls
        // `Event::jq_input` reads `Fields::All`.)
        ActionSettings::UserAdded | ActionSettings::Log | ActionSettings::Noop => none(),
    };
    filter.and(action)
}

/// One configured subscriber with its action.
pub struct Subscriber {
    settings: SubscriberSettings,
    action: Arc<dyn Action>,
    filter: Option<Jq>,
    /// The event's top-level fields the filter and the action's transform read.
    jq_fields: Arc<Fields>,
    gate: Gate,
    js: jetstream::Context,
    /// Where each attempt is recorded (`None`: the bucket could not be opened).
    recorder: Option<attempts::Recorder>,
    /// Whether the subscriber is paused (`hookrelay::pause`), as the worker watches it.
    paused: watch::Receiver<bool>,
    permits: Arc<Semaphore>,
    metrics: SubscriberMetrics,
}

impl Subscriber {
    /// Fails on a `filter` that does not compile (which loading the configuration has
    /// checked already).
    pub fn new(
        settings: SubscriberSettings,
        action: Arc<dyn Action>,
        js: jetstream::Context,
        recorder: Option<attempts::Recorder>,
        paused: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        let metrics = metrics.subscriber(&settings.name);
        let filter = settings.filter.as_deref().map(Jq::compile).transpose()?;
        let rate = settings.rate().transpose()?;
        Ok(Subscriber {
            gate: Gate::new(rate),
            filter,
            jq_fields: Arc::new(jq_fields(&settings)),
            settings,
            action,
            js,
            recorder,
            paused,
            permits,
            metrics,
        })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Creates (or updates) the durable consumer of each event type on `stream`, and the one
    /// of the subscriber's replayed dead letters (`okta.replay.<subscriber>.>`, last).
    pub async fn bind(
        &self,
        stream: &jetstream::stream::Stream,
    ) -> Result<Vec<PullConsumer>, jetstream::stream::ConsumerError> {
        let name = &self.settings.name;
        let mut wanted: Vec<_> = (self.settings.event_types.iter())
            .map(|event_type| {
                (
                    subject::durable_name(name, event_type),
                    format!("hookrelay subscriber {name} for {event_type}"),
                    subject::event_subject(event_type),
                )
            })
            .collect();
        wanted.push((
            subject::replay_durable_name(name),
            format!("hookrelay subscriber {name}: replayed dead letters"),
            format!("{}.{name}.>", subject::REPLAY_PREFIX),
        ));
        let mut consumers = Vec::with_capacity(wanted.len());
        for (durable, description, filter_subject) in wanted {
            let config = jetstream::consumer::pull::Config {
                durable_name: Some(durable),
                description: Some(description),
                filter_subject,
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: self.settings.ack_wait,
                max_deliver: -1,
                ..Default::default()
            };
            consumers.push(stream.create_consumer(config).await?);
        }
        Ok(consumers)
    }

    /// Pulls from `consumer` until `shutdown`, handing each event to the action on `tracker`
    /// once one of the subscriber's `concurrency` slots is free.
    ///
    /// Up to `read_ahead` events are pulled ahead of a free slot, so a slot never waits on a
    /// broker round trip; while they wait they are kept from redelivery with an in-progress ack
    /// every half `ack_wait`. A pull asks only for what fits (and only once half the read-ahead
    /// is free, so pulls stay few and full), which keeps every pulled event in the waiting
    /// queue rather than unannounced in the client's buffer, where its `ack_wait` would run
    /// out. A slot is taken only when an event is there: a consumer with nothing to deliver
    /// (most often the replay consumer) holds none, so it never starves the subscriber's other
    /// consumers.
    pub async fn consume(
        self: Arc<Self>,
        consumer: PullConsumer,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) {
        let read_ahead = self.settings.read_ahead.max(1);
        let mut waiting: VecDeque<jetstream::Message> = VecDeque::with_capacity(read_ahead);
        let mut pull: Option<Batch> = None;
        let period = self.settings.ack_wait / 2;
        let mut keepalive = tokio::time::interval_at(Instant::now() + period, period);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Keeps its place in the semaphore's queue between turns of the loop, which waiting
        // afresh on each turn would lose (and pay a lock to join and leave).
        let mut slots = PollSemaphore::new(self.permits.clone());
        let mut at_once = AtOnce::default();
        // No pull before this: a failed one is not made again at once.
        let mut pull_after: Option<Instant> = None;
        // The event a subscriber with one slot runs in this loop rather than on a task.
        let mut running: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
        // Made once: a fresh one on each turn would join and leave the token's waiters.
        let stopping = shutdown.cancelled();
        tokio::pin!(stopping);
        // Paused: start nothing and pull nothing more; what was pulled waits here, kept alive.
        let mut pause = self.paused.clone();
        let mut paused = *pause.borrow_and_update();
        let mut pause_watched = true;
        loop {
            // Once the task's turn is used up, stop here rather than hand the events that
            // follow to tasks: the select below then yields (its slot, pull and timer branches
            // answer `Pending` with the budget gone, and wake the task again).
            while !paused && !waiting.is_empty() && tokio::task::coop::has_budget_remaining() {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    break;
                };
                running.extend(self.start(waiting.pop_front(), permit, &tracker, &mut at_once));
            }
            let free = read_ahead - waiting.len();
            // The clock is read only after a failed pull.
            if pull_after.is_some_and(|after| Instant::now() >= after) {
                pull_after = None;
            }
            let pull_paused = pull_after.is_some();
            if pull.is_none() && !pull_paused && !paused && free >= read_ahead.div_ceil(2) {
                let request = consumer
                    .batch()
                    .max_messages(free)
                    .expires(PULL_EXPIRES)
                    .messages();
                match request.await {
                    Ok(batch) => pull = Some(batch),
                    Err(e) => {
                        tracing::warn!(subscriber = self.name(), error = %e, "cannot pull; retrying in 1s");
                        pull_after = Some(Instant::now() + PULL_RETRY);
                        continue;
                    }
                }
            }
            tokio::select! {
                biased;
                () = &mut stopping => break,
                changed = pause.changed(), if pause_watched => match changed {
                    Ok(()) => {
                        paused = *pause.borrow_and_update();
                        tracing::info!(subscriber = self.name(), paused, held = waiting.len(), "{}", if paused {
                            "subscriber paused: starting nothing and pulling nothing more"
                        } else {
                            "subscriber resumed"
                        });
                    }
                    // The worker is stopping.
                    Err(_) => pause_watched = false,
                },
                () = pause_until(pull_after), if pull_paused && pull.is_none() => {}
                Some(()) = running.next(), if !running.is_empty() => {}
                // Before the others, so that no stream of arrivals can put it off.
                _ = keepalive.tick(), if !waiting.is_empty() => {
                    for message in &waiting {
                        if let Err(e) = message.ack_with(AckKind::Progress).await {
                            tracing::warn!(error = %e, "could not extend the ack deadline of a waiting event");
                        }
                    }
                }
                permit = std::future::poll_fn(|cx| slots.poll_acquire(cx)), if !paused && !waiting.is_empty() => {
                    let permit = permit.expect("the semaphore is never closed");
                    running.extend(self.start(waiting.pop_front(), permit, &tracker, &mut at_once));
                }
                next = next_of(&mut pull), if pull.is_some() => {
                    // Take every event already here, not one per turn of the loop.
                    let mut next = Some(next);
                    while let Some(item) = next {
                        match item {
                            Some(Ok(message)) => waiting.push_back(message),
                            Some(Err(e)) => {
                                // A pull the server ended early (a consumer leader that
                                // changed in a cluster, or none yet: "no responders"): make
                                // a fresh one, after a pause rather than in a tight loop.
                                tracing::warn!(subscriber = self.name(), error = %e, "pulling events failed; pulling afresh in 1s");
                                pull = None;
                                pull_after = Some(Instant::now() + PULL_RETRY);
                            }
                            // Fulfilled or expired.
                            None => pull = None,
                        }
                        next = pull.as_mut().and_then(|batch| batch.next().now_or_never());
                    }
                }
            }
        }
        // Running here: finish on a task of its own, which the shutdown waits for.
        for event in running {
            tracker.spawn(event);
        }
        // Not started: let another worker have them now.
        for message in waiting {
            self.nak(&message, Duration::ZERO).await;
        }
    }

    /// Runs `message`, holding `permit` until it is settled, on `tracker`; or, while `at_once`
    /// says actions finish without waiting (`noop`, a log line), right here, which costs no
    /// task. An action that waits, of a subscriber with one slot, is returned for the loop to
    /// run: with nothing to run beside it a task buys no parallelism, and costs a spawn and a
    /// wake-up of another thread per event (`http`/1 went from 0.865 to 0.892 of its ceiling).
    fn start(
        self: &Arc<Self>,
        message: Option<jetstream::Message>,
        permit: OwnedSemaphorePermit,
        tracker: &TaskTracker,
        at_once: &mut AtOnce,
    ) -> Option<BoxFuture<'static, ()>> {
        let message = message?;
        let this = self.clone();
        // Boxed: a future cannot move once polled, and an event's is a few kilobytes.
        let mut fut: BoxFuture<'static, ()> = Box::pin(async move {
            this.process(message).await;
            drop(permit);
        });
        if at_once.worth_trying() {
            // With a waker that does nothing: a task is polled once it is spawned, and that
            // poll registers the task's own waker wherever the future waits.
            let finished = (fut.as_mut())
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready();
            at_once.finished(finished);
            if finished {
                return None;
            }
        }
        if self.settings.concurrency == 1 {
            return Some(fut);
        }
        tracker.spawn(fut);
        None
    }

    /// Runs the action on one message and settles it: ack, retry later, or dead-letter.
    pub async fn process(&self, mut message: jetstream::Message) {
        let (stream_sequence, delivered, stored_at) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered, info.published.into()),
            Err(e) => {
                tracing::error!(error = %e, "message without JetStream metadata skipped");
                return;
            }
        };
        // The event takes the message's headers rather than a copy; the message keeps what
        // an ack needs, its reply subject.
        let headers = message.message.headers.take();
        // One pass over the headers rather than a lookup (a parse and a hash) per name.
        let (mut message_id, mut replayed, mut delivery_id, mut okta_request_id) = ("", "", "", "");
        for (name, values) in headers.iter().flat_map(|h| h.iter()) {
            let value = values.first().map_or("", |v| v.as_str());
            match name.as_ref() {
                "Nats-Msg-Id" => message_id = value,
                header::EVENT_UUID => replayed = value,
                header::DELIVERY_ID => delivery_id = value,
                header::OKTA_REQUEST_ID => okta_request_id = value,
                _ => {}
            }
        }
        // A replayed dead letter names its event in its own header; its message id is the
        // replay's.
        let uuid = if replayed.is_empty() {
            message_id
        } else {
            replayed
        };
        let replay = (!replayed.is_empty()).then_some(stream_sequence);
        let event_type = subject::event_type_of(&message.subject).unwrap_or_default();
        // The attempt's span, with the fields its log lines carry; and `$otel`, when tracing.
        macro_rules! attempt_span {
            ($($otel:tt)*) => {
                tracing::info_span!(
                    "event",
                    subscriber = %self.settings.name,
                    event_uuid = %uuid,
                    event_type,
                    delivery_id,
                    okta_request_id,
                    stream_sequence,
                    attempt = delivered,
                    $($otel)*
                )
            };
        }
        let span = if telemetry::tracing_on() {
            // The CONSUMER span of this attempt, a child of the event's PRODUCER span (whose
            // context the message carries): every attempt and every replay of an event is in
            // the event's one trace.
            let span = attempt_span!(
                otel.name = %format_args!("process {}", message.subject),
                otel.kind = "consumer",
                otel.status_code = tracing::field::Empty,
                messaging.system = "nats",
                messaging.operation.type = "process",
                messaging.destination.name = %message.subject,
                messaging.message.id = %uuid,
                messaging.consumer.group.name = %self.settings.name,
                okta.event_type = event_type,
                hookrelay.outcome = tracing::field::Empty,
            );
            if let Some(headers) = &headers {
                telemetry::set_parent(&span, telemetry::extract_nats(headers));
            }
            span
        } else {
            attempt_span!()
        };
        let event = Event::new(
            uuid.to_owned(),
            event_type.to_owned(),
            message.payload.clone(),
            headers,
            stored_at,
        )
        .reading(self.jq_fields.clone());
        let _in_flight = self.metrics.in_flight();
        let started = (std::time::SystemTime::now(), std::time::Instant::now());
        async {
            let outcome = match settle::may_run(&self.settings, delivered)
                .and_then(|()| self.selects(&event))
            {
                Err(given_up) => Err(given_up),
                Ok(false) => {
                    self.ack(&message).await;
                    self.metrics.handled(Outcome::Filtered);
                    tracing::Span::current()
                        .record("hookrelay.outcome", Outcome::Filtered.as_str());
                    return;
                }
                Ok(true) => self.run_action(&message, &event).await,
            };
            if let Err(ActionError::Throttled { retry_after, .. }) = &outcome {
                self.gate.pause_until(Instant::now() + *retry_after);
            }
            let settlement = settle::settle(&self.settings, delivered, outcome);
            // Only a failure's reason is copied, for its record.
            let failure = match &settlement {
                Settlement::Ack => None,
                Settlement::Retry { reason, after }
                | Settlement::DeadLetter {
                    reason,
                    or_retry_after: after,
                } => Some((reason.clone(), *after)),
            };
            let settled = self
                .carry_out(&message, &event, (stream_sequence, delivered), settlement)
                .await;
            self.metrics.handled(settled);
            if telemetry::tracing_on() {
                let span = tracing::Span::current();
                span.record("hookrelay.outcome", settled.as_str());
                if !matches!(settled, Outcome::Ok) {
                    span.record("otel.status_code", "ERROR");
                }
            }
            self.record(&event, delivered, started, settled, failure, replay)
                .await;
        }
        .instrument(span)
        .await;
    }

    /// Records the attempt (`hookrelay::attempts`) as it was settled: all of them, or with
    /// `attempt_records = "failures"` the failures and the success that ends them.
    async fn record(
        &self,
        event: &Event,
        delivered: i64,
        (started_at, started): (std::time::SystemTime, std::time::Instant),
        settled: Outcome,
        failure: Option<(String, Duration)>,
        replay: Option<u64>,
    ) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let outcome = match settled {
            Outcome::Ok => attempts::Outcome::Ok,
            Outcome::Retried => attempts::Outcome::Retry,
            Outcome::DeadLettered => attempts::Outcome::DeadLettered,
            Outcome::Filtered => return,
        };
        if outcome == attempts::Outcome::Ok
            && delivered <= 1
            && replay.is_none()
            && self.settings.attempt_records == AttemptRecords::Failures
        {
            return;
        }
        let attempt = u64::try_from(delivered).unwrap_or(0);
        let mut record = attempts::Attempt::new(attempt, started_at, started.elapsed(), outcome);
        if let Some((status, body)) = event.answer() {
            record = record.answered(*status, body);
        }
        if let Some((reason, after)) = failure {
            record = record.failed(&reason);
            if outcome == attempts::Outcome::Retry {
                record = record.retry_in(after);
            }
        }
        record.replay = replay;
        if telemetry::tracing_on() {
            record.trace_id = telemetry::trace_id(&tracing::Span::current());
        }
        recorder.record(self.name(), &event.uuid, &record).await;
    }

    /// Whether the subscriber's `filter` keeps `event` (jq's `select`); without one, it does.
    /// A filter that fails on the event (a missing field used as a string) fails it for good.
    fn selects(&self, event: &Event) -> Result<bool, ActionError> {
        let Some(filter) = &self.filter else {
            return Ok(true);
        };
        let _span = telemetry::tracing_on().then(|| tracing::info_span!("jq filter").entered());
        (filter.selects(event.jq_input()?))
            .map_err(|e| ActionError::Permanent(format!("filter: {e}")))
    }

    /// Runs the action once the gate lets it start (`rate_limit`, a downstream's pause),
    /// telling JetStream the event is still in progress every half `ack_wait`, so a long wait
    /// or action never has it delivered a second time.
    async fn run_action(
        &self,
        message: &jetstream::Message,
        event: &Event,
    ) -> Result<(), ActionError> {
        if self.gate.try_start(Instant::now()).is_err() {
            let waited = async {
                self.gate.start().await;
                self.timed_action(event).await
            };
            return Box::pin(self.keep_alive_while(message, Box::pin(waited))).await;
        }
        let started = std::time::Instant::now();
        let mut action = self.traced(self.action.handle(event));
        // Most actions that finish at once (`noop`, a log line) need no timer.
        let result = match futures::poll!(action.as_mut()) {
            Poll::Ready(result) => result,
            Poll::Pending => Box::pin(self.keep_alive_while(message, action)).await,
        };
        self.metrics.action_took(started.elapsed());
        result
    }

    /// `action` in the span of the action, when tracing is on: the `http` action makes its own
    /// CLIENT span; the others get an INTERNAL one named after their type.
    fn traced<'a>(
        &self,
        action: Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send + 'a>>,
    ) -> Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send + 'a>> {
        if !telemetry::tracing_on() || matches!(self.settings.action, ActionSettings::Http(_)) {
            return action;
        }
        let (kind, _) = hookrelay::subscribers::action_of(&self.settings);
        Box::pin(action.instrument(tracing::info_span!(
            "action",
            otel.name = %format_args!("action {kind}"),
        )))
    }

    async fn timed_action(&self, event: &Event) -> Result<(), ActionError> {
        let started = std::time::Instant::now();
        let result = self.traced(self.action.handle(event)).await;
        self.metrics.action_took(started.elapsed());
        result
    }

    /// Awaits a running action, with an in-progress ack every half `ack_wait`.
    async fn keep_alive_while(
        &self,
        message: &jetstream::Message,
        mut action: Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send + '_>>,
    ) -> Result<(), ActionError> {
        let period = self.settings.ack_wait / 2;
        let mut keepalive = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tokio::select! {
                result = &mut action => return result,
                _ = keepalive.tick() => {
                    if let Err(e) = message.ack_with(AckKind::Progress).await {
                        tracing::warn!(error = %e, "could not extend the ack deadline");
                    }
                }
            }
        }
    }

    /// Carries out a [`Settlement`]: ack, nak with its delay, or store the dead letter and
    /// terminate (or, should the dead letter not be stored, nak so the event is tried again).
    async fn carry_out(
        &self,
        message: &jetstream::Message,
        event: &Event,
        ids: (u64, i64),
        settlement: Settlement,
    ) -> Outcome {
        match settlement {
            Settlement::Ack => self.ack(message).await,
            // Boxed: the rare paths' futures would otherwise make every event's task larger.
            other => Box::pin(self.carry_out_failure(message, event, ids, other)).await,
        }
    }

    /// Carries out a retry or a dead letter.
    async fn carry_out_failure(
        &self,
        message: &jetstream::Message,
        event: &Event,
        (stream_sequence, delivered): (u64, i64),
        settlement: Settlement,
    ) -> Outcome {
        match settlement {
            Settlement::Ack => self.ack(message).await,
            Settlement::Retry { reason, after } => {
                tracing::warn!(error = %reason, retry_in = ?after, "action failed; retrying later");
                self.nak(message, after).await;
                Outcome::Retried
            }
            Settlement::DeadLetter {
                reason,
                or_retry_after,
            } => {
                tracing::error!(error = %reason, "action failed for good; dead-lettering the event");
                let dead_letter = DeadLetter {
                    subscriber: &self.settings.name,
                    subject: &message.subject,
                    event,
                    stream_sequence,
                    delivered,
                    error: &reason,
                };
                match dead_letter.publish(&self.js).await {
                    Ok(()) => {
                        if let Err(e) = message.ack_with(AckKind::Term).await {
                            tracing::warn!(error = %e, "dead letter stored but the original not terminated; it will be dead-lettered again (deduplicated)");
                        }
                        Outcome::DeadLettered
                    }
                    Err(e) => {
                        tracing::error!(error = %e, retry_in = ?or_retry_after, "dead letter not stored; the event stays and is tried again");
                        self.nak(message, or_retry_after).await;
                        Outcome::Retried
                    }
                }
            }
        }
    }

    async fn ack(&self, message: &jetstream::Message) -> Outcome {
        // Sent, not confirmed: waiting for JetStream's reply would hold the action's
        // slot for a round trip per event. An ack lost with the connection only means
        // the event is delivered again after ack_wait (at least once, as always); at
        // shutdown the worker flushes before it exits.
        if let Err(e) = message.ack().await {
            tracing::warn!(error = %e, "ack not sent; the event will be handled again");
        } else {
            tracing::debug!("event handled");
        }
        Outcome::Ok
    }

    async fn nak(&self, message: &jetstream::Message, delay: Duration) {
        if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(error = %e, "nak not sent; the event comes back after ack_wait");
        }
    }
}
