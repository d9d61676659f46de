//! A `java.util.Properties` reader that keeps the line of every key.
//!
//! Flume reads its config with `Properties.load(Reader)`; this module follows that method's
//! grammar so that a file means here what it meant to Flume:
//!
//! - Natural lines end with `\n`, `\r` or `\r\n`; the last line needs no terminator.
//! - Leading spaces, tabs and form feeds of every line are skipped. A line that is then empty,
//!   or starts with `#` or `!`, is blank or a comment (a comment never continues, even when it
//!   ends with a backslash).
//! - A line ending with an odd number of backslashes continues on the next line (the leading
//!   whitespace of the continuation is dropped); an empty line ends a continuation.
//! - The key runs to the first unescaped `=`, `:` or whitespace; then whitespace, at most one
//!   `=` or `:`, and whitespace again are skipped; the rest is the value (trailing whitespace
//!   kept; Flume trims it later).
//! - Escapes in keys and values: `\t`, `\n`, `\r`, `\f`, `\uXXXX`; a backslash before any other
//!   character stands for that character (`\\` is one backslash, `\=` an equals sign).
//! - A key given twice keeps its last value ([`Properties::duplicates`] lists the overridden
//!   lines, since Flume never told anyone).

use std::collections::BTreeMap;

/// One `key = value` pair of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The key, escapes resolved.
    pub key: String,
    /// The value, escapes resolved, not trimmed.
    pub value: String,
    /// 1-based line where the key's logical line starts.
    pub line: usize,
}

/// A key set more than once: the later line wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The key.
    pub key: String,
    /// The line whose value was discarded.
    pub overridden_line: usize,
    /// The line whose value is kept.
    pub kept_line: usize,
}

/// A line the reader could not decode (only a malformed `\uXXXX` escape does that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The properties of one file, in file order, the last value of each key.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    /// Every key with its last value, ordered by key.
    pub entries: BTreeMap<String, Property>,
    /// Keys set more than once.
    pub duplicates: Vec<Duplicate>,
}

impl Properties {
    /// Reads `text` as `Properties.load` would.
    pub fn parse(text: &str) -> Result<Properties, Vec<SyntaxError>> {
        let mut props = Properties::default();
        let mut errors = Vec::new();
        for (line, raw) in logical_lines(text) {
            let (key, value) = split_key_value(&raw);
            let key = unescape(key, line, &mut errors);
            let value = unescape(value, line, &mut errors);
            let prop = Property { key, value, line };
            if let Some(old) = props.entries.insert(prop.key.clone(), prop.clone()) {
                props.duplicates.push(Duplicate {
                    key: prop.key,
                    overridden_line: old.line,
                    kept_line: line,
                });
            }
        }
        if errors.is_empty() {
            Ok(props)
        } else {
            Err(errors)
        }
    }
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// Splits `text` into natural lines with their 1-based numbers (`\n`, `\r\n` or `\r`).
fn natural_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            b'\r' => {
                out.push(&text[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out.into_iter()
        .enumerate()
        .map(|(n, l)| (n + 1, l))
        .collect()
}

/// True when `s` ends with an odd number of backslashes (a continuation).
fn continues(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Joins continuations; drops blank and comment lines. Returns (first line number, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, raw) in natural_lines(text) {
        let trimmed = raw.trim_start_matches(is_blank);
        match current.take() {
            Some((start, mut acc)) => {
                if trimmed.is_empty() {
                    // An empty line ends the continuation.
                    out.push((start, acc));
                    continue;
                }
                if continues(trimmed) {
                    acc.push_str(&trimmed[..trimmed.len() - 1]);
                    current = Some((start, acc));
                } else {
                    acc.push_str(trimmed);
                    out.push((start, acc));
                }
            }
            None => {
                if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
                    continue;
                }
                if continues(trimmed) {
                    current = Some((n, trimmed[..trimmed.len() - 1].to_string()));
                } else {
                    out.push((n, trimmed.to_string()));
                }
            }
        }
    }
    // A continuation at the end of the file: the dangling backslash is dropped.
    if let Some(last) = current {
        out.push(last);
    }
    out
}

/// Splits a logical line into its raw (still escaped) key and value.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    let mut value_start = line.len();
    let mut has_sep = false;
    for (i, c) in line.char_indices() {
        if !escaped && (c == '=' || c == ':') {
            key_end = i;
            value_start = i + 1;
            has_sep = true;
            break;
        }
        if !escaped && is_blank(c) {
            key_end = i;
            value_start = i + c.len_utf8();
            break;
        }
        escaped = c == '\\' && !escaped;
    }
    let mut rest = &line[value_start..];
    while let Some(c) = rest.chars().next() {
        if is_blank(c) {
            rest = &rest[1..];
        } else if !has_sep && (c == '=' || c == ':') {
            has_sep = true;
            rest = &rest[1..];
        } else {
            break;
        }
    }
    (&line[..key_end], rest)
}

/// Resolves the escapes of a key or value.
fn unescape(s: &str, line: usize, errors: &mut Vec<SyntaxError>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32)
                {
                    Some(ch) => {
                        out.push(ch);
                        for _ in 0..4 {
                            chars.next();
                        }
                    }
                    None => errors.push(SyntaxError {
                        line,
                        message: format!(
                            "malformed \\uXXXX escape `\\u{hex}` (Java's Properties.load refuses the whole file)"
                        ),
                    }),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "test code: a panic is a test failure")]
