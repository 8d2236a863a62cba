//! Value decoding (`encoding`, beyond ASCP): how a fetched value becomes file contents.

use std::fmt;

use base64::Engine as _;

/// How a value is decoded before it is written. ASCP writes values as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// As stored.
    #[default]
    Raw,
    /// Base64 (standard or URL-safe alphabet, padding optional, whitespace ignored).
    Base64,
    /// Hexadecimal digits (whitespace ignored), nothing else.
    Hex,
    /// As stored, but the value must be valid UTF-8 text.
    Utf8,
}

impl Encoding {
    /// Parses `encoding` (unset means [`Encoding::Raw`]).
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        let Some(value) = value else { return Ok(Self::Raw) };
        match value.to_ascii_lowercase().as_str() {
            "base64" => Ok(Self::Base64),
            "hex" => Ok(Self::Hex),
            "utf-8" | "utf8" => Ok(Self::Utf8),
            "none" | "raw" => Ok(Self::Raw),
            _ => Err(format!("encoding {value:?} is unknown: use \"base64\", \"hex\" or \"utf-8\"")),
        }
    }

    /// Decodes `bytes`; the error says what is wrong, never the value.
    pub fn decode(self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let compact = || bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect::<Vec<u8>>();
        match self {
            Self::Raw => Ok(bytes.to_vec()),
            Self::Utf8 => match std::str::from_utf8(bytes) {
                Ok(_) => Ok(bytes.to_vec()),
                Err(e) => Err(format!("the value is not valid UTF-8 (at byte {})", e.valid_up_to())),
            },
            Self::Base64 => {
                let text = compact();
                let engines = [
                    base64::engine::general_purpose::STANDARD,
                    base64::engine::general_purpose::STANDARD_NO_PAD,
                    base64::engine::general_purpose::URL_SAFE,
                    base64::engine::general_purpose::URL_SAFE_NO_PAD,
                ];
                engines
                    .iter()
                    .find_map(|engine| engine.decode(&text).ok())
                    .ok_or_else(|| "the value is not valid base64".to_owned())
            }
            Self::Hex => {
                let text = compact();
                if text.len() % 2 != 0 {
                    return Err("the value is not valid hex (odd number of digits)".into());
                }
                // Digit by digit: `u8::from_str_radix` would take "+a" as a number.
                let digit =
                    |b: u8| char::from(b).to_digit(16).ok_or("the value is not valid hex (only 0-9, a-f)");
                text.chunks(2).map(|pair| Ok((digit(pair[0])? * 16 + digit(pair[1])?) as u8)).collect()
            }
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Raw => "raw bytes",
            Self::Base64 => "base64",
            Self::Hex => "hex",
            Self::Utf8 => "UTF-8",
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::class::*;

    #[test]
    fn decoding() {
        type Case<'a> = (Encoding, &'a [u8], Result<&'a [u8], ()>);
        let cases: &[Case] = &[
            (Encoding::Raw, b"\xff", Ok(b"\xff")),
            (Encoding::Utf8, b"caf\xc3\xa9", Ok(b"caf\xc3\xa9")),
            (Encoding::Utf8, b"\xff", Err(())),
            (Encoding::Base64, b"aGVsbG8=", Ok(b"hello")),
            (Encoding::Base64, b"aGVs\nbG8", Ok(b"hello")),
            (Encoding::Base64, b"_-8", Ok(&[0xff, 0xef])),
            (Encoding::Base64, b"!!", Err(())),
            (Encoding::Hex, b"CAFE 00", Ok(&[0xca, 0xfe, 0x00])),
            (Encoding::Hex, b"abc", Err(())),
            (Encoding::Hex, b"zz", Err(())),
            (Encoding::Hex, b"+a+b", Err(())),
            (Encoding::Hex, b"-a", Err(())),
            (Encoding::Hex, b"0x", Err(())),
            (Encoding::Hex, "é".as_bytes(), Err(())),
        ];
        for (encoding, input, want) in cases {
            let got = encoding.decode(input).map_err(|_| ());
            assert_eq!(got.as_deref().map_err(|_| ()), *want, "{encoding:?} {input:?}");
        }
    }

    #[test]
    fn parsing() {
        for (input, want) in [
            (None, Ok(Encoding::Raw)),
            (Some("BASE64"), Ok(Encoding::Base64)),
            (Some("utf8"), Ok(Encoding::Utf8)),
            (Some("rot13"), Err(())),
            (Some(" hex"), Err(())),
        ] {
            assert_eq!(Encoding::parse(input).map_err(|_| ()), want, "{input:?}");
        }
    }
}
