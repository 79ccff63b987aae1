//! Retention policies: which of a database's verified backups to keep, and by which rule.
//!
//! A pure function of the policy, the current time and the backups' signed times. The caller
//! ([`crate::prune`]) decides which backups count — only those whose signed header and final
//! signature verify with the creator's key and match their catalog entry — and passes their
//! times from the signed header; this module never sees file names, mtimes or catalog rows
//! nothing backs.
//!
//! The rules combine with OR: a backup stays when any rule keeps it, and goes only when none
//! does. Like restic's `forget`, a calendar rule (`hourly`, `daily`, `weekly`, `monthly`,
//! `yearly`) keeps the newest backup of each of the newest N periods that have one; periods
//! are in UTC, weeks are ISO 8601 weeks (Monday to Sunday, the ISO week-numbering year).
//! `within` keeps what was made within a span before the newest backup (not before now, so a
//! site whose backups stopped does not lose them all), `younger_than` (from `--older-than`)
//! what was made within a span before now. Whatever the policy, the newest backup is kept.
//! A backup signed with a time more than [`FUTURE_SLACK_MS`] after now (a creator's clock
//! running fast) is kept and does not count: it can take no rule's place.

use std::collections::BTreeSet;
use std::fmt;

use pgseal_core::time::Timestamp;
use serde::Serialize;
use time::OffsetDateTime;

/// How far after now a signed time may be before it counts as being in the future: clocks
/// of the hosts that make backups and the one that prunes differ by a little.
pub const FUTURE_SLACK_MS: i64 = 5 * 60 * 1000;

/// What to keep of each database's backups in a repository. Every rule set keeps what it
/// names; an empty policy keeps only the newest backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The newest N.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    /// The newest of each of the newest N hours that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    /// The newest of each of the newest N days that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    /// The newest of each of the newest N ISO weeks that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    /// The newest of each of the newest N months that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    /// The newest of each of the newest N years that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
    /// Those made at most this many milliseconds before the newest backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<i64>,
    /// Those made at most this many milliseconds before now (`--older-than`: older ones go).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub younger_than_ms: Option<i64>,
}

impl Policy {
    /// Whether no rule is set (only the newest backup would be kept).
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let counts = [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ];
        for (name, n) in counts {
            if let Some(n) = n {
                parts.push(format!("keep {name} {n}"));
            }
        }
        if let Some(ms) = self.within_ms {
            parts.push(format!("keep within {} of the newest", span(ms)));
        }
        if let Some(ms) = self.younger_than_ms {
            parts.push(format!("delete older than {}", span(ms)));
        }
        if parts.is_empty() {
            parts.push("keep the newest only".into());
        }
        f.write_str(&parts.join(", "))
    }
}

/// Reads a span as the flags and the config write it — a number and a unit: `30m`, `12h`,
/// `90d`, `2w` — in milliseconds; `None` for anything else (or a span too long to hold).
pub fn parse_span(text: &str) -> Option<i64> {
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = text.split_at(digits);
    let n: i64 = num.parse().ok()?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// A span of milliseconds as the flags write it (`90d`, `12h`, `2w`, `30m`).
pub fn span(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (7 * 86_400_000, "w"),
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
    ];
    for (unit, name) in UNITS {
        if ms % unit == 0 && ms != 0 {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

/// Why a backup is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "rule", content = "period")]
pub enum Reason {
    /// The newest backup, which no policy deletes.
    Newest,
    /// Among the newest N.
    Last,
    /// The newest of this hour (`2026-11-30T14`).
    Hourly(String),
    /// The newest of this day (`2026-11-30`).
    Daily(String),
    /// The newest of this ISO week (`2026-W49`).
    Weekly(String),
    /// The newest of this month (`2026-11`).
    Monthly(String),
    /// The newest of this year (`2026`).
    Yearly(String),
    /// Made within the `within` span of the newest backup.
    Within,
    /// Made within the `--older-than` span of now.
    YoungerThan,
    /// Signed with a time in the future: kept, and not counted.
    Future,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Newest => f.write_str("newest"),
            Reason::Last => f.write_str("last"),
            Reason::Hourly(p) => write!(f, "hourly {p}"),
            Reason::Daily(p) => write!(f, "daily {p}"),
            Reason::Weekly(p) => write!(f, "weekly {p}"),
            Reason::Monthly(p) => write!(f, "monthly {p}"),
            Reason::Yearly(p) => write!(f, "yearly {p}"),
            Reason::Within => f.write_str("within"),
            Reason::YoungerThan => f.write_str("younger than --older-than"),
            Reason::Future => f.write_str("signed in the future (creator's clock?), not counted"),
        }
    }
}

/// A backup that counts: its id and the time its signed header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// The catalog id (breaks ties between equal times: the higher id is newer).
    pub id: i64,
    /// The signed time.
    pub time: Timestamp,
}

