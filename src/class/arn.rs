//! Amazon Resource Names as they appear in `objectName`: just enough parsing to find the
//! service (which decides the object type) and the region (which must match the mount's).

use std::fmt;

/// A parsed `arn:partition:service:region:account:resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub partition: String,
    pub service: String,
    pub region: String,
    pub account: String,
    pub resource: String,
}

impl Arn {
    /// Whether `name` claims to be an ARN (and so must parse as one).
    pub fn looks_like(name: &str) -> bool {
        name.starts_with("arn:")
    }

    /// Parses an ARN; the resource keeps any further `:` (Secrets Manager uses one).
    pub fn parse(name: &str) -> Result<Self, String> {
        let parts: Vec<&str> = name.splitn(6, ':').collect();
        let ["arn", partition, service, region, account, resource] = parts[..] else {
            return Err(format!(
                "{name:?} is not a valid ARN: expected arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE"
            ));
        };
        if service.is_empty() || resource.is_empty() {
            return Err(format!("{name:?} is not a valid ARN: its service or resource is empty"));
        }
        let [partition, service, region, account, resource] =
            [partition, service, region, account, resource].map(str::to_owned);
        Ok(Self { partition, service, region, account, resource })
    }

    /// The same ARN in another region: how a replicated secret is named there.
    pub fn in_region(&self, region: &str) -> Self {
        Self { region: region.to_owned(), ..self.clone() }
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition, self.service, self.region, self.account, self.resource
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
