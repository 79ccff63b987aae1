//! The key-custody service (issue 14; docs/CUSTODY.md): the server keys held by one long-running
//! process, asked to unwrap or rewrap by callers who never hold the server password.
//!
//! [`service`] is the service's side — what `pgseal serve` does with each request. [`client`]
//! is the caller's: a [`client::CustodyClient`] signs requests with the caller's user key and
//! sends them over a [`client::Link`] (the front end supplies the HTTP transport); the session
//! carries one ([`Session::with_custody`](crate::session::Session::with_custody)), and then
//! decrypt, restore, verify's decryption check and rewrap ask the service instead of unlocking
//! stored server keys.

pub mod client;
pub mod service;

pub use client::{CustodyClient, CustodyHolder, CustodyKey, Link};
pub use service::{Call, Caller, Custody, Policy, Refusal};

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use pgseal_core::v2::{self, SealParams};
    use pgseal_core::{Password, PrivateKey};
    use pgseal_custody::auth::Credentials;
    use pgseal_store::{Action, ServiceRole};

    use super::*;
    use crate::error::{Error, ErrorKind, Result};
    use crate::observe::Silent;
    use crate::open::OpenKeys;
    use crate::secret::Secret;
    use crate::session::{Actor, Session};
    use crate::testsite::{PASSWORD, TestSite, encrypted, password};

    /// A header of a list of them, as a [`Call`](service::Call)'s lookup finds it (tests
    /// build calls without a transport).
    pub(crate) fn header_in<'a>(headers: &'a [(&str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A password nobody may ask for: the client never holds the server password.
    struct Never;

    impl Secret for Never {
        fn get(&self) -> Result<Password> {
            panic!("the server password was asked for");
        }
    }

    fn describe(e: &Error) -> (String, i32) {
        (e.to_string(), 1)
    }

    fn session(t: &TestSite, address: &str) -> Session {
        let actor = Actor {
            user: None,
            os_user: Some("tester".into()),
            host: Some("custody-test".into()),
            address: Some(address.into()),
        };
        Session::new(Some(t.site.clone()), actor, Arc::new(Silent), describe)
    }

    /// The service in the same process: each request answered through `respond`, from
    /// 192.0.2.7.
    struct InProcess {
        custody: Arc<Custody>,
        session: Mutex<Session>,
    }

    impl Link for InProcess {
        fn send(
            &self,
            method: &str,
            path: &str,
            headers: &[(&str, String)],
            body: &[u8],
        ) -> Result<(u16, Vec<u8>)> {
            let header = |name: &str| header_in(headers, name);
            let call = Call {
                method,
                path,
                header: &header,
                body,
                peer: Some("192.0.2.7".parse().unwrap()),
                peer_label: String::new(),
            };
            let answer = self
                .custody
                .respond(&mut self.session.lock().unwrap(), &call);
            Ok((answer.status, answer.body))
        }

        fn describe(&self) -> String {
            "in-process".into()
        }
    }

    fn signer(t: &TestSite) -> PrivateKey {
        PrivateKey::from_pem(&encrypted(&t.signer), "test", || {
            Ok(Password::new(PASSWORD.into()))
        })
        .unwrap()
    }

    fn sealed_file(t: &TestSite, name: &str, data: &[u8]) -> std::path::PathBuf {
        let path = t.path(name);
        let recipients = [t.server.public().clone()];
        let params = SealParams::new(&t.signer, &recipients);
        let mut out = Vec::new();
        v2::seal(data, &mut out, &params).unwrap();
        std::fs::write(&path, out).unwrap();
        path
    }

    /// A service on the site, started (its start entry written), with the user granted `roles`.
    fn started(t: &mut TestSite, policy: Policy, roles: &[ServiceRole]) -> (Custody, Session) {
        let mut service_session = session(t, "10.0.0.1");
        let custody = Custody::start(&mut service_session, &password(), policy, None).unwrap();
        service_session.finish(Ok(())).unwrap();
        let user = t.user.id;
        for role in roles {
            t.session.store().unwrap().grant_role(user, *role).unwrap();
        }
        (custody, service_session)
    }

    /// The prelude of a file sealed on the site (its bytes up to the end of slot B).
    fn prelude_of(t: &TestSite, name: &str) -> Vec<u8> {
        let raw = std::fs::read(sealed_file(t, name, b"data")).unwrap();
        let p = v2::read_prelude(&mut &raw[..]).unwrap();
        raw[..p.slots_offset as usize + 2 * p.header.slot_size as usize].to_vec()
    }

    /// An unwrap request's body for `prelude`, with a fresh one-time key.
    fn unwrap_body(prelude: &[u8]) -> Vec<u8> {
        let one_time = pgseal_custody::seal::OneTimeKey::generate().unwrap();
        serde_json::to_vec(&pgseal_custody::wire::UnwrapRequest {
            prelude: pgseal_custody::wire::Bytes(prelude.to_vec()),
            client_key: pgseal_custody::wire::Bytes(one_time.public().to_vec()),
            file: None,
        })
        .unwrap()
    }

    /// Sends an unwrap with `credentials` from `peer`; the status and the error kind, if any.
    fn send_unwrap(
        custody: &Custody,
        session: &mut Session,
        credentials: &Credentials,
        body: &[u8],
        peer: &str,
    ) -> (u16, Option<String>) {
        let headers = credentials.headers();
        let header = |name: &str| header_in(&headers, name);
        let call = Call {
            method: "POST",
            path: "/v1/unwrap",
            header: &header,
            body,
            peer: Some(peer.parse().unwrap()),
            peer_label: String::new(),
        };
        let answer = custody.respond(session, &call);
        let kind = serde_json::from_slice::<serde_json::Value>(&answer.body).unwrap()["kind"]
            .as_str()
            .map(str::to_owned);
        (answer.status, kind)
    }

    /// Credentials of the site's user (signing with `key`) for an unwrap with `body`, made now.
    fn signed(key: &PrivateKey, body: &[u8], code: Option<&str>) -> Credentials {
        let now = pgseal_core::time::Timestamp::now().millis();
        Credentials::sign(key, "system_backup", "POST", "/v1/unwrap", body, code, now).unwrap()
    }

    fn custody_entries(t: &mut TestSite) -> Vec<(Action, bool, Option<String>)> {
        t.session
            .store()
            .unwrap()
            .audit_entries(1000)
            .unwrap()
            .into_iter()
            .filter(|e| {
                matches!(
                    e.entry.action,
                    Action::CustodyUnwrap | Action::CustodyRewrap | Action::CustodyStart
                )
            })
            .map(|e| (e.entry.action, e.entry.success, e.entry.ip_address))
            .collect()
    }

    #[test]
    fn a_client_without_the_server_password_decrypts_and_rewraps_through_the_service() {
        let mut t = TestSite::new();
        let data = b"rows of a database".repeat(1000);
        let file = sealed_file(&t, "a.pgseal", &data);
        let mut service_session = session(&t, "10.0.0.1");
        let custody = Arc::new(
            Custody::start(&mut service_session, &password(), Policy::default(), None).unwrap(),
        );
        service_session.finish(Ok(())).unwrap();
        let link = InProcess {
            custody: custody.clone(),
            session: Mutex::new(service_session),
        };
        let client = CustodyClient::new(Box::new(link), "system_backup", signer(&t));
        let mut caller = session(&t, "10.0.0.2").with_custody(client.clone());
        let keys = OpenKeys {
            identities: &[],
            signers: &[],
            server_password: &Never,
            legacy_password: &Never,
            verify: true,
        };
        let out = t.path("out");
        let decrypt = |caller: &mut Session| {
            let r = crate::decrypt::decrypt(
                caller,
                file.to_str().unwrap(),
                out.to_str().unwrap(),
                true,
                &keys,
            );
            let _ = caller.finish(
                r.as_ref()
                    .map(drop)
                    .map_err(|e| Error::invalid(e.to_string())),
            );
            r
        };

        // No service role: refused, and the refusal audited with the caller's address.
        let refused = decrypt(&mut caller).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Authentication, "{refused}");
        assert!(refused.to_string().contains("restore"), "{refused}");
        assert!(!out.exists());

        let user = t.user.id;
        t.session
            .store()
            .unwrap()
            .grant_role(user, ServiceRole::Restore)
            .unwrap();
        let done = decrypt(&mut caller).unwrap();
        assert_eq!(done.server_key, Some(t.server.fingerprint()));
        assert_eq!(std::fs::read(&out).unwrap(), data);

        let entries = custody_entries(&mut t);
        let address = Some("192.0.2.7".to_owned());
        assert_eq!(
            entries,
            [
                (Action::CustodyStart, true, Some("10.0.0.1".to_owned())),
                (Action::CustodyUnwrap, false, address.clone()),
                (Action::CustodyUnwrap, true, address.clone()),
            ]
        );

        // Rewrap after a rotation: the plan comes from the service (which wraps to the active
        // key's public half); the old wrapping is wiped.
        let new = t.rotate();
        t.session
            .store()
            .unwrap()
            .grant_role(user, ServiceRole::Rewrap)
            .unwrap();
        let mut holder = CustodyHolder::new(client.clone()).unwrap();
        let files = [file.clone()];
        let report = crate::rewrap::rewrap(
            &mut caller,
            &mut holder,
            crate::rewrap::Files::Named(&files),
        )
        .unwrap();
        assert_eq!(report.failed(), 0, "{:?}", report.items);
        let prelude = v2::read_prelude(&mut std::fs::File::open(&file).unwrap()).unwrap();
        assert_eq!(
            prelude.active_slot().unwrap().1.recipients(),
            [new.fingerprint()]
        );
        assert!(prelude.superseded_slot().is_none());
    }

    #[test]
    fn replayed_stale_forged_and_unknown_requests_are_refused_and_audited() {
        let mut t = TestSite::new();
        let (custody, mut service) = started(&mut t, Policy::default(), &[ServiceRole::Restore]);
        let prelude = prelude_of(&t, "b.pgseal");
        let body = unwrap_body(&prelude);
        let peer = "198.51.100.9";
        let mut send =
            |c: &Credentials, body: &[u8]| send_unwrap(&custody, &mut service, c, body, peer).0;
        let now = pgseal_core::time::Timestamp::now().millis();
        let key = signer(&t);
        let sign = |user: &str, key: &PrivateKey, at: i64, body: &[u8]| {
            Credentials::sign(key, user, "POST", "/v1/unwrap", body, None, at).unwrap()
        };
        let good = sign("system_backup", &key, now, &body);
        assert_eq!(send(&good, &body), 200);
        // A header changed in the prelude: its signature fails, the service will not open it.
        let mut tampered = prelude.clone();
        tampered[20] ^= 1;
        let tampered_body = unwrap_body(&tampered);
        assert_eq!(
            send(
                &sign("system_backup", &key, now, &tampered_body),
                &tampered_body
            ),
            422
        );
        assert_eq!(send(&good, &body), 401, "replayed");
        let stale = sign("system_backup", &key, now - 10 * 60 * 1000, &body);
        assert_eq!(send(&stale, &body), 401, "stale");
        let forged = sign("system_backup", &crate::testsite::key(), now, &body);
        for _ in 0..2 {
            assert_eq!(send(&forged, &body), 401, "another key");
        }
        assert_eq!(
            send(&sign("nobody", &key, now, &body), &body),
            401,
            "no such user"
        );
        // Five failures from one address: the next request, even a good one, is throttled.
        assert_eq!(send(&sign("system_backup", &key, now, &body), &body), 429);

        let entries = custody_entries(&mut t);
        let unwraps: Vec<_> = entries
            .iter()
            .filter(|(a, ..)| *a == Action::CustodyUnwrap)
            .collect();
        let outcomes: Vec<bool> = unwraps.iter().map(|(_, ok, _)| *ok).collect();
        assert_eq!(
            outcomes,
            [true, false, false, false, false, false, false, false]
        );
        assert!(unwraps.iter().all(|(.., ip)| ip.as_deref() == Some(peer)));
    }

    #[test]
    fn a_second_factor_is_needed_when_the_policy_says_and_each_code_is_accepted_once() {
        let mut t = TestSite::new();
        let policy = Policy {
            second_factor_for_unwrap: true,
            max_failures: 100,
            ..Policy::default()
        };
        let (custody, mut service_session) = started(&mut t, policy, &[ServiceRole::Restore]);
        let prelude = prelude_of(&t, "c.pgseal");
        let key = signer(&t);
        let ask = |code: Option<&str>, session: &mut Session| {
            let body = unwrap_body(&prelude);
            send_unwrap(
                &custody,
                session,
                &signed(&key, &body, code),
                &body,
                "192.0.2.1",
            )
        };
        let second_factor = (401, Some("second_factor".to_owned()));
        assert_eq!(ask(None, &mut service_session), second_factor, "no code");
        assert_eq!(
            ask(Some("123456"), &mut service_session),
            second_factor,
            "not enrolled"
        );

        let enrolled = crate::totp::enroll(&mut t.session, "system_backup").unwrap();
        t.session.finish(Ok(())).unwrap();
        assert!(
            enrolled
                .uri
                .starts_with("otpauth://totp/pgseal:system_backup?")
        );
        let authenticator = totp_rs::TOTP::from_url(enrolled.uri.as_str()).unwrap();
        let code = authenticator.generate_current().unwrap();
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert_eq!(
            ask(Some(&wrong), &mut service_session),
            second_factor,
            "wrong code"
        );
        assert_eq!(ask(Some(&code), &mut service_session), (200, None));
        assert_eq!(
            ask(Some(&code), &mut service_session),
            second_factor,
            "used once"
        );
        let entries: Vec<String> = t
            .session
            .store()
            .unwrap()
            .audit_entries(100)
            .unwrap()
            .into_iter()
            .filter(|e| e.entry.action == Action::CustodyUnwrap)
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(&e.entry.details).unwrap()
                    ["second_factor"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[3], "accepted");
        assert!(entries[4].contains("used already"), "{entries:?}");
    }

    #[test]
    fn a_forwarded_address_is_believed_only_from_a_trusted_proxy() {
        let t = TestSite::new();
        let mut service_session = session(&t, "10.0.0.1");
        let policy = Policy {
            trusted_proxies: vec!["10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap()],
            ..Policy::default()
        };
        let custody = Custody::start(&mut service_session, &password(), policy, None).unwrap();
        let address = |peer: Option<&str>, forwarded: Option<&str>| {
            let header = |name: &str| (name == "x-forwarded-for").then_some(forwarded).flatten();
            custody.address(&Call {
                method: "GET",
                path: "/v1/public-keys",
                header: &header,
                body: b"",
                peer: peer.map(|p| p.parse().unwrap()),
                peer_label: "unix:uid=0".into(),
            })
        };
        // From anyone else, the header is ignored.
        assert_eq!(
            address(Some("192.0.2.9"), Some("198.51.100.1")),
            "192.0.2.9"
        );
        // From a trusted proxy: the nearest address that is not itself a trusted proxy.
        assert_eq!(
            address(Some("10.0.0.5"), Some("198.51.100.1")),
            "198.51.100.1"
        );
        assert_eq!(
            address(
                Some("10.0.0.5"),
                Some("203.0.113.7, 198.51.100.1, 10.0.0.6")
            ),
            "198.51.100.1",
            "a client cannot choose its address by prepending one"
        );
        assert_eq!(
            address(Some("10.0.0.5"), Some("not an address")),
            "10.0.0.5"
        );
        assert_eq!(address(Some("10.0.0.5"), None), "10.0.0.5");
        assert_eq!(address(None, Some("198.51.100.1")), "unix:uid=0");
    }
}
