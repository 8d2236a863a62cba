//! The mount stages' contracts through the public API, one module per stage (in the order a
//! mount runs them): decoding the driver's request, the class's ARNs, file names, budgeted
//! YAML reading and encodings, token selection and verification, AWS error classes,
//! rendering, the all-or-nothing writer, the error -> gRPC status table, the `check` report,
//! the flags and the secret holders. Unit tests of private code stay beside it in `src/`.

mod request {
    use std::path::Path;

    use csi_provider_aws::proto;
    use csi_provider_aws::request::*;

    fn request(attributes: &str, permission: &str, target: &str) -> proto::MountRequest {
        proto::MountRequest {
            attributes: attributes.into(),
            permission: permission.into(),
            target_path: target.into(),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_parameters_and_volume_context() {
        let attributes = serde_json::json!({
            "objects": "- objectName: x",
            "region": "us-east-1",
            "usePodIdentity": "true",
            POD_NAME: "web-0",
            POD_NAMESPACE: "shop",
            POD_UID: "123",
            SERVICE_ACCOUNT: "web",
            TOKENS: "{\"sts.amazonaws.com\":{\"token\":\"t\"}}",
            "secretProviderClass": "web-secrets",
            "providerName": "aws",
        });
        let input = MountInput::parse(&request(&attributes.to_string(), "420", "/t")).unwrap();
        assert_eq!(input.parameters.region.as_deref(), Some("us-east-1"));
        assert_eq!(input.parameters.use_pod_identity.as_deref(), Some("true"));
        assert_eq!(input.pod.namespace, "shop");
        assert_eq!(input.pod.service_account, "web");
        assert_eq!(input.class_name, "web-secrets");
        assert_eq!(input.default_mode, 0o644);
        assert!(input.pod.tokens.unwrap().expose().contains("sts.amazonaws.com"));
    }

    #[test]
    fn tokens_may_come_from_the_secrets_field() {
        let mut req = request("{}", "420", "/t");
        req.secrets = serde_json::json!({ TOKENS: "{}" }).to_string();
        assert_eq!(MountInput::parse(&req).unwrap().pod.tokens.unwrap().expose(), "{}");
    }

    #[test]
    fn malformed_requests() {
        let cases = [
            (request("not json", "420", "/t"), "attributes is not a JSON object"),
            (request("{\"region\": 1}", "420", "/t"), "attributes is not a JSON object"),
            (request("[]", "420", "/t"), "attributes is not a JSON object"),
            (request("{}", "420", ""), "target_path is empty"),
            (request("{}", "", "/t"), "permission \"\""),
            (request("{}", "\"420\"", "/t"), "permission"),
            (request("{}", "-1", "/t"), "permission"),
            (request("{}", "512", "/t"), "permission \"512\""),
            (request("{}", "4.5", "/t"), "permission"),
        ];
        for (req, want) in cases {
            let err = MountInput::parse(&req).unwrap_err().to_string();
            assert!(err.contains(want), "{req:?}: {err}");
        }
    }

    #[test]
    fn target_paths_must_be_absolute_and_clean() {
        let ok = ["/var/lib/kubelet/pods/1/volumes/kubernetes.io~csi/s/mount", "/mnt/secrets-store", "/t/"];
        let bad = ["reldir", "./x", "x/../y", "/a/../b", "/a/./b", "/..", "", "/a\0b"];
        for path in ok {
            assert_eq!(check_target_path(Path::new(path)), Ok(()), "{path:?}");
        }
        for path in bad {
            assert!(
                matches!(check_target_path(Path::new(path)), Err(RequestError::TargetPath(_))),
                "{path:?}"
            );
        }
    }

    #[test]
    fn oversized_attributes_are_refused_before_parsing() {
        let big = format!("{{\"objects\": \"{}\"}}", "x".repeat(MAX_ATTRIBUTES_BYTES));
        let err = MountInput::parse(&request(&big, "420", "/t")).unwrap_err();
        assert!(matches!(err, RequestError::TooLarge { field: "attributes", .. }), "{err}");
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn permission_values() {
        assert_eq!(parse_permission("420"), Ok(0o644));
        assert_eq!(parse_permission("0"), Ok(0));
        assert_eq!(parse_permission(" 511 "), Ok(0o777));
    }
}

mod class_arn {
    use csi_provider_aws::class::arn::*;

    #[test]
    fn parses_service_region_and_resource() {
        let cases = [
            (
                "arn:aws:secretsmanager:us-west-2:111122223333:secret:db-AbCdEf",
                ("secretsmanager", "us-west-2", "secret:db-AbCdEf"),
            ),
            ("arn:aws:ssm:eu-west-1:111122223333:parameter/app/db", ("ssm", "eu-west-1", "parameter/app/db")),
            ("arn:aws-cn:ssm:cn-north-1:1:parameter/x", ("ssm", "cn-north-1", "parameter/x")),
        ];
        for (input, (service, region, resource)) in cases {
            let arn = Arn::parse(input).unwrap();
            assert_eq!(
                (arn.service.as_str(), arn.region.as_str(), arn.resource.as_str()),
                (service, region, resource),
                "{input}"
            );
            assert_eq!(arn.to_string(), input);
        }
    }

    #[test]
    fn rejects_malformed_arns() {
        for input in ["arn:aws:ssm", "arn:aws::us-east-1:1:x", "arn:aws:ssm:r:1:", "nope:a:b:c:d:e"] {
            assert!(Arn::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn in_region_swaps_only_the_region() {
        let arn = Arn::parse("arn:aws:secretsmanager:us-east-1:1:secret:s-AbCdEf").unwrap();
        assert_eq!(
            arn.in_region("us-west-2").to_string(),
            "arn:aws:secretsmanager:us-west-2:1:secret:s-AbCdEf"
        );
    }
}

mod class_naming {
    use csi_provider_aws::class::naming::*;

    #[test]
    fn parse_translation() {
        let cases: &[(Option<&str>, Result<PathTranslation, ()>)] = &[
            (None, Ok(PathTranslation::Replace('_'))),
            (Some(""), Ok(PathTranslation::Replace('_'))),
            (Some("-"), Ok(PathTranslation::Replace('-'))),
            (Some("é"), Ok(PathTranslation::Replace('é'))),
            (Some("False"), Ok(PathTranslation::Keep)),
            (Some("false"), Ok(PathTranslation::Keep)),
            (Some("__"), Err(())),
            (Some("true"), Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(PathTranslation::parse(*input).map_err(|_| ()), *want, "{input:?}");
        }
    }

    #[test]
    fn apply_translation() {
        let cases = [
            (PathTranslation::Replace('_'), "/app/db/password", "_app_db_password"),
            (PathTranslation::Replace('-'), "a/b", "a-b"),
            (PathTranslation::Replace('_'), "plain", "plain"),
            (PathTranslation::Keep, "/app/db/password", "app/db/password"),
            (PathTranslation::Keep, "//x", "x"),
            (PathTranslation::Keep, "a/b", "a/b"),
        ];
        for (translation, name, want) in cases {
            assert_eq!(translation.apply(name), want, "{translation:?} {name}");
        }
    }

    #[test]
    fn file_path_rules() {
        let long = "x".repeat(256);
        let ok =
            ["a", "a/b", "arn:aws:secretsmanager:us-east-1:1:secret:x", "..a", "a..", "x".repeat(255).leak()];
        let bad = ["", "/a", "..", "a/../b", "../a", "a/..", "a//b", "a/./b", "a/", "a\0b", long.as_str()];
        for path in ok {
            assert!(check_file_path(path).is_ok(), "{path:?} should be accepted");
        }
        for path in bad {
            assert!(check_file_path(path).is_err(), "{path:?} should be rejected");
        }
        assert!(check_file_path(&"a/".repeat(2100)).is_err());
    }
}

mod class_scan {
    use std::time::{Duration, Instant};

    use csi_provider_aws::class::*;

    fn limits() -> Limits {
        Limits { max_objects: 10, max_nodes: 1000, max_text: 10_000, max_depth: 8, ..Limits::default() }
    }

    fn refused(text: &str) -> ScanError {
        scan(text, &limits(), "objects").expect_err(text)
    }

    #[test]
    fn within_the_budget_positions_are_recorded() {
        let text = "- objectName: a\n  jmesPath:\n    - {path: x, objectAlias: y}\n- objectName: b\n";
        let positions = scan(text, &limits(), "objects").unwrap();
        assert_eq!(positions.line("objects[0].objectName"), Some(1));
        assert_eq!(positions.line("objects[0].jmesPath[0].path"), Some(3));
        assert_eq!(positions.line("objects[1].objectName"), Some(4));
        let manifest =
            "kind: X\nspec:\n  parameters:\n    objects: |\n\n      - a\n---\nspec: {objects: b}\n";
        let positions = scan(manifest, &limits(), "manifest").unwrap();
        assert_eq!(positions.value_line("manifest.spec.parameters.objects"), Some(5));
        assert_eq!(positions.value_line("manifest#1.spec.objects"), Some(8));
    }

    #[test]
    fn every_limit_is_enforced_while_reading() {
        let fan_out = format!("- a: &a [{}]\n  b: [{}]\n", vec!["x"; 40].join(","), vec!["*a"; 40].join(","));
        let text_fan_out = format!("- a: &a {}\n  b: [*a, *a, *a, *a]\n", "x".repeat(3000));
        let cases = [
            ("- {}\n".repeat(11), "has 11 objects; the limit is 10"),
            ("- {}\n".repeat(25), "at least 21 objects; the limit is 10"),
            (fan_out, "nodes"),
            (text_fan_out, "text"),
            (format!("- {}{}", "[".repeat(9), "]".repeat(9)), "nest"),
            (format!("- {}x", "- ".repeat(9)), "nest"),
            ("x".repeat(limits().max_bytes + 1), "bytes"),
        ];
        for (text, want) in cases {
            let message = match refused(&text) {
                ScanError::Limit(m) => m,
                ScanError::TooManyObjects(too_many) => too_many.to_string(),
                other => panic!("{other:?}"),
            };
            assert!(message.contains(want), "{text:.40}: {message}");
        }
        assert!(matches!(refused("- 'a\n"), ScanError::Syntax { line: 1, .. }));
        assert!(matches!(refused("- *nope\n"), ScanError::Syntax { .. }));
        // Eight items at the top level of a list of lists are within ten objects.
        assert!(scan(&"- [a, b, c]\n".repeat(8), &limits(), "objects").is_ok());
    }

    #[test]
    fn a_passed_deadline_stops_reading() {
        let limits = Limits { deadline: Some(Instant::now() - Duration::from_secs(1)), ..Limits::default() };
        let text = format!("a: [{}]", "x, ".repeat(5000));
        assert_eq!(scan(&text, &limits, "objects").unwrap_err(), ScanError::Deadline);
    }
}

mod class_encoding {
    use csi_provider_aws::class::*;

    #[test]
    fn decoding() {
        type Case<'a> = (Encoding, &'a [u8], Result<&'a [u8], ()>);
        let cases: &[Case] = &[
            (Encoding::Raw, b"\xff", Ok(b"\xff")),
            (Encoding::Utf8, b"caf\xc3\xa9", Ok(b"caf\xc3\xa9")),
            (Encoding::Utf8, b"\xff", Err(())),
            (Encoding::Base64, b"aGVsbG8=", Ok(b"hello")),
            (Encoding::Base64, b"aGVs\nbG8", Ok(b"hello")),
            (Encoding::Base64, b"_-8", Ok(&[0xff, 0xef])),
            (Encoding::Base64, b"!!", Err(())),
            (Encoding::Hex, b"CAFE 00", Ok(&[0xca, 0xfe, 0x00])),
            (Encoding::Hex, b"abc", Err(())),
            (Encoding::Hex, b"zz", Err(())),
            (Encoding::Hex, b"+a+b", Err(())),
            (Encoding::Hex, b"-a", Err(())),
            (Encoding::Hex, b"0x", Err(())),
            (Encoding::Hex, "é".as_bytes(), Err(())),
        ];
        for (encoding, input, want) in cases {
            let got = encoding.decode(input).map_err(|_| ());
            assert_eq!(got.as_deref().map_err(|_| ()), *want, "{encoding:?} {input:?}");
        }
    }

    #[test]
    fn parsing() {
        for (input, want) in [
            (None, Ok(Encoding::Raw)),
            (Some("BASE64"), Ok(Encoding::Base64)),
            (Some("utf8"), Ok(Encoding::Utf8)),
            (Some("rot13"), Err(())),
            (Some(" hex"), Err(())),
        ] {
            assert_eq!(Encoding::parse(input).map_err(|_| ()), want, "{input:?}");
        }
    }
}

mod identity_tokens {
    use csi_provider_aws::identity::tokens::*;
    use csi_provider_aws::secret::SecretString;

    fn tokens(json: &str) -> SecretString {
        SecretString::new(json.to_owned())
    }

    #[test]
    fn picks_the_token_of_the_audience() {
        let json = r#"{"sts.amazonaws.com":{"token":"t-sts","expirationTimestamp":"2026-01-01T00:00:00Z"},
                       "pods.eks.amazonaws.com":{"token":"t-pod"}}"#;
        assert_eq!(token_for(Some(&tokens(json)), IRSA_AUDIENCE).unwrap().expose(), "t-sts");
        assert_eq!(token_for(Some(&tokens(json)), POD_IDENTITY_AUDIENCE).unwrap().expose(), "t-pod");
    }

    #[test]
    fn missing_or_bad_tokens_say_to_configure_token_requests() {
        let cases: [(Option<&str>, &str); 10] = [
            (None, "tokenRequests"),
            (Some(""), "tokenRequests"),
            (Some("{}"), "\"sts.amazonaws.com\""),
            (Some(r#"{"sts.amazonaws.com":{"token":""}}"#), "\"sts.amazonaws.com\""),
            (Some(r#"{"other":{"token":"x"}}"#), "tokenRequests"),
            (Some("not json secret-token-value"), "not the driver's JSON"),
            (Some(r#"{"sts.amazonaws.com": "secret-token-value"}"#), "is not {\"token\""),
            (
                Some(r#"{"sts.amazonaws.com": {"token": 7, "x": "secret-token-value"}}"#),
                "not the driver's JSON",
            ),
            (Some(r#"["secret-token-value"]"#), "not the driver's JSON"),
            (Some(r#"{"sts.amazonaws.com": {"token": "secret-token-value""#), "ends early"),
        ];
        for (input, want) in cases {
            let input = input.map(tokens);
            let err = token_for(input.as_ref(), IRSA_AUDIENCE).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
            assert!(!err.contains("secret-token-value"), "{err}");
        }
    }
}

mod identity_verify {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use csi_provider_aws::kube::IssuerKeys;
    use csi_provider_aws::secret::SecretString;

    use csi_provider_aws::identity::verify::*;

    fn issuer(jwk: serde_json::Value) -> IssuerKeys {
        let keys = serde_json::from_value(serde_json::json!({ "keys": [jwk] })).unwrap();
        IssuerKeys { issuer: "https://issuer".into(), keys }
    }

    fn rsa_jwk(extra: serde_json::Value) -> serde_json::Value {
        let mut jwk = serde_json::json!({"kty": "RSA", "kid": "k", "n": "sXch", "e": "AQAB"});
        if let (Some(jwk), Some(extra)) = (jwk.as_object_mut(), extra.as_object()) {
            jwk.extend(extra.clone());
        }
        jwk
    }

    fn token(header: serde_json::Value) -> String {
        let claims = serde_json::json!({"sub": "system:serviceaccount:ns:sa", "aud": ["sts.amazonaws.com"]});
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(b"signature")
        )
    }

    #[test]
    fn only_rs256_tokens_naming_a_published_rsa_signing_key_get_to_the_signature_check() {
        let keys = issuer(rsa_jwk(serde_json::json!({})));
        let cases = [
            // Algorithm confusion: an HMAC "signed" with the public key must not pass.
            (token(serde_json::json!({"alg": "HS256", "kid": "k"})), Unverified::Algorithm),
            (token(serde_json::json!({"alg": "ES256", "kid": "k"})), Unverified::Algorithm),
            (token(serde_json::json!({"alg": "none", "kid": "k"})), Unverified::Malformed),
            (token(serde_json::json!({"alg": "RS256"})), Unverified::Malformed),
            (token(serde_json::json!({"alg": "RS256", "kid": "other"})), Unverified::UnknownKey),
            ("not.a.jwt".to_owned(), Unverified::Malformed),
            (String::new(), Unverified::Malformed),
        ];
        for (token, want) in cases {
            assert_eq!(check(&token, &keys, "sts.amazonaws.com", "ns", "sa"), Err(want), "{token}");
        }
        // A key published for encryption or another algorithm is not a signing key.
        for jwk in [rsa_jwk(serde_json::json!({"use": "enc"})), rsa_jwk(serde_json::json!({"alg": "RS512"}))]
        {
            let token = token(serde_json::json!({"alg": "RS256", "kid": "k"}));
            assert_eq!(
                check(&token, &issuer(jwk), "sts.amazonaws.com", "ns", "sa"),
                Err(Unverified::UnknownKey)
            );
        }
    }

    #[tokio::test]
    async fn without_a_cluster_nothing_verifies() {
        let verifier = TokenVerifier::new(None);
        let token = SecretString::new(token(serde_json::json!({"alg": "RS256", "kid": "k"})));
        assert_eq!(verifier.verify(&token, "sts.amazonaws.com", "ns", "sa").await, Err(Unverified::Disabled));
    }
}

mod aws_errors {
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;
    use csi_provider_aws::aws::*;

    type Sdk = SdkError<GetSecretValueError, HttpResponse>;

    fn service_error(status: u16, code: &str) -> Sdk {
        error_with(status, ErrorMetadata::builder().code(code).message("boom").build(), "")
    }

    fn error_with(status: u16, meta: ErrorMetadata, body: &str) -> Sdk {
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body.to_owned()));
        SdkError::service_error(GetSecretValueError::generic(meta), raw)
    }

    const MARKER: &str = "MARKER-s3cr3t";

    #[test]
    fn unreadable_success_answers_are_server_faults_without_the_body() {
        // What the SDK makes of a 200 it cannot deserialize: an unhandled error holding
        // the raw answer and a source that quotes it.
        let body = format!(r#"{{"Parameters":[{{"Value":"{MARKER}","Version":"x"}}]}}"#);
        let meta = ErrorMetadata::builder().message(format!("failed to parse {body}")).build();
        let (class, code, message) = classify(&error_with(200, meta, &body));
        assert_eq!((class, code), (ErrorClass::Server, None));
        assert!(message.contains("malformed answer from AWS (HTTP 200)"), "{message}");
        assert!(!message.contains(MARKER));

        let response: Sdk = SdkError::response_error(
            format!("invalid JSON: {body}"),
            HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from(body.clone())),
        );
        let (class, _, message) = classify(&response);
        assert_eq!(class, ErrorClass::Server);
        assert!(message.contains("malformed answer") && !message.contains(MARKER), "{message}");
    }

    #[test]
    fn aws_messages_are_capped_and_printable_only() {
        let long = format!("line one\nforged line \u{202e}{}", "x".repeat(500));
        let meta = ErrorMetadata::builder().code("ValidationException").message(long).build();
        let (_, _, message) = classify(&error_with(400, meta, ""));
        assert!(!message.contains('\n') && !message.contains('\u{202e}'), "{message:?}");
        assert!(message.len() < 300 && message.ends_with("..."), "{message}");
        assert!(message.starts_with("ValidationException (HTTP 400): line oneforged line"), "{message}");
    }

    #[test]
    fn error_answers_without_an_aws_code_keep_their_status_class_but_not_their_body() {
        let meta = ErrorMetadata::builder().message(format!("<html>{MARKER}</html>")).build();
        for (status, want) in [(403, ErrorClass::Client), (502, ErrorClass::Server)] {
            let (class, code, message) = classify(&error_with(status, meta.clone(), MARKER));
            assert_eq!((class, code), (want, None), "{status}");
            assert!(message.contains(&format!("HTTP {status} without an AWS error code")), "{message}");
            assert!(!message.contains(MARKER), "{message}");
        }
    }

    #[test]
    fn dispatch_and_construction_failures_are_our_own_words() {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, format!("to {MARKER}"));
        let err: Sdk = SdkError::dispatch_failure(ConnectorError::io(io.into()));
        let (class, _, message) = classify(&err);
        assert_eq!(class, ErrorClass::Network);
        assert_eq!(message, "could not reach AWS: connection failed (ConnectionRefused)");
        // As hyper-rustls hands it over: tokio-rustls's io::Error inside another.
        let tls = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let err: Sdk = SdkError::dispatch_failure(ConnectorError::io(tls.into()));
        let (class, _, message) = classify(&err);
        assert_eq!(class, ErrorClass::Network);
        assert!(message.contains("TLS certificate is not trusted (UnknownIssuer)"), "{message}");
        assert!(message.contains("SSL_CERT_FILE"), "{message}");
        let err: Sdk = SdkError::construction_failure(format!("bad input {MARKER}"));
        let (class, _, message) = classify(&err);
        assert_eq!(class, ErrorClass::Client);
        assert!(!message.contains(MARKER), "{message}");
    }

    #[test]
    fn service_errors_by_status_and_code() {
        let cases = [
            (400, "ResourceNotFoundException", ErrorClass::Client),
            (400, "AccessDeniedException", ErrorClass::Client),
            (400, "ThrottlingException", ErrorClass::Throttled),
            (400, "TooManyRequestsException", ErrorClass::Throttled),
            (429, "Whatever", ErrorClass::Throttled),
            (500, "InternalServiceError", ErrorClass::Server),
            (503, "ServiceUnavailable", ErrorClass::Server),
        ];
        for (status, code, want) in cases {
            let (class, got_code, message) = classify(&service_error(status, code));
            assert_eq!(class, want, "{status} {code}");
            assert_eq!(got_code.as_deref(), Some(code));
            assert!(message.contains(code) && message.contains("boom"), "{message}");
        }
    }

    #[test]
    fn timeouts_and_transience() {
        let err: Sdk = SdkError::timeout_error("slow");
        assert_eq!(classify(&err).0, ErrorClass::Timeout);
        assert!(ErrorClass::Timeout.is_transient());
        assert!(ErrorClass::Server.is_transient());
        assert!(!ErrorClass::Client.is_transient());
    }
}

mod render {
    use csi_provider_aws::aws::FetchedSecret;
    use csi_provider_aws::class::{Parameters, SecretObject, SecretProviderClass};
    use csi_provider_aws::render::*;
    use csi_provider_aws::secret::SecretBytes;

    fn class(objects: &str) -> SecretProviderClass {
        let params = Parameters { objects: Some(objects.into()), ..Parameters::default() };
        SecretProviderClass::parse(&params, 0o644).unwrap()
    }

    /// Renders the class's one named object with `value`.
    fn render_one(class: &SecretProviderClass, value: FetchedSecret) -> Result<Rendered, RenderError> {
        let SecretObject::Named(object) = &class.objects[0] else { panic!("a named object") };
        render(class.path_translation, &[Fetched::One(object, value)])
    }

    fn fetched(value: &str) -> FetchedSecret {
        FetchedSecret { value: SecretBytes::from(value.to_string()), version: "v1".into() }
    }

    const JSON: &str = r#"{"username":"admin","db-port":"5432","port":5432,"nested":{"k":"v"},"empty":""}"#;

    #[test]
    fn jmes_path_files_carry_the_parent_version_and_the_whole_secret_is_mounted() {
        let class = class(
            "- objectName: db\n  objectType: secretsmanager\n  jmesPath:\n    \
             - {path: username, objectAlias: user}\n    \
             - {path: '\"db-port\"', objectAlias: port, filePermission: '0400'}\n    \
             - {path: nested.k, objectAlias: k}\n    \
             - {path: empty, objectAlias: e}",
        );
        let value = fetched(JSON);
        let rendered = render_one(&class, value).unwrap();
        let files: Vec<(&str, u32, &[u8])> = rendered
            .files
            .iter()
            .map(|f| (f.file.path.as_str(), f.file.mode, f.file.contents.expose()))
            .collect();
        assert_eq!(
            files,
            vec![
                ("db", 0o644, JSON.as_bytes()),
                ("user", 0o644, &b"admin"[..]),
                ("port", 0o400, &b"5432"[..]),
                ("k", 0o644, &b"v"[..]),
                ("e", 0o644, &b""[..]),
            ]
        );
        assert!(rendered.files.iter().all(|f| f.version == "v1"));
        assert_eq!(rendered.files[1].file.path, "user");
    }

    #[test]
    fn jmes_path_errors_say_what_is_wrong() {
        let cases = [
            ("username", "not json", "is not valid JSON"),
            ("missing", JSON, "matches nothing"),
            ("port", JSON, "selects a value of type number"),
            ("nested", JSON, "of type object"),
            ("[username]", JSON, "of type array"),
        ];
        for (path, value, want) in cases {
            let class = class(&format!(
                "- objectName: db\n  objectType: secretsmanager\n  jmesPath: [{{path: '{path}', objectAlias: out}}]"
            ));
            let value = fetched(value);
            let err = render_one(&class, value).unwrap_err().to_string();
            assert!(err.contains(want), "{path}: {err}");
            assert!(err.contains("\"db\""), "{err} should name the object");
            assert!(!err.contains("admin"), "{err} leaks the value");
        }
    }

    #[test]
    fn binary_values_pass_through_untouched() {
        let class = class("- {objectName: bin, objectType: secretsmanager}");
        let value = FetchedSecret { value: SecretBytes::new(vec![0, 159, 146, 150]), version: "v9".into() };
        let rendered = render_one(&class, value).unwrap();
        assert_eq!(rendered.files[0].file.contents.expose(), &[0, 159, 146, 150]);
        assert_eq!((rendered.files[0].file.path.as_str(), rendered.files[0].version.as_str()), ("bin", "v9"));
    }

    #[test]
    fn collection_entries_carry_their_own_versions_and_may_not_collide() {
        let class = class(
            "- {objectType: ssmparameter, path: /app/, filePermission: '0600'}\n- {objectName: one, objectType: secretsmanager}",
        );
        let (SecretObject::Collection(set), SecretObject::Named(one)) =
            (&class.objects[0], &class.objects[1])
        else {
            panic!("a collection, then a named object")
        };
        let entry = |name: &str, version: &str| {
            (
                name.to_owned(),
                FetchedSecret { value: SecretBytes::from(name.to_owned()), version: version.into() },
            )
        };
        let objects = [
            Fetched::Many(set, vec![entry("/app/a", "3"), entry("/app/b/c", "7")]),
            Fetched::One(one, fetched("x")),
        ];
        let rendered = render(class.path_translation, &objects).unwrap();
        let files: Vec<(&str, u32, &str)> =
            rendered.files.iter().map(|f| (f.file.path.as_str(), f.file.mode, f.version.as_str())).collect();
        assert_eq!(files, vec![("a", 0o600, "3"), ("b_c", 0o600, "7"), ("one", 0o644, "v1")]);

        let cases = [
            (vec![entry("/app/one", "1")], "would both write the file \"one\""),
            (vec![entry("/app/..", "1")], "entry \"/app/..\" cannot be a file"),
        ];
        for (entries, want) in cases {
            let objects = [Fetched::Many(set, entries), Fetched::One(one, fetched("x"))];
            let err = render(class.path_translation, &objects).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}

mod write {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::Path;

    use csi_provider_aws::render::RenderedFile;
    use csi_provider_aws::secret::SecretBytes;
    use csi_provider_aws::write::*;

    fn file(path: &str, mode: u32, contents: &str) -> RenderedFile {
        RenderedFile { path: path.into(), mode, contents: SecretBytes::from(contents.to_string()) }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if entry.file_type().unwrap().is_dir() {
                out.extend(listing(&entry.path()).into_iter().map(|n| format!("{name}/{n}")));
            } else {
                out.push(name);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn writes_files_with_modes_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &[file("a", 0o600, "1"), file("x/y/b", 0o640, "2")]).unwrap();
        assert_eq!(listing(dir.path()), vec!["a", "x/y/b"]);
        assert_eq!(fs::read_to_string(dir.path().join("x/y/b")).unwrap(), "2");
        let mode = fs::metadata(dir.path().join("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Rewriting replaces the contents (rotation).
        write_all(dir.path(), &[file("a", 0o644, "new")]).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "new");
        assert_eq!(listing(dir.path()), vec!["a", "x/y/b"]);
    }

    #[test]
    fn nothing_is_written_when_one_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("blocked")).unwrap();
        let err = write_all(dir.path(), &[file("a", 0o644, "1"), file("blocked", 0o644, "2")]).unwrap_err();
        assert!(err.to_string().contains("\"blocked\""), "{err}");
        assert_eq!(listing(dir.path()), Vec::<String>::new(), "no file and no temp file may remain");
    }

    #[test]
    fn symlinks_in_the_target_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("link")).unwrap();
        let err = write_all(dir.path(), &[file("link/secret", 0o644, "s")]).unwrap_err();
        assert!(matches!(err, WriteError::Unsafe { .. }), "{err}");
        // A symlink at the file's own name is replaced, not written through.
        let victim = outside.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        symlink(&victim, dir.path().join("f")).unwrap();
        write_all(dir.path(), &[file("f", 0o644, "s")]).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!fs::symlink_metadata(dir.path().join("f")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_target_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_all(&dir.path().join("nope"), &[file("a", 0o644, "1")]).unwrap_err();
        assert!(matches!(err, WriteError::NoTarget(_)));
    }
}

mod status {
    use std::time::Duration;

    use csi_provider_aws::aws::failover::FetchFailure;
    use csi_provider_aws::aws::{ErrorClass, FetchError};
    use csi_provider_aws::class::{ClassError, ObjectType};
    use csi_provider_aws::error::MountError;
    use csi_provider_aws::identity::IdentityError;
    use csi_provider_aws::kube::ClusterError;
    use csi_provider_aws::render::RenderError;
    use csi_provider_aws::request::RequestError;
    use csi_provider_aws::server::status::*;
    use csi_provider_aws::write::WriteError;
    use tonic::{Code, Status};

    fn fetch(class: ErrorClass, code: Option<&str>) -> MountError {
        let error = FetchError {
            what: "secret \"db\"".into(),
            object_type: ObjectType::SecretsManager,
            region: "us-east-1".into(),
            class,
            code: code.map(str::to_owned),
            message: "m".into(),
        };
        MountError::Fetch { failures: vec![FetchFailure::Primary(error)], total: 1 }
    }

    fn sts(class: ErrorClass) -> MountError {
        MountError::Identity(IdentityError::Sts {
            role: "r".into(),
            region: "us-east-1".into(),
            class,
            code: None,
            message: "m".into(),
        })
    }

    #[test]
    fn every_failure_has_its_code_and_label() {
        let what = || "service account shop/web".to_owned();
        let mut cases: Vec<(MountError, Code, &str)> = vec![
            (RequestError::NoTargetPath.into(), Code::InvalidArgument, "bad_request"),
            (
                ClassError::new(vec!["objectType is missing".into()]).into(),
                Code::InvalidArgument,
                "invalid_class",
            ),
            (
                MountError::NoRegion { namespace: "shop".into(), pod: "web-0".into() },
                Code::InvalidArgument,
                "no_region",
            ),
            (
                MountError::NodeRegion { namespace: "shop".into(), pod: "web-0".into(), problem: "p".into() },
                Code::InvalidArgument,
                "no_region",
            ),
            (IdentityError::NoTokens.into(), Code::InvalidArgument, "identity"),
            (
                IdentityError::NoTokenForAudience("sts.amazonaws.com".into()).into(),
                Code::InvalidArgument,
                "identity",
            ),
            (IdentityError::BadTokens("b".into()).into(), Code::InvalidArgument, "identity"),
            (IdentityError::NoPodField("pod.namespace").into(), Code::InvalidArgument, "identity"),
            (
                IdentityError::NoRole { namespace: "shop".into(), service_account: "web".into() }.into(),
                Code::PermissionDenied,
                "identity",
            ),
            (sts(ErrorClass::Client), Code::PermissionDenied, "identity"),
            (sts(ErrorClass::Server), Code::Unavailable, "identity"),
            (sts(ErrorClass::Throttled), Code::Unavailable, "identity"),
            (
                IdentityError::AgentRejected { status: 400, message: "m".into() }.into(),
                Code::PermissionDenied,
                "identity",
            ),
            (IdentityError::AgentUnavailable("down".into()).into(), Code::Unavailable, "identity"),
            (IdentityError::NoCredentials("none".into()).into(), Code::PermissionDenied, "identity"),
            (fetch(ErrorClass::Client, Some("ResourceNotFoundException")), Code::NotFound, "not_found"),
            (fetch(ErrorClass::Client, Some("ParameterVersionLabelNotFound")), Code::NotFound, "not_found"),
            (
                fetch(ErrorClass::Client, Some("AccessDeniedException")),
                Code::PermissionDenied,
                "access_denied",
            ),
            (
                fetch(ErrorClass::Client, Some("KMSAccessDeniedException")),
                Code::PermissionDenied,
                "access_denied",
            ),
            (
                fetch(ErrorClass::Client, Some("ValidationException")),
                Code::InvalidArgument,
                "aws_client_error",
            ),
            (fetch(ErrorClass::Client, None), Code::InvalidArgument, "aws_client_error"),
            (fetch(ErrorClass::Server, None), Code::Unavailable, "aws_unavailable"),
            (fetch(ErrorClass::Throttled, Some("ThrottlingException")), Code::Unavailable, "aws_unavailable"),
            (fetch(ErrorClass::Timeout, None), Code::Unavailable, "aws_unavailable"),
            (fetch(ErrorClass::Network, None), Code::Unavailable, "aws_unavailable"),
            (MountError::Fetch { failures: Vec::new(), total: 0 }, Code::Internal, "aws_client_error"),
            (RenderError::NotJson { object: "db".into() }.into(), Code::InvalidArgument, "render"),
            (MountError::TooLarge { size: 2, limit: 1 }, Code::ResourceExhausted, "too_large"),
            (
                MountError::ResponseTooLarge { encoded: 2, contents: 1, limit: 1 },
                Code::ResourceExhausted,
                "too_large",
            ),
            (
                WriteError::Io { path: "/t/x".into(), source: std::io::Error::other("full") }.into(),
                Code::Internal,
                "write",
            ),
            (MountError::Deadline(Duration::from_secs(30)), Code::DeadlineExceeded, "deadline"),
            (MountError::Internal("writing the files"), Code::Internal, "internal"),
        ];
        for (e, code) in [
            (ClusterError::NotFound { what: what() }, Code::NotFound),
            (ClusterError::Forbidden { what: what(), status: 403 }, Code::PermissionDenied),
            (ClusterError::Unavailable { what: what(), message: "m".into() }, Code::Unavailable),
            (ClusterError::InvalidName { what: what() }, Code::InvalidArgument),
        ] {
            cases.push((MountError::Region(e.clone()), code, "no_region"));
            cases.push((IdentityError::Cluster(e).into(), code, "identity"));
        }
        cases.push((
            csi_provider_aws::class::TooManyObjects { count: 3, limit: 2, complete: true }.into(),
            Code::InvalidArgument,
            "too_many_objects",
        ));
        for (err, want_code, want_label) in cases {
            let shown = err.to_string();
            assert_eq!((code(&err), label(&err)), (want_code, want_label), "{shown}");
            let status = Status::from(err);
            assert_eq!((status.code(), status.message()), (want_code, shown.as_str()));
        }
    }
}

mod check {
    use csi_provider_aws::check::*;

    const MANIFEST: &str = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: web
spec:
  provider: aws
  secretObjects:
    - secretName: web
      type: Opaque
      data:
        - {objectName: user, key: username}
  parameters:
    region: us-east-1
    objects: |
      - objectName: prod/db
        objectType: secretsmanager
        jmesPath:
          - {path: username, objectAlias: user}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
"#;

    #[test]
    fn lists_the_files_of_a_valid_manifest() {
        let reports = check(MANIFEST, None).unwrap();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].problems.is_empty(), "{:?}", reports[0].problems);
        let text = format(&reports);
        assert!(text.contains("SecretProviderClass \"web\": OK, 2 file(s)"), "{text}");
        assert!(text.contains("prod_db  0644  secretsmanager \"prod/db\""), "{text}");
        assert!(text.contains("user  0644  jmesPath \"username\""), "{text}");
    }

    #[test]
    fn reports_every_problem() {
        let broken = MANIFEST
            .replace("provider: aws", "provider: azure")
            .replace("objectName: user", "objectName: usr")
            .replace("objectType: secretsmanager", "objectType: secretmanager");
        let reports = check(&broken, None).unwrap();
        let problems = reports[0].problems.join("\n");
        assert!(problems.contains("spec.provider is \"azure\""), "{problems}");
        assert!(problems.contains("objectType \"secretmanager\" is unknown"), "{problems}");

        let unsynced = MANIFEST.replace("objectName: user", "objectName: usr");
        let problems = check(&unsynced, None).unwrap()[0].problems.join("\n");
        assert!(
            problems.contains("\"usr\" matches no mounted file; use one of: prod_db, user"),
            "{problems}"
        );
    }

    #[test]
    fn accepts_a_bare_objects_list_and_checks_arn_regions() {
        let list = "- objectName: arn:aws:secretsmanager:us-west-2:1:secret:x\n";
        assert!(check(list, Some("us-west-2")).unwrap()[0].problems.is_empty());
        let reports = check(list, Some("us-east-1")).unwrap();
        assert!(reports[0].problems[0].contains("does not match"), "{:?}", reports[0].problems);
        assert!(check("kind: Pod\n", None).is_err());
        assert!(check(":\n  - [", None).is_err());
    }

    /// A manifest with `parameters` as given (indented by four spaces).
    fn manifest(parameters: &str, synced: &str) -> String {
        format!(
            "kind: SecretProviderClass\nmetadata: {{name: c}}\nspec:\n  provider: aws\n{synced}  parameters:\n{parameters}"
        )
    }

    #[test]
    fn nothing_goes_unnoticed_in_one_run() {
        let objects = |list: &str| format!("    region: us-east-1\n    objects: |\n{list}");
        let sync_usr = "  secretObjects:\n    - {secretName: s, data: [{objectName: usr, key: k}]}\n";
        // (manifest, problems wanted, warnings wanted)
        let cases: Vec<(String, &[&str], &[&str])> = vec![
            (
                manifest(
                    "    region: us-east-1\n    object: |\n      - {objectName: a, objectType: secretsmanager}\n",
                    "",
                ),
                &[],
                &["parameter \"object\" is unknown and ignored; did you mean \"objects\"?", "mounts nothing"],
            ),
            (
                manifest(
                    "    regoin: us-east-1\n    objects: '- {objectName: a, objectType: secretsmanager}'\n",
                    "",
                ),
                &[],
                &["parameter \"regoin\" is unknown and ignored; did you mean \"region\"?"],
            ),
            (
                manifest(&objects("      - objectName: db\n        objectTpe: secretsmanager\n"), ""),
                &["object \"db\": objectType is missing"],
                // The line counts from the start of the file.
                &["objects[0]: unknown key \"objectTpe\" is ignored (line 9); did you mean \"objectType\"?"],
            ),
            (
                manifest(
                    &objects(
                        "      - {objectName: a, objectType: vault}\n      - {objectName: x, objectType: secretsmanager}\n      \
                         - {objectName: y, objectType: secretsmanager, objectAlias: x}\n",
                    ),
                    "",
                ),
                &["objectType \"vault\" is unknown", "would both write the file \"x\""],
                &[],
            ),
            (
                manifest(&objects("      - {objectName: a, objectType: vault}\n"), sync_usr),
                &["objectType \"vault\" is unknown", "\"usr\" matches no mounted file; use one of: a"],
                &[],
            ),
            (
                manifest(&objects("      - objectName: a\n      - objectName: 'b\n"), ""),
                &["not valid YAML", "at line 9)"],
                &[],
            ),
        ];
        for (text, problems, warnings) in cases {
            let reports = check(&text, None).unwrap();
            if problems.is_empty() {
                let headline = format(&reports);
                assert!(headline.contains("warning(s)\n"), "{headline}");
            }
            let (found, warned) = (reports[0].problems.join("\n"), reports[0].warnings.join("\n"));
            for want in problems {
                assert!(found.contains(want), "{text}\nproblems:\n{found}\nshould contain {want:?}");
            }
            assert_eq!(problems.is_empty(), found.is_empty(), "{text}\nproblems:\n{found}");
            for want in warnings {
                assert!(warned.contains(want), "{text}\nwarnings:\n{warned}\nshould contain {want:?}");
            }
        }
    }
}

mod cli {
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::time::Duration;

    use clap::Parser;
    use csi_provider_aws::cli::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::parse_go_style(
            std::iter::once("csi-provider-aws").chain(args.iter().copied()).map(OsString::from),
        )
    }

    #[test]
    fn durations() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
        ];
        for (input, want) in ok {
            assert_eq!(go_duration(input), Ok(want), "{input}");
        }
        for input in ["", "5", "-1s", "1x", "ms", "0", "1.2.3s", "0s"] {
            assert!(go_duration(input).is_err(), "{input} should be rejected");
        }
    }

    #[test]
    fn ascp_flags_and_spellings() {
        let cli = parse(&[
            "--provider-volume=/p",
            "--driver-writes-secrets",
            "--qps=20",
            "-burst=30",
            "--eks-addon-version=v1.2.3-eksbuild.1",
            "--pod-identity-http-timeout=250ms",
        ]);
        let s = &cli.serve;
        assert_eq!(s.provider_volume, PathBuf::from("/p"));
        assert!(s.driver_writes_secrets);
        assert_eq!((s.qps, s.burst), (20, 30));
        assert_eq!(s.eks_addon_version, "v1.2.3-eksbuild.1");
        assert_eq!(s.pod_identity_http_timeout, Some(OptionalDuration(Some(Duration::from_millis(250)))));

        for (flag, want) in [
            ("--driver-writes-secrets=true", true),
            ("--driver-writes-secrets=false", false),
            ("--driver-writes-secrets=1", true),
            ("-driver-writes-secrets=False", false),
        ] {
            assert_eq!(parse(&[flag]).serve.driver_writes_secrets, want, "{flag}");
        }
        assert!(!parse(&[]).serve.driver_writes_secrets);
        assert_eq!(
            parse(&["--pod-identity-http-timeout="]).serve.pod_identity_http_timeout,
            Some(OptionalDuration(None))
        );
        assert_eq!(parse(&["--log-format-json"]).serve.log_format(), LogFormat::Json);
        assert_eq!(parse(&["--log-format", "json"]).serve.log_format(), LogFormat::Json);
        assert_eq!(parse(&["--metrics-addr=127.0.0.1:0"]).serve.metrics_addr.port(), 0);
        assert_eq!(parse(&[]).serve.cache_ttl, Duration::ZERO);
        assert_eq!(parse(&["--cache-ttl=2m"]).serve.cache_ttl, Duration::from_secs(120));
        assert_eq!(parse(&["--cache-ttl=0s"]).serve.cache_ttl, Duration::ZERO);
    }

    #[test]
    fn bad_values_are_refused() {
        let args = |a: &[&str]| {
            Cli::try_parse_from(std::iter::once("csi-provider-aws").chain(a.iter().copied())).map(|_| ())
        };
        assert!(args(&["--pod-identity-http-timeout=soon"]).is_err());
        assert!(args(&["--driver-writes-secrets=maybe"]).is_err());
        assert!(args(&["--qps=-1"]).is_err());
        assert!(args(&["--metrics-addr=nowhere"]).is_err());
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value() {
        let s = parse(&["--qps=5", "--qps=20", "-burst=1", "-burst", "30"]).serve;
        assert_eq!((s.qps, s.burst), (20, 30));
        let s = parse(&["--driver-writes-secrets", "--driver-writes-secrets=false"]).serve;
        assert!(!s.driver_writes_secrets);
        let s = parse(&["--cache-ttl=1m", "--cache-ttl=0", "--log-format=json", "--log-format=text"]).serve;
        assert_eq!((s.cache_ttl, s.log_format()), (Duration::ZERO, LogFormat::Text));
        let Some(Command::Mount(csi_provider_aws::client::MountArgs { pod, .. })) =
            parse(&["mount", "--spc=s", "--target=t", "--pod=a", "--pod=b"]).command
        else {
            panic!("mount subcommand")
        };
        assert_eq!(pod, "b");
    }

    #[test]
    fn check_subcommand() {
        let cli = parse(&["check", "spc.yaml", "--region", "us-east-1"]);
        assert!(matches!(cli.command, Some(Command::Check { .. })));
    }
}

mod secret {
    use csi_provider_aws::secret::*;

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
