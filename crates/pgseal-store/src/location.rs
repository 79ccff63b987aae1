//! Where a backup lives: a URL, as the catalog records it.
//!
//! A location is `SCHEME://AUTHORITY/PATH`, with every byte outside RFC 3986's unreserved and
//! path-safe characters percent-encoded, no query and no fragment. The store checks only that
//! syntax (so a row holds one spelling of a URL and nothing that could break a message); what a
//! location *means* — which host, which directory, which bucket, whether its names are plain —
//! is for the repository that reads it (`pgseal_ops::repo`) to decide, and a location the store
//! accepts may still be refused there (`file://db1/srv/pgseal/backups/../x` parses; no
//! repository deletes through it).
//!
//! A file location names its host, as RFC 8089 allows: `file://db1.example/srv/pgseal/backups/
//! shop_20260101T000000.000Z.pgseal`. So a store shared between hosts never takes one host's
//! `/srv/pgseal/backups` for another's. The host is the name the host gives itself
//! (`gethostname`), compared as text; `file:///path` (no host) is a location whose host was
//! not known.
//!
//! An object in an S3 bucket is `s3://BUCKET/KEY` ([`Location::s3`]): the bucket a valid S3
//! bucket name (3 to 63 lowercase letters, digits, `.` and `-`, starting and ending with a
//! letter or digit), the key's `/`-separated names each percent-encoded like a path segment.
//! Keys are checked both ways ([`Location::s3`] and [`Location::s3_object`]): at most 1024
//! bytes, no empty name (no leading `/`, no `//`, no trailing `/`), no `.` or `..` name, no
//! control character.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};

/// What a path segment keeps as it is: RFC 3986's unreserved characters and the sub-delimiters
/// that need no escaping in a path. Everything else (`/`, `%`, `?`, `#`, spaces, controls,
/// non-ASCII bytes) is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// What a host keeps as it is: as a segment, but `:` and `@` (a port, user information) too are
/// encoded, so the whole authority is the host.
const HOST: &AsciiSet = &SEGMENT.add(b':').add(b'@');

/// A backup's location: a URL in the one spelling pgseal writes (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location(String);

