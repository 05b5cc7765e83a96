//! Constructors for the five [`Verdict`]s.

use crate::{Delivery, Event, Rejection, Verdict};

/// Continue with `event` (possibly changed): to the next plugin, or to the route's
/// destinations.
pub fn forward(event: Event) -> Verdict {
    Verdict::Forward(event)
}

/// Continue with the event exactly as `handle` received it: like [`forward`] with that event,
/// but nothing is copied back to the router, so it is the cheaper answer of a plugin that only
/// decides whether an event goes on. (Any change made to the event in `handle` is not seen.)
pub fn pass() -> Verdict {
    Verdict::Pass
}

/// Accept the event (the sender gets `202`) but deliver it nowhere. The router logs and
/// counts `reason`.
pub fn drop(reason: impl Into<String>) -> Verdict {
    Verdict::Drop(reason.into())
}

/// Answer the sender with `status` (4xx or 5xx) and `{"error": message}`; nothing is queued.
pub fn reject(status: u16, message: impl Into<String>) -> Verdict {
    Verdict::Reject(Rejection {
        status,
        message: message.into(),
    })
}

/// Deliver to exactly these destinations (names from the router config), each with its own
/// event. An empty list delivers nowhere, like [`drop`].
pub fn fan_out<D: Into<String>>(deliveries: impl IntoIterator<Item = (D, Event)>) -> Verdict {
    Verdict::FanOut(
        deliveries
            .into_iter()
            .map(|(destination, event)| Delivery {
                destination: destination.into(),
                event,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors() {
        let event = Event::from_body("x");
        assert_eq!(forward(event.clone()), Verdict::Forward(event.clone()));
        assert_eq!(pass(), Verdict::Pass);
        assert_eq!(drop("why"), Verdict::Drop("why".into()));
        assert_eq!(
            reject(403, "no"),
            Verdict::Reject(Rejection {
                status: 403,
                message: "no".into()
            })
        );
        let Verdict::FanOut(deliveries) = fan_out(vec![
            ("a".to_owned(), event.clone()),
            ("b".to_owned(), event),
        ]) else {
            panic!("not a fan-out");
        };
        let names: Vec<_> = deliveries.iter().map(|d| d.destination.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
