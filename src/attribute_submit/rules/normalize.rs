//! The steps of a `normalize` rule.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Step {
    /// Leading and trailing whitespace removed.
    Trim,
    /// Every run of whitespace becomes one space.
    CollapseSpaces,
    Lowercase,
    Uppercase,
    /// First letter of each word upper-cased, the rest left as typed (so `McDonald` survives).
    TitleCase,
    /// Only the ASCII digits 0-9 kept.
    DigitsOnly,
    /// All whitespace removed.
    RemoveSpaces,
}

/// The steps in order, to the whole value or to each comma-delimited item.
pub(super) fn apply(steps: &[Step], each_item: bool, text: &str) -> String {
    if each_item {
        text.split(',')
            .map(|item| apply_steps(steps, item))
            // An empty item is a stray comma; Entra's own multi-value strings have none.
            .filter(|item| !item.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    } else {
        apply_steps(steps, text)
    }
}

fn apply_steps(steps: &[Step], text: &str) -> String {
    steps.iter().fold(text.to_string(), |text, step| step.apply(&text))
}

impl Step {
    fn apply(self, text: &str) -> String {
        match self {
            Step::Trim => text.trim().to_string(),
            Step::CollapseSpaces => collapse_spaces(text),
            Step::Lowercase => text.to_lowercase(),
            Step::Uppercase => text.to_uppercase(),
            Step::TitleCase => title_case(text),
            Step::DigitsOnly => text.chars().filter(char::is_ascii_digit).collect(),
            Step::RemoveSpaces => text.chars().filter(|c| !c.is_whitespace()).collect(),
        }
    }
}

fn collapse_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

/// Words start after whitespace or a hyphen (`jean-luc` -> `Jean-Luc`); a letter after an
/// apostrophe or a digit does not start one (`don't`, `3rd`).
fn title_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word_start = true;
    for c in text.chars() {
        if word_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
            word_start = false;
        } else {
            out.push(c);
            if c.is_whitespace() || c == '-' {
                word_start = true;
            } else if c.is_alphanumeric() || c == '\'' || c == '\u{2019}' {
                word_start = false;
            }
        }
    }
    out
}
