//! SecretProviderClass: the `spec.parameters` of a class and its `objects`, read within
//! limits, parsed into the object model and validated before any AWS call. Pure: no I/O,
//! every independent problem collected in one run.
//!
//! Modules by concern: [`params`] (the parameters besides `objects`), [`scan`] (limits
//! enforced while the YAML is read), [`raw`] (the YAML as written), [`validate`] (raw ->
//! [`model`]), [`go`] (ASCP's Go parsing rules), [`encoding`], [`arn`], [`naming`], and
//! `cache` (parsed classes and the warnings already logged).

pub mod arn;
mod cache;
mod encoding;
mod go;
mod model;
pub mod naming;
mod params;
mod raw;
mod scan;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;

pub use arn::Arn;
pub use cache::{ClassCache, ParseFailure};
pub use encoding::Encoding;
pub use go::parse_bool as parse_go_bool;
pub use model::{
    Collection, CollectionObject, ExpandJson, JmesPathEntry, NamedObject, ObjectType, SecretObject,
};
pub use naming::PathTranslation;
pub use params::{
    AddressPreference, AssumeRole, AuthMethod, ClassParameters, Parameters, ParseKey, Unread,
    check_region_name,
};
pub use raw::Lines;
pub use scan::{Limits, Positions, ScanError, TooManyObjects, scan};
pub use validate::Claim;

/// A validated SecretProviderClass.
#[derive(Debug, Clone)]
pub struct SecretProviderClass {
    /// The parameters besides `objects`.
    pub parameters: ClassParameters,
    pub objects: Vec<SecretObject>,
    /// Oddities that do not stop a mount (unknown keys, ignored by ASCP too).
    pub warnings: Vec<String>,
}

/// Everything wrong with a SecretProviderClass, each problem naming its object and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassError {
    pub problems: Vec<String>,
    /// Shown after the problems: an unknown key often explains a missing field.
    pub warnings: Vec<String>,
    too_many_objects: Option<TooManyObjects>,
}

impl ClassError {
    pub fn new(problems: Vec<String>) -> Self {
        Self { problems, warnings: Vec::new(), too_many_objects: None }
    }

    /// Set when the class has more objects than `--max-objects`.
    pub fn too_many_objects(&self) -> Option<TooManyObjects> {
        self.too_many_objects
    }
}

impl std::error::Error for ClassError {}

/// Problems shown in a message; the rest are counted. The message travels in a gRPC
/// header (the driver puts it in pod events), percent-encoded beyond ASCII: with both
/// summaries at their longest it stays below 16 KiB even then.
const SHOWN: usize = 10;
/// Longest problem shown, and most bytes of problems shown, in bytes.
const SHOWN_BYTES: usize = 500;
const SHOWN_TOTAL: usize = 2500;

/// The first few of `items`, each cut to a bounded length, then how many were left out.
pub fn summary(items: &[String], what: &str) -> String {
    let mut text = String::new();
    let mut shown = 0;
    for item in items.iter().take(SHOWN) {
        let cut = item.floor_char_boundary(SHOWN_BYTES);
        if shown > 0 && text.len() + cut > SHOWN_TOTAL {
            break;
        }
        if shown > 0 {
            text.push_str("; ");
        }
        text.push_str(&item[..cut]);
        if cut < item.len() {
            text.push_str("...");
        }
        shown += 1;
    }
    if items.len() > shown {
        text.push_str(&format!(
            "; and {} more {what} (`csi-provider-aws check` lists them all)",
            items.len() - shown
        ));
    }
    text
}

impl fmt::Display for ClassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid SecretProviderClass: {}", summary(&self.problems, "problem(s)"))?;
        if !self.warnings.is_empty() {
            write!(f, " (warnings: {})", summary(&self.warnings, "warning(s)"))?;
        }
        Ok(())
    }
}

