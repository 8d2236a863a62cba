//! `csi-provider-aws check FILE`: validates SecretProviderClasses offline, with the same
//! rules and limits a mount applies, and prints the files each would produce, every problem
//! found and every warning (unknown keys with a "did you mean", a class that mounts nothing),
//! with line numbers counted from the start of the file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use serde_yaml::Value;

use crate::class::{Limits, Lines, Parameters, ScanError, SecretObject, SecretProviderClass};

/// The driver's default file mode (`permission` "420").
const DEFAULT_MODE: u32 = 0o644;

/// What checking one SecretProviderClass found.
#[derive(Debug)]
pub struct ClassReport {
    pub name: String,
    pub files: Vec<String>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks every SecretProviderClass in `text` (a manifest, or just an `objects` list).
pub fn check(text: &str, region: Option<&str>) -> Result<Vec<ClassReport>, String> {
    let positions = crate::class::scan(text, &Limits::manifest(), "manifest").map_err(|e| match e {
        ScanError::Syntax { message, line, column } => {
            format!("not valid YAML: {message} at line {line}, column {column}")
        }
        ScanError::Limit(reason) => format!("the file is refused: {reason}"),
        ScanError::TooManyObjects(too_many) => too_many.to_string(),
        ScanError::Deadline => "took too long to read".into(),
    })?;
    let mut reports = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| format!("not valid YAML: {e}"))?;
        match &value {
            Value::Mapping(map) if map.get("kind").and_then(Value::as_str) == Some("SecretProviderClass") => {
                let root = if index == 0 { "manifest".to_owned() } else { format!("manifest#{index}") };
                // Where the document's `objects` text starts in the file.
                let lines = Lines { first: positions.value_line(&format!("{root}.spec.parameters.objects")) };
                reports.push(check_manifest(&value, region, lines));
            }
            Value::Sequence(_) if index == 0 => {
                let params = Parameters { objects: Some(text.to_owned()), ..Parameters::default() };
                reports.push(check_parameters("objects", &params, region, &[], Lines { first: Some(1) }));
            }
            _ => {}
        }
    }
    if reports.is_empty() {
        return Err("found no SecretProviderClass (kind: SecretProviderClass) and no objects list".into());
    }
    Ok(reports)
}

/// Renders reports as the command prints them.
pub fn format(reports: &[ClassReport]) -> String {
    let mut out = String::new();
    for report in reports {
        if report.problems.is_empty() {
            let sets = report.files.iter().filter(|f| f.starts_with("<a file per")).count();
            let files = report.files.len() - sets;
            let sets = if sets == 0 { String::new() } else { format!(" and {sets} set(s) of files") };
            // Warnings do not fail the check (a mount would work), but the summary says so.
            let n = report.warnings.len();
            let warned = if n == 0 { String::new() } else { format!(", {n} warning(s)") };
            let _ = writeln!(out, "{}: OK, {files} file(s){sets}{warned}", report.name);
            for file in &report.files {
                let _ = writeln!(out, "  {file}");
            }
        } else {
            let _ = writeln!(out, "{}: {} problem(s)", report.name, report.problems.len());
            for problem in &report.problems {
                let _ = writeln!(out, "  error: {problem}");
            }
        }
        for warning in &report.warnings {
            let _ = writeln!(out, "  warning: {warning}");
        }
    }
    out
}

fn check_manifest(manifest: &Value, region: Option<&str>, lines: Lines) -> ClassReport {
    let name =
        manifest.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("<unnamed>");
    let label = format!("SecretProviderClass {name:?}");
    let spec = manifest.get("spec");
    let mut problems = Vec::new();
    match spec.and_then(|s| s.get("provider")).and_then(Value::as_str) {
        Some("aws") => {}
        Some(other) => {
            problems.push(format!("spec.provider is {other:?}: it must be \"aws\" to reach this provider"))
        }
        None => problems.push("spec.provider is missing: set it to \"aws\"".into()),
    }
    let mut raw = BTreeMap::new();
    if let Some(Value::Mapping(parameters)) = spec.and_then(|s| s.get("parameters")) {
        for (key, value) in parameters {
            let key = key.as_str().unwrap_or_default().to_owned();
            match value {
                Value::String(s) => {
                    raw.insert(key, s.clone());
                }
                _ => problems.push(format!(
                    "spec.parameters.{key} must be a string (Kubernetes rejects other types): quote it"
                )),
            }
        }
    }
    let params: Parameters =
        serde_json::from_value(serde_json::to_value(&raw).unwrap_or_default()).unwrap_or_default();
    let synced = synced_files(spec);
    let mut report = check_parameters(&label, &params, region, &synced, lines);
    problems.append(&mut report.problems);
    report.problems = problems;
    report
}

