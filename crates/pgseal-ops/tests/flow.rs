//! A backup's whole life through the operations API alone — no CLI process: backup → verify →
//! restore → server-key rotation → rewrap, on the local repository, a SQLite store the
//! operations make, and a real PostgreSQL cluster (pgseal-testkit).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgseal_core::Fingerprint;
use pgseal_ops::backup::{self, Backup, Source};
use pgseal_ops::keys::ServerKeyring;
use pgseal_ops::observe::Silent;
use pgseal_ops::open::OpenKeys;
use pgseal_ops::pgtools::PgTools;
use pgseal_ops::repo::local::LocalRepository;
use pgseal_ops::restore::{self, Destination, Restore, Restored};
use pgseal_ops::rewrap::{self, Files, Outcome};
use pgseal_ops::testsite::{HOST, TestSite, encrypted, key, new_server_key, password};
use pgseal_ops::verify::{self, Proof, VerifyKeys};
use pgseal_ops::{Error, ErrorKind, Session};
use pgseal_store::Action;
use pgseal_testkit::TestCluster;

/// Verifies `file`, proving it decrypts with `identity` (a key file) or else with the store's
/// server keys; the session's entry is written.
fn verify_decrypts(
    session: &mut Session,
    file: &Path,
    identity: Option<&Path>,
) -> Result<Option<Fingerprint>, Error> {
    let pw = password();
    let v = verify::verify(
        session,
        file.to_str().unwrap(),
        &VerifyKeys {
            signers: &[],
            identity,
            decrypt_check: true,
            server_password: &pw,
        },
    );
    let result = v.result.map(|proof| match proof {
        Proof::V2 { decrypted_with, .. } => decrypted_with,
        other => panic!("not a v2 proof: {other:?}"),
    });
    // The entry records the failure as the front end would have said it.
    let recorded = session.finish(match &result {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::invalid(e.to_string())),
    });
    assert_eq!(recorded.is_ok(), result.is_ok(), "{recorded:?}");
    result
}

