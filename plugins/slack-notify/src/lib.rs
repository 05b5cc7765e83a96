//! # slack-notify
//!
//! Turns GitHub `push`, `pull_request`, `issues` and `release` webhooks (told apart by the
//! `x-github-event` header) into a Slack incoming-webhook message: a plain `text` summary
//! (used by notifications) and `blocks` of `section`s in mrkdwn. The output depends only on
//! the event, so the same event always gives the same message.
//!
//! Point the route's destination at the Slack webhook URL. Other events (`ping`, `star`, …)
//! are dropped, or forwarded unchanged with `other_events = "forward"`. GitHub's form-encoded
//! deliveries (`payload=…`) are read as well as JSON ones.
//!
//! ## Config
//!
//! Every key is optional; unknown keys are an error.
//!
//! | key | type | meaning |
//! | --- | --- | --- |
//! | `channel` | string | `channel` of the message (legacy webhooks only; omitted when unset) |
//! | `username` | string | `username` of the message (omitted when unset) |
//! | `icon_emoji` | string | `icon_emoji` of the message, e.g. `":octocat:"` (omitted when unset) |
//! | `events` | list of `"push"`, `"pull_request"`, `"issues"`, `"release"` | the events to turn into messages (default: all four); the rest count as other events |
//! | `other_events` | `"drop"` (default) or `"forward"` | what to do with other events |
//! | `max_commits` | integer, default `5` | commits listed for a push (the rest are counted) |
//!
//! ## Example
//!
//! ```toml
//! [[routes.plugins]]
//! module = "target/wasm/wasm32-wasip2/release/slack_notify.wasm"
//! config = { username = "GitHub", icon_emoji = ":octocat:", events = ["push", "release"] }
//! ```
//!
//! A push of two commits to `main` becomes:
//!
//! ```json
//! {
//!   "username": "GitHub",
//!   "icon_emoji": ":octocat:",
//!   "text": "[acme/widgets] 2 new commits pushed to main by octocat",
//!   "blocks": [
//!     {"type": "section", "text": {"type": "mrkdwn", "text": "*<https://github.com/acme/widgets|acme/widgets>* <https://github.com/acme/widgets/compare/a...b|2 new commits> pushed to `main` by *octocat*"}},
//!     {"type": "section", "text": {"type": "mrkdwn", "text": "<https://github.com/acme/widgets/commit/0123456…|`0123456`> Fix the widget – Mona\n…"}}
//!   ]
//! }
//! ```

use serde::Deserialize;
use webhook_router_sdk::serde_json::{self, Map, Value, json};
use webhook_router_sdk::{Event, Plugin, Verdict, export_plugin, verdict};

/// The header that names a GitHub event.
const GITHUB_EVENT_HEADER: &str = "x-github-event";
/// Longest commit title shown.
const MAX_TITLE_CHARS: usize = 80;

/// The configured notifier.
#[derive(Debug)]
pub struct SlackNotify {
    config: Config,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    icon_emoji: Option<String>,
    #[serde(default = "all_kinds")]
    events: Vec<Kind>,
    #[serde(default)]
    other_events: OtherEvents,
    #[serde(default = "default_max_commits")]
    max_commits: usize,
}

fn all_kinds() -> Vec<Kind> {
    vec![Kind::Push, Kind::PullRequest, Kind::Issues, Kind::Release]
}

fn default_max_commits() -> usize {
    5
}

/// The GitHub events this plugin turns into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Push,
    PullRequest,
    Issues,
    Release,
}

