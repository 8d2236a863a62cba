//! Property-based fuzzing of everything that parses what the driver or a user sends: the
//! Mount request, the SecretProviderClass parameters and objects YAML, the renderer and the
//! `check` command. Properties: never panic; whatever is accepted is safe to write (relative
//! clean paths, no two files alike, modes within 0777). Case count: PROPTEST_CASES (CI runs
//! more). Failing inputs are kept in `tests/fuzz.proptest-regressions` and replayed first.

use csi_provider_aws::aws::FetchedSecret;
use csi_provider_aws::class::SecretObject;
use csi_provider_aws::class::naming::check_file_path;
use csi_provider_aws::class::{Parameters, SecretProviderClass};
use csi_provider_aws::proto::MountRequest;
use csi_provider_aws::render::{Fetched, render};
use csi_provider_aws::request::MountInput;
use csi_provider_aws::secret::SecretBytes;
use proptest::prelude::*;

/// Text that looks like the inputs: names with slashes, dots, ARNs, unicode, YAML syntax.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9/_.-]{0,12}",
        Just("..".to_owned()),
        Just("/".to_owned()),
        Just("arn:aws:secretsmanager:us-east-1:1:secret:x".to_owned()),
        Just("arn:aws:ssm:us-west-2:1:parameter/a/b".to_owned()),
        "\\PC{0,8}",
        "[\\[\\]{}:,'\"\\-#&*!|>%@` ]{0,4}",
    ]
}

fn object_yaml() -> impl Strategy<Value = String> {
    (
        fragment(),
        prop::option::of(prop_oneof![Just("secretsmanager"), Just("ssmparameter"), Just("ssm"), Just("x")]),
        prop::option::of(fragment()),
        prop::option::of(prop_oneof![Just("0600".to_owned()), Just("0777".to_owned()), "[0-9]{1,5}"]),
        prop::option::of(prop_oneof![Just("1".to_owned()), fragment()]),
        prop::option::of(fragment()),
        prop::collection::vec((fragment(), fragment()), 0..3),
    )
        .prop_map(|(name, kind, alias, mode, version, label, jmes)| {
            let q = |s: &str| serde_json::to_string(s).unwrap();
            let mut y = format!("- objectName: {}\n", q(&name));
            if let Some(k) = kind {
                y.push_str(&format!("  objectType: {k}\n"));
            }
            if let Some(a) = alias {
                y.push_str(&format!("  objectAlias: {}\n", q(&a)));
            }
            if let Some(m) = mode {
                y.push_str(&format!("  filePermission: {}\n", q(&m)));
            }
            if let Some(v) = version {
                y.push_str(&format!("  objectVersion: {}\n", q(&v)));
            }
            if let Some(l) = label {
                y.push_str(&format!("  objectVersionLabel: {}\n", q(&l)));
            }
            if !jmes.is_empty() {
                y.push_str("  jmesPath:\n");
                for (path, alias) in jmes {
                    y.push_str(&format!("    - path: {}\n      objectAlias: {}\n", q(&path), q(&alias)));
                }
            }
            y
        })
}

fn parameters() -> impl Strategy<Value = Parameters> {
    (
        prop::collection::vec(object_yaml(), 0..5),
        prop::option::of(prop_oneof![Just("us-east-1".to_owned()), fragment()]),
        prop::option::of(prop_oneof![Just("False".to_owned()), Just("-".to_owned()), fragment()]),
        prop::option::of(prop_oneof![Just("true".to_owned()), fragment()]),
    )
        .prop_map(|(objects, region, translation, pod_identity)| Parameters {
            objects: Some(objects.concat()),
            region,
            path_translation: translation,
            use_pod_identity: pod_identity,
            ..Parameters::default()
        })
}

fn assert_safe(class: &SecretProviderClass) {
    let mut seen = std::collections::HashSet::new();
    for (file, mode) in class.files() {
        assert!(check_file_path(file).is_ok(), "unsafe path accepted: {file:?}");
        assert!(mode <= 0o777, "mode {mode:o}");
        assert!(seen.insert(file.to_owned()), "duplicate file accepted: {file:?}");
    }
    for file in &seen {
        for (i, _) in file.match_indices('/') {
            assert!(!seen.contains(&file[..i]), "file {:?} is also a directory", &file[..i]);
        }
    }
}

proptest! {
    #[test]
    fn classes_never_panic_and_accepted_ones_are_safe(params in parameters()) {
        if let Ok(class) = SecretProviderClass::parse(&params, 0o644) {
            assert_safe(&class);
            let _ = class.check_regions("us-east-1");
        }
    }

    #[test]
    fn arbitrary_objects_text_never_panics(text in "\\PC{0,200}") {
        let params = Parameters { objects: Some(text.clone()), ..Parameters::default() };
        if let Ok(class) = SecretProviderClass::parse(&params, 0o644) {
            assert_safe(&class);
        }
        let _ = csi_provider_aws::check::check(&text, Some("us-east-1"));
    }

    #[test]
    fn mount_requests_never_panic(
        attributes in prop_oneof!["\\PC{0,100}", parameters().prop_map(|p| serde_json::json!({
            "objects": p.objects, "region": p.region, "pathTranslation": p.path_translation,
            "csi.storage.k8s.io/serviceAccount.tokens": "{\"sts.amazonaws.com\":{\"token\":\"t\"}}",
        }).to_string())],
        permission in prop_oneof![Just("420".to_owned()), "\\PC{0,6}", "-?[0-9]{1,12}"],
        target in prop_oneof![Just("/t".to_owned()), "\\PC{0,10}"],
        secrets in prop_oneof![Just(String::new()), "\\PC{0,40}"],
    ) {
        let request = MountRequest { attributes, permission, target_path: target, secrets, current_object_version: vec![] };
        if let Ok(input) = MountInput::parse(&request) {
            prop_assert!(input.default_mode <= 0o777);
            if let Ok(class) = SecretProviderClass::parse(&input.parameters, input.default_mode) {
                assert_safe(&class);
            }
        }
    }

    #[test]
    fn rendering_never_panics_and_produces_exactly_the_declared_files(
        params in parameters(),
        values in prop::collection::vec(prop_oneof![
            "\\PC{0,40}".prop_map(String::into_bytes),
            Just(br#"{"a":"x","b":{"c":"y"},"n":5,"l":[1,"z"]}"#.to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ], 0..6),
    ) {
        let Ok(class) = SecretProviderClass::parse(&params, 0o644) else { return Ok(()) };
        let fetched: Vec<Fetched> = class.objects.iter().enumerate().filter_map(|(i, object)| match object {
            SecretObject::Named(object) => Some(Fetched::One(object, FetchedSecret {
                value: SecretBytes::new(values.get(i).cloned().unwrap_or_default()),
                version: format!("v{i}"),
            })),
            SecretObject::Collection(_) => None,
        }).collect();
        if let Ok(rendered) = render(class.path_translation, &fetched) {
            let declared: Vec<&str> = class.files().map(|(f, _)| f).collect();
            let produced: Vec<&str> = rendered.files.iter().map(|f| f.file.path.as_str()).collect();
            prop_assert_eq!(declared, produced);
            prop_assert!(rendered.files.iter().all(|f| f.version.starts_with('v')));
        }
    }
}
