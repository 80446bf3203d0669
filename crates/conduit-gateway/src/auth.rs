//! Bearer tokens: loaded from a file or the environment, compared in constant time, never logged.
//!
//! Each token has a stable **label** that names it in paths (its work directory under the state
//! directory, the owner of the conversations its sessions started) and in logs: its name when
//! the operator gave one, else `t-` and the first 12 hex digits of the token's SHA-256. The token
//! itself never appears in a path or a log.
//!
//! Token file format: one token per line, `#` comments and blank lines skipped. A line is either
//! `TOKEN` or `NAME TOKEN` (separated by whitespace); a name is 1 to 64 of `A-Z a-z 0-9 . _ -`
//! and does not start with `.`. `CONDUIT_TOKENS` takes the same entries separated by commas.
//! Every token must be at least [`MIN_TOKEN_BYTES`] long ([`Tokens::validate`], checked when
//! the gateway binds).

use std::path::Path;

use sha2::{Digest, Sha256};

/// The shortest token the gateway accepts.
pub const MIN_TOKEN_BYTES: usize = 16;

/// One accepted token and what the operator said about it.
#[derive(Clone)]
struct Entry {
    token: Vec<u8>,
    name: Option<String>,
    user: Option<String>,
}

/// The accepted bearer tokens. `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} redacted)", self.entries.len())
    }
}

/// Which token a request presented (its index), for per-token limits. Never the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId(pub usize);

/// Why a token list was not accepted. Never holds a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

fn name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Tokens {
    /// Add one anonymous token (empty strings are ignored).
    pub fn add(&mut self, token: String) {
        let t = token.trim();
        if !t.is_empty() {
            self.entries.push(Entry {
                token: t.as_bytes().to_vec(),
                name: None,
                user: None,
            });
        }
    }

    /// Add a token with a name (its label) and, optionally, the OS user its sessions run as.
    pub fn add_named(&mut self, name: impl Into<String>, token: &str, user: Option<String>) {
        self.entries.push(Entry {
            token: token.trim().as_bytes().to_vec(),
            name: Some(name.into()),
            user,
        });
    }

    /// Sessions of the token named `name` run as the OS user `user`. False when no token has
    /// that name.
    pub fn set_user(&mut self, name: &str, user: &str) -> bool {
        match self
            .entries
            .iter_mut()
            .find(|e| e.name.as_deref() == Some(name))
        {
            Some(e) => {
                e.user = Some(user.to_owned());
                true
            }
            None => false,
        }
    }

    /// One `TOKEN` or `NAME TOKEN` entry.
    fn add_entry(&mut self, entry: &str, place: impl Fn() -> String) -> Result<(), TokenError> {
        let fields: Vec<&str> = entry.split_whitespace().collect();
        match fields.as_slice() {
            [] => Ok(()),
            [token] => {
                self.add((*token).to_owned());
                Ok(())
            }
            [name, token] => {
                self.add_named(*name, token, None);
                Ok(())
            }
            _ => Err(TokenError(format!(
                "{}: expected `TOKEN` or `NAME TOKEN`",
                place()
            ))),
        }
    }

    /// Tokens from text: one `TOKEN` or `NAME TOKEN` per line (blank lines and `#` comments
    /// skipped).
    pub fn from_lines(text: &str) -> Result<Self, TokenError> {
        let mut t = Self::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.starts_with('#') {
                t.add_entry(line, || format!("line {}", i + 1))?;
            }
        }
        Ok(t)
    }

    /// Tokens from a comma-separated list (the `CONDUIT_TOKENS` form; `NAME TOKEN` entries too).
    pub fn from_comma_list(text: &str) -> Result<Self, TokenError> {
        let mut t = Self::default();
        for (i, s) in text.split(',').enumerate() {
            t.add_entry(s, || format!("entry {}", i + 1))?;
        }
        Ok(t)
    }

    /// Tokens from a file (see the [module docs](self) for the format).
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        Self::from_lines(&std::fs::read_to_string(path)?).map_err(std::io::Error::other)
    }

    /// Append every token of `other`.
    pub fn extend(&mut self, other: Tokens) {
        self.entries.extend(other.entries);
    }

    /// Check the list: every token at least [`MIN_TOKEN_BYTES`] long, names well formed, no
    /// token or label twice. The error names the rule and the token's label, never the token.
    pub fn validate(&self) -> Result<(), TokenError> {
        let mut labels = std::collections::BTreeSet::new();
        for (i, e) in self.entries.iter().enumerate() {
            let label = self.label(TokenId(i));
            if let Some(name) = &e.name
                && !name_ok(name)
            {
                return Err(TokenError(format!(
                    "token name `{name}` is not 1 to 64 of A-Z a-z 0-9 . _ - (not starting with .)"
                )));
            }
            if e.token.len() < MIN_TOKEN_BYTES {
                return Err(TokenError(format!(
                    "token {label} is {} bytes long: tokens must be at least {MIN_TOKEN_BYTES} \
                     bytes (e.g. `openssl rand -hex 32`)",
                    e.token.len()
                )));
            }
            if self.entries[..i].iter().any(|o| o.token == e.token) {
                return Err(TokenError(format!("token {label} is listed twice")));
            }
            if !labels.insert(label.clone()) {
                return Err(TokenError(format!("two tokens are named `{label}`")));
            }
        }
        Ok(())
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no token is configured (then every authenticated route refuses).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The token's label: its name, else `t-` + 12 hex digits of its SHA-256. Safe in paths and
    /// logs.
    pub fn label(&self, id: TokenId) -> String {
        match self.entries.get(id.0) {
            Some(Entry { name: Some(n), .. }) => n.clone(),
            Some(e) => {
                let digest = Sha256::digest(&e.token);
                let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
                format!("t-{hex}")
            }
            None => format!("unknown-{}", id.0),
        }
    }

    /// The OS user the token's sessions run as, if the operator set one.
    pub fn user(&self, id: TokenId) -> Option<&str> {
        self.entries.get(id.0).and_then(|e| e.user.as_deref())
    }

    /// True when some token's sessions run as another OS user.
    pub fn any_user(&self) -> bool {
        self.entries.iter().any(|e| e.user.is_some())
    }

    /// Check an `Authorization` header value (`Bearer <token>`). Every configured token is
    /// compared, each in constant time, so the answer's timing does not depend on which token
    /// matched or how much of it did.
    pub fn check(&self, authorization: Option<&[u8]>) -> Option<TokenId> {
        let presented = authorization?.strip_prefix(b"Bearer ")?;
        let mut found = None;
        for (i, e) in self.entries.iter().enumerate() {
            if constant_time_eq(&e.token, presented) && found.is_none() {
                found = Some(TokenId(i));
            }
        }
        found
    }
}

