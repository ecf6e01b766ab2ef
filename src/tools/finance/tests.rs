//! The finance server's private helpers: money, FX and invoice numbers. Its tools are
//! played on the finance_ops world in `scenarios/worlds/finance.rs`.

use super::{money, same_invoice_number, to_usd};

#[test]
fn money_fx_and_invoice_numbers() {
    assert_eq!(money(123_456_789, "USD"), "USD 1,234,567.89");
    assert_eq!(money(-1495, "EUR"), "-EUR 14.95");
    assert_eq!(to_usd(240_000, 10_850), 260_400);
    assert_eq!(to_usd(6_000, 12_700), 7_620);
    assert_eq!(to_usd(1, 5_000), 1, "half a cent rounds up");
    assert_eq!(to_usd(i64::MAX, i64::MAX), i64::MAX, "saturates");
    assert!(same_invoice_number("AL-007781", "al 7781"));
    assert!(same_invoice_number("INV-100", "inv100"));
    assert!(!same_invoice_number("AL-7781", "AL-7791"));
    assert!(!same_invoice_number("", "-"));
}