mod tests {
    use super::*;

    fn get(p: &Properties, k: &str) -> (String, usize) {
        let e = &p.entries[k];
        (e.value.clone(), e.line)
    }

    #[test]
    fn separators_and_whitespace() {
        let p = Properties::parse("a=1\nb : 2\nc 3\n  d\t=\t4  \ne\n f:=g\n").unwrap();
        assert_eq!(get(&p, "a"), ("1".into(), 1));
        assert_eq!(get(&p, "b"), ("2".into(), 2));
        assert_eq!(get(&p, "c"), ("3".into(), 3));
        assert_eq!(get(&p, "d"), ("4  ".into(), 4));
        assert_eq!(get(&p, "e"), (String::new(), 5));
        // Only one separator is skipped: the second is part of the value.
        assert_eq!(get(&p, "f"), ("=g".into(), 6));
    }

    #[test]
    fn comments_continuations_and_crlf() {
        let text = "# c \\\nx = a \\\r\n    b\\\r\n  c\r\n! other\r\ny = 1\\\n\nz = 2";
        let p = Properties::parse(text).unwrap();
        assert_eq!(get(&p, "x"), ("a bc".into(), 2));
        // An empty line ends a continuation.
        assert_eq!(get(&p, "y"), ("1".into(), 6));
        assert_eq!(get(&p, "z"), ("2".into(), 8));
        assert_eq!(p.entries.len(), 3);
    }

    #[test]
    fn escapes() {
        let p = Properties::parse("k\\=ey = v\\\\1 \\u0041\\t\\:\nr = \\\\d+").unwrap();
        assert_eq!(get(&p, "k=ey").0, "v\\1 A\t:");
        assert_eq!(get(&p, "r").0, "\\d+");
        let e = Properties::parse("a = \\u12\nb = \\uZZZZ").unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].line, 1);
        assert_eq!(e[1].line, 2);
    }

    #[test]
    fn duplicates_keep_the_last() {
        let p = Properties::parse("a = 1\nb = 2\na = 3").unwrap();
        assert_eq!(get(&p, "a"), ("3".into(), 3));
        assert_eq!(
            p.duplicates,
            vec![Duplicate {
                key: "a".into(),
                overridden_line: 1,
                kept_line: 3
            }]
        );
    }

    #[test]
    fn backslash_at_end_of_file_is_dropped() {
        let p = Properties::parse("a = 1\\").unwrap();
        assert_eq!(get(&p, "a").0, "1");
    }
}
