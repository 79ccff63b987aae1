//! Retention (`pgseal_ops::retention`): arbitrary spans as the flags and the config write
//! them, and arbitrary policies over arbitrary signed times (any i64, the extremes included).
//! Must never panic, and:
//! - a span that parses prints back as the same number of milliseconds;
//! - every backup gets exactly one decision; the newest backup not signed in the future is
//!   always kept; a backup signed in the future is kept for that reason alone and no other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgseal_core::time::Timestamp;
use pgseal_ops::retention::{Counted, FUTURE_SLACK_MS, Policy, Reason, decide, parse_span, span};

fn take_i64(data: &mut &[u8]) -> Option<i64> {
    let (head, rest) = data.split_first_chunk::<8>()?;
    *data = rest;
    Some(i64::from_le_bytes(*head))
}

fn take_count(data: &mut &[u8]) -> Option<u32> {
    let (&b, rest) = data.split_first()?;
    *data = rest;
    // Half the time no rule; otherwise a small count.
    (b & 0x80 == 0).then_some(u32::from(b & 0x3f))
}

fuzz_target!(|data: &[u8]| {
    if let Some(text) = data.strip_prefix(b"span:") {
        if let Some(ms) = parse_span(&String::from_utf8_lossy(text)) {
            assert_eq!(parse_span(&span(ms)).unwrap_or(ms), ms, "{ms}");
        }
        return;
    }
    let mut d = data;
    let policy = Policy {
        last: take_count(&mut d),
        hourly: take_count(&mut d),
        daily: take_count(&mut d),
        weekly: take_count(&mut d),
        monthly: take_count(&mut d),
        yearly: take_count(&mut d),
        within_ms: take_count(&mut d).map(|n| i64::from(n) * 3_600_000),
        younger_than_ms: take_count(&mut d).map(|n| i64::from(n) * 86_400_000),
    };
    let Some(now) = take_i64(&mut d) else { return };
    let mut backups = Vec::new();
    let mut id = 0;
    while let Some(t) = take_i64(&mut d) {
        id += 1;
        backups.push(Counted { id, time: Timestamp(t) });
    }
    let now = Timestamp(now);
    let decisions = decide(&policy, now, &backups);
    assert_eq!(decisions.len(), backups.len());
    let future = |b: &Counted| b.time.millis() > now.millis().saturating_add(FUTURE_SLACK_MS);
    let newest = backups
        .iter()
        .filter(|b| !future(b))
        .max_by_key(|b| (b.time, b.id));
    for b in &backups {
        let d = decisions.iter().find(|d| d.id == b.id).expect("a decision per backup");
        if future(b) {
            assert_eq!(d.kept_by, vec![Reason::Future]);
        } else {
            assert!(!d.kept_by.contains(&Reason::Future));
        }
        if Some(b) == newest {
            assert!(d.kept_by.contains(&Reason::Newest));
        }
    }
});
