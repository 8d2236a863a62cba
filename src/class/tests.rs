//! The class's contract, through its parser: SecretProviderClass semantics as ASCP users
//! write them (file names and modes, object types, every validation rule's message,
//! failover, extensions, bounded messages). Each module's own details are tested beside it.

use super::*;

fn params(objects: &str) -> Parameters {
    Parameters { objects: Some(objects.into()), ..Parameters::default() }
}

fn parse(p: &Parameters) -> Result<SecretProviderClass, ClassError> {
    SecretProviderClass::parse(p, 0o644)
}

fn files(p: &Parameters) -> Vec<(String, u32)> {
    let class = parse(p).unwrap_or_else(|e| panic!("{e}"));
    class.files().map(|(f, m)| (f.to_owned(), m)).collect()
}

fn problems(p: &Parameters) -> Vec<String> {
    match parse(p) {
        Ok(_) => panic!("expected a problem for {:?}", p.objects),
        Err(e) => e.problems,
    }
}

#[test]
fn file_names_and_modes() {
    type Case<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, u32)]);
    let cases: &[Case] = &[
        ("- {objectName: db, objectType: secretsmanager}", None, &[("db", 0o644)]),
        ("- {objectName: db, objectType: secretsmanager, objectAlias: x.json}", None, &[("x.json", 0o644)]),
        ("- {objectName: /app/db, objectType: ssmparameter}", None, &[("_app_db", 0o644)]),
        ("- {objectName: /app/db, objectType: ssmparameter}", Some("-"), &[("-app-db", 0o644)]),
        ("- {objectName: /app/db, objectType: ssmparameter}", Some("False"), &[("app/db", 0o644)]),
        ("- {objectName: db, objectType: secretsmanager, filePermission: '0600'}", None, &[("db", 0o600)]),
        (
            "- objectName: arn:aws:ssm:us-east-1:1:parameter/a/b",
            None,
            &[("arn:aws:ssm:us-east-1:1:parameter_a_b", 0o644)],
        ),
        (
            r#"
- objectName: db
  objectType: secretsmanager
  filePermission: "0640"
  jmesPath:
    - {path: username, objectAlias: user}
    - {path: '"pass-word"', objectAlias: /nested/pw, filePermission: "0400"}
"#,
            None,
            &[("db", 0o640), ("user", 0o640), ("_nested_pw", 0o400)],
        ),
        (
            "- {objectName: a, objectType: secretsmanager, objectAlias: cur, objectVersionLabel: AWSCURRENT}\n\
             - {objectName: a, objectType: secretsmanager, objectAlias: prev, objectVersionLabel: AWSPREVIOUS}",
            None,
            &[("cur", 0o644), ("prev", 0o644)],
        ),
    ];
    for (objects, translation, want) in cases {
        let mut p = params(objects);
        p.path_translation = translation.map(str::to_owned);
        let want: Vec<(String, u32)> = want.iter().map(|(f, m)| (f.to_string(), *m)).collect();
        assert_eq!(files(&p), want, "{objects}");
    }
}

#[test]
fn object_type_from_arn_or_field() {
    let cases = [
        ("- objectName: arn:aws:secretsmanager:us-east-1:1:secret:x-AbCdEf", ObjectType::SecretsManager),
        ("- objectName: arn:aws:ssm:us-east-1:1:parameter/x", ObjectType::SsmParameter),
        (
            "- {objectName: arn:aws:ssm:us-east-1:1:parameter/x, objectType: ssmparameter}",
            ObjectType::SsmParameter,
        ),
    ];
    for (objects, want) in cases {
        let class = parse(&params(objects)).unwrap();
        assert_eq!(class.objects[0].object_type(), want, "{objects}");
    }
}

