//! One attempt and what follows from its outcome: a delivered event is final, a failure that
//! may be retried waits in the retry scheduler (or, on NATS, goes back to the queue), and one
//! that fails for good (or that the queue gives up, see [`Verdict`]) becomes a dead letter,
//! final only once the letter is stored.
// Time arithmetic meets configured and remote values here: no operator may overflow.
#![warn(clippy::arithmetic_side_effects)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use super::{Delivery, Shared};
use crate::delivery::attempt::AttemptOutcome;
use crate::delivery::dead_letter::{DeadLetter, LetterError};
use crate::event::Event;
use crate::queue::{Progress, Reported, Verdict};

/// How long a delivery whose dead letter could not be stored waits before it is dead-lettered
/// again (the letter store, NATS, refused it or did not answer).
const LETTER_RETRY: Duration = Duration::from_secs(5);

/// Makes one attempt and acts on its outcome.
pub(super) async fn attempt(shared: &Shared, mut delivery: Delivery) {
    let destination = shared.destination(delivery.destination);
    let event = &delivery.job.event;
    let metrics = shared.metrics.get(&event.route, delivery.destination);
    let metrics = metrics.as_ref();
    let (started, started_at) = (Instant::now(), SystemTime::now());
    let outcome = {
        let _counted = shared.board.attempt(delivery.destination);
        shared.deliverer.attempt(&destination, event).await
    };
    let took = started.elapsed();
    shared
        .inspect
        .attempt(&event.id, &destination.name, started_at, took, &outcome);
    delivery.attempts = delivery.attempts.saturating_add(1);
    let failed = matches!(outcome, AttemptOutcome::Retry { .. });
    shared.board.record(
        delivery.destination,
        match &outcome {
            AttemptOutcome::Delivered { .. } => None,
            AttemptOutcome::Retry { error, .. } | AttemptOutcome::Permanent { error, .. } => {
                Some(error)
            }
        },
    );
    if let Some(change) = shared
        .board
        .circuit(delivery.destination)
        .record(failed, Instant::now())
    {
        let circuit = destination.circuit;
        tracing::warn!(
            destination = %destination.name,
            circuit = change,
            failures = circuit.failures.get(),
            "circuit {change}"
        );
    }
    if let Some(metrics) = metrics {
        metrics.duration.record(took.as_secs_f64());
    }
    let (status, error) = match outcome {
        AttemptOutcome::Delivered { status } => {
            if let Some(metrics) = metrics {
                metrics.delivered.increment(1);
                metrics.attempts.record(f64::from(delivery.attempts));
            }
            // Per event, so at debug; failures (retries, dead letters) stay at info and warn.
            tracing::debug!(
                event_id = %event.id,
                route = %event.route,
                destination = %destination.name,
                attempts = delivery.attempts,
                status,
                "delivered"
            );
            shared.finish(&delivery);
            shared.next_in_line(&delivery);
            return;
        }
        AttemptOutcome::Retry {
            status,
            retry_after,
            error,
        } if delivery.attempts < destination.retry.max_attempts.get() => {
            let wait = crate::delivery::backoff::next_delay(
                &destination.retry,
                delivery.attempts,
                retry_after,
                fastrand::f64(),
            );
            if let Some(metrics) = metrics {
                metrics.retry.increment(1);
            }
            let reported = delivery.job.receipt.record(
                delivery.position,
                Progress {
                    attempts: delivery.attempts,
                    next_attempt_ms: crate::journal::now_ms()
                        .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
                    done: false,
                },
            );
            tracing::info!(
                event_id = %event.id,
                route = %event.route,
                destination = %destination.name,
                attempts = delivery.attempts,
                status,
                error = %error,
                retry_in = %humantime::format_duration(wait),
                "delivery failed, will retry"
            );
            if reported == Reported::Returned {
                // The queue hands the event out again when the retry is due.
                shared.outstanding.fetch_sub(1, Ordering::AcqRel);
                shared.next_in_line(&delivery);
                return;
            }
            // The scheduler's inbox outlives its task: during shutdown the retry waits there,
            // counted.
            let _ = shared.retries.send((delivery, wait));
            return;
        }
        AttemptOutcome::Retry { status, error, .. }
        | AttemptOutcome::Permanent { status, error } => (status, error),
    };
    let verdict = Verdict {
        attempts: delivery.attempts,
        last_status: status,
        reason: error,
    };
    dead_letter(shared, delivery, verdict).await;
}

