//! Looking through wrapped errors: a leaf helper for every stage that classifies an SDK's
//! or a client's error by one fact inside it.

/// The first error of type `T` in `error`'s chain of causes: how a stage looks past an
/// SDK's or a client's wrapping for the one fact it classifies by (an I/O error kind, a size
/// limit, a refused certificate), without showing the wrapper's text. The walk enters the
/// error an `io::Error` wraps, which that `io::Error`'s own `source()` skips.
pub fn find_cause<'e, T: std::error::Error + 'static>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        cause = match e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}
