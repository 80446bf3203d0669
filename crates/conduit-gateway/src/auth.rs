//! Bearer tokens: loaded from a file or the environment, compared in constant time, never logged.

use std::path::Path;

/// The accepted bearer tokens. `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} redacted)", self.tokens.len())
    }
}

/// Which token a request presented (its index), for per-token limits. Never the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId(pub usize);

impl Tokens {
    /// Add one token (empty strings are ignored).
    pub fn add(&mut self, token: String) {
        let t = token.trim();
        if !t.is_empty() {
            self.tokens.push(t.as_bytes().to_vec());
        }
    }

    /// Tokens from text: one per line (blank lines and `#` comments skipped).
    pub fn from_lines(text: &str) -> Self {
        let mut t = Self::default();
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                t.add(line.to_owned());
            }
        }
        t
    }

    /// Tokens from a comma-separated list (the `CONDUIT_TOKENS` form).
    pub fn from_comma_list(text: &str) -> Self {
        let mut t = Self::default();
        for s in text.split(',') {
            t.add(s.to_owned());
        }
        t
    }

    /// Tokens from a file, one per line.
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        Ok(Self::from_lines(&std::fs::read_to_string(path)?))
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when no token is configured (then every authenticated route refuses).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Check an `Authorization` header value (`Bearer <token>`). Every configured token is
    /// compared, each in constant time, so the answer's timing does not depend on which token
    /// matched or how much of it did.
    pub fn check(&self, authorization: Option<&[u8]>) -> Option<TokenId> {
        let presented = authorization?.strip_prefix(b"Bearer ")?;
        let mut found = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if constant_time_eq(t, presented) && found.is_none() {
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
        let t = Tokens::from_lines("# comment\none\n\n two \n");
        assert_eq!(t.len(), 2);
        assert_eq!(t.check(Some(b"Bearer one")), Some(TokenId(0)));
        assert_eq!(t.check(Some(b"Bearer two")), Some(TokenId(1)));
        assert_eq!(t.check(Some(b"Bearer three")), None);
        assert_eq!(t.check(Some(b"one")), None);
        assert_eq!(t.check(None), None);
        assert_eq!(format!("{t:?}"), "Tokens(2 redacted)");
        assert_eq!(Tokens::from_comma_list("a, b,,c").len(), 3);
    }
}
