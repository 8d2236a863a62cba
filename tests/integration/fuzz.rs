//! Property-based fuzzing of everything that parses what the driver or a user sends: the
//! Mount request, the SecretProviderClass parameters and objects YAML, the renderer and the
//! `check` command. Properties: never panic; whatever is accepted is safe to write (relative
//! clean paths, no two files alike, modes within 0777); and the YAML budget holds: alias,
//! merge, nesting and size bombs are refused within the limits, and whatever the budget lets
//! through builds a tree no bigger than the budget (so memory stays bounded) in bounded time.
//! Case count: PROPTEST_CASES (CI runs more). Failing inputs are kept in
//! `tests/fuzz.proptest-regressions` and replayed first.

use csi_provider_aws::aws::FetchedSecret;
use csi_provider_aws::class::SecretObject;
use csi_provider_aws::class::naming::check_file_path;
use csi_provider_aws::class::{Limits, Parameters, SecretProviderClass, scan};
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
        let _ = csi_provider_aws::commands::check::check(&text, Some("us-east-1"));
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
        if let Ok(rendered) = render(class.parameters.path_translation, &fetched) {
            let declared: Vec<&str> = class.files().map(|(f, _)| f).collect();
            let produced: Vec<&str> = rendered.files.iter().map(|f| f.file.path.as_str()).collect();
            prop_assert_eq!(declared, produced);
            prop_assert!(rendered.files.iter().all(|f| f.version.starts_with('v')));
        }
    }
}

/// Nodes and scalar bytes of a tree serde_yaml built: what it costs in memory.
fn size(value: &serde_yaml::Value) -> (usize, usize) {
    use serde_yaml::Value;
    match value {
        Value::Sequence(items) => items.iter().map(size).fold((1, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        Value::Mapping(map) => map
            .iter()
            .map(|(k, v)| {
                let (k, v) = (size(k), size(v));
                (k.0 + v.0, k.1 + v.1)
            })
            .fold((1, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        Value::Tagged(tagged) => size(&tagged.value),
        Value::String(text) => (1, text.len()),
        other => (1, serde_yaml::to_string(other).map_or(0, |t| t.trim_end().len())),
    }
}

/// YAML built to be expensive: anchors repeated across levels, merge keys, deep nesting,
/// many entries, and random mixes of the tokens that make them.
fn bomb() -> impl Strategy<Value = String> {
    let fan_out = (1usize..4, 1usize..300, "[a-z]{1,40}").prop_map(|(levels, k, leaf)| {
        let mut y = format!(
            "- objectName: x\n  objectType: secretsmanager\n  l0: &l0 [{}]\n",
            vec![leaf; k].join(", ")
        );
        for level in 1..=levels {
            let refs = vec![format!("*l{}", level - 1); k].join(", ");
            y.push_str(&format!("  l{level}: &l{level} [{refs}]\n"));
        }
        y
    });
    let merges = (1usize..200, 1usize..50).prop_map(|(keys, merges)| {
        let base: Vec<String> = (0..keys).map(|i| format!("k{i}: v")).collect();
        let refs = vec!["*b"; merges].join(", ");
        format!("- &b {{{}}}\n- {{<<: [{refs}], objectName: x}}\n", base.join(", "))
    });
    let nesting =
        (1usize..400, prop_oneof![Just("["), Just("{a: "), Just("- ")]).prop_map(|(depth, open)| {
            let close = match open {
                "[" => "]",
                "{a: " => "}",
                _ => "",
            };
            let indent =
                |d: usize| if open == "- " { format!("\n{}", "  ".repeat(d)) } else { String::new() };
            let opened: String = (0..depth).map(|d| format!("{}{open}", indent(d))).collect();
            format!("- x: {opened}x{}\n", close.repeat(depth))
        });
    let many = (0usize..1500).prop_map(|n| "- {}\n".repeat(n));
    let tokens = prop::collection::vec(
        prop_oneof![
            Just("&a "),
            Just("&b "),
            Just("*a"),
            Just("*b"),
            Just("["),
            Just("]"),
            Just("{"),
            Just("}"),
            Just(", "),
            Just("- "),
            Just("\n"),
            Just("  "),
            Just("x: "),
            Just("<<: "),
            Just("v"),
            Just("!t "),
        ],
        0..300,
    )
    .prop_map(|t| t.concat());
    prop_oneof![fan_out, merges, nesting, many, tokens]
}

proptest! {
    // Each case parses up to a few MB of YAML four times: a quarter of PROPTEST_CASES keeps
    // CI's fuzz step short.
    #![proptest_config(ProptestConfig::with_cases((ProptestConfig::default().cases / 4).max(32)))]

    #[test]
    fn the_yaml_budget_bounds_what_is_built(text in bomb()) {
        let limits = Limits { max_objects: 1000, max_nodes: 20_000, max_text: 200_000, max_depth: 20, ..Limits::default() };
        let started = std::time::Instant::now();
        let scanned = scan(&text, &limits, "objects");
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(5), "scan took {:?}", started.elapsed());
        if scanned.is_ok() {
            // Within the budget: what serde_yaml builds is no bigger than what was counted.
            if let Ok(mut value) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
                let _ = value.apply_merge();
                let (nodes, bytes) = size(&value);
                prop_assert!(nodes <= limits.max_nodes, "{nodes} nodes built within a budget of {}", limits.max_nodes);
                prop_assert!(bytes <= limits.max_text, "{bytes} bytes built within a budget of {}", limits.max_text);
            }
        }
        // The whole class parser, with the provider's default limits, in bounded time.
        let started = std::time::Instant::now();
        let params = Parameters { objects: Some(text.clone()), ..Parameters::default() };
        let parsed = SecretProviderClass::parse(&params, 0o644);
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(5), "parse took {:?}", started.elapsed());
        if let Err(e) = parsed {
            prop_assert!(e.to_string().len() < 16 * 1024, "a {}-byte message", e.to_string().len());
        }
        let _ = csi_provider_aws::commands::check::check(&text, Some("us-east-1"));
    }

    #[test]
    fn alias_fan_out_beyond_the_budget_is_refused(k in 320usize..2000, levels in 2usize..4) {
        let mut y = format!("- objectName: x\n  objectType: secretsmanager\n  l0: &l0 [{}]\n", vec!["x"; k].join(","));
        for level in 1..levels {
            y.push_str(&format!("  l{level}: &l{level} [{}]\n", vec![format!("*l{}", level - 1); k].join(",")));
        }
        let params = Parameters { objects: Some(y), ..Parameters::default() };
        let err = SecretProviderClass::parse(&params, 0o644).expect_err("k^levels nodes exceed the budget");
        prop_assert!(err.to_string().contains("YAML nodes"), "{err}");
    }
}
