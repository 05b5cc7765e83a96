//! Expected-verdict cases for a plugin (`webhook-router plugin run MODULE --cases DIR`): a
//! directory of small TOML files, each naming an event and the verdict the plugin must give it,
//! run through the same sandbox as a route, so a plugin author can keep their examples as tests.
//!
//! A case file (`DIR/*.toml`, run in name order):
//!
//! ```toml
//! event = "push.json"                       # the body, relative to this file
//! headers = { "X-GitHub-Event" = "push" }   # optional
//! route = "github"                          # optional, default "trial"
//! expect = "forward"                        # forward | pass | drop | reject | fan-out | error
//! contains = "refs/heads/main"              # optional: text the rendered verdict must contain
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use http::HeaderMap;
use serde::Deserialize;

use super::bindings::Verdict;
use super::trial::{parse_header, render_verdict, trial_event};
use super::{LoadedPlugin, PluginFailure};
use crate::event::Event;

/// A verdict a case expects, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expected {
    /// `forward` with a (possibly changed) event.
    Forward,
    /// `pass`: the event goes on unchanged.
    Pass,
    /// `drop`.
    Drop,
    /// `reject`.
    Reject,
    /// `fan-out`.
    FanOut,
    /// The call fails (the plugin's error, a trap, a limit).
    Error,
}

impl Expected {
    /// The kind's name, as written in a case file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Pass => "pass",
            Self::Drop => "drop",
            Self::Reject => "reject",
            Self::FanOut => "fan-out",
            Self::Error => "error",
        }
    }

    /// The kind of what a call gave.
    pub fn of(result: &Result<Verdict, PluginFailure>) -> Self {
        match result {
            Ok(Verdict::Forward(_)) => Self::Forward,
            Ok(Verdict::Pass) => Self::Pass,
            Ok(Verdict::Drop(_)) => Self::Drop,
            Ok(Verdict::Reject(_)) => Self::Reject,
            Ok(Verdict::FanOut(_)) => Self::FanOut,
            Err(_) => Self::Error,
        }
    }
}

/// One case file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    event: PathBuf,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_route")]
    route: String,
    expect: Expected,
    #[serde(default)]
    contains: Option<String>,
}

fn default_route() -> String {
    "trial".to_owned()
}

/// A case ready to run.
#[derive(Debug)]
pub struct Case {
    /// The case's name: its file name without `.toml`.
    pub name: String,
    /// The event it runs the plugin on.
    pub event: Event,
    /// The verdict kind it expects.
    pub expect: Expected,
    /// Text the rendered verdict (or the failure) must contain.
    pub contains: Option<String>,
}

/// Why a case directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The directory or a file in it could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A case file is not a valid case.
    #[error("{path}: {message}")]
    Invalid {
        /// The case file.
        path: PathBuf,
        /// What is wrong, with its line where the TOML parser knows it.
        message: String,
    },
    /// The directory holds no `*.toml` case.
    #[error("{0}: no case files (*.toml)")]
    Empty(PathBuf),
}

/// Reads every `*.toml` case in `dir`, in name order.
pub fn load_cases(dir: &Path) -> Result<Vec<Case>, CaseError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| CaseError::Read { path, source }
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_error(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(CaseError::Empty(dir.to_owned()));
    }
    paths.iter().map(|path| load_case(path)).collect()
}

fn load_case(path: &Path) -> Result<Case, CaseError> {
    let invalid = |message: String| CaseError::Invalid {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| CaseError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: CaseFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let body_path = path.parent().unwrap_or(Path::new(".")).join(&file.event);
    let body = std::fs::read(&body_path).map_err(|source| CaseError::Read {
        path: body_path,
        source,
    })?;
    let mut headers = HeaderMap::new();
    for (name, value) in &file.headers {
        let (name, value) = parse_header(&format!("{name}: {value}")).map_err(invalid)?;
        headers.append(name, value);
    }
    let name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Case {
        name,
        event: trial_event(&file.route, body, headers),
        expect: file.expect,
        contains: file.contains,
    })
}

/// What running the cases gave.
#[derive(Debug, Default)]
pub struct CaseReport {
    /// One line per case: `ok   NAME: KIND` or `FAIL NAME: ...`.
    pub lines: Vec<String>,
    /// Cases that gave what they expect.
    pub passed: usize,
    /// Cases that did not.
    pub failed: usize,
}

impl CaseReport {
    /// The report for a person: a line per case, then `cases: N passed, N failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "cases: {} passed, {} failed", self.passed, self.failed);
        out
    }
}

/// Runs `plugin` on every case and checks each verdict.
pub async fn run_cases(plugin: &LoadedPlugin, cases: &[Case]) -> CaseReport {
    let mut report = CaseReport::default();
    for case in cases {
        let result = plugin.handle(&case.event).await;
        let got = Expected::of(&result);
        let rendered = match &result {
            Ok(verdict) => render_verdict(verdict, &case.event),
            Err(failure) => format!("plugin failed: {failure}"),
        };
        let summary = rendered.lines().next().unwrap_or_default().to_owned();
        let problem = if got != case.expect {
            Some(format!("expected {}, got {summary}", case.expect.name()))
        } else {
            case.contains
                .as_ref()
                .filter(|text| !rendered.contains(text.as_str()))
                .map(|text| format!("{summary}, but the output does not contain {text:?}"))
        };
        match problem {
            None => {
                report.passed += 1;
                report.lines.push(format!("ok   {}: {summary}", case.name));
            }
            Some(problem) => {
                report.failed += 1;
                report.lines.push(format!("FAIL {}: {problem}", case.name));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "webhook-router-cases-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn cases_load_in_name_order_with_bodies_relative_to_their_file() {
        let dir = dir("order");
        std::fs::write(dir.join("push.json"), br#"{"ref":"refs/heads/main"}"#).unwrap();
        std::fs::write(
            dir.join("b-push.toml"),
            "event = \"push.json\"\nheaders = { \"X-GitHub-Event\" = \"push\" }\nexpect = \"forward\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("a-drop.toml"),
            "event = \"push.json\"\nexpect = \"drop\"\ncontains = \"main\"\nroute = \"gh\"\n",
        )
        .unwrap();
        let cases = load_cases(&dir).unwrap();
        let names: Vec<_> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a-drop", "b-push"]);
        assert_eq!(cases[0].expect, Expected::Drop);
        assert_eq!(cases[0].event.route, "gh");
        assert_eq!(cases[0].contains.as_deref(), Some("main"));
        assert_eq!(cases[1].event.headers["x-github-event"], "push");
        assert_eq!(&cases[1].event.body[..], br#"{"ref":"refs/heads/main"}"#);
    }

    #[test]
    fn bad_cases_say_which_file_and_why() {
        let dir = dir("bad");
        std::fs::write(
            dir.join("x.toml"),
            "event = \"x.json\"\nexpect = \"maybe\"\n",
        )
        .unwrap();
        let error = load_cases(&dir).unwrap_err().to_string();
        assert!(error.contains("x.toml"), "{error}");
        assert!(error.contains("maybe"), "{error}");
        std::fs::write(
            dir.join("x.toml"),
            "event = \"x.json\"\nexpect = \"drop\"\n",
        )
        .unwrap();
        let error = load_cases(&dir).unwrap_err().to_string();
        assert!(error.contains("x.json"), "{error}");
        let empty = self::dir("empty");
        let error = load_cases(&empty).unwrap_err().to_string();
        assert!(error.contains("no case files"), "{error}");
    }
}
