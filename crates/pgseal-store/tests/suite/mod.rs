//! One suite, run on every backend: the store's rules must not depend on where it lives.

use pgseal_core::Fingerprint;
use pgseal_core::time::Timestamp;
use pgseal_store::*;

/// A user name known to be valid.
fn name(s: &str) -> Username {
    Username::parse(s).unwrap()
}

/// A fresh, empty store on the backend named, and its URL (for second connections).
pub trait Backend {
    fn fresh() -> StoreUrl;
    /// Runs SQL on the store's database behind pgseal's back (to tamper with it).
    fn raw(url: &StoreUrl, sql: &str);
    /// What `open_existing` finds at a fresh URL.
    const ABSENT: NoStoreReason;
}

fn fp(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

fn server_key(n: u8) -> NewServerKey {
    NewServerKey {
        fingerprint: fp(n),
        legacy_fingerprint: Some(format!("SHA256:{:032x}...", n)),
        private_key_pem: format!("-----BEGIN ENCRYPTED PRIVATE KEY-----\n{n}\n"),
        public_key_pem: format!("-----BEGIN PUBLIC KEY-----\n{n}\n"),
        key_size: 4096,
        notes: Some("test".into()),
    }
}

fn user_key(n: u8) -> NewUserKey {
    NewUserKey {
        fingerprint: fp(n),
        legacy_fingerprint: None,
        public_key_pem: format!("-----BEGIN PUBLIC KEY-----\nuser {n}\n"),
        key_size: 2048,
    }
}

pub fn users_have_stable_unique_ids(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    let a = s.add_user(&name("alice"), Role::Admin).unwrap();
    let b = s.add_user(&name("bob"), Role::Operator).unwrap();
    assert!(b.id > a.id);
    assert!(
        matches!(s.add_user(&name("alice"), Role::Auditor), Err(StoreError::Conflict(m)) if m.contains("already exists"))
    );
    assert!(Username::parse("bad name").is_err());
    assert_eq!(s.user(&name("bob")).unwrap(), b);
    assert_eq!(s.user_by_id(a.id).unwrap().unwrap().username, "alice");
    // Which user is missing, typed (the front end adds how to add one).
    assert!(matches!(s.user(&name("carol")), Err(StoreError::UnknownUser(n)) if n == "carol"));
    assert!(
        matches!(s.disable_user(&name("carol")), Err(StoreError::UnknownUser(n)) if n == "carol")
    );
    let disabled = s.disable_user(&name("bob")).unwrap();
    assert!(!disabled.is_active && disabled.disabled_at.is_some());
    assert_eq!(s.users().unwrap().len(), 2);
    // Reopening (and re-running migrations) keeps everything.
    drop(s);
    let mut s = Store::open(&url).unwrap();
    assert_eq!(s.user(&name("alice")).unwrap().id, a.id);
}

pub fn one_active_server_key(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    assert!(s.active_server_key().unwrap().is_none());
    let k = s.add_server_key(&server_key(1)).unwrap();
    assert_eq!(k.status, ServerKeyStatus::Active);
    assert_eq!(k.fingerprint, fp(1));
    let err = s.add_server_key(&server_key(2)).unwrap_err();
    // Which key is active, typed (the front end adds how to rotate it).
    assert!(
        matches!(&err, StoreError::ActiveServerKeyExists(active) if *active == fp(1)),
        "{err}"
    );
    assert_eq!(s.server_keys().unwrap().len(), 1);
    assert_eq!(
        s.server_key(&fp(1)).unwrap().unwrap().private_key_pem,
        k.private_key_pem
    );
    assert!(s.server_key(&fp(9)).unwrap().is_none());
    assert_eq!(s.active_server_key().unwrap().unwrap().id, k.id);
}

pub fn racing_server_key_inserts_have_one_winner(url: StoreUrl) {
    let handles: Vec<_> = (0..4u8)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = Store::open(&url).unwrap();
                s.add_server_key(&server_key(10 + i)).is_ok()
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(wins, 1);
    let mut s = Store::open(&url).unwrap();
    assert_eq!(s.server_keys().unwrap().len(), 1);
}

pub fn user_keys_keep_history(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    let u = s.add_user(&name("system_backup"), Role::Operator).unwrap();
    let k = s.add_user_key(u.id, &user_key(3)).unwrap();
    assert_eq!(k.status, UserKeyStatus::Active);
    let err = s.add_user_key(u.id, &user_key(4)).unwrap_err();
    assert!(
        matches!(&err, StoreError::ActiveUserKeyExists(active) if *active == fp(3)),
        "{err}"
    );
    assert_eq!(s.active_user_key(u.id).unwrap().unwrap().fingerprint, fp(3));
    assert_eq!(s.user_key(&fp(3)).unwrap().unwrap().user_id, u.id);
    assert_eq!(s.user_keys(u.id).unwrap().len(), 1);
    // A fingerprint is unique across users.
    let other = s.add_user(&name("other"), Role::Operator).unwrap();
    assert!(matches!(
        s.add_user_key(other.id, &user_key(3)),
        Err(StoreError::Conflict(_))
    ));
}

pub fn audit_entries_round_trip(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    let u = s.add_user(&name("auditor1"), Role::Auditor).unwrap();
    let full = NewAuditEntry {
        action: Action::Decrypt,
        user_id: Some(u.id),
        os_user: Some("root".into()),
        backup_creator_id: Some(u.id),
        backup_file: Some("/backups/db_20260101T000000.000Z.pgseal".into()),
        success: false,
        signature_valid: Some(false),
        timestamp: Timestamp(1_765_965_760_123),
        host: Some("db1".into()),
        ip_address: Some("192.0.2.10".into()),
        details: r#"{"error":"Signature verification failed","bytes":5}"#.into(),
    };
    let empty = NewAuditEntry {
        action: Action::KeyGen,
        user_id: None,
        os_user: None,
        backup_creator_id: None,
        backup_file: None,
        success: true,
        signature_valid: None,
        timestamp: Timestamp(1_765_965_761_000),
        host: None,
        ip_address: None,
        details: "{}".into(),
    };
    let a = s.append_audit(&full).unwrap();
    let b = s.append_audit(&empty).unwrap();
    assert!(b > a);
    let got = s.audit_entries(10).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].entry.action, full.action);
    assert_eq!(got[0].entry.timestamp, full.timestamp);
    assert_eq!(got[0].entry.signature_valid, Some(false));
    let details: serde_json::Value = serde_json::from_str(&got[0].entry.details).unwrap();
    assert_eq!(details["bytes"], 5);
    assert_eq!(got[1].entry, empty);
    assert_eq!(s.audit_entries(1).unwrap()[0].seq, b);
}