#[test]
fn every_rule_has_a_clear_problem() {
    let cases = [
        ("- objectType: secretsmanager", "objectName is missing"),
        ("- {objectName: x}", "objectType is missing"),
        ("- {objectName: x, objectType: vault}", "objectType \"vault\" is unknown"),
        (
            "- {objectName: x, objectType: ssm}",
            "objectType \"ssm\" is unknown: use \"secretsmanager\" or \"ssmparameter\"",
        ),
        (
            "- {objectName: 'arn:aws:ssm:us-east-1:1:parameter/x', objectType: secretsmanager}",
            "does not match the ARN",
        ),
        ("- {objectName: 'arn:aws:s3:us-east-1:1:bucket/x'}", "service \"s3\" is not supported"),
        ("- {objectName: 'arn:aws:ssm'}", "not a valid ARN"),
        ("- {objectName: x, objectType: ssmparameter, objectVersion: 1, objectVersionLabel: l}", "not both"),
        (
            "- {objectName: x, objectType: ssmparameter, objectVersion: v1}",
            "not a Parameter Store version number",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, filePermission: '600'}",
            "filePermission \"600\" is invalid",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, filePermission: '0800'}",
            "filePermission \"0800\" is invalid",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, filePermission: '1777'}",
            "filePermission \"1777\" is invalid",
        ),
        ("- {objectName: x, objectType: secretsmanager, objectAlias: ..}", "may not contain '..'"),
        ("- {objectName: x, objectType: secretsmanager, jmesPath: [{path: a}]}", "needs both path"),
        ("- {objectName: x, objectType: secretsmanager, jmesPath: [{objectAlias: a}]}", "needs both path"),
        (
            "- {objectName: x, objectType: secretsmanager, jmesPath: [{path: 'a-b', objectAlias: a}]}",
            "not a valid JMESPath",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, jmesPath: [{path: a, objectAlias: a, filePermission: '9'}]}",
            "jmesPath[0]: filePermission",
        ),
        (
            "- {objectName: x, objectType: secretsmanager}\n- {objectName: x, objectType: secretsmanager}",
            "would both write the file \"x\"",
        ),
        (
            "- {objectName: a/b, objectType: secretsmanager}\n- {objectName: a_b, objectType: secretsmanager}",
            "would both write the file \"a_b\"",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, objectVersionLabel: AWSCURRENT}\n- {objectName: x, objectType: secretsmanager, objectVersionLabel: AWSPREVIOUS}",
            "distinct objectAlias",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, jmesPath: [{path: a, objectAlias: x}]}",
            "would both write the file \"x\"",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, failoverObject: {objectName: y}}",
            "no failoverRegion",
        ),
    ];
    for (objects, want) in cases {
        let found = problems(&params(objects));
        assert!(found.iter().any(|p| p.contains(want)), "{objects}\n  {found:?}\n  should contain {want:?}");
    }
}

#[test]
fn dot_dot_is_rejected_only_when_it_escapes() {
    let mut p = params("- {objectName: /a/../../etc/passwd, objectType: ssmparameter}");
    p.path_translation = Some("False".into());
    assert!(problems(&p)[0].contains("'..'"));
    // With translation the slashes are gone and the name is one harmless component.
    p.path_translation = None;
    assert_eq!(files(&p), vec![("_a_.._.._etc_passwd".to_owned(), 0o644)]);
}

#[test]
fn file_and_directory_conflict_without_translation() {
    let mut p =
        params("- {objectName: a, objectType: ssmparameter}\n- {objectName: a/b, objectType: ssmparameter}");
    p.path_translation = Some("False".into());
    assert!(problems(&p)[0].contains("needs it to be a directory"));
}

#[test]
fn class_parameters() {
    let cases: &[(&str, &str, &str)] = &[
        ("pathTranslation", "ab", "pathTranslation \"ab\" is invalid"),
        ("usePodIdentity", "yes", "usePodIdentity \"yes\" is not a boolean"),
        ("preferredAddressType", "ipv5", "preferredAddressType \"ipv5\" is invalid"),
        ("region", "us-east-1/evil", "not an AWS region name"),
    ];
    for (key, value, want) in cases {
        let mut p = params("");
        match *key {
            "pathTranslation" => p.path_translation = Some(value.to_string()),
            "usePodIdentity" => p.use_pod_identity = Some(value.to_string()),
            "preferredAddressType" => p.preferred_address_type = Some(value.to_string()),
            _ => p.region = Some(value.to_string()),
        }
        let found = problems(&p);
        assert!(found[0].contains(want), "{key}={value}: {found:?}");
    }
    let mut p = params("");
    p.region = Some("us-east-1".into());
    p.failover_region = Some("us-east-1".into());
    assert!(problems(&p)[0].contains("same as region"));
}