/// Turns a delivery that is over (failed for good, or given up by the queue) into a dead
/// letter. The delivery is final only once the letter is stored: a letter the store refused
/// leaves the event with the queue (NATS takes it back, to hand it out again with its verdict)
/// or in the retry scheduler, to be dead-lettered again after [`LETTER_RETRY`].
pub(super) async fn dead_letter(shared: &Shared, mut delivery: Delivery, verdict: Verdict) {
    let destination = shared.destination(delivery.destination);
    let event = &delivery.job.event;
    let letter = DeadLetter {
        id: Event::new_id(),
        event: event.clone(),
        destination: Some(delivery.destination),
        destination_name: destination.name.clone(),
        attempts: verdict.attempts,
        last_status: verdict.last_status,
        last_error: verdict.reason.clone(),
        failed_at: SystemTime::now(),
    };
    let letter_id = letter.id.clone();
    // Held before the letter is stored, so that a discard of the letter finds it held.
    let holds = match &event.order_key {
        Some(key) if shared.holding.holds(&event.route) => {
            shared.order.hold(delivery.destination, key, &event.id);
            true
        }
        _ => false,
    };
    let finished = Delivery {
        attempts: verdict.attempts,
        ..delivery.clone()
    };
    if let Err(error) = store_and_finish(shared, &finished, letter).await {
        tracing::error!(
            event_id = %event.id,
            route = %event.route,
            destination = %destination.name,
            %error,
            retry_in = %humantime::format_duration(LETTER_RETRY),
            "delivery failed for good, but its dead letter could not be stored: kept, to be dead-lettered again"
        );
        if delivery.job.receipt.unstored(&verdict, LETTER_RETRY) == Reported::Returned {
            shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            shared.next_in_line(&delivery);
        } else {
            delivery.verdict = Some(verdict);
            let _ = shared.retries.send((delivery, LETTER_RETRY));
        }
        return;
    }
    if !holds {
        shared.next_in_line(&delivery);
    }
    if let Some(metrics) = shared.metrics.get(&event.route, delivery.destination) {
        metrics.dead_letter.increment(1);
    }
    shared.inspect.dead_lettered(&event.id, &destination.name);
    tracing::warn!(
        event_id = %event.id,
        route = %event.route,
        destination = %destination.name,
        attempts = verdict.attempts,
        status = ?verdict.last_status,
        error = %verdict.reason,
        dead_letter = %letter_id,
        "delivery failed for good: dead-lettered"
    );
}

/// Stores `letter` and makes `delivery` final. On the journal both go in one all-or-nothing
/// write (the letter with the report that finishes the delivery), so that a crash leaves
/// neither or both on disk; elsewhere the letter is stored first and the report made after
/// (a crash between the two leaves the event to be delivered again, never neither). On error
/// the letter was not stored and the delivery is not final.
async fn store_and_finish(
    shared: &Shared,
    delivery: &Delivery,
    letter: DeadLetter,
) -> Result<(), LetterError> {
    let mut staged = shared.dead_letters.stage(letter);
    if let Some(records) = staged.take_records() {
        let receipt = &delivery.job.receipt;
        // `Err`: the queue keeps no journal, and the letter is stored on its own.
        if receipt
            .record_with(delivery.position, delivery.final_progress(), records)
            .is_ok()
        {
            shared.dead_letters.staged(staged);
            shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Ok(());
        }
    }
    shared.dead_letters.store(staged.into_letter()).await?;
    shared.finish(delivery);
    Ok(())
}