/// Text that is not a location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a backup location: {reason}")]
pub struct InvalidLocation {
    /// The text (shown with `Debug`, so control characters stay escaped).
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Location {
    /// Checks `text`: `scheme://authority/path` with a lowercase scheme, characters a URL may
    /// hold unescaped (percent-encodings well formed), and no query or fragment.
    pub fn parse(text: &str) -> Result<Self, InvalidLocation> {
        let bad = |reason| InvalidLocation {
            text: text.to_owned(),
            reason,
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("it has no `scheme://`"))?;
        let mut chars = scheme.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_lowercase())
            || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        {
            return Err(bad("its scheme is not a lowercase URL scheme"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        check_encoded(authority, "[]")
            .map_err(|()| bad("its host holds a character a URL must escape"))?;
        check_encoded(path, "/")
            .map_err(|()| bad("its path holds a character a URL must escape"))?;
        Ok(Location(text.to_owned()))
    }

    /// The location of the file at `path` on `host`: `file://HOST/PATH`, each byte of both that
    /// a URL must escape percent-encoded. `path` must be absolute.
    pub fn file(host: &str, path: &Path) -> Result<Self, InvalidLocation> {
        let bytes = path.as_os_str().as_bytes();
        if !bytes.starts_with(b"/") {
            return Err(InvalidLocation {
                text: path.display().to_string(),
                reason: "a file location needs an absolute path",
            });
        }
        let mut text = format!("file://{}", percent_encode(host.as_bytes(), HOST));
        for segment in bytes[1..].split(|b| *b == b'/') {
            text.push('/');
            text.extend(percent_encode(segment, SEGMENT));
        }
        Ok(Location(text))
    }

    /// The location of the object `key` in the S3 bucket `bucket`: `s3://BUCKET/KEY`, each name
    /// of the key percent-encoded as a path segment. Both are checked (see the module docs).
    pub fn s3(bucket: &str, key: &str) -> Result<Self, InvalidLocation> {
        let shown = || format!("s3://{bucket}/{key}");
        check_bucket(bucket).map_err(|reason| InvalidLocation {
            text: shown(),
            reason,
        })?;
        check_key(key.as_bytes()).map_err(|reason| InvalidLocation {
            text: shown(),
            reason,
        })?;
        let mut text = format!("s3://{bucket}");
        for name in key.split('/') {
            text.push('/');
            text.extend(percent_encode(name.as_bytes(), SEGMENT));
        }
        Ok(Location(text))
    }

    /// For an `s3:` location, its bucket and its key (decoded), both checked as
    /// [`Location::s3`] checks them; `None` for another scheme.
    pub fn s3_object(&self) -> Option<Result<(String, String), InvalidLocation>> {
        if self.scheme() != "s3" {
            return None;
        }
        let bad = |reason| InvalidLocation {
            text: self.0.clone(),
            reason,
        };
        Some((|| {
            let bucket = self.authority();
            check_bucket(bucket).map_err(bad)?;
            let path = self
                .encoded_path()
                .strip_prefix('/')
                .ok_or_else(|| bad("it names a bucket but no object in it"))?;
            let key: Vec<u8> = path
                .split('/')
                .map(|s| percent_decode_str(s).collect::<Vec<u8>>())
                .collect::<Vec<_>>()
                .join(&b'/');
            // An encoded `/` in a name would make the key another key than the names say.
            if path.split('/').count() != key.split(|b| *b == b'/').count() {
                return Err(bad("a name of its key holds an encoded `/`"));
            }
            check_key(&key).map_err(bad)?;
            let key = String::from_utf8(key).map_err(|_| bad("its key is not UTF-8"))?;
            Ok((bucket.to_owned(), key))
        })())
    }

    /// A file location for a path that was recorded relative (only a store written behind
    /// pgseal's back holds one): the whole path becomes one name, its `/` encoded, so no
    /// repository takes it for one of its files.
    pub(crate) fn file_unplaced(host: &str, path: &str) -> Self {
        Location(format!(
            "file://{}/{}",
            percent_encode(host.as_bytes(), HOST),
            percent_encode(path.as_bytes(), SEGMENT)
        ))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scheme: `file`, `s3`...
    pub fn scheme(&self) -> &str {
        self.0.split_once("://").map_or("", |(s, _)| s)
    }

    /// The authority (for a file location, its host; for a bucket, the bucket), as written
    /// (percent-encoded).
    pub fn authority(&self) -> &str {
        let rest = self.rest();
        rest.find('/').map_or(rest, |i| &rest[..i])
    }

    /// The host (the authority, decoded; invalid UTF-8 replaced).
    pub fn host(&self) -> Cow<'_, str> {
        percent_decode_str(self.authority()).decode_utf8_lossy()
    }

    /// The path, as written (percent-encoded): empty or starting with `/`.
    pub fn encoded_path(&self) -> &str {
        &self.rest()[self.authority().len()..]
    }

    /// The path's segments (what lies between its `/`s), each decoded to its bytes — a segment
    /// that held an encoded `/` or NUL decodes to bytes holding one, which no file name can.
    pub fn segments(&self) -> Vec<Vec<u8>> {
        let path = self.encoded_path();
        match path.strip_prefix('/') {
            None => Vec::new(),
            Some(path) => path
                .split('/')
                .map(|s| percent_decode_str(s).collect())
                .collect(),
        }
    }

    /// For a `file:` location, the path it names, decoded (an encoded `/` in a name becomes a
    /// separator: check [`segments`](Self::segments) before trusting it as a path).
    pub fn file_path(&self) -> Option<PathBuf> {
        (self.scheme() == "file").then(|| {
            let bytes: Vec<u8> = percent_decode_str(self.encoded_path()).collect();
            PathBuf::from(OsString::from_vec(bytes))
        })
    }

    /// How to show it to people: a file location's path (on its host), anything else the URL.
    pub fn shown(&self) -> String {
        match self.file_path() {
            Some(p) => p.display().to_string(),
            None => self.0.clone(),
        }
    }

    fn rest(&self) -> &str {
        self.0.split_once("://").map_or("", |(_, r)| r)
    }
}

/// Checks an S3 bucket name: 3 to 63 lowercase letters, digits, `.` and `-`, starting and
/// ending with a letter or digit, no `..`, and not shaped like an IP address.
fn check_bucket(bucket: &str) -> Result<(), &'static str> {
    let b = bucket.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return Err("a bucket name has 3 to 63 characters");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
    {
        return Err("a bucket name holds only lowercase letters, digits, `.` and `-`");
    }
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return Err("a bucket name starts and ends with a letter or digit");
    }
    if bucket.contains("..") {
        return Err("a bucket name holds no `..`");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("a bucket name is not an IP address");
    }
    Ok(())
}

/// Checks an object key (see the module docs).
fn check_key(key: &[u8]) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("it names a bucket but no object in it");
    }
    if key.len() > 1024 {
        return Err("an object key has at most 1024 bytes");
    }
    if key.iter().any(|c| c.is_ascii_control()) {
        return Err("its key holds a control character");
    }
    for name in key.split(|b| *b == b'/') {
        if name.is_empty() {
            return Err("its key holds an empty name (a leading, trailing or doubled `/`)");
        }
        if name == b"." || name == b".." {
            return Err("its key holds a `.` or `..` name");
        }
    }
    Ok(())
}

