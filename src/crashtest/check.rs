//! The child's protocol lines and the check of a recovered queue against them.
//!
//! The child writes one line per step, flushed before the next step begins:
//!
//! | line | meaning |
//! |---|---|
//! | `O n` | the channel opened with `n` events |
//! | `B p a b` | producer `p` is about to put ids `a..=b` (every `P`-th id from `a`) and commit |
//! | `P p a b` | that commit returned `Ok` |
//! | `X p a b` | that transaction was rolled back instead |
//! | `t c ids` | consumer `c` is about to commit a take of `ids` |
//! | `T c ids` | that commit returned `Ok` |
//!
//! A kill can cut at most one unanswered `B` per producer and one unanswered `t` per consumer:
//! those transactions may or may not have happened, but each all or nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Marks protocol lines among whatever else the child prints.
pub(crate) const TAG: &str = "@tidegate-crashtest@ ";

/// Ids `a..=b` of producer batches: every `step`-th id from `a`.
fn ids(a: u64, b: u64, step: u64) -> impl Iterator<Item = u64> {
    (a..=b).step_by(step.max(1) as usize)
}

/// What the child said before it died.
#[derive(Debug, Default, Clone)]
pub(crate) struct ChildLog {
    pub(crate) opened_with: Option<u64>,
    /// Per producer: batches begun, committed, rolled back.
    pub(crate) begun: BTreeMap<u64, Vec<(u64, u64)>>,
    pub(crate) put: BTreeMap<u64, Vec<(u64, u64)>>,
    pub(crate) rolled_back: BTreeMap<u64, Vec<(u64, u64)>>,
    /// Per consumer: take commits begun and acknowledged.
    pub(crate) take_begun: BTreeMap<u64, Vec<Vec<u64>>>,
    pub(crate) taken: BTreeMap<u64, Vec<Vec<u64>>>,
}

impl ChildLog {
    pub(crate) fn parse(lines: &[String]) -> Result<ChildLog, String> {
        let mut log = ChildLog::default();
        for line in lines {
            let Some(at) = line.find(TAG) else { continue };
            let mut words = line[at + TAG.len()..].split_whitespace();
            let kind = words.next().unwrap_or("");
            let nums: Vec<u64> = words
                .map(|w| w.parse().map_err(|_| format!("bad line {line:?}")))
                .collect::<Result<_, _>>()?;
            let batch = || match nums[..] {
                [p, a, b] if a <= b => Ok((p, (a, b))),
                _ => Err(format!("bad batch in {line:?}")),
            };
            let take = || match nums.split_first() {
                Some((c, ids)) => Ok((*c, ids.to_vec())),
                None => Err(format!("bad take in {line:?}")),
            };
            match kind {
                "O" if nums.len() == 1 => log.opened_with = Some(nums[0]),
                "B" => batch().map(|(p, r)| log.begun.entry(p).or_default().push(r))?,
                "P" => batch().map(|(p, r)| log.put.entry(p).or_default().push(r))?,
                "X" => batch().map(|(p, r)| log.rolled_back.entry(p).or_default().push(r))?,
                "t" => take().map(|(c, v)| log.take_begun.entry(c).or_default().push(v))?,
                "T" => take().map(|(c, v)| log.taken.entry(c).or_default().push(v))?,
                _ => return Err(format!("unknown line {line:?}")),
            }
        }
        Ok(log)
    }

    /// The highest id the child began to put.
    pub(crate) fn max_id(&self) -> Option<u64> {
        self.begun.values().flatten().map(|r| r.1).max()
    }

    /// Events whose put commit was acknowledged.
    pub(crate) fn acknowledged(&self, producers: u64) -> u64 {
        self.put
            .values()
            .flatten()
            .map(|&(a, b)| ids(a, b, producers).count() as u64)
            .sum()
    }
}

/// The outcome of one check.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Acknowledged events (put committed, no take committed) missing from the queue.
    pub(crate) lost: u64,
    /// Events of an interrupted take commit found again (delivered again, as allowed).
    pub(crate) redelivered: u64,
    /// Contract violations other than loss.
    pub(crate) violations: Vec<String>,
}

