//! pgseal user names: one character set and length, checked once, wherever a name comes from.
//!
//! A name is 1 to 150 characters, each a letter or digit (of any script), `_`, `.`, `@`, `+`
//! or `-` — the set the legacy Django system allowed (`[\w.@+-]{1,150}`) — in Unicode NFKC form
//! (as Django stored them), and it is not `.` or `..` and does not start with `-`. So a name is
//! never a path (no `/`, never `.` or `..`), never a flag, and holds no NUL, control character
//! or space: it can become a file name (`USER_KEYS_DIR/NAME.key.pem`) or appear in a terminal
//! as it is.

use std::fmt;
use std::str::FromStr;

/// The longest name, in characters (Django's `max_length`).
pub const MAX_LEN: usize = 150;

/// A user name that passed [`Username::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

/// Why a text is not a user name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid user name {shown}: {reason}")]
pub struct InvalidUsername {
    /// The name as given, escaped so it prints safely (`"a\nb"`).
    pub shown: String,
    /// Which part of the rule it breaks.
    pub reason: &'static str,
}

/// What a valid name may hold, said once for every error.
pub const RULE: &str = "a user name is 1 to 150 letters, digits, `_`, `.`, `@`, `+` or `-`, not \
                        `.` or `..`, and does not start with `-`";

impl Username {
    /// Checks `text` against the rule (see the module docs).
    pub fn parse(text: &str) -> Result<Username, InvalidUsername> {
        let fail = |reason| {
            Err(InvalidUsername {
                shown: format!("{text:?}"),
                reason,
            })
        };
        let len = text.chars().count();
        if len == 0 {
            return fail("it is empty");
        }
        if len > MAX_LEN {
            return fail("it is longer than 150 characters");
        }
        if text == "." || text == ".." {
            return fail("`.` and `..` are not names");
        }
        if text.starts_with('-') {
            return fail("it starts with `-`");
        }
        if !text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '@' | '+' | '-'))
        {
            return fail(
                "only letters, digits, `_`, `.`, `@`, `+` and `-` are allowed \
                 (no `/`, spaces or control characters)",
            );
        }
        if !unicode_normalization::is_nfkc(text) {
            return fail("it is not in Unicode NFKC form (write it as composed characters)");
        }
        Ok(Username(text.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Username {
    type Err = InvalidUsername;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Username::parse(s)
    }
}

impl fmt::Display for Username {
    /// The name as it is (padding and width honoured, for tables).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Username {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Username {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<Username> for String {
    fn from(u: Username) -> String {
        u.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_django_allowed_is_a_name() {
        for ok in [
            "system_backup",
            "ops.bot@example.com",
            "deploy+ci",
            "a-b",
            "józef",
            "李雷",
            "x",
            "..a",
            ".hidden",
            "a..b",
            "9",
            &"a".repeat(150),
        ] {
            assert_eq!(Username::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(
            format!("[{:<6}]", Username::parse("bob").unwrap()),
            "[bob   ]"
        );
    }

    #[test]
    fn paths_flags_and_control_characters_are_not_names() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/",
            "/etc/passwd",
            "-rf",
            "--force",
            "-",
            "a b",
            "a\tb",
            "a\nb",
            "a\0b",
            "\u{1b}[31m",
            "a\\b",
            "a:b",
            "a*b",
            "a\u{202e}b",
            "a\u{200b}b",
            &"a".repeat(151),
        ] {
            let e = Username::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid user name \""), "{e}");
            // The error never carries the raw text: control characters are escaped.
            assert!(!e.to_string().contains(['\n', '\0', '\u{1b}']), "{e}");
        }
    }

    #[test]
    fn decomposed_text_is_refused_so_two_names_never_look_alike() {
        // "é" as e + combining acute, and the "ﬁ" ligature: NFKC writes both differently.
        assert!(Username::parse("jose\u{301}").is_err());
        assert!(Username::parse("\u{fb01}le").is_err());
        assert!(Username::parse("jos\u{e9}").is_ok());
    }
}