/// Checks that `text` holds only what a URL may hold unescaped (plus `extra`), and that every
/// `%` starts a well-formed encoding.
fn check_encoded(text: &str, extra: &str) -> Result<(), ()> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(());
            }
            i += 3;
            continue;
        }
        let plain = b.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@".contains(&b)
            || extra.as_bytes().contains(&b);
        if !plain {
            return Err(());
        }
        i += 1;
    }
    Ok(())
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Location {
    type Err = InvalidLocation;

    fn from_str(s: &str) -> Result<Self, InvalidLocation> {
        Location::parse(s)
    }
}

impl AsRef<str> for Location {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_location_names_its_host_and_escapes_what_a_url_must() {
        let l = Location::file("db1", Path::new("/srv/pgseal/backups/shop_1.pgseal")).unwrap();
        assert_eq!(l.as_str(), "file://db1/srv/pgseal/backups/shop_1.pgseal");
        assert_eq!((l.scheme(), l.authority()), ("file", "db1"));
        assert_eq!(l.host(), "db1");

        let odd = Path::new(OsStr::from_bytes(b"/b/a b%#?\n\xff\xc3\x9c.pgseal"));
        let l = Location::file("h:x@y", odd).unwrap();
        assert_eq!(
            l.as_str(),
            "file://h%3Ax%40y/b/a%20b%25%23%3F%0A%FF%C3%9C.pgseal"
        );
        assert_eq!(l.host(), "h:x@y");
        assert_eq!(l.file_path().unwrap(), odd);
        assert_eq!(Location::parse(l.as_str()).unwrap(), l);
        assert!(Location::file("h", Path::new("relative/x")).is_err());
    }

    #[test]
    fn a_relative_path_becomes_one_name_that_holds_a_slash() {
        let l = Location::file_unplaced("h", "backups/x.pgseal");
        assert_eq!(l.as_str(), "file://h/backups%2Fx.pgseal");
        assert_eq!(l.segments(), vec![b"backups/x.pgseal".to_vec()]);
        assert!(Location::parse(l.as_str()).is_ok());
    }

    #[test]
    fn only_well_formed_urls_parse() {
        for good in [
            "file://h/srv/x.pgseal",
            "file:///srv/x.pgseal",
            "file://h/srv/../x.pgseal",
            "s3://bucket/prefix/x.pgseal",
            "s3://bucket",
        ] {
            assert!(Location::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/srv/x.pgseal",
            "File://h/x",
            "file://h/x y",
            "file://h/x?y",
            "file://h/x#y",
            "file://h/x%zz",
            "file://h/x%4",
            "file://h/x\n",
            "file://h/\u{1b}[2J",
            "file://h o/x",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_s3_location_names_a_valid_bucket_and_a_plain_key() {
        let l = Location::s3("pgseal-backups", "site a/shop_1.pgseal").unwrap();
        assert_eq!(l.as_str(), "s3://pgseal-backups/site%20a/shop_1.pgseal");
        assert_eq!((l.scheme(), l.authority()), ("s3", "pgseal-backups"));
        assert_eq!(Location::parse(l.as_str()).unwrap(), l);
        assert_eq!(
            l.s3_object().unwrap().unwrap(),
            (
                "pgseal-backups".to_owned(),
                "site a/shop_1.pgseal".to_owned()
            )
        );
        assert!(
            Location::file("h", Path::new("/x"))
                .unwrap()
                .s3_object()
                .is_none()
        );

        for (bucket, key) in [
            ("ab", "x"),
            ("Upper", "x"),
            ("-bucket", "x"),
            ("a..b", "x"),
            ("a_b", "x"),
            ("192.168.1.1", "x"),
            (&"b".repeat(64), "x"),
            ("bucket", ""),
            ("bucket", "/x"),
            ("bucket", "a//x"),
            ("bucket", "a/"),
            ("bucket", "a/../x"),
            ("bucket", "./x"),
            ("bucket", "a\nb"),
            ("bucket", "a\u{7f}b"),
            ("bucket", &"k".repeat(1025)),
        ] {
            assert!(Location::s3(bucket, key).is_err(), "{bucket:?} {key:?}");
        }
        // What the store accepts as a URL is still checked when read as an object.
        for bad in [
            "s3://bucket",
            "s3://bucket/",
            "s3://bucket/a/../x",
            "s3://bucket/a%2F..%2Fx",
            "s3://bucket/a%0Ab",
            "s3://bucket/a%2Fb",
            "s3://BUCKET/x",
            "s3://bu/x",
        ] {
            let l = Location::parse(bad).unwrap();
            assert!(l.s3_object().unwrap().is_err(), "{bad}");
        }
    }

    use std::ffi::OsStr;
}
