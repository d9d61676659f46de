//! `${...}` substitution in values, the forms Flume knows.
//!
//! Flume 1.10+ resolves every value with commons-text's `StringSubstitutor` (`MapResolver`):
//!
//! | form | Flume | here |
//! |---|---|---|
//! | `${env:NAME}` | environment variable | same; unset is an error |
//! | `${sys:NAME}` | Java system property (`flume-ng -DNAME=v`) | the `-D NAME=VALUE` given to `tidegate convert`; unset is an error |
//! | `${NAME}` | another property of the file (with `-DpropertiesImplementation=...EnvVarResolverProperties`, then the environment) | the file's property `NAME`, else the environment variable; neither is an error |
//! | `${X:-default}` | default when `X` is unset | same |
//! | `${${sys:env}_BIND}` | nested: the inner one first | same |
//! | `$${X}` | the literal text `${X}` | same |
//! | `${java:...}`, `${date:...}` | JVM facts, the date | error (no JVM; write the value) |
//! | `${f['KEY']}` with `AGENT.configfilters = f` | config filter `f`: type `env` reads the environment | type `env` supported; `hadoop` and `external` (credential stores, scripts) are errors |
//!
//! Flume leaves a reference it cannot resolve in the value as it is (a directory literally named
//! `${FLUME_DIR}/data`); here that is an error that names the variable.

use std::collections::BTreeMap;

/// Where names are looked up.
pub struct Lookup<'a> {
    /// Environment variables.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Java system properties (`-D` of `flume-ng`).
    pub system_properties: &'a BTreeMap<String, String>,
    /// Every raw property of the file (for `${NAME}`).
    pub file: &'a dyn Fn(&str) -> Option<String>,
    /// The agent's config filters: name -> type (lowercase).
    pub filters: &'a BTreeMap<String, String>,
}

const MAX_DEPTH: usize = 16;

/// Resolves every `${...}` in `value`.
pub fn resolve(value: &str, lookup: &Lookup<'_>) -> Result<String, String> {
    resolve_depth(value, lookup, 0)
}

