//! The ticketing server's private helpers: shifts, SLAs and the workflow. Its tools are
//! played on the it_helpdesk world in `scenarios/worlds/ticketing.rs`.

use chrono::{DateTime, Utc};

use super::{allowed_transitions, on_shift, sla_hours};

fn at(s: &str) -> DateTime<Utc> {
    crate::tools::parse_datetime(s).expect("time")
}

#[test]
fn shifts_cover_weekdays_and_wrap_past_midnight() {
    assert!(on_shift("08:00-16:00", at("2026-03-10T10:00:00Z")));
    assert!(!on_shift("08:00-16:00", at("2026-03-10T16:00:00Z")));
    assert!(
        !on_shift("08:00-16:00", at("2026-03-14T10:00:00Z")),
        "Saturday"
    );
    assert!(on_shift("16:00-24:00", at("2026-03-10T23:59:00Z")));
    assert!(on_shift("22:00-06:00", at("2026-03-10T02:00:00Z")));
    assert!(!on_shift("22:00-06:00", at("2026-03-10T12:00:00Z")));
    assert!(!on_shift("nonsense", at("2026-03-10T12:00:00Z")));
    assert!(!on_shift("25:00-99:99", at("2026-03-10T12:00:00Z")));
    assert_eq!(sla_hours("P1"), Some(4));
    assert_eq!(sla_hours("P9"), None);
    assert!(allowed_transitions("closed").is_empty());
}