/// What the policy says of one backup: kept (by these rules) or not (an empty list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The backup.
    pub id: i64,
    /// The rules that keep it; empty when it goes.
    pub kept_by: Vec<Reason>,
}

impl Decision {
    /// Whether any rule keeps it.
    pub fn kept(&self) -> bool {
        !self.kept_by.is_empty()
    }
}

/// The periods of the calendar rules.
#[derive(Debug, Clone, Copy)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    /// The period `time` falls in (UTC), as the reason names it; `None` for a time no calendar
    /// shows (before year -9999 or after 9999).
    fn of(self, time: Timestamp) -> Option<Reason> {
        let t = OffsetDateTime::from_unix_timestamp(time.millis().div_euclid(1000)).ok()?;
        let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
        Some(match self {
            Period::Hour => Reason::Hourly(format!("{y:04}-{m:02}-{d:02}T{:02}", t.hour())),
            Period::Day => Reason::Daily(format!("{y:04}-{m:02}-{d:02}")),
            Period::Week => {
                let (year, week, _) = t.to_iso_week_date();
                Reason::Weekly(format!("{year:04}-W{week:02}"))
            }
            Period::Month => Reason::Monthly(format!("{y:04}-{m:02}")),
            Period::Year => Reason::Yearly(format!("{y:04}")),
        })
    }
}