/// Checks the queue found after a crash against the queue before the child ran (`prior`) and
/// what the child said. `producers` is the id stride; FIFO is checked per producer when
/// `fifo` (one consumer: rollbacks return events to the head in order).
pub(crate) fn check(
    prior: &[u64],
    log: &ChildLog,
    queue: &[u64],
    producers: u64,
    fifo: bool,
) -> Outcome {
    let mut out = Outcome::default();
    let mut pending_puts: Vec<Vec<u64>> = Vec::new();
    for (p, begun) in &log.begun {
        let mut finished: Vec<(u64, u64)> = log.put.get(p).cloned().unwrap_or_default();
        finished.extend(log.rolled_back.get(p).into_iter().flatten());
        finished.sort_unstable();
        let mut begun = begun.clone();
        begun.sort_unstable();
        match begun.len().checked_sub(finished.len()) {
            Some(0) if begun == finished => {}
            Some(1) if begun[..begun.len() - 1] == finished[..] => {
                let (a, b) = begun[begun.len() - 1];
                pending_puts.push(ids(a, b, producers).collect());
            }
            _ => out.violations.push(format!(
                "producer {p}: put lines do not match: B {begun:?}, P/X {finished:?}"
            )),
        }
    }
    let mut pending_takes: Vec<Vec<u64>> = Vec::new();
    for (c, begun) in &log.take_begun {
        let taken = log.taken.get(c).cloned().unwrap_or_default();
        match begun.len().checked_sub(taken.len()) {
            Some(0) if *begun == taken => {}
            Some(1) if begun[..taken.len()] == taken[..] => {
                pending_takes.push(begun[taken.len()].clone());
            }
            _ => out.violations.push(format!(
                "consumer {c}: take lines do not match: t {begun:?}, T {taken:?}"
            )),
        }
    }
    if let Some(n) = log.opened_with
        && n != prior.len() as u64
    {
        out.violations.push(format!(
            "the child opened the channel with {n} events; {} were expected",
            prior.len()
        ));
    }

    let taken: HashSet<u64> = log.taken.values().flatten().flatten().copied().collect();
    let rolled_back: HashSet<u64> = log
        .rolled_back
        .values()
        .flatten()
        .flat_map(|&(a, b)| ids(a, b, producers))
        .collect();
    let maybe: HashSet<u64> = pending_puts
        .iter()
        .chain(&pending_takes)
        .flatten()
        .copied()
        .collect();
    let must: Vec<u64> = prior
        .iter()
        .copied()
        .chain(
            log.put
                .values()
                .flatten()
                .flat_map(|&(a, b)| ids(a, b, producers)),
        )
        .filter(|id| !taken.contains(id) && !maybe.contains(id))
        .collect();
    let must_set: HashSet<u64> = must.iter().copied().collect();

    let mut seen: HashSet<u64> = HashSet::with_capacity(queue.len());
    let mut last_of_producer: HashMap<u64, u64> = HashMap::new();
    let mut unexpected: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for &id in queue {
        if !seen.insert(id) {
            unexpected.entry("it is there twice").or_default().push(id);
            continue;
        }
        if fifo {
            let p = id % producers.max(1);
            if let Some(prev) = last_of_producer.insert(p, id)
                && prev > id
                && out.violations.len() < 100
            {
                out.violations.push(format!(
                    "the queue is out of put order: {prev} then {id} (producer {p})"
                ));
            }
        }
        if must_set.contains(&id) || maybe.contains(&id) {
            continue;
        }
        let why = if taken.contains(&id) {
            "its take commit was acknowledged"
        } else if rolled_back.contains(&id) {
            "its put was rolled back"
        } else {
            "it was never put"
        };
        unexpected.entry(why).or_default().push(id);
    }
    for (why, ids) in unexpected {
        out.violations.push(format!(
            "{} events are in the queue, but {why}: first {:?}",
            ids.len(),
            &ids[..ids.len().min(10)]
        ));
    }
    let lost: Vec<u64> = must
        .iter()
        .copied()
        .filter(|id| !seen.contains(id))
        .collect();
    out.lost = lost.len() as u64;
    if !lost.is_empty() {
        out.violations.push(format!(
            "{} acknowledged events are missing, first {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    // An interrupted take can hold events of the interrupted put: the put's commit made them
    // visible only once it was durable, and the consumer took them (and its take commit may
    // have become durable) before the producer printed its acknowledgement. Such a put was
    // applied; its events that the take holds follow the take's all-or-nothing rule.
    let held_by_takes: HashSet<u64> = pending_takes.iter().flatten().copied().collect();
    for ids in &pending_puts {
        let n = ids.iter().filter(|id| seen.contains(id)).count();
        let rest: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !held_by_takes.contains(id))
            .collect();
        if rest.len() < ids.len() {
            let missing: Vec<u64> = rest
                .iter()
                .copied()
                .filter(|id| !seen.contains(id))
                .collect();
            if !missing.is_empty() {
                out.violations.push(format!(
                    "the interrupted put of {ids:?} was committed (an interrupted take holds some of its events), but {missing:?} of its other events are missing"
                ));
            }
        } else if n != 0 && n != ids.len() {
            out.violations.push(format!(
                "the interrupted put of {ids:?} is half applied: {n} of {} events present",
                ids.len()
            ));
        }
    }
    for ids in &pending_takes {
        let n = ids.iter().filter(|id| seen.contains(id)).count();
        if n != 0 && n != ids.len() {
            out.violations.push(format!(
                "the interrupted take of {ids:?} is half applied: {n} of {} events present",
                ids.len()
            ));
        }
        out.redelivered += n as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(lines: &[&str]) -> ChildLog {
        let lines: Vec<String> = lines.iter().map(|l| format!("{TAG}{l}")).collect();
        ChildLog::parse(&lines).expect("parse")
    }

    fn ok(prior: &[u64], log: &ChildLog, queue: &[u64]) -> Outcome {
        let o = check(prior, log, queue, 1, true);
        assert!(o.violations.is_empty(), "{queue:?}: {:?}", o.violations);
        o
    }

    #[test]
    fn the_checker_accepts_what_the_protocol_allows() {
        let log = log_of(&[
            "O 2",
            "B 0 10 12",
            "P 0 10 12",
            "t 0 1 2",
            "T 0 1 2",
            "B 0 13 14",
        ]);
        ok(&[1, 2], &log, &[10, 11, 12]);
        ok(&[1, 2], &log, &[10, 11, 12, 13, 14]);
        let log = log_of(&["B 0 10 12", "P 0 10 12", "t 0 1 2 10"]);
        assert_eq!(ok(&[1, 2], &log, &[11, 12]).redelivered, 0);
        assert_eq!(ok(&[1, 2], &log, &[1, 2, 10, 11, 12]).redelivered, 3);
        // An interrupted put whose events an interrupted take holds: the put was durable (its
        // events were visible), and the take's commit may have become durable too, before
        // either was acknowledged. (Seen in CI once the consumer won that race.)
        let log = log_of(&["B 0 10 14", "t 0 10 11"]);
        ok(&[], &log, &[12, 13, 14]);
        assert_eq!(ok(&[], &log, &[10, 11, 12, 13, 14]).redelivered, 2);
        // Two producers (stride 2): producer 1 owns the odd ids.
        let log = log_of(&["B 0 10 14", "P 0 10 14", "B 1 11 13", "P 1 11 13"]);
        let o = check(&[], &log, &[10, 11, 12, 13, 14], 2, true);
        assert!(o.violations.is_empty(), "{:?}", o.violations);
        assert_eq!(log.acknowledged(2), 5);
    }

    #[test]
    fn the_checker_rejects_every_violation() {
        let log = log_of(&[
            "O 2",
            "B 0 10 12",
            "P 0 10 12",
            "B 0 13 14",
            "X 0 13 14",
            "t 0 1",
            "T 0 1",
            "B 0 15 16",
        ]);
        ok(&[1, 2], &log, &[2, 10, 11, 12]);
        let bad: [(&[u64], &str, u64); 8] = [
            (&[2, 10, 12], "missing", 1),
            (&[10, 11, 12], "missing", 1),
            (&[1, 2, 10, 11, 12], "take commit was acknowledged", 0),
            (&[2, 10, 11, 12, 13], "rolled back", 0),
            (&[2, 10, 11, 12, 99], "never put", 0),
            (&[2, 11, 10, 12], "out of put order", 0),
            (&[2, 10, 10, 11, 12], "twice", 0),
            (&[2, 10, 11, 12, 15], "half applied", 0),
        ];
        for (queue, why, lost) in bad {
            let o = check(&[1, 2], &log, queue, 1, true);
            assert!(
                o.violations.iter().any(|v| v.contains(why)),
                "{queue:?}: expected {why:?}, got {:?}",
                o.violations
            );
            assert_eq!(o.lost, lost, "{queue:?}");
        }
        let o = check(&[1, 2, 3], &log, &[2, 3, 10, 11, 12], 1, true);
        assert!(
            o.violations
                .iter()
                .any(|v| v.contains("opened the channel with 2"))
        );
        let log = log_of(&["B 0 1 2", "B 0 3 4", "P 0 3 4"]);
        assert!(!check(&[], &log, &[3, 4], 1, true).violations.is_empty());
        let log = log_of(&["B 0 1 2", "P 0 1 2", "t 0 1", "t 0 2"]);
        assert!(!check(&[], &log, &[1, 2], 1, true).violations.is_empty());
        let log = log_of(&["B 0 1 3", "P 0 1 3", "t 0 1 2"]);
        let o = check(&[], &log, &[2, 3], 1, true);
        assert!(o.violations.iter().any(|v| v.contains("half applied")));
        // The put an interrupted take took from was committed: its other events must be there,
        // and the take is still all or nothing.
        let log = log_of(&["B 0 10 14", "t 0 10 11"]);
        for (queue, why) in [
            (&[12, 13][..], "other events are missing"),
            (&[][..], "other events are missing"),
            (&[11, 12, 13, 14][..], "take of [10, 11] is half applied"),
        ] {
            let o = check(&[], &log, queue, 1, true);
            assert!(
                o.violations.iter().any(|v| v.contains(why)),
                "{queue:?}: expected {why:?}, got {:?}",
                o.violations
            );
        }
        // Without FIFO (several consumers), order is not checked, the rest is.
        let o = check(&[1, 2], &log_of(&["O 2"]), &[2, 1], 1, false);
        assert!(o.violations.is_empty(), "{:?}", o.violations);
    }
}
