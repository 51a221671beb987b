//! Cron schedules as Kubernetes CronJobs accept them.

/// Accepts the five-field cron syntax Kubernetes CronJobs take, and the `@hourly`-style macros.
pub fn validate_cron(s: &str) -> Result<(), String> {
    const MACROS: [&str; 7] = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    if MACROS.contains(&s) {
        return Ok(());
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "schedule {s:?} must have five fields (minute hour day-of-month month day-of-week) or be a macro such as @daily"
        ));
    }
    const RANGES: [(u32, u32, &str); 5] = [
        (0, 59, "minute"),
        (0, 23, "hour"),
        (1, 31, "day of month"),
        (1, 12, "month"),
        (0, 7, "day of week"),
    ];
    const NAMES: [&str; 19] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "sun",
        "mon", "tue", "wed", "thu", "fri", "sat",
    ];
    for (field, (lo, hi, what)) in fields.iter().zip(RANGES) {
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (part, None),
            };
            if let Some(step) = step
                && step.parse::<u32>().map_or(true, |n| n == 0)
            {
                return Err(format!(
                    "schedule {s:?}: bad step {step:?} in the {what} field"
                ));
            }
            if range == "*" || range == "?" {
                continue;
            }
            for bound in range.split('-') {
                let ok = match bound.parse::<u32>() {
                    Ok(n) => (lo..=hi).contains(&n),
                    Err(_) => NAMES.contains(&bound.to_ascii_lowercase().as_str()),
                };
                if !ok {
                    return Err(format!(
                        "schedule {s:?}: {bound:?} is out of range for the {what} field ({lo}-{hi})"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_cron() {
        for ok in [
            "* * * * *",
            "*/5 0-6 1,15 jan-mar mon-fri",
            "@daily",
            "0 0 * * 7",
        ] {
            assert!(validate_cron(ok).is_ok(), "{ok}");
        }
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "@sometimes",
        ] {
            assert!(validate_cron(bad).is_err(), "{bad}");
        }
    }
}
