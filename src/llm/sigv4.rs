//! AWS Signature Version 4, just enough to sign a Bedrock runtime request: a canonical
//! request, the string to sign, the derived signing key and the `Authorization`
//! header. Written here (over `sha2` and `hmac`) rather than pulling in the AWS SDK for
//! one header; checked against AWS's published SigV4 test suite.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An access-key pair, with the session token of temporary credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

impl Credentials {
    /// Reads `ACCESS_KEY_ID:SECRET_ACCESS_KEY` or
    /// `ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN`. An access key id is 16 to 128
    /// upper-case letters and digits (`AKIA…` long-term, `ASIA…` temporary); neither
    /// it, a secret key nor a session token contains `:`. Anything else (a Bedrock API
    /// key, which never contains `:` in front of such an id) is `None`.
    pub fn parse(key: &str) -> Option<Credentials> {
        let mut parts = key.trim().splitn(3, ':');
        let id = parts.next()?;
        let secret = parts.next()?;
        let token = parts.next();
        let id_ok = (16..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !id_ok || secret.is_empty() || token.is_some_and(|t| t.is_empty() || t.contains(':')) {
            return None;
        }
        Some(Credentials {
            access_key_id: id.to_string(),
            secret_access_key: secret.to_string(),
            session_token: token.map(str::to_string),
        })
    }
}

/// What to sign. `path` is the path exactly as sent (already percent-encoded);
/// `headers` are the signed headers (`host` and `x-amz-date` among them).
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// The scope of a signature.
pub struct Scope<'a> {
    /// `YYYYMMDD'T'HHMMSS'Z'`, the `x-amz-date`.
    pub amz_date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 percent-encoding as SigV4 defines it: everything but `A-Za-z0-9-_.~`.
pub fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical URI: every segment of the path as sent encoded once more (every
/// service but S3 signs the doubly encoded path, so `%3A` in a model id becomes `%253A`).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() || path == "/" {
        return "/".to_string();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(k), uri_encode(v))
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lower-cased, sorted headers with trimmed values, and their `;`-joined names.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut lines: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), value)
        })
        .collect();
    lines.sort();
    let canonical = lines.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = lines
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (canonical, signed)
}

pub fn canonical_request(request: &Request<'_>) -> (String, String) {
    let (headers, signed) = canonical_headers(request.headers);
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query),
        headers,
        signed,
        sha256_hex(request.body)
    );
    (canonical, signed)
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The signature of a string to sign.
pub fn signature(secret: &str, scope: &Scope<'_>, string_to_sign: &str) -> String {
    let date = &scope.amz_date[..scope.amz_date.len().min(8)];
    let key = signing_key(secret, date, scope.region, scope.service);
    hex::encode(hmac(&key, string_to_sign.as_bytes()))
}

/// The `Authorization` header value for a request.
pub fn authorization(
    credentials: &Credentials,
    request: &Request<'_>,
    scope: &Scope<'_>,
) -> String {
    let (canonical, signed_headers) = canonical_request(request);
    let date = &scope.amz_date[..scope.amz_date.len().min(8)];
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{}",
        scope.amz_date,
        sha256_hex(canonical.as_bytes())
    );
    format!(
        "{ALGORITHM} Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={}",
        credentials.access_key_id,
        signature(&credentials.secret_access_key, scope, &string_to_sign)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of AWS's SigV4 test suite.
    fn example() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    #[test]
    fn the_get_vanilla_case_of_the_aws_test_suite_signs_as_published() {
        let headers = vec![
            ("Host".to_string(), "example.amazonaws.com".to_string()),
            ("X-Amz-Date".to_string(), "20150830T123600Z".to_string()),
        ];
        let request = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        let (canonical, _) = canonical_request(&request);
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let scope = Scope {
            amz_date: "20150830T123600Z",
            region: "us-east-1",
            service: "service",
        };
        assert_eq!(
            authorization(&example(), &request, &scope),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn the_signature_of_the_suites_older_string_to_sign_matches() {
        // From the 2011 edition of the suite (service `host`).
        let to_sign = "AWS4-HMAC-SHA256\n20110909T233600Z\n20110909/us-east-1/host/aws4_request\n\
                       e25f777ba161a0f1baf778a87faf057187cf5987f17953320e3ca399feb5f00d";
        let scope = Scope {
            amz_date: "20110909T233600Z",
            region: "us-east-1",
            service: "host",
        };
        assert_eq!(
            signature("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", &scope, to_sign),
            "be7148d34ebccdc6423b19085378aa0bee970bdc61d144bd1a8c48c33079ab09"
        );
    }

    #[test]
    fn a_model_id_in_the_path_is_encoded_twice() {
        assert_eq!(
            canonical_uri("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"),
            "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse"
        );
        assert_eq!(canonical_query("b=2&a=1"), "a=1&b=2");
    }

    #[test]
    fn access_key_pairs_are_told_from_bedrock_api_keys() {
        let pair =
            Credentials::parse("AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
                .unwrap();
        assert_eq!(pair.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(pair.session_token, None);
        let temporary =
            Credentials::parse("ASIAXXXXXXXXXXXXXXXX:secret:FwoGZXIvYXdzEJr//token=").unwrap();
        assert_eq!(
            temporary.session_token.as_deref(),
            Some("FwoGZXIvYXdzEJr//token=")
        );
        assert_eq!(Credentials::parse("ABSKQmVkcm9ja0FQSUtleS1hYmM="), None);
        assert_eq!(
            Credentials::parse("bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t"),
            None
        );
        assert_eq!(Credentials::parse("AKIAIOSFODNN7EXAMPLE:"), None);
        assert!(format!("{pair:?}").contains("***"));
    }
}
