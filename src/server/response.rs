//! The driver's `MountResponse` from a mount's outcome: one object version per file (or a
//! placeholder), the files themselves unless the provider wrote them, and the driver's size
//! limit checked on the encoded message.

use prost::Message;

use crate::error::MountError;
use crate::mount::MountOutcome;
use crate::proto::{File, MountResponse, ObjectVersion};

/// The object version returned when a class has no objects: the driver fails a mount whose
/// response has no object versions at all (ASCP issue 529).
pub const NO_OBJECTS_ID: &str = "csi-provider-aws:no-objects";

/// The largest encoded MountResponse the driver accepts: grpc-go's default receive limit,
/// which the driver keeps. `--max-mount-bytes` counts file contents only; names and object
/// versions count here too.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The response for `outcome`, refused when its encoding exceeds `limit` bytes.
pub fn response(outcome: MountOutcome, limit: usize) -> Result<MountResponse, MountError> {
    let rendered = outcome.rendered;
    let contents = rendered.size();
    let mut object_version: Vec<ObjectVersion> = rendered
        .files
        .iter()
        .map(|f| ObjectVersion { id: f.file.path.clone(), version: f.version.clone() })
        .collect();
    if object_version.is_empty() {
        object_version.push(ObjectVersion { id: NO_OBJECTS_ID.into(), version: "0".into() });
    }
    let files = if outcome.written {
        Vec::new()
    } else {
        rendered
            .files
            .into_iter()
            .map(|f| File {
                path: f.file.path,
                mode: f.file.mode as i32,
                contents: f.file.contents.into_vec(),
            })
            .collect()
    };
    let response = MountResponse { object_version, error: None, files };
    let encoded = response.encoded_len();
    if encoded > limit {
        return Err(MountError::ResponseTooLarge { encoded, contents, limit });
    }
    Ok(response)
}