#[test]
fn auth_method_follows_go_parse_bool() {
    for (value, want) in [
        (None, AuthMethod::Irsa),
        (Some("false"), AuthMethod::Irsa),
        (Some("0"), AuthMethod::Irsa),
        (Some("true"), AuthMethod::PodIdentity(AddressPreference::Auto)),
        (Some("T"), AuthMethod::PodIdentity(AddressPreference::Auto)),
        (Some("1"), AuthMethod::PodIdentity(AddressPreference::Auto)),
    ] {
        let mut p = params("");
        p.use_pod_identity = value.map(str::to_owned);
        assert_eq!(parse(&p).unwrap().parameters.auth, want, "{value:?}");
    }
    let mut p = params("");
    p.use_pod_identity = Some("true".into());
    p.preferred_address_type = Some("IPv6".into());
    assert_eq!(parse(&p).unwrap().parameters.auth, AuthMethod::PodIdentity(AddressPreference::Ipv6));
}

#[test]
fn failover_rules() {
    let base = |objects: &str| {
        let mut p = params(objects);
        p.region = Some("us-east-1".into());
        p.failover_region = Some("us-west-2".into());
        p
    };
    let ok = base(
        "- objectName: arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf\n  objectAlias: db\n  \
         failoverObject: {objectName: 'arn:aws:secretsmanager:us-west-2:1:secret:db-AbCdEf'}",
    );
    let class = parse(&ok).unwrap();
    class.check_regions("us-east-1").unwrap();

    let cases = [
        (
            "- {objectName: x, objectType: secretsmanager, failoverObject: {objectName: y}}",
            "needs an objectAlias",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, objectAlias: a, objectVersion: v1, failoverObject: {objectName: y}}",
            "objectVersion must equal",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, objectAlias: a, failoverObject: {objectName: y, objectVersionLabel: L}}",
            "objectVersionLabel must equal",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, objectAlias: a, failoverObject: {objectVersion: 1}}",
            "failoverObject.objectName is missing",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, objectAlias: a, failoverObject: {objectName: 'arn:aws:ssm:us-west-2:1:parameter/x'}}",
            "not the same kind of object",
        ),
    ];
    for (objects, want) in cases {
        let found = problems(&base(objects));
        assert!(found.iter().any(|p| p.contains(want)), "{objects}: {found:?}");
    }

    let wrong_region = base(
        "- objectName: x\n  objectType: secretsmanager\n  objectAlias: a\n  \
         failoverObject: {objectName: 'arn:aws:secretsmanager:eu-west-1:1:secret:x'}",
    );
    let err = parse(&wrong_region).unwrap_err();
    assert!(err.problems[0].contains("does not match failoverRegion"), "{err}");
}

#[test]
fn arn_region_must_match_the_primary_region() {
    let class = parse(&params("- objectName: arn:aws:secretsmanager:us-west-2:1:secret:x")).unwrap();
    assert!(class.check_regions("us-west-2").is_ok());
    let err = class.check_regions("us-east-1").unwrap_err();
    assert!(err.to_string().contains("does not match the mount's region \"us-east-1\""), "{err}");
}

#[test]
fn failover_name_defaults_to_the_replica_arn() {
    let mut p = params("- objectName: arn:aws:secretsmanager:us-east-1:1:secret:x-AbCdEf");
    p.failover_region = Some("us-west-2".into());
    let class = parse(&p).unwrap();
    let SecretObject::Named(object) = &class.objects[0] else { panic!("a named object") };
    assert_eq!(object.name_in_failover("us-west-2"), "arn:aws:secretsmanager:us-west-2:1:secret:x-AbCdEf");
}

#[test]
fn all_problems_are_reported_together() {
    let found = problems(&params(
        "- {objectName: a}\n- {objectName: b, objectType: nope}\n- {objectType: ssmparameter}",
    ));
    assert_eq!(found.len(), 3, "{found:?}");
}

#[test]
fn no_objects_is_valid() {
    for objects in ["", "[]"] {
        assert!(parse(&params(objects)).unwrap().objects.is_empty());
    }
    assert!(parse(&Parameters::default()).unwrap().objects.is_empty());
}