impl Kind {
    fn from_header(value: &str) -> Option<Kind> {
        match value {
            "push" => Some(Kind::Push),
            "pull_request" => Some(Kind::PullRequest),
            "issues" => Some(Kind::Issues),
            "release" => Some(Kind::Release),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OtherEvents {
    #[default]
    Drop,
    Forward,
}

/// A message: plain summary and mrkdwn sections.
#[derive(Debug, PartialEq, Eq)]
struct Message {
    text: String,
    sections: Vec<String>,
}

impl SlackNotify {
    /// Builds the notifier from its config (see the crate docs).
    pub fn from_config(config: Value) -> Result<Self, String> {
        let config: Config = webhook_router_sdk::from_config(config)?;
        Ok(Self { config })
    }

    /// The verdict for `event`.
    pub fn notify(&self, event: Event) -> Result<Verdict, String> {
        let name = event.header(GITHUB_EVENT_HEADER);
        let kind = name
            .and_then(Kind::from_header)
            .filter(|k| self.config.events.contains(k));
        let Some(kind) = kind else {
            return Ok(match self.config.other_events {
                OtherEvents::Forward => verdict::forward(event),
                OtherEvents::Drop => verdict::drop(match name {
                    Some(name) => format!("no Slack message for {name:?} events"),
                    None => "no x-github-event header".to_owned(),
                }),
            });
        };
        let payload = github_payload(&event)?;
        let message = match kind {
            Kind::Push => push(&payload, self.config.max_commits),
            Kind::PullRequest => pull_request(&payload),
            Kind::Issues => issue(&payload),
            Kind::Release => release(&payload),
        };
        let body = self.slack_body(message);
        Ok(verdict::forward(event.with_json_body(&body)?))
    }

    fn slack_body(&self, message: Message) -> Value {
        let mut body = Map::new();
        let optional = [
            ("channel", &self.config.channel),
            ("username", &self.config.username),
            ("icon_emoji", &self.config.icon_emoji),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                body.insert(key.into(), value.clone().into());
            }
        }
        body.insert("text".into(), message.text.into());
        let blocks = message
            .sections
            .into_iter()
            .map(|text| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}))
            .collect();
        body.insert("blocks".into(), Value::Array(blocks));
        Value::Object(body)
    }
}

/// The JSON payload of a GitHub delivery: the body, or the `payload` field of a form-encoded
/// body.
fn github_payload(event: &Event) -> Result<Value, String> {
    let form = event
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        let body = event.body_str().ok_or("the form body is not UTF-8")?;
        let payload = body
            .split('&')
            .find_map(|pair| pair.strip_prefix("payload="))
            .ok_or("the form body has no payload field")?;
        let payload =
            percent_decode(payload).ok_or("the form payload is not valid percent-encoded UTF-8")?;
        return serde_json::from_str(&payload)
            .map_err(|e| format!("the form payload is not JSON: {e}"));
    }
    event.json()
}

/// Decodes `application/x-www-form-urlencoded` text.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        bytes.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = (input.next()? as char).to_digit(16)?;
                let lo = (input.next()? as char).to_digit(16)?;
                u8::try_from(hi * 16 + lo).ok()?
            }
            b => b,
        });
    }
    String::from_utf8(bytes).ok()
}

/// The string at `pointer`, or `""`.
fn text<'a>(payload: &'a Value, pointer: &str) -> &'a str {
    payload
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The first non-empty string among `pointers`, or `"someone"`.
fn actor<'a>(payload: &'a Value, pointers: &[&str]) -> &'a str {
    pointers
        .iter()
        .map(|p| text(payload, p))
        .find(|s| !s.is_empty())
        .unwrap_or("someone")
}

/// Escapes text for Slack mrkdwn (and for the plain `text`, which Slack parses too).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A mrkdwn link, or just the label if there is no URL.
fn link(url: &str, label: &str) -> String {
    let label = escape(label).replace('|', "¦");
    if url.is_empty() {
        label
    } else {
        format!("<{}|{label}>", escape(url))
    }
}

/// `s` cut to `max` characters, with `…` if cut.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// `*<repo url|owner/name>*` and `[owner/name]`.
fn repository(payload: &Value) -> (String, String) {
    let name = text(payload, "/repository/full_name");
    let name = if name.is_empty() { "repository" } else { name };
    (
        format!("*{}*", link(text(payload, "/repository/html_url"), name)),
        format!("[{name}]"),
    )
}

