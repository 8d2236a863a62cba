//! The SecretProviderClass parser on arbitrary `objects` text: it must never panic, stay
//! within its budget (libFuzzer's -rss_limit_mb and -timeout catch what would not), and what
//! it accepts must be safe to write.
#![no_main]

use csi_provider_aws::class::naming::check_file_path;
use csi_provider_aws::class::{Parameters, SecretProviderClass};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let params = Parameters { objects: Some(text.to_owned()), region: Some("us-east-1".into()), ..Parameters::default() };
    if let Ok(class) = SecretProviderClass::parse(&params, 0o644) {
        let mut seen = std::collections::HashSet::new();
        for (file, mode) in class.files() {
            assert!(check_file_path(file).is_ok(), "unsafe path accepted: {file:?}");
            assert!(mode <= 0o777);
            assert!(seen.insert(file.to_owned()), "duplicate file accepted: {file:?}");
        }
    }
    let _ = csi_provider_aws::commands::check::check(text, Some("us-east-1"));
});
