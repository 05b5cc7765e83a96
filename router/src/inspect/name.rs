//! Route and destination names in event records: interned once, then copied as a pointer.
//!
//! Every record names its route and each of its destinations. A shared `Arc<str>` made each
//! record cost two atomic updates of one reference count per name (one when made, one when
//! evicted), and the ingress threads and the dispatcher made them on the same count from
//! different cores. A [`Name`] is a `&'static str`: copying it touches nothing shared. The names
//! come from the config (and from records read back from the journal, which a config named),
//! never from senders, so the interned set stays as small as the configs it has seen.

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every name interned so far.
static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// An interned route or destination name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(&'static str);

impl Name {
    /// The name `text`, interned (made once per distinct name, then found).
    pub fn intern(text: &str) -> Self {
        let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
        let names = names.get_or_insert_with(HashSet::new);
        if let Some(&held) = names.get(text) {
            return Self(held);
        }
        let held: &'static str = Box::leak(text.into());
        names.insert(held);
        Self(held)
    }

    /// The name as text.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Self {
        Self::intern(text)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Self::intern(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_interned_once() {
        let first = Name::intern("github-interned");
        let second = Name::intern(&String::from("github-interned"));
        assert!(std::ptr::eq(first.as_str(), second.as_str()));
        assert_eq!(&*first, "github-interned");
        assert_ne!(first, Name::intern("stripe-interned"));
    }
}
