//! The commerce server's private helpers: money and return windows. Its tools are
//! played on the customer_support world in `scenarios/worlds/commerce.rs`.

use super::{money, return_deadline};

#[test]
fn money_groups_thousands_and_keeps_cents() {
    assert_eq!(money(0), "$0.00");
    assert_eq!(money(4599), "$45.99");
    assert_eq!(money(123_456_789), "$1,234,567.89");
    assert_eq!(money(-1495), "-$14.95");
    let d = chrono::NaiveDate::from_ymd_opt(2026, 1, 28).expect("date");
    assert_eq!(return_deadline(d, 30).to_string(), "2026-02-27");
}
