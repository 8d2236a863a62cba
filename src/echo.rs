//! User-supplied text echoed back in messages, cut to a bounded length. A mount's error
//! travels in a gRPC header (the pod's events): a client refuses a header over 16 KiB (8 KiB
//! at random for grpcio), and a long name makes an unreadable event in any case.

/// Most characters of one echoed string.
pub const MAX_ECHOED_CHARS: usize = 256;
/// Most bytes of a whole status message: well under the 8 KiB where gRPC clients start to
/// refuse headers, whatever the input.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// `text` quoted as `{:?}` shows it; beyond [`MAX_ECHOED_CHARS`] characters, cut with an
/// ellipsis and its length.
pub fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHOED_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}... ({} characters)", &text[..cut], text.chars().count()),
    }
}

/// `message` cut to [`MAX_MESSAGE_BYTES`] at a character boundary, saying how long it was.
pub fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let cut = message.floor_char_boundary(MAX_MESSAGE_BYTES - 64);
    format!("{}... (message cut; {} bytes in all)", &message[..cut], message.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_its_length_and_short_text_is_quoted_whole() {
        assert_eq!(quoted("db/password"), "\"db/password\"");
        let long = "é".repeat(20_000);
        let echoed = quoted(&long);
        assert!(echoed.ends_with("... (20000 characters)"), "{echoed}");
        assert_eq!(echoed.chars().filter(|c| *c == 'é').count(), MAX_ECHOED_CHARS);
        let message = bounded("x".repeat(100_000));
        assert!(message.len() <= MAX_MESSAGE_BYTES && message.ends_with("100000 bytes in all)"), "{message}");
        assert_eq!(bounded("short".into()), "short");
        let multibyte = bounded("é".repeat(10_000));
        assert!(multibyte.len() <= MAX_MESSAGE_BYTES);
    }
}