fn push(payload: &Value, max_commits: usize) -> Message {
    let (repo, repo_plain) = repository(payload);
    let git_ref = text(payload, "/ref");
    let (what, name) = match (
        git_ref.strip_prefix("refs/heads/"),
        git_ref.strip_prefix("refs/tags/"),
    ) {
        (Some(branch), _) => ("branch", branch),
        (None, Some(tag)) => ("tag", tag),
        (None, None) => ("ref", git_ref),
    };
    let pusher = actor(payload, &["/pusher/name", "/sender/login"]);
    let flag = |key: &str| payload.get(key).and_then(Value::as_bool).unwrap_or(false);
    let commits: &[Value] = payload
        .get("commits")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let compare = text(payload, "/compare");

    let (summary, plain) = if flag("deleted") {
        (
            format!("{what} `{}` deleted by *{}*", escape(name), escape(pusher)),
            format!("{what} {name} deleted by {pusher}"),
        )
    } else if what == "tag" || (flag("created") && commits.is_empty()) {
        (
            format!(
                "{what} `{}` pushed by *{}*",
                escape(name),
                link(compare, pusher)
            ),
            format!("{what} {name} pushed by {pusher}"),
        )
    } else {
        let count = plural(commits.len(), "new commit", "new commits");
        let verb = if flag("forced") {
            "force-pushed"
        } else {
            "pushed"
        };
        (
            format!(
                "{} {verb} to `{}` by *{}*",
                link(compare, &count),
                escape(name),
                escape(pusher)
            ),
            format!("{count} {verb} to {name} by {pusher}"),
        )
    };
    let mut sections = vec![format!("{repo} {summary}")];
    if !commits.is_empty() && !flag("deleted") {
        let mut lines: Vec<String> = commits
            .iter()
            .take(max_commits)
            .map(|commit| {
                let id = text(commit, "/id");
                let short = id.get(..7).unwrap_or(id);
                let title = text(commit, "/message").lines().next().unwrap_or("");
                let author = actor(commit, &["/author/name", "/author/username"]);
                format!(
                    "{} {} – {}",
                    link(text(commit, "/url"), &format!("`{short}`")),
                    escape(&truncate(title, MAX_TITLE_CHARS)),
                    escape(author)
                )
            })
            .collect();
        if commits.len() > max_commits {
            lines.push(format!("_…and {} more_", commits.len() - max_commits));
        }
        sections.push(lines.join("\n"));
    }
    Message {
        text: escape(&format!("{repo_plain} {plain}")),
        sections,
    }
}

fn pull_request(payload: &Value) -> Message {
    let (repo, repo_plain) = repository(payload);
    let number = payload
        .pointer("/pull_request/number")
        .or_else(|| payload.get("number"));
    let number = number
        .and_then(Value::as_u64)
        .map(|n| format!("#{n} "))
        .unwrap_or_default();
    let title = text(payload, "/pull_request/title");
    let merged = payload
        .pointer("/pull_request/merged")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let action = match text(payload, "/action") {
        "closed" if merged => "merged",
        "" => "updated",
        other => other,
    };
    let action = action.replace('_', " ");
    let who = actor(payload, &["/sender/login", "/pull_request/user/login"]);
    let label = format!("{number}{title}");
    let mut sections = vec![format!(
        "{repo} Pull request {} {action} by *{}*",
        link(text(payload, "/pull_request/html_url"), &label),
        escape(who)
    )];
    let (head, base) = (
        text(payload, "/pull_request/head/ref"),
        text(payload, "/pull_request/base/ref"),
    );
    if action == "opened" && !head.is_empty() && !base.is_empty() {
        let draft = payload
            .pointer("/pull_request/draft")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let draft = if draft { " (draft)" } else { "" };
        sections.push(format!("`{}` → `{}`{draft}", escape(head), escape(base)));
    }
    Message {
        text: escape(&format!(
            "{repo_plain} Pull request {label} {action} by {who}"
        )),
        sections,
    }
}

fn issue(payload: &Value) -> Message {
    let (repo, repo_plain) = repository(payload);
    let number = payload
        .pointer("/issue/number")
        .and_then(Value::as_u64)
        .map(|n| format!("#{n} "))
        .unwrap_or_default();
    let label = format!("{number}{}", text(payload, "/issue/title"));
    let action = match text(payload, "/action") {
        "" => "updated".to_owned(),
        other => other.replace('_', " "),
    };
    let who = actor(payload, &["/sender/login", "/issue/user/login"]);
    Message {
        text: escape(&format!("{repo_plain} Issue {label} {action} by {who}")),
        sections: vec![format!(
            "{repo} Issue {} {action} by *{}*",
            link(text(payload, "/issue/html_url"), &label),
            escape(who)
        )],
    }
}

fn release(payload: &Value) -> Message {
    let (repo, repo_plain) = repository(payload);
    let tag = text(payload, "/release/tag_name");
    let name = text(payload, "/release/name");
    let label = if name.is_empty() || name == tag {
        tag.to_owned()
    } else {
        format!("{name} ({tag})")
    };
    let prerelease = payload
        .pointer("/release/prerelease")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let kind = if prerelease { "Pre-release" } else { "Release" };
    let action = match text(payload, "/action") {
        "" => "updated",
        other => other,
    };
    let who = actor(payload, &["/sender/login", "/release/author/login"]);
    Message {
        text: escape(&format!("{repo_plain} {kind} {label} {action} by {who}")),
        sections: vec![format!(
            "{repo} {kind} {} {action} by *{}*",
            link(text(payload, "/release/html_url"), &label),
            escape(who)
        )],
    }
}

