//! Parsing as ASCP's Go code does, so that classes written for ASCP mean the same here:
//! empty strings, `strconv.ParseBool`, file permissions, and case-insensitive keys.

/// ASCP's rule for every string field and parameter (Go's `len(x) == 0`): absent, null and
/// `""` mean "unset"; any other value is used exactly as written, spaces included.
pub fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Go's `strconv.ParseBool`, as ASCP reads `usePodIdentity`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean field: unset is `false`; `what` names it in the error.
pub fn parse_bool_field(what: &str, value: &Option<String>) -> Result<bool, String> {
    set(value).map_or(Ok(false), |v| {
        parse_bool(v).ok_or_else(|| format!("{what} {v:?} is not a boolean: use \"true\" or \"false\""))
    })
}

/// A `filePermission`: four octal digits, as ASCP's `^[0-7]{4}$`, and at most 0777.
pub fn parse_file_permission(value: &str) -> Result<u32, String> {
    let valid = value.len() == 4 && value.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(value, 8) {
        Ok(mode) if valid && mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "filePermission {value:?} is invalid: use four octal digits from \"0000\" to \
             \"0777\", quoted in YAML (for example \"0600\")"
        )),
    }
}

/// Whether a written key means `known`: Go's JSON decoding (behind ASCP's YAML) matches
/// field names ignoring case.
pub fn same_key(written: &str, known: &str) -> bool {
    written.eq_ignore_ascii_case(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_unset_and_nothing_else_does() {
        let cases: &[(Option<&str>, Option<&str>)] =
            &[(None, None), (Some(""), None), (Some(" "), Some(" ")), (Some("x"), Some("x"))];
        for (input, want) in cases {
            assert_eq!(set(&input.map(str::to_owned)), *want, "{input:?}");
        }
    }

    #[test]
    fn booleans_and_permissions() {
        for (input, want) in
            [("true", Some(true)), ("T", Some(true)), ("0", Some(false)), ("yes", None), (" true", None)]
        {
            assert_eq!(parse_bool(input), want, "{input:?}");
        }
        assert_eq!(parse_bool_field("x", &Some(String::new())), Ok(false));
        assert!(
            parse_bool_field("recursive", &Some("maybe".into())).unwrap_err().contains("recursive \"maybe\"")
        );
        for (input, want) in
            [("0600", Ok(0o600)), ("0777", Ok(0o777)), ("600", Err(())), ("1777", Err(())), ("0800", Err(()))]
        {
            assert_eq!(parse_file_permission(input).map_err(|_| ()), want, "{input:?}");
        }
    }
}
