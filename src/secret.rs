//! Types that carry secret material: their `Debug` never prints it and they zeroize on drop.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Secret bytes (a secret value, a rendered file's contents). Prints as `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of the bytes; they are wiped when the value is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret bytes; callers must not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8 text, if they are.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Moves the bytes out (for the gRPC response, which owns a plain `Vec`).
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

impl From<String> for SecretBytes {
    fn from(s: String) -> Self {
        Self(s.into_bytes())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// A secret string (a service-account token, a session token). Prints as `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Hash, Zeroize, ZeroizeOnDrop, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The secret text; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let bytes = SecretBytes::from("hunter2".to_string());
        let text = SecretString::new("tok-123".into());
        assert_eq!(format!("{bytes:?}"), "<redacted 7 bytes>");
        assert_eq!(format!("{text:?}"), "<redacted>");
        assert!(!format!("{:?}", Some(&text)).contains("tok"));
    }

    #[test]
    fn into_vec_moves_the_bytes_out() {
        let bytes = SecretBytes::new(b"abc".to_vec());
        assert_eq!(bytes.into_vec(), b"abc");
    }
}
