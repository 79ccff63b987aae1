//! UTC timestamps: milliseconds since the Unix epoch, shown as RFC 3339 text.

/// An instant in UTC, in milliseconds since the Unix epoch: how every time is kept in pgseal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time from the system clock (the epoch if the clock is before it).
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }

    /// The instant `secs` seconds after the Unix epoch.
    pub fn from_unix_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, rounded down.
    pub fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`
    pub fn rfc3339(self) -> String {
        rfc3339_millis(self.0.max(0) as u64)
    }

    /// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]]` with an optional `Z` (UTC only; a
    /// space may stand for the `T`).
    pub fn parse(text: &str) -> Option<Timestamp> {
        let t = text.trim().trim_end_matches(['Z', 'z']);
        let (date, time) = match t.split_once(['T', 't', ' ']) {
            Some((d, tm)) => (d, Some(tm)),
            None => (t, None),
        };
        let mut d = date.splitn(3, '-');
        let y: i64 = d.next()?.parse().ok()?;
        let m: u32 = d.next()?.parse().ok()?;
        let day: u32 = d.next()?.parse().ok()?;
        if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
            return None;
        }
        let mut ms = days_from_civil(y, m, day) * 86_400_000;
        if let Some(time) = time {
            let (hms, frac) = match time.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (time, None),
            };
            let mut parts = hms.split(':');
            let h: i64 = parts.next()?.parse().ok()?;
            let mi: i64 = parts.next()?.parse().ok()?;
            let s: i64 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
            if parts.next().is_some() || h > 23 || mi > 59 || s > 60 {
                return None;
            }
            ms += ((h * 60 + mi) * 60 + s) * 1000;
            if let Some(f) = frac {
                let digits: String = f.chars().take(3).collect();
                let scale = 10i64.pow(3 - digits.len() as u32);
                ms += digits.parse::<i64>().ok()? * scale;
            }
        }
        Some(Timestamp(ms))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of `civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
        ms % 1000
    )
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_secs(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Days-to-civil conversion (proleptic Gregorian), after Howard Hinnant's published algorithm.
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_inverts_formatting() {
        for ms in [0i64, 951_782_400_123, 1_765_965_760_000, 4_102_444_799_999] {
            assert_eq!(
                Timestamp::parse(&Timestamp(ms).rfc3339()),
                Some(Timestamp(ms))
            );
        }
        assert_eq!(
            Timestamp::parse("2025-12-17"),
            Some(Timestamp(1_765_929_600_000))
        );
        assert_eq!(
            Timestamp::parse("2025-12-17 10:02"),
            Some(Timestamp(1_765_965_720_000))
        );
        assert_eq!(Timestamp::parse("2025-13-01"), None);
        assert_eq!(Timestamp::parse("yesterday"), None);
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(1_765_965_760), "2025-12-17T10:02:40Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}
