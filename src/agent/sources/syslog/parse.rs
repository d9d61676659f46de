//! A strict parser of RFC 5424 and RFC 3164 syslog messages into Flume-style headers.
//!
//! Strict on purpose: a message that is neither a well-formed RFC 5424 message nor an RFC 3164
//! message (`<PRI>` then a `Mmm dd hh:mm:ss` or RFC 3339 timestamp, then a hostname) is not
//! guessed at; it becomes an event with header `flume.syslog.status = Invalid` and the whole
//! text as its body, as Flume does. (Vector's `syslog_loose` accepts nearly anything, so it
//! cannot tell such messages apart; it would also bring `chrono`.)
//!
//! Headers: `Facility` and `Severity` (numbers), `timestamp` (milliseconds since the epoch),
//! `host`, `app_name`, `procid`, `msgid` (RFC 5424), structured data as `sd.<id>.<param>`.
//! NILVALUE (`-`) fields are left out. RFC 3164 timestamps carry neither year nor zone: the
//! current year is assumed (the previous one if that would put the message more than a day in
//! the future) and the time is read as UTC.

use std::collections::BTreeMap;

/// Header set on messages that are neither RFC 5424 nor RFC 3164 (Flume's name).
pub const STATUS_HEADER: &str = "flume.syslog.status";

/// One parsed message: its headers and the body the source keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Headers (see the module docs).
    pub headers: BTreeMap<String, String>,
    /// The body: the MSG part, or the whole message with `keep_fields` or when invalid.
    pub body: Vec<u8>,
}

/// Parses `msg` (one frame, without framing). `keep_fields`: the body is the whole message.
/// `now_ms`: the current time, to pick the year of an RFC 3164 timestamp.
pub fn parse(msg: &[u8], keep_fields: bool, now_ms: i64) -> Parsed {
    let msg = trim_line_end(msg);
    let parsed = parse_pri(msg).and_then(|(pri, rest)| {
        parse_5424(rest)
            .or_else(|| parse_3164(rest, now_ms))
            .map(|(mut headers, body)| {
                headers.insert("Facility".into(), (pri / 8).to_string());
                headers.insert("Severity".into(), (pri % 8).to_string());
                (headers, body)
            })
    });
    match parsed {
        Some((headers, body)) => Parsed {
            headers,
            body: if keep_fields { msg } else { body }.to_vec(),
        },
        None => Parsed {
            headers: BTreeMap::from([(STATUS_HEADER.to_string(), "Invalid".to_string())]),
            body: msg.to_vec(),
        },
    }
}

fn trim_line_end(mut m: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = m.split_last() {
        if last == b'\n' || last == b'\r' || last == 0 {
            m = rest;
        } else {
            break;
        }
    }
    m
}

/// `<PRI>`: 1 to 3 digits, at most 191, no leading zero (except `<0>`).
fn parse_pri(m: &[u8]) -> Option<(u8, &[u8])> {
    let rest = m.strip_prefix(b"<")?;
    let end = rest.iter().position(|&b| b == b'>')?;
    let digits = &rest[..end];
    if digits.is_empty()
        || digits.len() > 3
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return None;
    }
    let pri: u16 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if pri > 191 {
        return None;
    }
    Some((pri as u8, &rest[end + 1..]))
}

/// Splits off the next field up to a space; the rest starts after the space.
fn field(m: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = m.iter().position(|&b| b == b' ')?;
    Some((&m[..end], &m[end + 1..]))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A header field: printable US-ASCII, 1..=max bytes; `-` is NILVALUE (None).
fn header_field(b: &[u8], max: usize) -> Option<Option<String>> {
    if b.is_empty() || b.len() > max || !b.iter().all(|c| (33..=126).contains(c)) {
        return None;
    }
    Some(if b == b"-" { None } else { Some(text(b)) })
}

type Fields<'a> = (BTreeMap<String, String>, &'a [u8]);