/// Applies `policy` at `now` to one database's counted backups (in any order); one decision
/// per backup, newest first.
pub fn decide(policy: &Policy, now: Timestamp, backups: &[Counted]) -> Vec<Decision> {
    let mut newest_first: Vec<Counted> = backups.to_vec();
    newest_first.sort_by_key(|b| std::cmp::Reverse((b.time, b.id)));
    let mut decisions: Vec<Decision> = newest_first
        .iter()
        .map(|b| Decision {
            id: b.id,
            kept_by: Vec::new(),
        })
        .collect();
    // Future-dated backups are kept and take no rule's place: the rules see the rest.
    let future = |b: &Counted| b.time.millis() > now.millis().saturating_add(FUTURE_SLACK_MS);
    let mut counted = Vec::new();
    for (i, b) in newest_first.iter().enumerate() {
        if future(b) {
            decisions[i].kept_by.push(Reason::Future);
        } else {
            counted.push(i);
        }
    }
    let Some(&newest) = counted.first() else {
        return decisions;
    };
    decisions[newest].kept_by.push(Reason::Newest);
    if let Some(n) = policy.last {
        for &i in counted.iter().take(n as usize) {
            decisions[i].kept_by.push(Reason::Last);
        }
    }
    let calendar = [
        (policy.hourly, Period::Hour),
        (policy.daily, Period::Day),
        (policy.weekly, Period::Week),
        (policy.monthly, Period::Month),
        (policy.yearly, Period::Year),
    ];
    for (count, period) in calendar {
        let Some(count) = count else { continue };
        let mut seen = BTreeSet::new();
        for &i in &counted {
            if seen.len() >= count as usize {
                break;
            }
            let Some(reason) = period.of(newest_first[i].time) else {
                continue;
            };
            // Newest first: the first backup seen in a period is that period's newest.
            if seen.insert(reason.to_string()) {
                decisions[i].kept_by.push(reason);
            }
        }
    }
    if let Some(span) = policy.within_ms {
        let from = newest_first[newest].time.millis().saturating_sub(span);
        for &i in &counted {
            if newest_first[i].time.millis() >= from {
                decisions[i].kept_by.push(Reason::Within);
            }
        }
    }
    if let Some(span) = policy.younger_than_ms {
        let from = now.millis().saturating_sub(span);
        for &i in &counted {
            if newest_first[i].time.millis() >= from {
                decisions[i].kept_by.push(Reason::YoungerThan);
            }
        }
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Date, Month, PrimitiveDateTime, Time};

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn at(y: i32, m: u8, d: u8, h: u8, min: u8) -> Timestamp {
        let date = Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap();
        let t = PrimitiveDateTime::new(date, Time::from_hms(h, min, 0).unwrap()).assume_utc();
        Timestamp(t.unix_timestamp() * 1000)
    }

    /// Three years of nightly backups at 02:00 UTC (2024-01-01 to 2026-11-30), and hourly ones
    /// at a quarter past every hour of 2026-11-29 and of 2026-11-30 up to 14:15. Ids follow
    /// time order, as a catalog's do.
    fn calendar() -> (Vec<Counted>, Timestamp) {
        let mut times = Vec::new();
        let mut day = at(2024, 1, 1, 2, 0);
        while day <= at(2026, 11, 30, 2, 0) {
            times.push(day);
            day = Timestamp(day.millis() + DAY);
        }
        let mut hour = at(2026, 11, 29, 0, 15);
        while hour <= at(2026, 11, 30, 14, 15) {
            times.push(hour);
            hour = Timestamp(hour.millis() + HOUR);
        }
        times.sort();
        let backups = times
            .into_iter()
            .enumerate()
            .map(|(i, time)| Counted {
                id: i as i64 + 1,
                time,
            })
            .collect();
        (backups, at(2026, 11, 30, 14, 30))
    }

    /// The kept backups' times, newest first.
    fn kept(policy: &Policy, backups: &[Counted], now: Timestamp) -> Vec<Timestamp> {
        let time = |id| backups.iter().find(|b| b.id == id).unwrap().time;
        decide(policy, now, backups)
            .into_iter()
            .filter(Decision::kept)
            .map(|d| time(d.id))
            .collect()
    }

    fn nightly(y: i32, m: u8, d: u8) -> Timestamp {
        at(y, m, d, 2, 0)
    }

    #[test]
    fn the_calendar_is_what_it_says() {
        let (backups, _) = calendar();
        // 2024 (366 days) + 2025 (365) + 2026 to 30 November (334): 1065 nights; 24 + 15 hours.
        assert_eq!(backups.len(), 1065 + 24 + 15);
        // 2026-11-30 is a Monday, the first day of ISO week 49.
        assert_eq!(
            Period::Week.of(at(2026, 11, 30, 0, 0)),
            Some(Reason::Weekly("2026-W49".into()))
        );
        assert_eq!(
            Period::Week.of(at(2026, 11, 29, 23, 59)),
            Some(Reason::Weekly("2026-W48".into()))
        );
    }

    #[test]
    fn an_empty_policy_keeps_only_the_newest() {
        let (backups, now) = calendar();
        assert!(Policy::default().is_empty());
        assert_eq!(
            kept(&Policy::default(), &backups, now),
            vec![at(2026, 11, 30, 14, 15)]
        );
        let d = decide(&Policy::default(), now, &backups);
        assert_eq!(d[0].kept_by, vec![Reason::Newest]);
        assert!(d[1..].iter().all(|d| !d.kept()));
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let (backups, now) = calendar();
        let p = Policy {
            last: Some(5),
            ..Policy::default()
        };
        let want: Vec<Timestamp> = (10..=14).rev().map(|h| at(2026, 11, 30, h, 15)).collect();
        assert_eq!(kept(&p, &backups, now), want);
    }

    #[test]
    fn keep_hourly_keeps_the_newest_of_each_of_the_newest_hours() {
        let (backups, now) = calendar();
        let p = Policy {
            hourly: Some(30),
            ..Policy::default()
        };
        // 15 hours of the 30th (14 down to 0), then 15 of the 29th (23 down to 9); in the hour
        // 02 of those days the 02:15 backup, not the nightly 02:00 one, is the hour's newest.
        let mut want: Vec<Timestamp> = (0..=14).rev().map(|h| at(2026, 11, 30, h, 15)).collect();
        want.extend((9..=23).rev().map(|h| at(2026, 11, 29, h, 15)));
        assert_eq!(kept(&p, &backups, now), want);
        let p = Policy {
            hourly: Some(40),
            ..Policy::default()
        };
        let got = kept(&p, &backups, now);
        assert_eq!(got.len(), 40);
        // Hours with no backup are not counted: after the 29th's 00:15 come the nights.
        assert_eq!(got[38], at(2026, 11, 29, 0, 15));
        assert_eq!(got[39], nightly(2026, 11, 28));
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_day() {
        let (backups, now) = calendar();
        let p = Policy {
            daily: Some(7),
            ..Policy::default()
        };
        let want = vec![
            at(2026, 11, 30, 14, 15),
            at(2026, 11, 29, 23, 15),
            nightly(2026, 11, 28),
            nightly(2026, 11, 27),
            nightly(2026, 11, 26),
            nightly(2026, 11, 25),
            nightly(2026, 11, 24),
        ];
        assert_eq!(kept(&p, &backups, now), want);
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        let (backups, now) = calendar();
        let p = Policy {
            weekly: Some(4),
            ..Policy::default()
        };
        // Weeks end on Sundays: 2026-11-29, -22, -15 (W48, W47, W46); W49 began on the 30th.
        let want = vec![
            at(2026, 11, 30, 14, 15),
            at(2026, 11, 29, 23, 15),
            nightly(2026, 11, 22),
            nightly(2026, 11, 15),
        ];
        assert_eq!(kept(&p, &backups, now), want);
        // 2024-12-30 (a Monday) is in 2025-W01; 2024-12-29 ends 2024-W52.
        let d = decide(
            &Policy {
                weekly: Some(200),
                ..Policy::default()
            },
            now,
            &backups,
        );
        let reason_of = |t: Timestamp| {
            let id = backups.iter().find(|b| b.time == t).unwrap().id;
            d.iter().find(|d| d.id == id).unwrap().kept_by.clone()
        };
        assert_eq!(
            reason_of(nightly(2025, 1, 5)),
            vec![Reason::Weekly("2025-W01".into())]
        );
        assert_eq!(
            reason_of(nightly(2024, 12, 29)),
            vec![Reason::Weekly("2024-W52".into())]
        );
        assert_eq!(reason_of(nightly(2024, 12, 30)), vec![]);
    }

    #[test]
    fn keep_monthly_and_yearly_keep_the_last_of_each_period() {
        let (backups, now) = calendar();
        let p = Policy {
            monthly: Some(4),
            ..Policy::default()
        };
        let want = vec![
            at(2026, 11, 30, 14, 15),
            nightly(2026, 10, 31),
            nightly(2026, 9, 30),
            nightly(2026, 8, 31),
        ];
        assert_eq!(kept(&p, &backups, now), want);
        let p = Policy {
            yearly: Some(10),
            ..Policy::default()
        };
        // Only three years have backups: three kept, however many are asked for.
        let want = vec![
            at(2026, 11, 30, 14, 15),
            nightly(2025, 12, 31),
            nightly(2024, 12, 31),
        ];
        assert_eq!(kept(&p, &backups, now), want);
    }

    #[test]
    fn keep_within_counts_back_from_the_newest_backup_and_older_than_from_now() {
        let (backups, now) = calendar();
        let p = Policy {
            within_ms: Some(2 * DAY),
            ..Policy::default()
        };
        // From 2026-11-28T14:15: the 39 hourly and the nights of the 29th and the 30th (the
        // 28th's was at 02:00, before the span).
        let got = kept(&p, &backups, now);
        assert_eq!(got.len(), 39 + 2);
        assert_eq!(*got.last().unwrap(), at(2026, 11, 29, 0, 15));
        // A site whose backups stopped a year ago: within still keeps its last two days...
        let stopped: Vec<Counted> = backups
            .iter()
            .copied()
            .filter(|b| b.time <= nightly(2025, 11, 30))
            .collect();
        let p = Policy {
            within_ms: Some(2 * DAY),
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, &stopped, now),
            vec![
                nightly(2025, 11, 30),
                nightly(2025, 11, 29),
                nightly(2025, 11, 28)
            ]
        );
        // ...while --older-than, which counts from now, keeps only the newest (always kept).
        let p = Policy {
            younger_than_ms: Some(90 * DAY),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &stopped, now), vec![nightly(2025, 11, 30)]);
        let d = decide(&p, now, &stopped);
        assert_eq!(d[0].kept_by, vec![Reason::Newest]);
        // On the full calendar: 90 days before 14:30 on the 30th is 2026-09-01T14:30.
        let got = kept(&p, &backups, now);
        assert_eq!(*got.last().unwrap(), nightly(2026, 9, 2));
        // Nights of 2 to 30 September, all of October and November: 29 + 31 + 30.
        assert_eq!(got.len(), 90 + 39);
    }

    #[test]
    fn rules_combine_with_or_and_each_decision_names_its_rules() {
        let (backups, now) = calendar();
        let p = Policy {
            last: Some(2),
            daily: Some(7),
            weekly: Some(4),
            monthly: Some(12),
            yearly: Some(3),
            ..Policy::default()
        };
        let got: BTreeSet<Timestamp> = kept(&p, &backups, now).into_iter().collect();
        let mut want = BTreeSet::new();
        for rule in [
            Policy {
                last: Some(2),
                ..Policy::default()
            },
            Policy {
                daily: Some(7),
                ..Policy::default()
            },
            Policy {
                weekly: Some(4),
                ..Policy::default()
            },
            Policy {
                monthly: Some(12),
                ..Policy::default()
            },
            Policy {
                yearly: Some(3),
                ..Policy::default()
            },
        ] {
            want.extend(kept(&rule, &backups, now));
        }
        assert_eq!(got, want);
        // 2 last (14:15, 13:15), 7 days (14:15 and 23:15 already... listed), 4 weeks, 12
        // months, 3 years, overlapping: counted by hand.
        // last: 30T14, 30T13. daily: 30T14, 29T23, 28..24. weekly: 30T14, 29T23, 22, 15.
        // monthly: 30T14, Oct 31, Sep 30, Aug 31, Jul 31, Jun 30, May 31, Apr 30, Mar 31,
        // Feb 28, Jan 31, 2025-12-31. yearly: 30T14, 2025-12-31, 2024-12-31.
        assert_eq!(got.len(), 2 + 6 + 2 + 11 + 1);
        let d = decide(&p, now, &backups);
        assert_eq!(
            d[0].kept_by,
            vec![
                Reason::Newest,
                Reason::Last,
                Reason::Daily("2026-11-30".into()),
                Reason::Weekly("2026-W49".into()),
                Reason::Monthly("2026-11".into()),
                Reason::Yearly("2026".into()),
            ]
        );
        let dec_2025 = {
            let id = backups
                .iter()
                .find(|b| b.time == nightly(2025, 12, 31))
                .unwrap()
                .id;
            d.iter().find(|d| d.id == id).unwrap().kept_by.clone()
        };
        assert_eq!(
            dec_2025,
            vec![
                Reason::Monthly("2025-12".into()),
                Reason::Yearly("2025".into())
            ]
        );
        assert_eq!(
            Reason::Monthly("2025-12".into()).to_string(),
            "monthly 2025-12"
        );
    }

    #[test]
    fn a_backup_signed_in_the_future_displaces_nothing() {
        let (mut backups, now) = calendar();
        let real_newest = at(2026, 11, 30, 14, 15);
        // A genuine backup from a host whose clock runs a year fast, and one from a host a
        // minute fast (within the slack: an ordinary backup).
        let future = Counted {
            id: 100_000,
            time: at(2027, 11, 30, 0, 0),
        };
        let slightly = Counted {
            id: 100_001,
            time: Timestamp(now.millis() + 60_000),
        };
        backups.push(future);
        for policy in [
            Policy::default(),
            Policy {
                last: Some(1),
                ..Policy::default()
            },
            Policy {
                daily: Some(1),
                ..Policy::default()
            },
            Policy {
                yearly: Some(1),
                ..Policy::default()
            },
            Policy {
                within_ms: Some(HOUR),
                ..Policy::default()
            },
        ] {
            let d = decide(&policy, now, &backups);
            let of = |id: i64| d.iter().find(|d| d.id == id).unwrap().kept_by.clone();
            assert_eq!(of(future.id), vec![Reason::Future], "{policy}");
            let newest_id = backups.iter().find(|b| b.time == real_newest).unwrap().id;
            assert!(of(newest_id).contains(&Reason::Newest), "{policy}");
            assert!(of(newest_id).len() >= 2 || policy.is_empty(), "{policy}");
        }
        backups.push(slightly);
        let d = decide(
            &Policy {
                last: Some(1),
                ..Policy::default()
            },
            now,
            &backups,
        );
        let of = |id: i64| d.iter().find(|d| d.id == id).unwrap().kept_by.clone();
        assert_eq!(of(slightly.id), vec![Reason::Newest, Reason::Last]);
    }

    #[test]
    fn the_newest_survives_any_policy_and_ties_go_to_the_later_entry() {
        let (backups, now) = calendar();
        let policies = [
            Policy::default(),
            Policy {
                younger_than_ms: Some(0),
                ..Policy::default()
            },
            Policy {
                last: Some(0),
                daily: Some(0),
                ..Policy::default()
            },
            Policy {
                within_ms: Some(0),
                ..Policy::default()
            },
        ];
        for p in policies {
            let d = decide(&p, now, &backups);
            assert_eq!(d.iter().filter(|d| d.kept()).count(), 1, "{p}");
            assert_eq!(d[0].id, backups.last().unwrap().id, "{p}");
            assert!(d[0].kept_by.contains(&Reason::Newest));
        }
        let twins = [
            Counted {
                id: 7,
                time: Timestamp(1_000),
            },
            Counted {
                id: 9,
                time: Timestamp(1_000),
            },
        ];
        let d = decide(&Policy::default(), Timestamp(2_000), &twins);
        assert_eq!((d[0].id, d[0].kept()), (9, true));
        assert_eq!((d[1].id, d[1].kept()), (7, false));
        assert!(decide(&Policy::default(), now, &[]).is_empty());
    }

    #[test]
    fn policies_read_as_the_flags_write_them() {
        let p = Policy {
            daily: Some(7),
            weekly: Some(4),
            within_ms: Some(2 * DAY),
            younger_than_ms: Some(90 * DAY),
            ..Policy::default()
        };
        assert_eq!(
            p.to_string(),
            "keep daily 7, keep weekly 4, keep within 2d of the newest, delete older than 90d"
        );
        assert_eq!(Policy::default().to_string(), "keep the newest only");
        assert_eq!(span(2 * 7 * DAY), "2w");
        assert_eq!(span(36 * HOUR), "36h");
        assert_eq!(parse_span("90d"), Some(90 * DAY));
        assert_eq!(parse_span("2w"), Some(14 * DAY));
        assert_eq!(parse_span("12h"), Some(12 * HOUR));
        assert_eq!(parse_span("30m"), Some(30 * 60_000));
        for bad in ["90", "d", "5y", "-1d", "1.5d", "", "99999999999999999999d"] {
            assert_eq!(parse_span(bad), None, "{bad}");
        }
    }
}
