//! Where the store's access key comes from: an AWS-style credentials file
//! when one is configured, else `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
//! (`AWS_SESSION_TOKEN` if set), the variables every S3 tool reads (and the
//! ones `web.config` can set for IIS).
//!
//! Nothing else is tried: without this, the client would fall back to the
//! cloud instance-metadata address and hang at start-up on any machine that
//! is not an EC2 instance. The secret never reaches a log: [`Credentials`]
//! prints as redacted.

use std::fmt;
use std::path::Path;

use super::S3Error;

pub(super) struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Credentials {
    /// From `file` if given, else from the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, S3Error> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| S3Error::Credentials {
                    problem: format!("cannot read {}: {e}", path.display()),
                })?;
                parse_ini(&text).ok_or_else(|| S3Error::Credentials {
                    problem: format!(
                        "{} has no [default] section with aws_access_key_id and aws_secret_access_key",
                        path.display()
                    ),
                })
            }
            None => {
                let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(access_key_id), Some(secret_access_key)) => Ok(Self {
                        access_key_id,
                        secret_access_key,
                        session_token: var("AWS_SESSION_TOKEN"),
                    }),
                    _ => Err(S3Error::Credentials {
                        problem: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                                  or credentials_file in [storage.s3]"
                            .to_owned(),
                    }),
                }
            }
        }
    }
}

/// The `[default]` profile of an AWS credentials file: `key = value` lines,
/// `#` and `;` comments, keys in any case.
fn parse_ini(text: &str) -> Option<Credentials> {
    let mut in_default = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_default = section.trim() == "default";
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !in_default {
            continue;
        }
        let value = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = value,
            "aws_secret_access_key" => secret = value,
            "aws_session_token" => token = value,
            _ => {}
        }
    }
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_default_profile_only() {
        let text = "\
# keys for the image store
[other]
aws_access_key_id = WRONG
aws_secret_access_key = WRONG

[default]
AWS_Access_Key_Id=GK123
aws_secret_access_key = s3cr3t=with=equals
; no token
";
        let c = parse_ini(text).expect("parses");
        assert_eq!(c.access_key_id, "GK123");
        assert_eq!(c.secret_access_key, "s3cr3t=with=equals");
        assert_eq!(c.session_token, None);
    }

    #[test]
    fn incomplete_profile_is_none() {
        assert!(parse_ini("[default]\naws_access_key_id = GK1\n").is_none());
        assert!(parse_ini("aws_access_key_id = GK1\naws_secret_access_key = x\n").is_none());
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Credentials {
            access_key_id: "GK1".into(),
            secret_access_key: "topsecret".into(),
            session_token: Some("tok".into()),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("topsecret") && !shown.contains("tok\""),
            "{shown}"
        );
        assert!(shown.contains("GK1"));
    }
}
