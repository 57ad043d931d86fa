//! The API key: how it is given (`--api-key`, `SF3D_API_KEY`, `--api-key-file`), what is refused (short keys),
//! and how a presented token is checked.
//!
//! Only the key's SHA-256 digest is kept. A token is checked by hashing it and comparing the two digests in
//! constant time, so neither the comparison's duration nor an early exit on a length mismatch tells a client how
//! long the key is or how much of it matched. The key never appears in `Debug` output or logs.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Shortest accepted key. Sixteen characters of `openssl rand -hex 16` (the README's advice) carry 64 bits;
/// anything shorter is guessable over a LAN at the request rates a server answers.
pub const MIN_KEY_CHARS: usize = 16;

/// Why a key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Fewer than [`MIN_KEY_CHARS`] characters.
    #[error(
        "the API key is too short ({0} characters; at least {MIN_KEY_CHARS} are required): generate one with \
         `openssl rand -hex 16`"
    )]
    TooShort(usize),
    /// Control characters inside the key (a pasted line break, a tab).
    #[error("the API key contains control characters (a line break?); use printable characters only")]
    Unprintable,
    /// The key file could not be read.
    #[error("cannot read the API key file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// A validated API key, held as its digest.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl ApiKey {
    /// Checks and keeps `key`.
    pub fn new(key: &str) -> Result<Self, KeyError> {
        if key.chars().any(char::is_control) {
            return Err(KeyError::Unprintable);
        }
        let n = key.chars().count();
        if n < MIN_KEY_CHARS {
            return Err(KeyError::TooShort(n));
        }
        Ok(Self { digest: digest(key) })
    }

    /// Reads the key from a file (its first line; a trailing line break is ignored).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::File { path: path.display().to_string(), reason };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        // A key file is a line; refusing anything large keeps a mistaken path (a disk image) from being read.
        if meta.len() > 4096 {
            return Err(err(format!("{} bytes; a key file holds one line", meta.len())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::new(text.lines().next().unwrap_or("").trim_end_matches('\r'))
    }

    /// Whether `token` is this key (digest comparison in constant time).
    pub fn matches(&self, token: &str) -> bool {
        let other = digest(token);
        self.digest.iter().zip(other.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_unprintable_keys_are_refused() {
        assert_eq!(ApiKey::new("a"), Err(KeyError::TooShort(1)));
        assert_eq!(ApiKey::new("0123456789abcde"), Err(KeyError::TooShort(15)));
        assert_eq!(ApiKey::new("0123456789abcdef\n"), Err(KeyError::Unprintable));
        assert_eq!(ApiKey::new("0123456789\tabcdef"), Err(KeyError::Unprintable));
        assert!(ApiKey::new("0123456789abcdef").is_ok());
    }

    #[test]
    fn matches_only_the_key_and_never_prints_it() {
        let k = ApiKey::new("browser key/with+odd&chars").unwrap_or_else(|e| panic!("{e}"));
        assert!(k.matches("browser key/with+odd&chars"));
        let k = ApiKey::new("0123456789abcdef").unwrap_or_else(|e| panic!("{e}"));
        assert!(k.matches("0123456789abcdef"));
        assert!(!k.matches("0123456789abcdeF"));
        assert!(!k.matches("0123456789abcdef0"));
        assert!(!k.matches(""));
        assert!(!format!("{k:?}").contains("0123"));
    }

    #[test]
    fn key_file_first_line_without_its_line_break() {
        let dir = std::env::temp_dir().join(format!("sf3d-key-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("key");
        std::fs::write(&path, "0123456789abcdef\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(ApiKey::from_file(&path).unwrap_or_else(|e| panic!("{e}")).matches("0123456789abcdef"));
        std::fs::write(&path, "short\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ApiKey::from_file(&path), Err(KeyError::TooShort(5)));
        assert!(matches!(ApiKey::from_file(&dir.join("missing")), Err(KeyError::File { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
