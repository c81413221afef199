//! Whole numbers written with a fraction or an exponent, respelled as
//! integers for [`super::ApiJson`].

/// The JSON text `bytes` with every whole number written with a fraction
/// or an exponent (`2.0`, `1e3`, `-2.50e1`) written as that integer;
/// `None` when there is no such number. The numbers are read as text, not
/// as `f64`, so that every digit counts (`2140289134254757.0` is whole,
/// though the nearest `f64` a fast parser finds may not be). What is not
/// JSON is left for the deserializer to refuse.
pub(super) fn integers_respelled(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        match bytes[at] {
            b'"' => {
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at = (at + 1).min(bytes.len());
                out.extend_from_slice(&bytes[start..at]);
            }
            b'-' | b'0'..=b'9' => {
                while at < bytes.len()
                    && matches!(bytes[at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    at += 1;
                }
                match whole_number(&bytes[start..at]) {
                    Some(integer) => {
                        out.extend_from_slice(integer.to_string().as_bytes());
                        changed = true;
                    }
                    None => out.extend_from_slice(&bytes[start..at]),
                }
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    changed.then_some(out)
}

/// The integer that the JSON number `token` stands for, when it has a
/// fraction or an exponent, is whole, and fits an `i64` or a `u64`.
fn whole_number(token: &[u8]) -> Option<i128> {
    let text = std::str::from_utf8(token).ok()?;
    let (negative, unsigned) = text
        .strip_prefix('-')
        .map_or((false, text), |rest| (true, rest));
    let (mantissa, exponent) = unsigned
        .split_once(['e', 'E'])
        .map_or((unsigned, None), |(mantissa, exponent)| {
            (mantissa, Some(exponent))
        });
    let (integral, fraction) = mantissa
        .split_once('.')
        .map_or((mantissa, None), |(integral, fraction)| {
            (integral, Some(fraction))
        });
    let digits_only = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let exponent_digits = exponent.map(|e| e.strip_prefix(['+', '-']).unwrap_or(e));
    if (fraction.is_none() && exponent.is_none())
        || !digits_only(integral)
        || !fraction.is_none_or(digits_only)
        || !exponent_digits.is_none_or(digits_only)
    {
        return None;
    }
    let (fraction, exponent) = (fraction.unwrap_or(""), exponent.unwrap_or("0"));
    // The value is `digits` × 10^`scale`.
    let mut digits = format!("{integral}{fraction}");
    let mut scale = exponent
        .parse::<i64>()
        .ok()?
        .checked_sub(i64::try_from(fraction.len()).ok()?)?;
    let significant = digits.trim_start_matches('0').len();
    if significant == 0 {
        return Some(0);
    }
    digits.drain(..digits.len() - significant);
    while scale < 0 && digits.ends_with('0') {
        digits.pop();
        scale += 1;
    }
    // Past 20 digits, nothing fits a u64.
    if scale < 0 || (digits.len() as i64).saturating_add(scale) > 20 {
        return None;
    }
    let magnitude = digits
        .parse::<i128>()
        .ok()?
        .checked_mul(10i128.checked_pow(u32::try_from(scale).ok()?)?)?;
    let value = if negative { -magnitude } else { magnitude };
    (i128::from(i64::MIN)..=i128::from(u64::MAX))
        .contains(&value)
        .then_some(value)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn whole_numbers_are_read_from_their_digits() {
        let whole = |token: &str| whole_number(token.as_bytes());
        for (token, value) in [
            ("2.0", 2),
            ("-4.000", -4),
            ("1e3", 1000),
            ("1E+3", 1000),
            ("-2.50e1", -25),
            ("1500e-2", 15),
            ("0.0", 0),
            ("-0e5", 0),
            ("2140289134254757.0", 2_140_289_134_254_757),
            ("18446744073709551615.0", i128::from(u64::MAX)),
            ("-9223372036854775808.0", i128::from(i64::MIN)),
        ] {
            assert_eq!(whole(token), Some(value), "{token}");
        }
        for token in [
            "2",
            "-7",
            "2.5",
            "1e-1",
            "18446744073709551616.0",
            "1e400",
            "1.",
            ".5",
            "1e",
            "--1",
            "1.2.3",
            "1e9223372036854775807",
            "1.5e-9223372036854775808",
        ] {
            assert_eq!(whole(token), None, "{token}");
        }
    }

    #[test]
    fn only_numbers_outside_strings_are_respelled() {
        let respelled = integers_respelled(br#"{"a": [1.0, 2.5, "3.0", "\"4.0"], "b": 5e0}"#);
        assert_eq!(
            respelled.as_deref(),
            Some(&br#"{"a": [1, 2.5, "3.0", "\"4.0"], "b": 5}"#[..])
        );
        assert_eq!(
            integers_respelled(br#"{"a": 1, "b": "2.0", "c": true}"#),
            None
        );
    }

    proptest! {
        #[test]
        fn every_integer_written_with_a_fraction_or_an_exponent_is_read_back(
            n in any::<i64>(),
            zeros in 1usize..4,
            shift in 0u32..4,
        ) {
            let fraction = format!("{n}.{}", "0".repeat(zeros));
            prop_assert_eq!(whole_number(fraction.as_bytes()), Some(i128::from(n)));
            let shifted = i128::from(n) * 10i128.pow(shift);
            let fits = (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&shifted);
            let exponent = format!("{n}e{shift}");
            prop_assert_eq!(whole_number(exponent.as_bytes()), fits.then_some(shifted));
        }
    }
}
