//! What a PromQL expression names: the metrics it selects and the labels it matches or groups
//! by, so that a test can hold a dashboard's and the alert rules' expressions against the
//! router's metric catalogue. A small scanner, not a parser: Prometheus itself checks that the
//! expressions parse; this only has to find the names in them.

/// The metric names and label names `expr` uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// Selected metric names (identifiers outside `{}` that are not functions or keywords).
    pub metrics: Vec<String>,
    /// Label names in `{}` matchers and in `by`, `without`, `on`, `ignoring`, `group_left`,
    /// `group_right` lists.
    pub labels: Vec<String>,
}

/// Words that are not metric names: functions are told apart by the `(` that follows them,
/// these by themselves (an aggregation may be followed by `by (...)` first).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The names in `expr` (Grafana variables, `$name` or `${name}`, are skipped).
pub fn names(expr: &str) -> Names {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Names::default();
    let mut i = 0;
    let mut in_braces = false;
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let next_non_space = |from: usize| chars[from..].iter().copied().find(|c| !c.is_whitespace());
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
            }
            '{' => {
                in_braces = true;
                i += 1;
            }
            '}' => {
                in_braces = false;
                i += 1;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (is_part(chars[i]) || chars[i] == '{' || chars[i] == '}') {
                    i += 1;
                }
            }
            c if is_start(c) => {
                let start = i;
                while i < chars.len() && is_part(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = next_non_space(i);
                if in_braces {
                    if matches!(next, Some('=' | '!')) {
                        names.labels.push(word);
                    }
                } else if LABEL_LISTS.contains(&word.as_str()) && next == Some('(') {
                    let open = i + chars[i..].iter().position(|&c| c == '(').unwrap_or(0);
                    let close = open
                        + chars[open..]
                            .iter()
                            .position(|&c| c == ')')
                            .unwrap_or(chars.len() - open);
                    let list: String = chars[open + 1..close].iter().collect();
                    names.labels.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                    i = close + 1;
                } else if next != Some('(')
                    && !LABEL_LISTS.contains(&word.as_str())
                    && !KEYWORDS.contains(&word.to_lowercase().as_str())
                {
                    names.metrics.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_metrics_and_labels_but_not_functions_strings_or_variables() {
        let found = names(
            "histogram_quantile(0.99, sum by (destination, le) \
             (rate(webhook_delivery_duration_seconds_bucket{destination=~\"$destination\"}[$__rate_interval]))) \
             / on(instance) group_left up{job=\"x\"} > bool 2 and max without (le) webhook_queue_depth",
        );
        assert_eq!(
            found.metrics,
            [
                "webhook_delivery_duration_seconds_bucket",
                "up",
                "webhook_queue_depth"
            ]
        );
        assert_eq!(
            found.labels,
            ["destination", "le", "destination", "instance", "job", "le"]
        );
    }
}
