//! Unix timestamps as the DOS date and time FAT directory entries store (UTC, 1980..2107,
//! two-second resolution).

/// A broken-down UTC date and time inside the range FAT can store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DosDateTime {
    /// Year, 1980..=2107.
    pub year: u16,
    /// Month, 1..=12.
    pub month: u16,
    /// Day of the month, 1..=31.
    pub day: u16,
    /// Hour, 0..=23.
    pub hour: u16,
    /// Minute, 0..=59.
    pub minute: u16,
    /// Second, 0..=58, even (FAT keeps two-second steps).
    pub second: u16,
}

impl DosDateTime {
    /// 1980-01-01 00:00:00, the earliest FAT date.
    pub const MIN: DosDateTime = DosDateTime {
        year: 1980,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
    };

    /// 2107-12-31 23:59:58, the latest FAT date.
    pub const MAX: DosDateTime = DosDateTime {
        year: 2107,
        month: 12,
        day: 31,
        hour: 23,
        minute: 59,
        second: 58,
    };
}

/// Converts seconds since 1970-01-01 UTC to a FAT date and time, clamping to the FAT range
/// and rounding seconds down to even.
pub fn from_unix(seconds: i64) -> DosDateTime {
    const MIN_UNIX: i64 = 315_532_800; // 1980-01-01T00:00:00Z
    const MAX_UNIX: i64 = 4_354_819_198; // 2107-12-31T23:59:58Z
    if seconds < MIN_UNIX {
        return DosDateTime::MIN;
    }
    if seconds > MAX_UNIX {
        return DosDateTime::MAX;
    }
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // In range by the clamping above, so the narrowing casts are exact.
    DosDateTime {
        year: year as u16,
        month: month as u16,
        day: day as u16,
        hour: (in_day / 3600) as u16,
        minute: (in_day % 3600 / 60) as u16,
        second: (in_day % 60 / 2 * 2) as u16,
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(year: u16, month: u16, day: u16, hour: u16, minute: u16, second: u16) -> DosDateTime {
        DosDateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn converts_known_instants() {
        // `date -u -d @1700000000` → 2023-11-14 22:13:20
        assert_eq!(from_unix(1_700_000_000), at(2023, 11, 14, 22, 13, 20));
        // Leap day, odd second rounded down.
        assert_eq!(from_unix(951_782_401), at(2000, 2, 29, 0, 0, 0));
        assert_eq!(from_unix(315_532_800), DosDateTime::MIN);
        assert_eq!(from_unix(4_354_819_198), DosDateTime::MAX);
    }

    #[test]
    fn clamps_outside_the_fat_range() {
        assert_eq!(from_unix(0), DosDateTime::MIN);
        assert_eq!(from_unix(-5), DosDateTime::MIN);
        assert_eq!(from_unix(i64::MAX), DosDateTime::MAX);
    }
}