/// Byte-string equality whose time depends only on the lengths, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    // Walk the longer input fully, comparing against the shorter one cyclically.
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
    }

    #[test]
    fn tokens_check_bearer_header() {
        let t = Tokens::from_lines("# comment\none\n\n two \n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.check(Some(b"Bearer one")), Some(TokenId(0)));
        assert_eq!(t.check(Some(b"Bearer two")), Some(TokenId(1)));
        assert_eq!(t.check(Some(b"Bearer three")), None);
        assert_eq!(t.check(Some(b"one")), None);
        assert_eq!(t.check(None), None);
        assert_eq!(format!("{t:?}"), "Tokens(2 redacted)");
        assert_eq!(Tokens::from_comma_list("a, b,,c").unwrap().len(), 3);
    }

    #[test]
    fn names_labels_and_the_length_rule() {
        let long = "0123456789abcdef-long";
        let t = Tokens::from_lines(&format!("alice {long}-a\n{long}-b\n")).unwrap();
        assert_eq!(
            t.check(Some(format!("Bearer {long}-a").as_bytes())),
            Some(TokenId(0))
        );
        assert_eq!(t.label(TokenId(0)), "alice");
        let hashed = t.label(TokenId(1));
        assert!(hashed.starts_with("t-") && hashed.len() == 14, "{hashed}");
        assert!(!hashed.contains(long));
        // Stable: the same token always gets the same label.
        let again = Tokens::from_comma_list(&format!("{long}-b")).unwrap();
        assert_eq!(again.label(TokenId(0)), hashed);
        t.validate().unwrap();

        let short = Tokens::from_lines("bob short-token\n").unwrap();
        let e = short.validate().unwrap_err().to_string();
        assert!(e.contains("at least 16 bytes") && e.contains("bob"), "{e}");
        assert!(!e.contains("short-token"), "{e}");
        let e = Tokens::from_lines("a b c\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains(" b "), "{e}");
        let twice = Tokens::from_lines(&format!("x {long}\ny {long}\n")).unwrap();
        assert!(twice.validate().unwrap_err().0.contains("twice"));
        let same_name = Tokens::from_lines(&format!("x {long}-1\nx {long}-2\n")).unwrap();
        assert!(same_name.validate().unwrap_err().0.contains("named `x`"));
        let bad_name = Tokens::from_lines(&format!("../x {long}\n")).unwrap();
        assert!(bad_name.validate().is_err());
        let mut users = Tokens::from_lines(&format!("alice {long}\n")).unwrap();
        assert!(users.set_user("alice", "nobody"));
        assert!(!users.set_user("carol", "nobody"));
        assert_eq!(users.user(TokenId(0)), Some("nobody"));
    }
}