/// `open_existing` never makes a store: it names what is missing until `open` has made one,
/// then opens it like `open` does.
pub fn only_open_creates_a_store(url: StoreUrl, absent: NoStoreReason) {
    match Store::open_existing(&url) {
        Err(StoreError::NoStore(e)) => {
            assert_eq!(e.reason, absent);
            // What is missing and where (the front end adds how to make or find a store).
            assert_eq!(e.to_string(), format!("{absent} at {url}"));
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("open_existing made a store"),
    }
    // Still nothing there: the refusal created nothing.
    assert!(matches!(
        Store::open_existing(&url),
        Err(StoreError::NoStore(e)) if e.reason == absent
    ));
    let mut s = Store::open(&url).unwrap();
    s.add_user(&name("alice"), Role::Admin).unwrap();
    drop(s);
    let mut s = Store::open_existing(&url).unwrap();
    assert_eq!(s.users().unwrap().len(), 1);
}

/// Opening read-only creates nothing, reads everything, writes nothing — the backend refuses
/// a write on that connection — and never upgrades a schema.
pub fn read_only_opening_writes_nothing<B: Backend>(url: StoreUrl) {
    assert!(
        matches!(
            Store::open_read_only(&url),
            Err(StoreError::NoStore(_) | StoreError::Backend { .. })
        ),
        "a reader found a store where there is none"
    );
    let mut s = Store::open(&url).unwrap();
    let alice = s.add_user(&name("alice"), Role::Admin).unwrap();
    drop(s);
    let mut r = Store::open_read_only(&url).unwrap();
    assert_eq!(r.user(&name("alice")).unwrap(), alice);
    assert!(r.add_user(&name("bob"), Role::Operator).is_err());
    drop(r);
    assert!(Store::open(&url).unwrap().user(&name("bob")).is_err());
    B::raw(
        &url,
        "DELETE FROM pgseal_schema WHERE version = (SELECT MAX(version) FROM pgseal_schema)",
    );
    assert!(matches!(
        Store::open_read_only(&url),
        Err(StoreError::SchemaTooOld { .. })
    ));
}

/// Instantiates every suite test for one backend.
#[macro_export]
macro_rules! backend_suite {
    ($backend:ty) => {
        #[test]
        fn read_only_opening_writes_nothing() {
            $crate::suite::read_only_opening_writes_nothing::<$backend>(<$backend>::fresh());
        }
        #[test]
        fn users_have_stable_unique_ids() {
            $crate::suite::users_have_stable_unique_ids(<$backend>::fresh());
        }
        #[test]
        fn one_active_server_key() {
            $crate::suite::one_active_server_key(<$backend>::fresh());
        }
        #[test]
        fn racing_server_key_inserts_have_one_winner() {
            $crate::suite::racing_server_key_inserts_have_one_winner(<$backend>::fresh());
        }
        #[test]
        fn user_keys_keep_history() {
            $crate::suite::user_keys_keep_history(<$backend>::fresh());
        }
        #[test]
        fn rotations_keep_history_and_have_one_winner() {
            $crate::suite::rotations_keep_history_and_have_one_winner(<$backend>::fresh());
        }
        #[test]
        fn tampering_breaks_the_chain() {
            $crate::suite::tampering_breaks_the_chain::<$backend>(<$backend>::fresh());
        }
        #[test]
        fn deleting_or_inserting_breaks_the_chain() {
            $crate::suite::deleting_or_inserting_breaks_the_chain::<$backend>(<$backend>::fresh());
        }
        #[test]
        fn the_chain_walked_in_pages_breaks_where_it_does_at_any_page_boundary() {
            $crate::suite::the_chain_walked_in_pages_breaks_where_it_does::<$backend>(
                <$backend>::fresh(),
            );
        }
        #[test]
        fn reordering_breaks_the_chain() {
            $crate::suite::reordering_breaks_the_chain::<$backend>(<$backend>::fresh());
        }
        #[test]
        fn concurrent_appends_make_one_chain() {
            $crate::suite::concurrent_appends_make_one_chain(<$backend>::fresh());
        }
        #[test]
        fn two_processes_appending_500_each_make_one_chain() {
            let url = <$backend>::fresh();
            Store::open(&url).unwrap();
            let spawn = |worker: &str| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "append_500_helper", "--ignored", "--nocapture"])
                    .env("PGSEAL_TEST_APPEND_URL", url.to_string_unredacted())
                    .env("PGSEAL_TEST_APPEND_WORKER", worker)
                    .spawn()
                    .unwrap()
            };
            let (a, b) = (spawn("1"), spawn("2"));
            assert!(a.wait_with_output().unwrap().status.success());
            assert!(b.wait_with_output().unwrap().status.success());
            assert_eq!(
                Store::open(&url).unwrap().verify_audit_chain().unwrap(),
                Ok(1000)
            );
        }
        #[test]
        #[ignore = "run by two_processes_appending_500_each_make_one_chain as a separate process"]
        fn append_500_helper() {
            let url: StoreUrl = std::env::var("PGSEAL_TEST_APPEND_URL")
                .unwrap()
                .parse()
                .unwrap();
            let worker: i64 = std::env::var("PGSEAL_TEST_APPEND_WORKER")
                .unwrap()
                .parse()
                .unwrap();
            let mut s = Store::open(&url).unwrap();
            for i in 0..500 {
                s.append_audit(&$crate::suite::entry_for_helper(worker * 10_000 + i))
                    .unwrap();
            }
        }
        #[test]
        fn only_open_creates_a_store() {
            $crate::suite::only_open_creates_a_store(<$backend>::fresh(), <$backend>::ABSENT);
        }
        #[test]
        fn audit_entries_round_trip() {
            $crate::suite::audit_entries_round_trip(<$backend>::fresh());
        }
        #[test]
        fn hashes_and_actions_come_back_as_values() {
            $crate::suite::hashes_and_actions_come_back_as_values(<$backend>::fresh());
        }
        #[test]
        fn a_stored_hash_that_is_no_hash_is_a_break_in_the_chain() {
            $crate::suite::a_stored_hash_that_is_no_hash_is_a_break_in_the_chain::<$backend>(
                <$backend>::fresh(),
            );
        }
        #[test]
        fn catalog_entries_round_trip() {
            $crate::suite::catalog_entries_round_trip::<$backend>(<$backend>::fresh());
        }
        #[test]
        fn the_catalog_records_a_location_per_backup() {
            $crate::suite::the_catalog_records_a_location_per_backup::<$backend>(
                <$backend>::fresh(),
            );
        }
        #[test]
        fn a_totp_step_is_accepted_once() {
            $crate::suite::a_totp_step_is_accepted_once(<$backend>::fresh());
        }
        #[test]
        fn service_roles_are_granted_and_revoked_per_user() {
            $crate::suite::service_roles_are_granted_and_revoked_per_user(<$backend>::fresh());
        }
        #[test]
        fn a_backups_copies_are_entries_naming_its_first() {
            $crate::suite::a_backups_copies_are_entries_naming_its_first(<$backend>::fresh());
        }
        #[test]
        fn migrating_gives_old_rows_their_location_from_path_and_host() {
            $crate::suite::migrating_gives_old_rows_their_location_from_path_and_host::<$backend>(
                <$backend>::fresh(),
            );
        }
    };
}

