//! Interceptors, by Flume type name or class, with Flume's keys and defaults.

use super::{Keys, Mapper, Out, strings};
use crate::agent::flume::catalog::Kind;
use crate::agent::flume::topology::{Component, Value};

impl Mapper<'_> {
    pub(super) fn interceptors(&mut self, c: &Component, keys: &mut Keys<'_>, out: &mut Out) {
        let Some(list) = keys.get("interceptors") else {
            return;
        };
        let mut items = Vec::new();
        for (i, name) in self.list(list).into_iter().enumerate() {
            let p = format!("interceptors.{name}.");
            let mut it = Out::new(format!("{}.interceptors[{i}]", out.path));
            let Some(ty) = keys.get(&format!("{p}type")) else {
                self.error(
                    list,
                    format!(
                        "interceptor `{name}` has no `{p}type` (Flume fails to start the source)"
                    ),
                );
                keys.with_prefix(&p);
                continue;
            };
            let Some(t) = self.support(Kind::Interceptor, &format!("{}/{name}", c.name), ty) else {
                keys.with_prefix(&p);
                continue;
            };
            it.put("type", t, ty.line);
            let tl = ty.line;
            match t {
                "timestamp" => {
                    self.ic_string(
                        keys,
                        &p,
                        &mut it,
                        ("headerName", "header"),
                        Some("timestamp"),
                        tl,
                    );
                    self.ic_bool(
                        keys,
                        &p,
                        &mut it,
                        ("preserveExisting", "preserve_existing"),
                        false,
                        tl,
                    );
                }
                "host" => {
                    self.ic_string(
                        keys,
                        &p,
                        &mut it,
                        ("hostHeader", "header"),
                        Some("host"),
                        tl,
                    );
                    self.ic_bool(keys, &p, &mut it, ("useIP", "use_ip"), true, tl);
                    self.ic_bool(
                        keys,
                        &p,
                        &mut it,
                        ("preserveExisting", "preserve_existing"),
                        false,
                        tl,
                    );
                }
                "static" => {
                    self.ic_string(keys, &p, &mut it, ("key", "key"), Some("key"), tl);
                    self.ic_string(keys, &p, &mut it, ("value", "value"), Some("value"), tl);
                    self.ic_bool(
                        keys,
                        &p,
                        &mut it,
                        ("preserveExisting", "preserve_existing"),
                        true,
                        tl,
                    );
                }
                "uuid" => {
                    self.ic_string(keys, &p, &mut it, ("headerName", "header"), Some("id"), tl);
                    self.ic_bool(
                        keys,
                        &p,
                        &mut it,
                        ("preserveExisting", "preserve_existing"),
                        true,
                        tl,
                    );
                    self.ic_string(keys, &p, &mut it, ("prefix", "prefix"), Some(""), tl);
                }
                "regex_filter" => {
                    self.ic_string(keys, &p, &mut it, ("regex", "regex"), Some(".*"), tl);
                    self.ic_bool(keys, &p, &mut it, ("excludeEvents", "exclude"), false, tl);
                }
                "remove_header" => self.remove_header(&mut it, ty, &p, keys),
                "regex_extractor" => self.regex_extractor(&mut it, ty, &p, keys),
                _ => self.search_replace(&mut it, ty, &p, keys),
            }
            items.push((it, ty.line));
        }
        if !items.is_empty() {
            let mut arr = Vec::new();
            for (it, line) in items {
                self.lines.insert(it.path.clone(), line);
                self.lines.extend(it.lines);
                arr.push(toml::Value::Table(it.table));
            }
            out.lines
                .push((format!("{}.interceptors", out.path), list.line));
            out.table
                .insert("interceptors".into(), toml::Value::Array(arr));
        }
    }

    fn ic_string(
        &mut self,
        keys: &mut Keys<'_>,
        p: &str,
        it: &mut Out,
        (flume, ours): (&str, &str),
        default: Option<&str>,
        type_line: usize,
    ) {
        match keys.get(&format!("{p}{flume}")) {
            Some(v) => {
                if ours == "regex" {
                    self.java_regex(v);
                }
                it.put(ours, v.text.clone(), v.line);
            }
            None => {
                if let Some(d) = default {
                    it.put(ours, d, type_line);
                }
            }
        }
    }

    fn ic_bool(
        &mut self,
        keys: &mut Keys<'_>,
        p: &str,
        it: &mut Out,
        (flume, ours): (&str, &str),
        default: bool,
        type_line: usize,
    ) {
        match keys.get(&format!("{p}{flume}")) {
            Some(v) => {
                if let Some(b) = self.boolean(v) {
                    it.put(ours, b, v.line);
                }
            }
            None => it.put(ours, default, type_line),
        }
    }

    /// Java regex features tidegate's engine (the `regex` crate) lacks: an error naming them,
    /// at the Flume key, rather than a compile error later.
    pub(super) fn java_regex(&mut self, v: &Value) {
        let mut found = Vec::new();
        for (needle, what) in [
            ("(?=", "lookahead `(?=`"),
            ("(?!", "negative lookahead `(?!`"),
            ("(?<=", "lookbehind `(?<=`"),
            ("(?<!", "negative lookbehind `(?<!`"),
            ("(?>", "atomic group `(?>`"),
            ("*+", "possessive `*+`"),
            ("++", "possessive `++`"),
            ("?+", "possessive `?+`"),
        ] {
            if v.text.contains(needle) {
                found.push(what.to_string());
            }
        }
        let b = v.text.as_bytes();
        if b.windows(2).enumerate().any(|(i, w)| {
            w[0] == b'\\'
                && (b'1'..=b'9').contains(&w[1])
                && b[..i].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 0
        }) {
            found.push("back-reference `\\N`".into());
        }
        if !found.is_empty() {
            self.error(
                v,
                format!(
                    "the regex uses {}, which Java has and tidegate's regex engine does not; rewrite it without",
                    found.join(", ")
                ),
            );
        }
    }

    fn search_replace(&mut self, it: &mut Out, ty: &Value, p: &str, keys: &mut Keys<'_>) {
        match keys.get(&format!("{p}searchPattern")) {
            Some(v) => {
                self.java_regex(v);
                it.put("search", v.text.clone(), v.line);
            }
            None => self.error(ty, format!("search_replace needs `{p}searchPattern`")),
        }
        let (rep, line) = keys
            .get(&format!("{p}replaceString"))
            .map_or((String::new(), ty.line), |v| (v.text.clone(), v.line));
        it.put("replace", java_replacement(&rep), line);
        if let Some(v) = keys.get(&format!("{p}charset"))
            && !v.text.eq_ignore_ascii_case("utf-8")
        {
            self.error(
                v,
                format!(
                    "charset `{}` is not supported: bodies are matched as UTF-8",
                    v.text
                ),
            );
        }
    }

    fn remove_header(&mut self, it: &mut Out, ty: &Value, p: &str, keys: &mut Keys<'_>) {
        let mut get = |k: &str| keys.get(&format!("{p}{k}"));
        let with_name = get("withName");
        let from_list = get("fromList");
        let separator = get("fromListSeparator");
        let matching = get("matching");
        if let Some(v) = separator {
            self.error(
                v,
                "a custom fromListSeparator is not supported: separate the names with commas"
                    .into(),
            );
        }
        let mut alternatives = Vec::new();
        if let Some(v) = with_name {
            if from_list.is_none() && matching.is_none() {
                it.put("name", v.text.clone(), v.line);
                return;
            }
            alternatives.push(regex_escape(&v.text));
        }
        if let Some(v) = from_list {
            alternatives.extend(
                v.text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(regex_escape),
            );
        }
        // Flume matches header names in full (`Matcher.matches`); tidegate's `matching` searches,
        // so the pattern is anchored.
        if let Some(m) = matching {
            self.java_regex(m);
            alternatives.push(m.text.clone());
        }
        let pattern = (!alternatives.is_empty()).then(|| {
            let parts: Vec<String> = alternatives.iter().map(|a| format!("(?:{a})")).collect();
            format!("^(?:{})$", parts.join("|"))
        });
        match pattern {
            Some(p) => {
                let line = matching
                    .or(from_list)
                    .or(with_name)
                    .map_or(ty.line, |v| v.line);
                it.put("matching", p, line);
            }
            None => self.error(
                ty,
                "remove_header needs `withName`, `fromList` or `matching`".into(),
            ),
        }
    }

    fn regex_extractor(&mut self, it: &mut Out, ty: &Value, p: &str, keys: &mut Keys<'_>) {
        match keys.get(&format!("{p}regex")) {
            Some(v) => {
                self.java_regex(v);
                it.put("regex", v.text.clone(), v.line);
            }
            None => self.error(ty, format!("regex_extractor needs `{p}regex`")),
        }
        let Some(list) = keys.get(&format!("{p}serializers")) else {
            self.error(
                ty,
                format!("regex_extractor needs `{p}serializers` (one per capture group)"),
            );
            return;
        };
        let mut headers = Vec::new();
        for s in self.list(list) {
            let sp = format!("{p}serializers.{s}.");
            match keys.get(&format!("{sp}name")) {
                Some(v) => headers.push(v.text.clone()),
                None => self.error(
                    list,
                    format!("serializer `{s}` needs `{sp}name` (the header)"),
                ),
            }
            if let Some(t) = keys.get(&format!("{sp}type"))
                && !t.text.eq_ignore_ascii_case(
                    "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer",
                )
            {
                let why = if t.text.eq_ignore_ascii_case(
                    "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer",
                ) {
                    "tidegate stores the matched text as it is; it does not parse dates into epoch milliseconds (drop the serializer type to keep the text)"
                } else {
                    "only the pass-through serializer (the matched text) is supported"
                };
                self.error(
                    t,
                    format!("serializer type `{}` is not supported: {why}", t.text),
                );
                keys.get(&format!("{sp}pattern"));
            }
        }
        it.put("headers", strings(&headers), list.line);
    }
}

/// Escapes regex metacharacters of a literal header name.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Java's `Matcher.replaceAll` replacement syntax -> the `regex` crate's: `$1` becomes `${1}`,
/// `\$` a literal `$$`, `\\` one backslash.
pub fn java_replacement(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push('$');
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_syntax() {
        assert_eq!(java_replacement("a$1b"), "a${1}b");
        assert_eq!(java_replacement("\\$5 \\\\"), "$$5 \\");
        assert_eq!(java_replacement("${name}"), "${name}");
    }
}