/// Everything one reading of a class found, valid or not: what `check` prints.
#[derive(Debug)]
pub struct Checked {
    pub result: Result<SecretProviderClass, ClassError>,
    /// Every file the objects claim, those of invalid objects included.
    pub claims: Vec<Claim>,
}

impl SecretProviderClass {
    /// Parses and validates the parameters within the default [`Limits`]; `default_mode` is
    /// the driver's `permission`. Rules that need the primary region wait for
    /// [`SecretProviderClass::check_regions`] when the class names none (it may come from
    /// the provider's environment or the pod's node).
    pub fn parse(params: &Parameters, default_mode: u32) -> Result<Self, ClassError> {
        Self::parse_with(params, default_mode, &Limits::default())
    }

    /// [`SecretProviderClass::parse`] within `limits`.
    pub fn parse_with(params: &Parameters, default_mode: u32, limits: &Limits) -> Result<Self, ClassError> {
        Self::check(params, default_mode, limits, Lines::default()).result
    }

    /// Reads the class and reports everything found; `lines` says how line numbers of
    /// `objects` are shown.
    pub fn check(params: &Parameters, default_mode: u32, limits: &Limits, lines: Lines) -> Checked {
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let parameters = ClassParameters::parse(params, &mut problems, &mut warnings);
        let mut too_many_objects = None;
        let raw = match raw::parse_objects(params.objects.as_deref().unwrap_or(""), limits, lines) {
            Ok(raw) => raw,
            Err(refused) => {
                problems.push(match refused {
                    ScanError::TooManyObjects(too_many) => {
                        too_many_objects = Some(too_many);
                        too_many.to_string()
                    }
                    ScanError::Limit(reason) => format!("the objects parameter is refused: {reason}"),
                    ScanError::Deadline => "reading the objects parameter took longer than the mount may \
                                            take (--mount-timeout)"
                        .into(),
                    ScanError::Syntax { message, .. } => message,
                });
                raw::RawObjects::default()
            }
        };
        problems.extend(raw.problems);
        warnings.extend(raw.warnings);

        let check = validate::ObjectCheck {
            path_translation: parameters.path_translation,
            default_mode,
            failover_region: parameters.failover_region.as_deref(),
        };
        let (mut objects, mut claims, mut arns) = (Vec::new(), Vec::new(), Vec::new());
        for (index, raw) in raw.objects.iter().enumerate() {
            let validated = check.validate(index, raw, &mut problems);
            objects.extend(validated.object);
            claims.extend(validated.claims);
            arns.extend(validated.arns);
        }
        problems.extend(validate::file_conflicts(&claims));
        if let Some(primary) = &parameters.region {
            problems.extend(validate::region_problems(primary, parameters.failover_region.as_deref(), &arns));
        }

        let result = if problems.is_empty() {
            Ok(Self { parameters, objects, warnings })
        } else {
            Err(ClassError { problems, warnings, too_many_objects })
        };
        Checked { result, claims }
    }

    /// Applies the rules that need the primary region once a mount has resolved it (parsing
    /// applied them already when the class names its region).
    pub fn check_regions(&self, primary: &str) -> Result<(), ClassError> {
        if self.parameters.region.as_deref() == Some(primary) {
            return Ok(());
        }
        let arns: Vec<(String, Arn)> = self
            .objects
            .iter()
            .filter_map(|object| match object {
                SecretObject::Named(NamedObject { name, arn: Some(arn), .. }) => {
                    Some((format!("object {name:?}"), arn.clone()))
                }
                _ => None,
            })
            .collect();
        let problems = validate::region_problems(primary, self.parameters.failover_region.as_deref(), &arns);
        if problems.is_empty() { Ok(()) } else { Err(ClassError::new(problems)) }
    }

    /// Every file the class produces before fetching, in order, with its mode.
    pub fn files(&self) -> impl Iterator<Item = (&str, u32)> {
        self.objects.iter().flat_map(SecretObject::files)
    }
}