pub fn rotations_keep_history_and_have_one_winner(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    let old = s.add_server_key(&server_key(40)).unwrap();
    let reprotected = vec![(old.id, "re-encrypted".to_owned())];
    let new = s
        .rotate_server_key(old.id, &reprotected, &server_key(41))
        .unwrap();
    assert_eq!(new.rotated_from_id, Some(old.id));
    assert_eq!(s.active_server_key().unwrap().unwrap().id, new.id);
    let old_now = s.server_key(&fp(40)).unwrap().unwrap();
    assert_eq!(old_now.status, ServerKeyStatus::Rotated);
    assert_eq!(old_now.private_key_pem, "re-encrypted");
    // A second rotation from the same (no longer active) key changes nothing.
    let stale = s.rotate_server_key(
        old.id,
        &[(old.id, "x".into()), (new.id, "y".into())],
        &server_key(42),
    );
    assert!(matches!(stale, Err(StoreError::Conflict(_))));
    assert_eq!(s.server_keys().unwrap().len(), 2);
    assert_eq!(
        s.server_key(&fp(40)).unwrap().unwrap().private_key_pem,
        "re-encrypted"
    );
    // An incomplete re-protection list is refused whole.
    let partial = s.rotate_server_key(new.id, &[(new.id, "z".into())], &server_key(43));
    assert!(matches!(partial, Err(StoreError::Conflict(_))));
    assert_eq!(s.active_server_key().unwrap().unwrap().id, new.id);

    let u = s.add_user(&name("rotating"), Role::Operator).unwrap();
    let k1 = s.add_user_key(u.id, &user_key(50)).unwrap();
    let k2 = s.rotate_user_key(u.id, k1.id, &user_key(51)).unwrap();
    assert_eq!(k2.rotated_from_id, Some(k1.id));
    let keys = s.user_keys(u.id).unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].status, UserKeyStatus::Retired);
    assert!(keys[0].retired_at.is_some());
    assert_eq!(
        s.user_key(&fp(50)).unwrap().unwrap().status,
        UserKeyStatus::Retired
    );
    assert!(matches!(
        s.rotate_user_key(u.id, k1.id, &user_key(52)),
        Err(StoreError::Conflict(_))
    ));
}