fn resolve_depth(value: &str, lookup: &Lookup<'_>, depth: usize) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "substitution nested more than {MAX_DEPTH} levels deep (a reference loop?)"
        ));
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            // Escaped: the literal `${` (and the rest up to the closing brace stays as it is).
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body_start) = tail.strip_prefix("${") else {
            out.push('$');
            rest = &tail[1..];
            continue;
        };
        let end =
            closing_brace(body_start).ok_or_else(|| format!("`{tail}` has an unclosed `${{`"))?;
        let inner = &body_start[..end];
        let name = resolve_depth(inner, lookup, depth + 1)?;
        out.push_str(&lookup_name(&name, lookup, depth)?);
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${` whose body starts at `s` (nested `${` counted).
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn lookup_name(name: &str, lookup: &Lookup<'_>, depth: usize) -> Result<String, String> {
    let (name, default) = match name.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (name, None),
    };
    let found = if let Some(var) = name.strip_prefix("env:") {
        (lookup.env)(var)
            .ok_or_else(|| format!("environment variable `{var}` is not set (`${{env:{var}}}`)"))
    } else if let Some(prop) = name.strip_prefix("sys:") {
        lookup.system_properties.get(prop).cloned().ok_or_else(|| {
            format!(
                "`${{sys:{prop}}}` is a Java system property (`flume-ng ... -D{prop}=VALUE`); \
                 give it as `tidegate convert -D {prop}=VALUE`, or use `${{env:VAR}}`"
            )
        })
    } else if let Some((prefix, _)) = name.split_once(':')
        && !prefix.contains('[')
    {
        Err(format!(
            "`${{{name}}}`: the `{prefix}:` lookup is not supported (only `env:` and `sys:`); write the value"
        ))
    } else if let Some((filter, key)) = filter_reference(name) {
        match lookup.filters.get(filter).map(String::as_str) {
            Some("env") => (lookup.env)(key).ok_or_else(|| {
                format!(
                    "environment variable `{key}` (config filter `{filter}`, type env) is not set"
                )
            }),
            Some(other) => Err(format!(
                "config filter `{filter}` has type `{other}`: only `env` filters are supported \
                 (tidegate reads no Hadoop credential stores and runs no scripts); use `${{env:VAR}}`"
            )),
            None => Err(format!(
                "`${{{name}}}` refers to config filter `{filter}`, which the agent does not declare in `configfilters`"
            )),
        }
    } else if let Some(v) = (lookup.file)(name) {
        resolve_depth(v.trim(), lookup, depth + 1)
    } else {
        (lookup.env)(name).ok_or_else(|| {
            let mut msg = format!(
                "`${{{name}}}` is neither a property of the file nor a set environment variable"
            );
            if let Some((f, _)) = lookup.filters.iter().find(|(_, t)| t.as_str() == "env") {
                msg.push_str(&format!(
                    " (the declared env config filter would be written `${{{f}['{name}']}}`)"
                ));
            }
            msg
        })
    };
    match (found, default) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(d)) => Ok(d.to_string()),
        (Err(e), None) => Err(e),
    }
}

/// `f['KEY']`, `f["KEY"]` or `f[KEY]` -> (f, KEY).
fn filter_reference(name: &str) -> Option<(&str, &str)> {
    let (filter, rest) = name.split_once('[')?;
    let key = rest.strip_suffix(']')?;
    let key = key
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
        .unwrap_or(key);
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    };
    (ok(filter) && ok(key)).then_some((filter, key))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "test code: a panic is a test failure")]
mod tests {
    use super::*;

    fn run(value: &str) -> Result<String, String> {
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".to_string()),
            "PORT" => Some("4444".to_string()),
            _ => None,
        };
        let file = |k: &str| match k {
            "PROD_BIND" => Some(" 10.0.0.1 ".to_string()),
            "LOOP" => Some("${LOOP}".to_string()),
            _ => None,
        };
        let sys = BTreeMap::from([("env".to_string(), "PROD".to_string())]);
        let filters = BTreeMap::from([
            ("cf".to_string(), "env".to_string()),
            ("h".to_string(), "hadoop".to_string()),
        ]);
        resolve(
            value,
            &Lookup {
                env: &env,
                system_properties: &sys,
                file: &file,
                filters: &filters,
            },
        )
    }

    #[test]
    fn forms() {
        assert_eq!(run("${env:HOME}/x").unwrap(), "/home/u/x");
        assert_eq!(run("${${sys:env}_BIND}").unwrap(), "10.0.0.1");
        assert_eq!(run("${PORT}").unwrap(), "4444");
        assert_eq!(run("${env:NOPE:-7}").unwrap(), "7");
        assert_eq!(
            run("$${env:HOME} costs $5").unwrap(),
            "${env:HOME} costs $5"
        );
        assert_eq!(
            run("${cf['PORT']}-${cf[\"PORT\"]}-${cf[PORT]}").unwrap(),
            "4444-4444-4444"
        );
    }

    #[test]
    fn failures_name_the_variable() {
        assert!(
            run("${env:NOPE}")
                .unwrap_err()
                .contains("`NOPE` is not set")
        );
        assert!(run("${sys:other}").unwrap_err().contains("-D other=VALUE"));
        assert!(run("${date:yyyy}").unwrap_err().contains("`date:` lookup"));
        assert!(run("${h['x']}").unwrap_err().contains("type `hadoop`"));
        assert!(run("${zz['x']}").unwrap_err().contains("does not declare"));
        assert!(
            run("${FLUME_IP}")
                .unwrap_err()
                .contains("${cf['FLUME_IP']}")
        );
        assert!(run("${LOOP}").unwrap_err().contains("loop"));
        assert!(run("${env:HOME").unwrap_err().contains("unclosed"));
    }
}