#[test]
fn backup_verify_restore_rotate_rewrap_through_the_operations_api() {
    let cluster = TestCluster::shared();
    // A site: the store (made by the operations layer), a user with a signing key in the
    // user keys directory, and an active server key.
    let TestSite {
        tmp,
        site,
        mut session,
        server: old_server,
        ..
    } = TestSite::new();

    // A small database.
    let db = cluster.create_database("ops_flow").unwrap();
    cluster
        .psql(
            &db,
            "CREATE TABLE t (id int PRIMARY KEY, note text); \
             INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 321) g; \
             CREATE SCHEMA s; CREATE TABLE s.u (v bytea); \
             INSERT INTO s.u SELECT decode(md5(g::text), 'hex') FROM generate_series(1, 45) g;",
        )
        .unwrap();
    let tools = PgTools {
        bin: cluster.bin_dir().to_path_buf(),
        setpriv: None,
        scrub: Vec::new(),
        env: cluster
            .env()
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        observer: Arc::new(Silent),
    };

    // Backup.
    let repository = LocalRepository::create_dir(&site.backup_dir, HOST).unwrap();
    let pw = password();
    let record = backup::backup(
        &mut session,
        &Backup {
            creator: "system_backup",
            sign_key: None,
            creator_password: &pw,
            tools: &tools,
            repository: &repository,
            schemas: &[],
            source_host: Some(HOST.into()),
            sweep_older_than: None,
        },
        Source::Name(db.clone()),
    );
    session.finish(record.map(drop)).unwrap();
    let backups = pgseal_ops::catalog::list(&mut session, Some(&db)).unwrap();
    assert_eq!(backups.len(), 1);
    let entry = &backups[0].entry;
    assert_eq!(entry.server_keys, vec![old_server.fingerprint()]);
    assert_eq!(entry.location.host(), HOST);
    let file: PathBuf = entry.location.file_path().unwrap();
    assert_eq!(
        file.parent().unwrap(),
        site.backup_dir.canonicalize().unwrap()
    );

    // Verify: signatures, and it decrypts with the stored server key.
    assert_eq!(
        verify_decrypts(&mut session, &file, None).unwrap(),
        Some(old_server.fingerprint())
    );

    // Restore into a new database; the row counts match.
    let copy = format!("{db}_copy");
    let (server_pw, legacy_pw) = (password(), password());
    let restored = restore::restore(
        &mut session,
        &Restore {
            file: &file,
            keys: OpenKeys {
                identities: &[],
                signers: &[],
                server_password: &server_pw,
                legacy_password: &legacy_pw,
                verify: true,
            },
            destination: Destination::Into {
                database: copy.clone(),
                create: true,
                merge: false,
            },
            clean: false,
            jobs: 1,
            tools: &tools,
        },
        || Ok(()),
    );
    let restored = match restored {
        Ok(r) => {
            session.finish(Ok(())).unwrap();
            r
        }
        Err(e) => panic!("restore failed: {e}"),
    };
    assert!(matches!(&restored.restored, Restored::Into(d) if *d == copy));
    let original = restore::row_counts(&tools, &db).unwrap();
    assert_eq!(
        original,
        vec![("public.t".to_owned(), 321), ("s.u".to_owned(), 45)]
    );
    assert_eq!(restore::row_counts(&tools, &copy).unwrap(), original);

    // Rotate the server key (in the store, as key administration does: the rotated key stays,
    // under the same password here, and a new one is active).
    let new_server = key();
    {
        let store = session.store().unwrap();
        let active = store.active_server_key().unwrap().unwrap();
        let kept = [(active.id, active.private_key_pem.clone())];
        store
            .rotate_server_key(active.id, &kept, &new_server_key(&new_server))
            .unwrap();
    }

    // Rewrap every catalogued backup with the store's keyring as the key holder.
    let pw = password();
    let mut keyring = ServerKeyring::load(&mut session, &pw).unwrap();
    let report = rewrap::rewrap(&mut session, &mut keyring, Files::Catalogued).unwrap();
    report.result().unwrap();
    assert_eq!(report.to, new_server.fingerprint());
    assert_eq!(report.items.len(), 1);
    assert_eq!(report.items[0].0, entry.location.shown());
    assert_eq!(
        report.items[0].1.as_ref().unwrap(),
        &Outcome::Rewrapped(vec![new_server.fingerprint()])
    );
    let after = pgseal_ops::catalog::list(&mut session, Some(&db)).unwrap();
    assert_eq!(after[0].entry.server_keys, vec![new_server.fingerprint()]);

    // The old key opens it no more; the new one (found in the store by the file's slot) does.
    let old_file = tmp.path().join("old-server.key.pem");
    std::fs::write(&old_file, encrypted(&old_server)).unwrap();
    let refused = verify_decrypts(&mut session, &file, Some(&old_file)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Key, "{refused}");
    assert!(
        matches!(
            refused.root(),
            Error::Core(pgseal_core::Error::NoMatchingIdentity(r)) if *r == vec![new_server.fingerprint()]
        ),
        "{refused:?}"
    );
    assert_eq!(
        verify_decrypts(&mut session, &file, None).unwrap(),
        Some(new_server.fingerprint())
    );
    // A second run has nothing left to do.
    let again = rewrap::rewrap(&mut session, &mut keyring, Files::Catalogued).unwrap();
    assert_eq!(again.items[0].1.as_ref().unwrap(), &Outcome::AlreadyCurrent);

    // Every step is in the audit log, whose chain holds.
    let store = session.store().unwrap();
    let actions: Vec<(Action, bool)> = store
        .audit_entries(100)
        .unwrap()
        .into_iter()
        .map(|e| (e.entry.action, e.entry.success))
        .collect();
    assert_eq!(
        actions,
        vec![
            (Action::Backup, true),
            (Action::Verify, true),
            (Action::Restore, true),
            (Action::Rewrap, true),
            (Action::Verify, false),
            (Action::Verify, true),
            (Action::Rewrap, true),
        ]
    );
    assert!(store.verify_audit_chain().unwrap().is_ok());
}
