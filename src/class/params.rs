//! The class's `spec.parameters` other than `objects`: regions, file naming and how the pod's
//! credentials are obtained; and the warning for parameters nobody reads.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::arn::Arn;
use super::go;
use super::naming::PathTranslation;
use super::raw::did_you_mean;

/// Declares the parameters this provider reads, once: the [`Parameters`] fields (each the
/// string the class sets under that key) and the list of known keys for "did you mean"
/// hints. A new parameter is one line here and its validation in [`ClassParameters`].
macro_rules! parameters {
    ($($(#[$doc:meta])* $field:ident = $key:literal,)*) => {
        /// The SecretProviderClass parameters, as strings, as the driver passes them in the
        /// Mount attributes.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
        pub struct Parameters {
            $($(#[$doc])* #[serde(rename = $key)] pub $field: Option<String>,)*
            /// Every other key: the driver's volume context, or a parameter nobody reads (a
            /// typo).
            #[serde(flatten)]
            pub other: BTreeMap<String, Unread>,
        }

        /// The parameters this provider reads, for "did you mean" hints.
        const KNOWN: &[&str] = &[$($key),*];
    };
}

parameters! {
    objects = "objects",
    region = "region",
    failover_region = "failoverRegion",
    path_translation = "pathTranslation",
    use_pod_identity = "usePodIdentity",
    preferred_address_type = "preferredAddressType",
    /// Beyond ASCP: a role to assume with the pod's credentials before fetching.
    assume_role_arn = "assumeRoleArn",
    assume_role_external_id = "assumeRoleExternalId",
}

/// The value of a key nobody reads: not kept (only the key matters, for its warning), so all
/// such values are equal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Unread;

impl<'de> Deserialize<'de> for Unread {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Unread)
    }
}

/// What a parsed class depends on besides the driver's permission and the provider's limits:
/// the parameters, every field (derived: a parameter added later is part of it), without the
/// keys the driver adds per pod (its name, uid, token), so replicas share it. Unknown keys
/// stay: each one is a warning of the class.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParseKey(Parameters);

impl ParseKey {
    /// About the bytes of text the key holds (its debug form, at least as long; the parsed
    /// class is of the same order). Computed once per parse, when the class is cached.
    pub fn text_bytes(&self) -> usize {
        format!("{:?}", self.0).len()
    }
}

impl Parameters {
    pub fn parse_key(&self) -> ParseKey {
        let mut key = self.clone();
        key.other.retain(|k, _| !from_the_driver(k));
        ParseKey(key)
    }
}

/// Keys the driver (or the sync controller) adds to the parameters.
fn from_the_driver(key: &str) -> bool {
    key.starts_with("csi.storage.k8s.io/") || key == "secretProviderClass" || key == "providerName"
}

/// `assumeRoleArn` (+ `assumeRoleExternalId`): cross-account role chaining.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<String>,
}

/// How the pod's AWS credentials are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// IAM Roles for Service Accounts (the default).
    Irsa,
    /// EKS Pod Identity, reaching the agent over the preferred address family.
    PodIdentity(AddressPreference),
}

/// `preferredAddressType` for the Pod Identity agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AddressPreference {
    /// IPv4 first, then IPv6.
    #[default]
    Auto,
    Ipv4,
    Ipv6,
}

/// The parameters besides `objects`, validated.
#[derive(Debug, Clone)]
pub struct ClassParameters {
    pub region: Option<String>,
    pub failover_region: Option<String>,
    pub path_translation: PathTranslation,
    pub auth: AuthMethod,
    /// A role assumed with the pod's credentials before fetching.
    pub assume_role: Option<AssumeRole>,
}

impl ClassParameters {
    /// Validates every parameter but `objects`, each problem reported once; unusable values
    /// fall back to their defaults so that the objects can still be checked.
    pub(super) fn parse(params: &Parameters, problems: &mut Vec<String>, warnings: &mut Vec<String>) -> Self {
        let path_translation =
            PathTranslation::parse(go::set(&params.path_translation)).unwrap_or_else(|e| {
                problems.push(e);
                PathTranslation::default()
            });
        let mut region_parameter = |key: &str, value: &Option<String>| {
            let value = go::set(value)?;
            match check_region_name(value) {
                Ok(()) => Some(value.to_owned()),
                Err(e) => {
                    problems.push(format!("{key}: {e}"));
                    None
                }
            }
        };
        let region = region_parameter("region", &params.region);
        let failover_region = region_parameter("failoverRegion", &params.failover_region);
        let auth = parse_auth(params).unwrap_or_else(|e| {
            problems.push(e);
            AuthMethod::Irsa
        });
        let external_id = go::set(&params.assume_role_external_id).map(str::to_owned);
        let assume_role = match go::set(&params.assume_role_arn) {
            Some(role_arn) => {
                let valid =
                    Arn::parse(role_arn).is_ok_and(|a| a.service == "iam" && a.resource.starts_with("role/"));
                if !valid {
                    problems.push(format!(
                        "assumeRoleArn {role_arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
                    ));
                }
                Some(AssumeRole { role_arn: role_arn.to_owned(), external_id })
            }
            None if external_id.is_some() => {
                problems.push("assumeRoleExternalId is set without assumeRoleArn".into());
                None
            }
            None => None,
        };
        for key in params.other.keys().filter(|k| !from_the_driver(k)) {
            warnings.push(format!(
                "parameter {key:?} is unknown and ignored{}",
                did_you_mean(key, KNOWN).map_or_else(String::new, |k| format!("; did you mean {k:?}?"))
            ));
        }
        Self { region, failover_region, path_translation, auth, assume_role }
    }
}

/// Region names end up in endpoint host names: allow only what AWS uses.
pub fn check_region_name(region: &str) -> Result<(), String> {
    let valid = !region.is_empty()
        && region.len() <= 32
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid { Ok(()) } else { Err(format!("{region:?} is not an AWS region name (such as \"us-east-1\")")) }
}

fn parse_auth(params: &Parameters) -> Result<AuthMethod, String> {
    let use_pod_identity = go::parse_bool_field("usePodIdentity", &params.use_pod_identity)?;
    let preference = match go::set(&params.preferred_address_type) {
        None => AddressPreference::Auto,
        Some(v) if v.eq_ignore_ascii_case("auto") => AddressPreference::Auto,
        Some(v) if v.eq_ignore_ascii_case("ipv4") => AddressPreference::Ipv4,
        Some(v) if v.eq_ignore_ascii_case("ipv6") => AddressPreference::Ipv6,
        Some(v) => {
            return Err(format!("preferredAddressType {v:?} is invalid: use \"ipv4\", \"ipv6\" or \"auto\""));
        }
    };
    Ok(if use_pod_identity { AuthMethod::PodIdentity(preference) } else { AuthMethod::Irsa })
}
