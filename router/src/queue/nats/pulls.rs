//! The room the fetch tasks share: what their open pulls have asked JetStream for and not yet
//! received, so that the pulls of one destination (its shared subject and each ordered
//! partition this router holds), and of all destinations together, stay within the router's
//! room (the destination's `max_held`, `queue_capacity`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::queue::DestinationId;

/// Messages asked for and not yet received, overall and by destination.
#[derive(Debug, Clone, Default)]
pub struct Pulls(Arc<Mutex<Asked>>);

#[derive(Debug, Default)]
struct Asked {
    overall: usize,
    by_destination: HashMap<DestinationId, usize>,
}

impl Pulls {
    /// Claims room for a pull for `destination`: `room` gives what the router may still hold
    /// for it and overall (counting what it holds now); the messages other pulls asked for and
    /// have not received are taken off. At most `most`.
    pub fn claim(
        &self,
        destination: DestinationId,
        most: usize,
        room: impl FnOnce() -> (usize, usize),
    ) -> usize {
        let mut asked = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (for_destination, overall) = room();
        let mine = asked.by_destination.get(&destination).copied().unwrap_or(0);
        let claimed = for_destination
            .saturating_sub(mine)
            .min(overall.saturating_sub(asked.overall))
            .min(most);
        asked.overall = asked.overall.saturating_add(claimed);
        asked
            .by_destination
            .insert(destination, mine.saturating_add(claimed));
        claimed
    }

    /// `count` of `destination`'s claimed messages arrived (and are held now), or will not
    /// (the pull ended).
    pub fn settled(&self, destination: DestinationId, count: usize) {
        let mut asked = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        asked.overall = asked.overall.saturating_sub(count);
        if let Some(mine) = asked.by_destination.get_mut(&destination) {
            *mine = mine.saturating_sub(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_share_the_room_until_their_messages_arrive() {
        let pulls = Pulls::default();
        assert_eq!(pulls.claim(0, 256, || (10, 15)), 10);
        assert_eq!(pulls.claim(0, 256, || (10, 15)), 0, "asked for already");
        assert_eq!(pulls.claim(1, 256, || (10, 15)), 5, "what is left overall");
        // Three of destination 0's arrive (held now: its room shrinks by as many).
        pulls.settled(0, 3);
        assert_eq!(pulls.claim(0, 256, || (7, 12)), 0);
        // Its pull ends with the other seven not sent.
        pulls.settled(0, 7);
        assert_eq!(pulls.claim(0, 2, || (7, 12)), 2, "at most `most`");
    }
}