impl Plugin for SlackNotify {
    fn configure(config: Value) -> Result<Self, String> {
        Self::from_config(config)
    }

    fn handle(&self, event: Event) -> Result<Verdict, String> {
        self.notify(event)
    }
}

export_plugin!(SlackNotify);

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(config: Value) -> SlackNotify {
        SlackNotify::from_config(config).unwrap()
    }

    fn github(kind: &str, body: &Value) -> Event {
        Event::from_body(body.to_string()).with_header("X-GitHub-Event", kind)
    }

    fn slack_body(verdict: Verdict) -> Value {
        match verdict {
            Verdict::Forward(event) => {
                assert_eq!(event.header("content-type"), Some("application/json"));
                event.json().unwrap()
            }
            other => panic!("not forwarded: {other:?}"),
        }
    }

    fn sections(body: &Value) -> Vec<&str> {
        body["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                assert_eq!(b["type"], "section");
                assert_eq!(b["text"]["type"], "mrkdwn");
                b["text"]["text"].as_str().unwrap()
            })
            .collect()
    }

    fn repo() -> Value {
        json!({"full_name": "acme/widgets", "html_url": "https://github.com/acme/widgets"})
    }

    fn push_payload(commits: usize) -> Value {
        let commits: Vec<Value> = (0..commits)
            .map(|i| {
                json!({
                    "id": format!("{i:07}89abcdef"),
                    "message": format!("Fix <widget> #{i}\n\nlong body"),
                    "url": format!("https://github.com/acme/widgets/commit/{i}"),
                    "author": {"name": "Mona", "username": "mona"}
                })
            })
            .collect();
        json!({
            "ref": "refs/heads/main", "created": false, "deleted": false, "forced": false,
            "compare": "https://github.com/acme/widgets/compare/a...b",
            "repository": repo(), "pusher": {"name": "octocat"}, "sender": {"login": "octocat"},
            "commits": commits
        })
    }

    #[test]
    fn push_message() {
        let n =
            notifier(json!({"username": "GitHub", "channel": "#dev", "icon_emoji": ":octocat:"}));
        let body = slack_body(n.notify(github("push", &push_payload(2))).unwrap());
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["channel", "username", "icon_emoji", "text", "blocks"]
        );
        assert_eq!(
            body["text"],
            "[acme/widgets] 2 new commits pushed to main by octocat"
        );
        assert_eq!(
            sections(&body),
            [
                "*<https://github.com/acme/widgets|acme/widgets>* \
                 <https://github.com/acme/widgets/compare/a...b|2 new commits> pushed to `main` by *octocat*",
                "<https://github.com/acme/widgets/commit/0|`0000000`> Fix &lt;widget&gt; #0 – Mona\n\
                 <https://github.com/acme/widgets/commit/1|`0000001`> Fix &lt;widget&gt; #1 – Mona"
            ]
        );
        // Deterministic.
        let again = slack_body(n.notify(github("push", &push_payload(2))).unwrap());
        assert_eq!(body, again);
    }

    #[test]
    fn push_variants() {
        let n = notifier(json!({"max_commits": 2}));
        let body = slack_body(n.notify(github("push", &push_payload(5))).unwrap());
        assert!(body.get("username").is_none() && body.get("channel").is_none());
        assert!(sections(&body)[1].ends_with("\n_…and 3 more_"), "{body}");

        let mut deleted = push_payload(0);
        deleted["deleted"] = json!(true);
        let body = slack_body(n.notify(github("push", &deleted)).unwrap());
        assert_eq!(
            body["text"],
            "[acme/widgets] branch main deleted by octocat"
        );
        assert_eq!(sections(&body).len(), 1);

        let mut tag = push_payload(0);
        tag["ref"] = json!("refs/tags/v1.0.0");
        tag["created"] = json!(true);
        let body = slack_body(n.notify(github("push", &tag)).unwrap());
        assert_eq!(body["text"], "[acme/widgets] tag v1.0.0 pushed by octocat");

        let mut forced = push_payload(1);
        forced["forced"] = json!(true);
        let body = slack_body(n.notify(github("push", &forced)).unwrap());
        assert_eq!(
            body["text"],
            "[acme/widgets] 1 new commit force-pushed to main by octocat"
        );
    }

    #[test]
    fn pull_request_message() {
        let payload = json!({
            "action": "opened", "number": 7, "repository": repo(), "sender": {"login": "mona"},
            "pull_request": {
                "number": 7, "title": "Add <b>&", "html_url": "https://github.com/acme/widgets/pull/7",
                "merged": false, "draft": true, "head": {"ref": "fix"}, "base": {"ref": "main"}
            }
        });
        let body = slack_body(
            notifier(json!({}))
                .notify(github("pull_request", &payload))
                .unwrap(),
        );
        assert_eq!(
            body["text"],
            "[acme/widgets] Pull request #7 Add &lt;b&gt;&amp; opened by mona"
        );
        assert_eq!(
            sections(&body),
            [
                "*<https://github.com/acme/widgets|acme/widgets>* Pull request \
                 <https://github.com/acme/widgets/pull/7|#7 Add &lt;b&gt;&amp;> opened by *mona*",
                "`fix` → `main` (draft)"
            ]
        );
        let mut merged = payload;
        merged["action"] = json!("closed");
        merged["pull_request"]["merged"] = json!(true);
        let body = slack_body(
            notifier(json!({}))
                .notify(github("pull_request", &merged))
                .unwrap(),
        );
        assert_eq!(
            body["text"],
            "[acme/widgets] Pull request #7 Add &lt;b&gt;&amp; merged by mona"
        );
        assert_eq!(sections(&body).len(), 1);
    }

    #[test]
    fn issue_and_release_messages() {
        let payload = json!({
            "action": "reopened", "repository": repo(), "sender": {"login": "mona"},
            "issue": {"number": 3, "title": "Broken | sometimes", "html_url": "https://github.com/acme/widgets/issues/3"}
        });
        let body = slack_body(
            notifier(json!({}))
                .notify(github("issues", &payload))
                .unwrap(),
        );
        assert_eq!(
            body["text"],
            "[acme/widgets] Issue #3 Broken | sometimes reopened by mona"
        );
        assert_eq!(
            sections(&body),
            ["*<https://github.com/acme/widgets|acme/widgets>* Issue \
              <https://github.com/acme/widgets/issues/3|#3 Broken ¦ sometimes> reopened by *mona*"]
        );

        let payload = json!({
            "action": "published", "repository": repo(), "sender": {"login": "mona"},
            "release": {"tag_name": "v2.0.0-rc.1", "name": "Two", "prerelease": true,
                        "html_url": "https://github.com/acme/widgets/releases/tag/v2.0.0-rc.1"}
        });
        let body = slack_body(
            notifier(json!({}))
                .notify(github("release", &payload))
                .unwrap(),
        );
        assert_eq!(
            body["text"],
            "[acme/widgets] Pre-release Two (v2.0.0-rc.1) published by mona"
        );
    }

    #[test]
    fn other_events() {
        let ping = github("ping", &json!({"zen": "Keep it simple."}));
        assert_eq!(
            notifier(json!({})).notify(ping.clone()).unwrap(),
            verdict::drop("no Slack message for \"ping\" events")
        );
        assert_eq!(
            notifier(json!({"other_events": "forward"}))
                .notify(ping.clone())
                .unwrap(),
            verdict::forward(ping)
        );
        let push = github("push", &push_payload(1));
        assert_eq!(
            notifier(json!({"events": ["release"]}))
                .notify(push)
                .unwrap(),
            verdict::drop("no Slack message for \"push\" events")
        );
        assert_eq!(
            notifier(json!({})).notify(Event::from_body("{}")).unwrap(),
            verdict::drop("no x-github-event header")
        );
    }

    #[test]
    fn form_encoded_and_bad_bodies() {
        let payload = push_payload(1).to_string();
        let encoded: String = payload
            .bytes()
            .map(|b| match b {
                b' ' => "+".to_owned(),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect();
        let event = Event::from_body(format!("payload={encoded}"))
            .with_header("x-github-event", "push")
            .with_header("content-type", "application/x-www-form-urlencoded");
        let body = slack_body(notifier(json!({})).notify(event).unwrap());
        assert_eq!(
            body["text"],
            "[acme/widgets] 1 new commit pushed to main by octocat"
        );

        let err = notifier(json!({}))
            .notify(Event::from_body("nope").with_header("x-github-event", "push"))
            .unwrap_err();
        assert!(err.contains("not the expected JSON"), "{err}");
    }

    #[test]
    fn config_errors() {
        let err = |config: Value| SlackNotify::from_config(config).unwrap_err();
        assert!(err(json!({"events": ["star"]})).contains("unknown variant `star`"));
        assert!(err(json!({"other_events": "reject"})).contains("unknown variant"));
        assert!(err(json!({"chanel": "#x"})).contains("unknown field `chanel`"));
    }
}
