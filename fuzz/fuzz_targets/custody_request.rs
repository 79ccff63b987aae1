//! The key-custody service's request parsing, on anything: a request's credential headers
//! (`Credentials::from_headers`), the JSON bodies of unwrap and rewrap, the prelude an unwrap
//! carries (parsed by the service itself), and the client's parse of a service URL. None may
//! panic, and what parses must hold the protocol's limits.
//!
//! The input is `HEADERS \0 BODY`: header lines `name: value` (lowercase names), then a body;
//! the first line also goes to `Endpoint::parse` as a URL.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgseal_custody::auth::Credentials;
use pgseal_custody::transport::Endpoint;
use pgseal_custody::wire::{RewrapRequest, UnwrapRequest};

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let headers: Vec<(String, String)> = head
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    if let Ok(c) = Credentials::from_headers(|name| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }) {
        assert_eq!(c.nonce.len(), 32);
        assert!(!c.user.is_empty() && c.user.len() <= 150);
        assert!(c.signature.len() <= 1026);
        // What parsed is what the headers carry again.
        let again = c.headers();
        let back = Credentials::from_headers(|name| {
            again.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
        })
        .expect("credentials written out parse again");
        assert_eq!(back, c);
        let _ = c.check_time(1_764_547_200_000);
    }
    if let Some(first) = head.lines().next() {
        let _ = Endpoint::parse(first, None);
    }
    if let Ok(request) = serde_json::from_slice::<UnwrapRequest>(body) {
        let _ = pgseal_core::v2::read_prelude(&mut &request.prelude.0[..]);
    }
    let _ = serde_json::from_slice::<RewrapRequest>(body);
});
