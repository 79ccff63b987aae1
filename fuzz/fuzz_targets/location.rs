//! Backup locations (`pgseal_store::Location`): arbitrary text as a URL, and arbitrary bucket
//! names, keys, hosts and paths as the parts of one. Must never panic, and what is accepted
//! must come back as it went in:
//! - a parsed `s3:` location's bucket and key build a location (`Location::s3`) that parses
//!   again and names the same bucket and key;
//! - a file location built from a host and an absolute path parses again, and gives back that
//!   path and host.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pgseal_store::Location;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(location) = Location::parse(&text) {
        let _ = (location.host(), location.segments(), location.shown());
        let _ = location.file_path();
        if let Some(Ok((bucket, key))) = location.s3_object() {
            let rebuilt = Location::s3(&bucket, &key).expect("a checked bucket and key build");
            let again = Location::parse(rebuilt.as_str()).expect("what s3() builds parses");
            assert_eq!(again, rebuilt);
            let (b, k) = again.s3_object().expect("an s3 location").expect("checked");
            assert_eq!((b, k), (bucket, key));
        }
    }

    // The parts of a location: split the input at its first NUL (bucket or host | key or path).
    let (first, second) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let (Ok(bucket), Ok(key)) = (std::str::from_utf8(first), std::str::from_utf8(second))
        && let Ok(location) = Location::s3(bucket, key)
    {
        let again = Location::parse(location.as_str()).expect("what s3() builds parses");
        let (b, k) = again.s3_object().expect("an s3 location").expect("checked");
        assert_eq!((b.as_str(), k.as_str()), (bucket, key));
    }
    if let Ok(host) = std::str::from_utf8(first) {
        let path = Path::new(OsStr::from_bytes(second));
        if let Ok(location) = Location::file(host, path) {
            let again = Location::parse(location.as_str()).expect("what file() builds parses");
            assert_eq!(again, location);
            assert_eq!(again.host(), host);
            // `file()` keeps the path's names as they are, so they come back (a doubled or
            // trailing `/` included).
            assert_eq!(again.file_path().expect("a file location"), path);
        }
    }
});
