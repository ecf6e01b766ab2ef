//! Amounts as the shop and the finance team write them: integer cents, shown with
//! thousands separators and two decimals, so no float ever decides a business rule.

/// `1,234.56` with a `-` for a negative amount, and `prefix` before the digits:
/// `amount(-123456, "$")` is `-$1,234.56`.
pub fn amount(cents: i64, prefix: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let units = (abs / 100).to_string();
    let mut grouped = String::with_capacity(units.len() + units.len() / 3);
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{prefix}{grouped}.{:02}", abs % 100)
}

#[cfg(test)]
mod tests {
    use super::amount;

    #[test]
    fn amounts_are_grouped_by_thousands_with_two_decimals() {
        assert_eq!(amount(0, "$"), "$0.00");
        assert_eq!(amount(5, "$"), "$0.05");
        assert_eq!(amount(123_456, "$"), "$1,234.56");
        assert_eq!(amount(-123_456_789, "USD "), "-USD 1,234,567.89");
        assert_eq!(amount(i64::MIN, ""), "-92,233,720,368,547,758.08");
    }
}