/// `VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]`.
fn parse_5424(m: &[u8]) -> Option<Fields<'_>> {
    let (version, rest) = field(m)?;
    if version.is_empty()
        || version.len() > 2
        || version[0] == b'0'
        || !version.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let mut h = BTreeMap::new();
    let (ts, rest) = field(rest)?;
    if ts != b"-" {
        let ms = rfc3339_ms(std::str::from_utf8(ts).ok()?)?;
        h.insert("timestamp".to_string(), ms.to_string());
    }
    let mut rest = rest;
    for (name, max) in [
        ("host", 255),
        ("app_name", 48),
        ("procid", 128),
        ("msgid", 32),
    ] {
        let (f, r) = field(rest).or_else(|| (name == "msgid").then_some((rest, &b""[..])))?;
        if let Some(v) = header_field(f, max)? {
            h.insert(name.to_string(), v);
        }
        rest = r;
    }
    let body = if rest.is_empty() {
        rest
    } else if let Some(r) = rest.strip_prefix(b"-") {
        r
    } else {
        parse_sd(rest, &mut h)?
    };
    let body = match body {
        [] => body,
        [b' ', msg @ ..] => msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg),
        _ => return None,
    };
    Some((h, body))
}

/// One or more `[id name="value" ...]`; returns what follows them.
fn parse_sd<'a>(mut m: &'a [u8], h: &mut BTreeMap<String, String>) -> Option<&'a [u8]> {
    let name_end = |m: &[u8]| {
        m.iter()
            .position(|&b| matches!(b, b' ' | b'=' | b']' | b'"') || !(33..=126).contains(&b))
            .unwrap_or(m.len())
    };
    if !m.starts_with(b"[") {
        return None;
    }
    while let Some(r) = m.strip_prefix(b"[") {
        let n = name_end(r);
        if n == 0 || n > 32 {
            return None;
        }
        let id = text(&r[..n]);
        m = &r[n..];
        loop {
            if let Some(r) = m.strip_prefix(b"]") {
                m = r;
                break;
            }
            let r = m.strip_prefix(b" ")?;
            let n = name_end(r);
            if n == 0 || n > 32 {
                return None;
            }
            let param = text(&r[..n]);
            let mut r = r[n..].strip_prefix(b"=\"")?;
            let mut value = Vec::new();
            loop {
                match r {
                    [b'\\', c @ (b'"' | b'\\' | b']'), rest @ ..] => {
                        value.push(*c);
                        r = rest;
                    }
                    [b'"', rest @ ..] => {
                        r = rest;
                        break;
                    }
                    [c, rest @ ..] => {
                        value.push(*c);
                        r = rest;
                    }
                    [] => return None,
                }
            }
            h.insert(format!("sd.{id}.{param}"), text(&value));
            m = r;
        }
    }
    Some(m)
}