/// `spec.secretObjects[i].data[j].objectName`: files synced to Kubernetes Secrets.
fn synced_files(spec: Option<&Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(Value::Sequence(objects)) = spec.and_then(|s| s.get("secretObjects")) else { return out };
    for (i, object) in objects.iter().enumerate() {
        let Some(Value::Sequence(data)) = object.get("data") else { continue };
        for (j, entry) in data.iter().enumerate() {
            if let Some(name) = entry.get("objectName").and_then(Value::as_str) {
                out.push((format!("spec.secretObjects[{i}].data[{j}].objectName"), name.to_owned()));
            }
        }
    }
    out
}

fn check_parameters(
    label: &str,
    params: &Parameters,
    region: Option<&str>,
    synced: &[(String, String)],
    lines: Lines,
) -> ClassReport {
    let checked = SecretProviderClass::check(params, DEFAULT_MODE, &Limits::default(), lines);
    let (problems, warnings) = match &checked.result {
        Ok(class) => (Vec::new(), class.warnings.clone()),
        Err(e) => (e.problems.clone(), e.warnings.clone()),
    };
    let mut report = ClassReport { name: label.to_owned(), files: Vec::new(), problems, warnings };
    // secretObjects name files: checked against every file an object claims, valid or not.
    let mut claimed: Vec<&str> = checked.claims.iter().map(|c| c.file.as_str()).collect();
    claimed.dedup();
    for (place, name) in synced.iter().filter(|(_, name)| !claimed.contains(&name.as_str())) {
        report.problems.push(match claimed.is_empty() {
            true => format!("{place} {name:?} matches no mounted file: the class mounts none"),
            false => format!("{place} {name:?} matches no mounted file; use one of: {}", claimed.join(", ")),
        });
    }
    let Ok(class) = checked.result else { return report };
    if class.objects.is_empty() {
        report.warnings.push("the class mounts nothing: objects is empty or missing".into());
    }
    match class.parameters.region.as_deref().or(region) {
        Some(region) => {
            if let Err(e) = class.check_regions(region) {
                report.problems.extend(e.problems);
            }
        }
        None if class.objects.iter().any(|o| matches!(o, SecretObject::Named(n) if n.arn.is_some())) => {
            report.warnings.push(
                "no region set: ARN regions were not checked (pass --region, or the provider's \
                 AWS_REGION / the node's region applies at mount time)"
                    .into(),
            )
        }
        None => {}
    }
    for object in &class.objects {
        let object = match object {
            SecretObject::Collection(set) => {
                report.files.push(format!(
                    "<a file per entry>  {:04o}  {}, at most {}",
                    set.mode, set.collection, set.max_count
                ));
                continue;
            }
            SecretObject::Named(object) => object,
        };
        let version = object.version.as_ref().map_or_else(String::new, |v| format!(" version {v}"));
        let label = object.version_label.as_ref().map_or_else(String::new, |l| format!(" label {l}"));
        report.files.push(format!(
            "{}  {:04o}  {} {:?}{version}{label}",
            object.file, object.mode, object.object_type, object.name
        ));
        if let Some(expand) = &object.expand_json {
            let keys = expand.keys.as_ref().map_or_else(|| "every key".to_owned(), |k| k.join(", "));
            report.files.push(format!(
                "<a file per key: {keys}>  {:04o}  expandJson of {:?}",
                object.mode, object.name
            ));
        }
        for entry in &object.jmes_path {
            report.files.push(format!(
                "{}  {:04o}  jmesPath {:?} of {:?}",
                entry.file, entry.mode, entry.path, object.name
            ));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

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