#[test]
fn extensions_beyond_ascp_are_validated() {
    let ok = [
        "- {objectType: ssmparameter, path: /app/, recursive: true, maxCount: 50}",
        "- {objectType: secretsmanager, path: prod/}",
        "- {objectType: secretsmanager, tags: {team: payments}}",
        "- {objectName: x, objectType: secretsmanager, expandJson: true, encoding: utf-8}",
        "- {objectName: x, objectType: secretsmanager, expandJsonKeys: [a, b]}",
        "- {objectName: x, objectType: secretsmanager, jmesPath: [{path: a, objectAlias: a, encoding: base64, allowNonString: true}]}",
    ];
    for objects in ok {
        assert!(parse(&params(objects)).is_ok(), "{objects}: {:?}", parse(&params(objects)).err());
    }
    let cases = [
        ("- {objectType: ssmparameter, path: app/}", "must start with '/'"),
        ("- {path: /app/}", "objectType must be"),
        (
            "- {objectType: ssmparameter, path: /app/, objectAlias: a}",
            "objectAlias cannot be combined with path",
        ),
        (
            "- {objectType: ssmparameter, path: /app/, jmesPath: [{path: a, objectAlias: b}]}",
            "jmesPath cannot be combined",
        ),
        ("- {objectType: ssmparameter, path: /app/, maxCount: 5000}", "maxCount \"5000\""),
        ("- {objectType: ssmparameter, path: /app/, tags: {a: b}}", "tags select Secrets Manager"),
        ("- {objectType: secretsmanager, path: p/, recursive: true}", "recursive applies to Parameter Store"),
        (
            "- {objectName: x, objectType: secretsmanager, recursive: true}",
            "recursive applies only to objects with a path",
        ),
        ("- {objectName: x, objectType: secretsmanager, encoding: rot13}", "encoding \"rot13\" is unknown"),
        ("- {objectName: x, objectType: secretsmanager, expandJson: maybe}", "expandJson \"maybe\""),
        (
            "- {objectName: x, objectType: secretsmanager, jmesPath: [{path: a, objectAlias: a, allowNonString: x}]}",
            "allowNonString \"x\"",
        ),
    ];
    for (objects, want) in cases {
        let found = problems(&params(objects));
        assert!(found.iter().any(|p| p.contains(want)), "{objects}: {found:?}");
    }
    let mut p = params("");
    p.assume_role_arn = Some("arn:aws:iam::111122223333:role/reader".into());
    assert_eq!(
        parse(&p).unwrap().parameters.assume_role.unwrap().role_arn,
        "arn:aws:iam::111122223333:role/reader"
    );
    p.assume_role_arn = Some("arn:aws:s3:::bucket".into());
    assert!(problems(&p)[0].contains("not an IAM role ARN"));
}

#[test]
fn one_run_reports_arn_regions_with_other_problems() {
    let mut p =
        params("- objectName: arn:aws:secretsmanager:eu-west-1:1:secret:z\n  filePermission: '999'\n");
    p.region = Some("us-east-1".into());
    let found = problems(&p);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|f| f.contains("does not match the mount's region")));
    assert!(found.iter().any(|f| f.contains("filePermission \"999\"")));
}

#[test]
fn yaml_merge_keys_and_empty_file_permission_behave_like_ascp() {
    let objects = "- &base {objectName: plain, objectType: secretsmanager, objectAlias: one, filePermission: ''}\n\
                   - <<: *base\n  objectAlias: two\n";
    assert_eq!(files(&params(objects)), vec![("one".to_owned(), 0o644), ("two".to_owned(), 0o644)]);
}

#[test]
fn messages_stay_bounded_and_say_how_many_are_left_out() {
    let long = "é".repeat(100);
    let objects: String = (0..500).map(|i| format!("- {{objectName: '{long}{i}'}}\n")).collect();
    let err = parse(&params(&objects)).unwrap_err();
    assert_eq!(err.problems.len(), 500, "every problem is kept for check");
    let message = err.to_string();
    assert!(message.len() < 4 * 1024, "{} bytes", message.len());
    assert!(message.contains("; and 49") && message.contains("more problem(s)"), "{message}");
}

#[test]
fn problems_of_one_object_do_not_hide_those_of_others() {
    let cases = [
        (
            "- {objectName: x, objectType: vault}\n- {objectName: x, objectType: secretsmanager}",
            &["objectType \"vault\" is unknown", "would both write the file \"x\""][..],
        ),
        (
            "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: 'a-b', objectAlias: b}]}\n\
             - {objectName: b, objectType: secretsmanager}",
            &["not a valid JMESPath", "would both write the file \"b\""][..],
        ),
        (
            "- {objectAlias: y, objectType: secretsmanager, filePermission: '9'}\n- {objectName: y, objectType: secretsmanager}",
            &[
                "objects[0]: objectName is missing",
                "objects[0]: filePermission \"9\"",
                "would both write the file \"y\"",
            ][..],
        ),
    ];
    for (objects, wants) in cases {
        let found = problems(&params(objects));
        for want in wants {
            assert!(
                found.iter().any(|p| p.contains(want)),
                "{objects}\n  {found:?}\n  should contain {want:?}"
            );
        }
    }
}