/// `Mmm dd hh:mm:ss HOSTNAME [TAG[PID]:] MSG` (or an RFC 3339 timestamp in place of the
/// BSD one, as rsyslog can send).
fn parse_3164(m: &[u8], now_ms: i64) -> Option<Fields<'_>> {
    let mut h = BTreeMap::new();
    let rest = if let Some((ms, rest)) = bsd_timestamp(m, now_ms) {
        h.insert("timestamp".to_string(), ms.to_string());
        rest
    } else {
        let (ts, rest) = field(m)?;
        let ms = rfc3339_ms(std::str::from_utf8(ts).ok()?)?;
        h.insert("timestamp".to_string(), ms.to_string());
        rest
    };
    let (host, rest) = field(rest).unwrap_or((rest, &b""[..]));
    h.insert("host".to_string(), header_field(host, 255)??);
    // TAG: up to 32 characters other than space, `[`, `:`; then `[pid]`; then `:`.
    let tag_end = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b'[' | b':'))
        .unwrap_or(rest.len());
    let body = if tag_end > 0 && tag_end <= 48 {
        let tag = &rest[..tag_end];
        let after = &rest[tag_end..];
        let (pid, after) = match after.strip_prefix(b"[") {
            Some(a) => match a.iter().position(|&b| b == b']') {
                Some(e) if e > 0 && e <= 128 => (Some(&a[..e]), &a[e + 1..]),
                _ => (None, &b"!"[..]),
            },
            None => (None, after),
        };
        match after.strip_prefix(b":") {
            Some(msg) => {
                h.insert("app_name".to_string(), text(tag));
                if let Some(pid) = pid {
                    h.insert("procid".to_string(), text(pid));
                }
                msg.strip_prefix(b" ").unwrap_or(msg)
            }
            None => rest,
        }
    } else {
        rest
    };
    Some((h, body))
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Mmm dd hh:mm:ss ` (the day space-padded or zero-padded).
fn bsd_timestamp(m: &[u8], now_ms: i64) -> Option<(i64, &[u8])> {
    if m.len() < 16 || m[3] != b' ' || m[6] != b' ' || m[15] != b' ' {
        return None;
    }
    let month = MONTHS.iter().position(|mm| &m[..3] == *mm)? as u32 + 1;
    let day_txt = std::str::from_utf8(&m[4..6])
        .ok()?
        .trim_start_matches([' ', '0']);
    let day: u32 = day_txt.parse().ok()?;
    let (hh, mi, ss) = hms(&m[7..15])?;
    if !(1..=31).contains(&day) {
        return None;
    }
    let year = civil_from_days(now_ms.div_euclid(86_400_000)).0;
    let at = |y: i64| {
        (days_from_civil(y, month, day) * 86_400 + i64::from(hh * 3600 + mi * 60 + ss)) * 1000
    };
    let mut ms = at(year);
    if ms > now_ms + 86_400_000 {
        ms = at(year - 1);
    }
    Some((ms, &m[16..]))
}

fn two(b: &[u8]) -> Option<u32> {
    match b {
        [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(c - b'0')),
        _ => None,
    }
}

/// `hh:mm:ss`.
fn hms(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (two(&b[0..2])?, two(&b[3..5])?, two(&b[6..8])?);
    (h < 24 && m < 60 && s < 61).then_some((h, m, s))
}

/// RFC 3339 (`2026-11-24T12:00:00.123456+01:00`, or `Z`) to milliseconds since the epoch.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let year = i64::from(two(&b[0..2])? * 100 + two(&b[2..4])?);
    let (month, day) = (two(&b[5..7])?, two(&b[8..10])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (hh, mi, ss) = hms(&b[11..19])?;
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some(r) = rest.strip_prefix(b".") {
        let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        for (i, c) in r[..n.min(3)].iter().enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &r[n..];
    }
    let offset_s = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (two(&[*h1, *h2])?, two(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let secs =
        days_from_civil(year, month, day) * 86_400 + i64::from(hh * 3600 + mi * 60 + ss) - offset_s;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-24T12:00:00Z.
    const NOW: i64 = 1_795_521_600_000;

    fn h(p: &Parsed, k: &str) -> Option<String> {
        p.headers.get(k).cloned()
    }

    proptest::proptest! {
        /// Any bytes parse without a panic; what is not valid keeps its whole text.
        #[test]
        fn any_input_parses_without_panic(
            head in proptest::sample::select(vec![
                &b"<13>1 "[..], b"<13>", b"<191>Nov 24 12:00:00 ", b"<0>1 2026-11-24T12:00:00Z ", b"",
            ]),
            tail in proptest::collection::vec(proptest::sample::select(b" -[]=\"\\:<>1aZT.+\n\xEF".to_vec()), 0..60),
        ) {
            let m = [head, &tail[..]].concat();
            let p = parse(&m, false, NOW);
            if p.headers.contains_key(STATUS_HEADER) {
                proptest::prop_assert_eq!(p.body, trim_line_end(&m).to_vec());
            }
        }
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(NOW / 86_400_000), (2026, 11, 24));
        assert_eq!(rfc3339_ms("2026-11-24T12:00:00Z"), Some(NOW));
        assert_eq!(rfc3339_ms("2026-11-24T13:30:00.5+01:30"), Some(NOW + 500));
        assert_eq!(
            rfc3339_ms("2026-11-24T12:00:00"),
            None,
            "a zone is required"
        );
        assert_eq!(rfc3339_ms("2026-13-24T12:00:00Z"), None);
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let m = br#"<165>1 2026-11-24T12:00:00.003Z mymachine.example.com evntslog 42 ID47 [exampleSDID@32473 iut="3" eventSource="App\"lication" eventID="1011"][x@1 a="\]"] "#;
        let m = &[&m[..], b"\xEF\xBB\xBFAn application event"].concat();
        let p = parse(m, false, NOW);
        assert_eq!(p.body, b"An application event");
        assert_eq!(h(&p, "Facility").as_deref(), Some("20"));
        assert_eq!(h(&p, "Severity").as_deref(), Some("5"));
        assert_eq!(h(&p, "timestamp"), Some((NOW + 3).to_string()));
        assert_eq!(h(&p, "host").as_deref(), Some("mymachine.example.com"));
        assert_eq!(h(&p, "app_name").as_deref(), Some("evntslog"));
        assert_eq!(h(&p, "procid").as_deref(), Some("42"));
        assert_eq!(h(&p, "msgid").as_deref(), Some("ID47"));
        assert_eq!(
            h(&p, "sd.exampleSDID@32473.eventSource").as_deref(),
            Some("App\"lication")
        );
        assert_eq!(h(&p, "sd.x@1.a").as_deref(), Some("]"));
        assert_eq!(h(&p, STATUS_HEADER), None);
        let kept = parse(m, true, NOW);
        assert_eq!(kept.body, m.to_vec(), "keep_fields keeps the whole message");
    }

    #[test]
    fn rfc5424_nil_values_and_no_msg() {
        let p = parse(b"<14>1 - - - - - -", false, NOW);
        assert_eq!(p.body, b"");
        assert_eq!(
            p.headers.keys().collect::<Vec<_>>(),
            ["Facility", "Severity"]
        );
        let p = parse(b"<14>1 - host app - - - hello world\n", false, NOW);
        assert_eq!(p.body, b"hello world");
        assert_eq!(h(&p, "app_name").as_deref(), Some("app"));
    }

    #[test]
    fn rfc3164_with_tag_and_pid() {
        let p = parse(
            b"<13>Nov 24 11:59:00 host1 myapp[123]: hello there",
            false,
            NOW,
        );
        assert_eq!(p.body, b"hello there");
        assert_eq!(h(&p, "Facility").as_deref(), Some("1"));
        assert_eq!(h(&p, "Severity").as_deref(), Some("5"));
        assert_eq!(h(&p, "timestamp"), Some((NOW - 60_000).to_string()));
        assert_eq!(h(&p, "host").as_deref(), Some("host1"));
        assert_eq!(h(&p, "app_name").as_deref(), Some("myapp"));
        assert_eq!(h(&p, "procid").as_deref(), Some("123"));
        // A December message arriving on the 1st of January belongs to last year.
        let jan1 = rfc3339_ms("2027-01-01T00:00:10Z").unwrap_or_default();
        let p = parse(b"<13>Dec 31 23:59:59 h t: x", false, jan1);
        assert_eq!(h(&p, "timestamp"), Some((jan1 - 11_000).to_string()));
        // Space-padded day, no tag.
        let p = parse(b"<13>Nov  4 01:02:03 h no tag here", false, NOW);
        assert_eq!(p.body, b"no tag here");
        assert_eq!(h(&p, "app_name"), None);
    }

    #[test]
    fn what_is_neither_rfc_is_invalid_and_kept_whole() {
        for m in [
            &b"plain text"[..],
            b"<999>1 - - - - - - x",
            b"<13>not a timestamp host msg",
            b"<13>1 2026-11-24 host app - - - x",
            b"<13>1 - h a p m [unterminated x=\"y\"",
            b"",
        ] {
            let p = parse(m, false, NOW);
            assert_eq!(h(&p, STATUS_HEADER).as_deref(), Some("Invalid"), "{m:?}");
            assert_eq!(p.body, m, "the whole text is the body");
            assert_eq!(p.headers.len(), 1);
        }
    }
}
