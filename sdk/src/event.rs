//! Helpers on [`Event`]: headers, JSON bodies, and constructors for tests.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Event, Header};

impl Event {
    /// An event with this body and nothing else: method `POST`, path `/`, no headers, empty id
    /// and route. Meant for tests and for building new events; add headers with
    /// [`Event::with_header`].
    pub fn from_body(body: impl Into<Vec<u8>>) -> Event {
        Event {
            id: String::new(),
            route: String::new(),
            method: "POST".to_owned(),
            path: "/".to_owned(),
            query: String::new(),
            headers: Vec::new(),
            body: body.into(),
            received_at_ms: 0,
        }
    }

    /// Parses the body as JSON into `T` (a `serde_json::Value` works for any JSON).
    ///
    /// The error says why the body is not a `T`; returning it from
    /// [`Plugin::handle`](crate::Plugin::handle) makes a plugin failure, so check
    /// [`Event::header`]s first if non-JSON bodies are expected.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("body is not the expected JSON: {e}"))
    }

    /// The body as UTF-8 text, or `None` if it is not valid UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Replaces the body.
    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        self.body = body.into();
    }

    /// This event with its body replaced by `value` serialized as JSON, and
    /// `content-type: application/json`.
    pub fn with_json_body(mut self, value: &impl Serialize) -> Result<Event, String> {
        self.body =
            serde_json::to_vec(value).map_err(|e| format!("cannot serialize the body: {e}"))?;
        self.set_header("content-type", "application/json");
        Ok(self)
    }

    /// The value of the first header called `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The values of every header called `name` (compared case-insensitively), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Sets header `name` (stored lower-case) to `value`: the first header of that name is
    /// changed in place and any others of that name are removed; if there is none, it is
    /// appended.
    pub fn set_header(&mut self, name: impl AsRef<str>, value: impl Into<String>) {
        let name = name.as_ref();
        let mut value = Some(value.into());
        self.headers.retain_mut(|h| {
            if !h.name.eq_ignore_ascii_case(name) {
                return true;
            }
            match value.take() {
                Some(value) => {
                    h.name.make_ascii_lowercase();
                    h.value = value;
                    true
                }
                None => false,
            }
        });
        if let Some(value) = value {
            self.headers.push(Header {
                name: name.to_ascii_lowercase(),
                value,
            });
        }
    }

    /// Removes every header called `name` (compared case-insensitively); tells whether there
    /// was one.
    pub fn remove_header(&mut self, name: &str) -> bool {
        let before = self.headers.len();
        self.headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
        self.headers.len() != before
    }

    /// This event with header `name` set to `value`, as [`Event::set_header`] does.
    #[must_use]
    pub fn with_header(mut self, name: impl AsRef<str>, value: impl Into<String>) -> Event {
        self.set_header(name, value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn header_pairs(event: &Event) -> Vec<(&str, &str)> {
        event
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect()
    }

    #[test]
    fn headers_are_case_insensitive() {
        let mut event = Event::from_body("{}")
            .with_header("X-GitHub-Event", "push")
            .with_header("accept", "*/*");
        assert_eq!(event.header("x-github-event"), Some("push"));
        assert_eq!(event.header("X-GITHUB-EVENT"), Some("push"));
        assert_eq!(event.header("missing"), None);
        event.set_header("X-Github-Event", "issues");
        assert_eq!(
            header_pairs(&event),
            [("x-github-event", "issues"), ("accept", "*/*")]
        );
        assert!(event.remove_header("ACCEPT"));
        assert!(!event.remove_header("accept"));
        assert_eq!(header_pairs(&event), [("x-github-event", "issues")]);
    }

    #[test]
    fn set_header_collapses_duplicates() {
        let mut event = Event::from_body("");
        event.headers = vec![
            Header {
                name: "a".into(),
                value: "1".into(),
            },
            Header {
                name: "b".into(),
                value: "2".into(),
            },
            Header {
                name: "A".into(),
                value: "3".into(),
            },
        ];
        assert_eq!(event.header_values("a").collect::<Vec<_>>(), ["1", "3"]);
        event.set_header("a", "x");
        assert_eq!(header_pairs(&event), [("a", "x"), ("b", "2")]);
    }

    #[test]
    fn json_round_trip() {
        let event = Event::from_body(r#"{"a": [1, 2]}"#);
        let value: Value = event.json().unwrap();
        assert_eq!(value, json!({"a": [1, 2]}));
        let event = event.with_json_body(&json!({"b": true})).unwrap();
        assert_eq!(event.body_str(), Some(r#"{"b":true}"#));
        assert_eq!(event.header("content-type"), Some("application/json"));
        let err = Event::from_body("nope").json::<Value>().unwrap_err();
        assert!(err.starts_with("body is not the expected JSON"), "{err}");
    }
}