pub fn entry_for_helper(n: i64) -> NewAuditEntry {
    entry(n)
}

fn entry(n: i64) -> NewAuditEntry {
    NewAuditEntry {
        action: Action::Verify,
        user_id: None,
        os_user: Some(format!("worker{n}")),
        backup_creator_id: None,
        backup_file: Some(format!("/b/{n}.pgseal")),
        success: n % 3 != 0,
        signature_valid: Some(n % 2 == 0),
        timestamp: Timestamp(1_765_965_760_000 + n),
        host: Some("h".into()),
        ip_address: None,
        details: format!(r#"{{"n":{n}}}"#),
    }
}

fn chain_of(url: &StoreUrl, n: i64) -> Store {
    let mut s = Store::open(url).unwrap();
    for i in 1..=n {
        assert_eq!(s.append_audit(&entry(i)).unwrap(), i);
    }
    assert_eq!(s.verify_audit_chain().unwrap(), Ok(n));
    s
}

fn broken_at(s: &mut Store) -> (i64, String) {
    let b = s
        .verify_audit_chain()
        .unwrap()
        .expect_err("the chain should be broken");
    (b.seq, b.reason)
}

pub fn tampering_breaks_the_chain<B: Backend>(url: StoreUrl) {
    // Edited: any field of any entry.
    let mut s = chain_of(&url, 6);
    B::raw(
        &url,
        "UPDATE pgseal_audit_log SET success = NOT success WHERE seq = 3",
    );
    let (seq, why) = broken_at(&mut s);
    assert_eq!(seq, 3);
    assert!(why.contains("edited"), "{why}");
    B::raw(
        &url,
        "UPDATE pgseal_audit_log SET success = NOT success WHERE seq = 3",
    );
    assert_eq!(s.verify_audit_chain().unwrap(), Ok(6));
    B::raw(
        &url,
        "UPDATE pgseal_audit_log SET details = '{\"n\":99}' WHERE seq = 5",
    );
    assert_eq!(broken_at(&mut s).0, 5);
}

pub fn deleting_or_inserting_breaks_the_chain<B: Backend>(url: StoreUrl) {
    let mut s = chain_of(&url, 6);
    B::raw(&url, "DELETE FROM pgseal_audit_log WHERE seq = 4");
    let (seq, why) = broken_at(&mut s);
    assert_eq!(seq, 5);
    assert!(why.contains("missing"), "{why}");
    // Renumbering to hide the gap breaks the links instead.
    B::raw(
        &url,
        "UPDATE pgseal_audit_log SET seq = seq - 1 WHERE seq > 4",
    );
    let (seq, why) = broken_at(&mut s);
    assert_eq!(seq, 4);
    assert!(why.contains("link"), "{why}");
}

/// The walk reads the log a page at a time: a break is found the same whether it falls
/// inside a page, on its first or on its last entry.
pub fn the_chain_walked_in_pages_breaks_where_it_does<B: Backend>(url: StoreUrl) {
    let mut s = chain_of(&url, 7);
    for page in [1, 2, 3, 6, 7, 8, 100] {
        assert_eq!(
            s.verify_audit_chain_in_pages(page).unwrap(),
            Ok(7),
            "{page}"
        );
    }
    for seq in [3, 4, 7] {
        B::raw(
            &url,
            &format!("UPDATE pgseal_audit_log SET success = NOT success WHERE seq = {seq}"),
        );
        for page in [1, 3, 100] {
            let b = s.verify_audit_chain_in_pages(page).unwrap().unwrap_err();
            assert_eq!(b.seq, seq, "page {page}");
        }
        B::raw(
            &url,
            &format!("UPDATE pgseal_audit_log SET success = NOT success WHERE seq = {seq}"),
        );
    }
    // An entry deleted at a page boundary is a gap.
    B::raw(&url, "DELETE FROM pgseal_audit_log WHERE seq = 4");
    let b = s.verify_audit_chain_in_pages(3).unwrap().unwrap_err();
    assert_eq!(b.seq, 5);
    assert!(b.reason.contains("entry 4 is missing"), "{}", b.reason);
}

pub fn reordering_breaks_the_chain<B: Backend>(url: StoreUrl) {
    let mut s = chain_of(&url, 5);
    B::raw(&url, "UPDATE pgseal_audit_log SET seq = 100 WHERE seq = 2");
    B::raw(&url, "UPDATE pgseal_audit_log SET seq = 2 WHERE seq = 3");
    B::raw(&url, "UPDATE pgseal_audit_log SET seq = 3 WHERE seq = 100");
    assert_eq!(broken_at(&mut s).0, 2);
}

/// Appends from several connections at once still make one valid chain.
pub fn concurrent_appends_make_one_chain(url: StoreUrl) {
    Store::open(&url).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = Store::open(&url).unwrap();
                for i in 0..50 {
                    s.append_audit(&entry(w * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        Store::open(&url).unwrap().verify_audit_chain().unwrap(),
        Ok(200)
    );
}

/// The chain's hashes come back as the 32-byte values it links with, and an action pgseal does
/// not write (an imported legacy row's) comes back exactly as it was, chained like any other.
pub fn hashes_and_actions_come_back_as_values(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    assert_eq!(s.audit_head().unwrap(), None);
    s.append_audit(&entry(1)).unwrap();
    let mut legacy = entry(2);
    legacy.action = Action::parse("download (legacy)");
    assert!(s.import_audit_row(77, &legacy).unwrap());
    assert!(!s.import_audit_row(77, &legacy).unwrap(), "imported twice");
    assert!(s.was_imported("audit", 77).unwrap());
    s.append_audit(&entry(3)).unwrap();

    let got = s.audit_entries(10).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].prev_hash, chain::GENESIS);
    assert_eq!(
        got[0].entry_hash,
        chain::entry_hash(1, &chain::GENESIS, false, &got[0].entry)
    );
    assert_eq!(got[1].prev_hash, got[0].entry_hash);
    assert_eq!(got[2].prev_hash, got[1].entry_hash);
    assert!(got[1].imported && !got[0].imported);
    assert_eq!(got[1].entry.action, legacy.action);
    assert_eq!(got[1].entry.action.as_str(), "download (legacy)");
    assert!(!got[1].entry.action.is_written_by_pgseal());
    assert_eq!(got[0].entry.action, Action::Verify);
    assert_eq!(s.audit_head().unwrap(), Some((3, got[2].entry_hash)));
    assert_eq!(s.audit_entry(2).unwrap().unwrap(), got[1]);
    assert_eq!(s.verify_audit_chain().unwrap(), Ok(3));

    // Filtering by an action, pgseal's or not, matches its exact text.
    let only = |s: &mut Store, action: Action| {
        s.audit_query(&AuditFilter {
            action: Some(action),
            ..AuditFilter::default()
        })
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect::<Vec<_>>()
    };
    assert_eq!(only(&mut s, Action::parse("download (legacy)")), [2]);
    assert_eq!(only(&mut s, Action::Verify), [1, 3]);
    assert_eq!(only(&mut s, Action::parse("verify")), Vec::<i64>::new());
}

/// Whoever can write the database can put anything in a hash column: verifying reports it as a
/// break in the chain where it is, and reading the entry says which one holds it.
pub fn a_stored_hash_that_is_no_hash_is_a_break_in_the_chain<B: Backend>(url: StoreUrl) {
    let mut s = chain_of(&url, 4);
    let good = s.audit_entry(3).unwrap().unwrap().entry_hash.to_string();
    for bad in ["zz", "", &good.to_uppercase()] {
        B::raw(
            &url,
            &format!("UPDATE pgseal_audit_log SET entry_hash = '{bad}' WHERE seq = 3"),
        );
        let (seq, why) = broken_at(&mut s);
        assert_eq!(seq, 3, "{bad:?}");
        assert!(why.contains("edited"), "{why}");
        assert!(matches!(
            s.audit_entry(3),
            Err(StoreError::MalformedAuditHash { seq: 3 })
        ));
    }
    B::raw(
        &url,
        &format!("UPDATE pgseal_audit_log SET entry_hash = '{good}' WHERE seq = 3"),
    );
    assert_eq!(s.verify_audit_chain().unwrap(), Ok(4));

    B::raw(
        &url,
        "UPDATE pgseal_audit_log SET prev_hash = 'not a hash' WHERE seq = 2",
    );
    let (seq, why) = broken_at(&mut s);
    assert_eq!(seq, 2);
    assert!(why.contains("does not link"), "{why}");

    // The head is what new files anchor and new entries link to: a head that is no hash is
    // refused, never copied on.
    B::raw(
        &url,
        "UPDATE pgseal_audit_log SET entry_hash = 'x' WHERE seq = 4",
    );
    assert!(matches!(
        s.audit_head(),
        Err(StoreError::MalformedAuditHash { seq: 4 })
    ));
    assert!(matches!(
        s.append_audit(&entry(5)),
        Err(StoreError::MalformedAuditHash { seq: 4 })
    ));
}

fn backup(n: u8, blake3: Option<Hash32>) -> NewBackup {
    NewBackup {
        database: format!("db{n}"),
        location: Location::parse(&format!("file://h1/backups/db{n}.pgseal")).unwrap(),
        size_bytes: 1000 + i64::from(n),
        created_at: Timestamp(1_765_965_760_000 + i64::from(n)),
        creator_user_id: None,
        creator_key: fp(n),
        server_keys: vec![fp(100), fp(101)],
        format_version: 2,
        ciphertext_blake3: blake3,
    }
}

/// What the catalog records comes back as it was: a digest as its 32 bytes, no digest as none.
pub fn catalog_entries_round_trip<B: Backend>(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    let digest = Hash32([0xab; 32]);
    let with = s.add_backup(&backup(1, Some(digest))).unwrap();
    let without = s.add_backup(&backup(2, None)).unwrap();
    assert_eq!(with.entry, backup(1, Some(digest)));
    assert_eq!(without.entry.ciphertext_blake3, None);
    assert_eq!(
        s.backups(None).unwrap(),
        vec![with.clone(), without.clone()]
    );
    assert_eq!(s.backups(Some("db2")).unwrap(), vec![without.clone()]);
    assert_eq!(
        s.backup_at(&Location::parse("file://h1/backups/db1.pgseal").unwrap())
            .unwrap(),
        Some(with.clone())
    );
    s.set_backup_server_keys(with.id, &[fp(102)]).unwrap();
    s.mark_pruned(without.id).unwrap();
    assert!(matches!(
        s.mark_pruned(without.id),
        Err(StoreError::NotFound(_))
    ));
    let history = s.backup_history().unwrap();
    assert_eq!(history[0].entry.server_keys, [fp(102)]);
    assert_eq!(history[1].status, BackupStatus::Pruned);
    assert_eq!(s.backups(None).unwrap().len(), 1);

    // A digest column that holds no digest is named as such, with its entry.
    B::raw(
        &url,
        &format!(
            "UPDATE pgseal_backups SET ciphertext_blake3 = 'ABAB' WHERE id = {}",
            with.id
        ),
    );
    match s.backups(None) {
        Err(StoreError::Corrupt(m)) => {
            assert!(m.contains(&format!("backup {}", with.id)), "{m}");
            assert!(m.contains("ciphertext_blake3"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

/// A backup's place is one location: the same path on two hosts is two backups, a location is
/// found again as it was written, one live entry per location, and a row holding no location
/// is corrupt.
pub fn the_catalog_records_a_location_per_backup<B: Backend>(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    let path = std::path::Path::new("/srv/pgseal/backups/shop_20260101T000000.000Z.pgseal");
    let on = |host: &str| Location::file(host, path).unwrap();
    let mut entry = backup(1, None);
    entry.location = on("db1");
    let first = s.add_backup(&entry).unwrap();
    assert_eq!(
        first.entry.location.as_str(),
        "file://db1/srv/pgseal/backups/shop_20260101T000000.000Z.pgseal"
    );
    entry.location = on("db2");
    let second = s.add_backup(&entry).unwrap();
    assert_eq!(s.backup_at(&on("db1")).unwrap(), Some(first.clone()));
    assert_eq!(s.backup_at(&on("db2")).unwrap(), Some(second.clone()));
    assert_eq!(s.backup_at(&on("db3")).unwrap(), None);
    // Bytes a URL must escape come back as they went in.
    let odd = std::path::Path::new("/srv/b/\u{dc}n\u{ef}code db #1?.pgseal");
    entry.location = Location::file("db1", odd).unwrap();
    let third = s.add_backup(&entry).unwrap();
    assert_eq!(third.entry.location.file_path().unwrap(), odd);
    assert_eq!(s.backups(None).unwrap()[2], third);
    // The database keeps one live entry per location.
    entry.location = on("db1");
    assert!(s.add_backup(&entry).is_err());
    s.mark_pruned(first.id).unwrap();
    assert!(s.add_backup(&entry).is_ok());
    // A location pgseal never writes is reported with its entry.
    B::raw(
        &url,
        &format!(
            "UPDATE pgseal_backups SET location = '' WHERE id = {}",
            second.id
        ),
    );
    match s.backups(None) {
        Err(StoreError::Corrupt(m)) => {
            assert!(m.contains(&format!("backup {}", second.id)), "{m}");
            assert!(m.contains("location"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

/// A copy is an entry of its own (location, status, server keys) naming the backup's first
/// entry; the copy of a copy names that same first entry; a copy that is not the same backup
/// (database, time, creator, digest) is refused; a pruned copy is no longer among the copies.
pub fn a_backups_copies_are_entries_naming_its_first(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    let digest = Some(Hash32([7; 32]));
    let first = s.add_backup(&backup(1, digest)).unwrap();
    assert_eq!(first.copy_of, None);
    let at = |l: &str| Location::parse(l).unwrap();
    let mut copy = backup(1, digest);
    copy.location = at("s3://bucket/site/db1.pgseal");
    copy.server_keys = vec![fp(102)];
    let second = s.add_copy(first.id, &copy).unwrap();
    assert_eq!(second.copy_of, Some(first.id));
    assert_eq!(second.entry, copy);
    copy.location = at("file://h2/elsewhere/db1.pgseal");
    let third = s.add_copy(second.id, &copy).unwrap();
    assert_eq!(
        third.copy_of,
        Some(first.id),
        "a copy of a copy names the first"
    );
    let ids = |v: Vec<BackupRecord>| v.into_iter().map(|b| b.id).collect::<Vec<_>>();
    for id in [first.id, second.id, third.id] {
        assert_eq!(ids(s.copies(id).unwrap()), [first.id, second.id, third.id]);
    }
    assert_eq!(s.backup(third.id).unwrap(), third);
    assert_eq!(s.backups(None).unwrap().len(), 3);

    // Not the same backup: another digest, time, database or creator.
    let mut other = backup(1, Some(Hash32([8; 32])));
    other.location = at("s3://bucket/site/other.pgseal");
    assert!(matches!(
        s.add_copy(first.id, &other),
        Err(StoreError::Conflict(_))
    ));
    let mut other = backup(2, digest);
    other.location = at("s3://bucket/site/other.pgseal");
    assert!(matches!(
        s.add_copy(first.id, &other),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.add_copy(9999, &copy),
        Err(StoreError::NotFound(_))
    ));

    // Each copy is pruned on its own; the first may go while its copies stay.
    s.mark_pruned(first.id).unwrap();
    assert_eq!(ids(s.copies(third.id).unwrap()), [second.id, third.id]);
    assert_eq!(ids(s.copies(first.id).unwrap()), [second.id, third.id]);
}

/// A store made before locations (schema 3) keeps its catalog: opening it migrates each row's
/// host and path into a location, and the old columns are gone.
pub fn migrating_gives_old_rows_their_location_from_path_and_host<B: Backend>(url: StoreUrl) {
    let dialect = match url {
        StoreUrl::Sqlite(_) => db::Dialect::Sqlite,
        StoreUrl::Postgres(_) => db::Dialect::Postgres,
    };
    let mut sql = dialect.render(
        "CREATE TABLE pgseal_schema (version {bigint} PRIMARY KEY, name TEXT NOT NULL, \
         applied_at {ts} NOT NULL);",
    );
    for m in migrations::MIGRATIONS.iter().filter(|m| m.version <= 3) {
        assert!(m.data.is_none() && m.after.is_empty());
        sql.push_str(&dialect.render(m.sql));
        let now = match dialect {
            db::Dialect::Sqlite => "0",
            db::Dialect::Postgres => "now()",
        };
        sql.push_str(&format!(
            "INSERT INTO pgseal_schema VALUES ({}, '{}', {now});",
            m.version, m.name
        ));
    }
    let created = match dialect {
        db::Dialect::Sqlite => "1765965760000",
        db::Dialect::Postgres => "to_timestamp(1765965760)",
    };
    let row = |host: &str, path: &str, status: &str| {
        format!(
            "INSERT INTO pgseal_backups (database, path, host, size_bytes, created_at, \
             creator_key_fingerprint, server_key_fingerprints, format_version, \
             ciphertext_blake3, status) VALUES ('shop', '{path}', '{host}', 10, {created}, \
             '{}', '', 2, '', '{status}');",
            fp(1)
        )
    };
    sql.push_str(&row("db1", "/srv/pgseal/backups/shop 1.pgseal", "ok"));
    sql.push_str(&row("db2", "/srv/pgseal/backups/shop 1.pgseal", "ok"));
    sql.push_str(&row("db1", "backups/relative.pgseal", "pruned"));
    B::raw(&url, &sql);

    let mut s = Store::open_existing(&url).unwrap();
    let locations: Vec<String> = s
        .backup_history()
        .unwrap()
        .into_iter()
        .map(|b| b.entry.location.to_string())
        .collect();
    assert_eq!(
        locations,
        [
            "file://db1/srv/pgseal/backups/shop%201.pgseal",
            "file://db2/srv/pgseal/backups/shop%201.pgseal",
            "file://db1/backups%2Frelative.pgseal",
        ]
    );
    assert_eq!(
        s.backup_at(&Location::parse(&locations[1]).unwrap())
            .unwrap()
            .map(|b| b.entry.database),
        Some("shop".to_owned())
    );
    drop(s);
    // The old columns went with the migration: writing them fails.
    let old_column = std::panic::catch_unwind(|| {
        B::raw(&url, "UPDATE pgseal_backups SET path = '/x'");
    });
    assert!(old_column.is_err(), "the path column is still there");
}

/// Service roles are per user, granted once, revoked, and come back in one order.
pub fn service_roles_are_granted_and_revoked_per_user(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    let alice = s.add_user(&name("alice"), Role::Operator).unwrap();
    let bob = s.add_user(&name("bob"), Role::Operator).unwrap();
    assert!(s.roles(alice.id).unwrap().is_empty());
    assert!(s.grant_role(alice.id, ServiceRole::Rewrap).unwrap());
    assert!(s.grant_role(alice.id, ServiceRole::Restore).unwrap());
    assert!(!s.grant_role(alice.id, ServiceRole::Restore).unwrap());
    assert_eq!(
        s.roles(alice.id).unwrap(),
        [ServiceRole::Restore, ServiceRole::Rewrap]
    );
    assert!(s.roles(bob.id).unwrap().is_empty());
    assert!(s.revoke_role(alice.id, ServiceRole::Restore).unwrap());
    assert!(!s.revoke_role(alice.id, ServiceRole::Restore).unwrap());
    assert_eq!(s.roles(alice.id).unwrap(), [ServiceRole::Rewrap]);
    assert!(
        s.grant_role(9999, ServiceRole::Admin).is_err(),
        "no such user"
    );
    for r in ServiceRole::ALL {
        assert_eq!(r.as_str().parse::<ServiceRole>().unwrap(), r);
    }
}

/// A second factor is enrolled (and replaced by re-enrolling); a time step is accepted once,
/// and never one older than the last accepted.
pub fn a_totp_step_is_accepted_once(url: StoreUrl) {
    let mut s = Store::open(&url).unwrap();
    let alice = s.add_user(&name("alice"), Role::Operator).unwrap();
    assert_eq!(s.totp(alice.id).unwrap(), None);
    s.set_totp(alice.id, b"sealed secret", &fp(9)).unwrap();
    let t = s.totp(alice.id).unwrap().unwrap();
    assert_eq!(
        (t.secret_sealed.as_slice(), t.sealed_to, t.last_step),
        (&b"sealed secret"[..], fp(9), 0)
    );
    assert!(s.use_totp_step(alice.id, 100).unwrap());
    assert!(
        !s.use_totp_step(alice.id, 100).unwrap(),
        "the same step again"
    );
    assert!(!s.use_totp_step(alice.id, 99).unwrap(), "an older step");
    assert!(s.use_totp_step(alice.id, 101).unwrap());
    s.set_totp(alice.id, b"another", &fp(10)).unwrap();
    let t = s.totp(alice.id).unwrap().unwrap();
    assert_eq!(
        (t.secret_sealed.as_slice(), t.last_step),
        (&b"another"[..], 0)
    );
}
