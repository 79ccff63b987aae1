//! Rewrap after rotation: 100 files move to the new key with data and signatures untouched,
//! the superseded wrapping is wiped so the rotated-out key opens nothing, `kill -9` at arbitrary
//! instants and at every step never leaves a file that does not open, legacy hybrid files
//! follow, and the old key can be retired only once no catalogued backup holds it in any slot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{PASSWORD, Site, code, data, ok, stderr, with_passwords};
use pgseal_core::time::Timestamp;
use pgseal_core::v2::{self, SealParams};
use pgseal_core::{Fingerprint, Password, PrivateKey, PublicKey};
use pgseal_store::NewBackup;

const NEW_PASSWORD: &str = "the-new-server-password-2026";

/// A command in the site with `SERVER_KEY_PASSWORD` set to `password`.
fn cmd(site: &Site, password: &str) -> std::process::Command {
    let mut c = site.cmd();
    c.env("SERVER_KEY_PASSWORD", password);
    c
}

/// Runs in the site after the rotation, under the new server password.
fn run_new(site: &Site, args: &[&str]) -> Output {
    cmd(site, NEW_PASSWORD).args(args).output().unwrap()
}

fn rotate(site: &Site) {
    ok(&cmd(site, PASSWORD)
        .env("PGSEAL_NEW_SERVER_KEY_PASSWORD", NEW_PASSWORD)
        .args(["server-key", "rotate", "--key-size", "2048"])
        .output()
        .unwrap());
}

fn server_fps(site: &Site) -> Vec<Fingerprint> {
    site.store()
        .server_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.fingerprint)
        .collect()
}

/// `n` sealed files made in-process with the user's key, to the active server key.
fn seal_many(site: &Site, n: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let pem = std::fs::read_to_string(site.path("keys/users/system_backup.key.pem")).unwrap();
    let signer = PrivateKey::from_pem(&pem, "user", || Ok(Password::new(PASSWORD.into()))).unwrap();
    let server = PublicKey::from_pem(
        &site
            .store()
            .active_server_key()
            .unwrap()
            .unwrap()
            .public_key_pem,
    )
    .unwrap();
    let recipients = [server];
    (0..n)
        .map(|i| {
            let plain = data(1000 + i * 37);
            let path = site.path(&format!("backups/f{i:03}.pgseal"));
            let mut params = SealParams::new(&signer, &recipients);
            params.chunk_size = 1024;
            v2::seal(&plain[..], std::fs::File::create(&path).unwrap(), &params).unwrap();
            (path, plain)
        })
        .collect()
}

fn opens(site: &Site, path: &Path, plain: &[u8]) -> bool {
    let out = path.with_extension("check");
    let _ = std::fs::remove_file(&out);
    let o = run_new(
        site,
        &[
            "decrypt",
            path.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let good = o.status.success() && std::fs::read(&out).map(|b| b == plain).unwrap_or(false);
    let _ = std::fs::remove_file(&out);
    good
}

#[test]
fn rewrap_100_files_then_retire_the_old_key() {
    let site = Site::new();
    let files = seal_many(&site, 100);
    let old = server_fps(&site)[0];
    // Three of them catalogued, as backups would be.
    let mut store = site.store();
    for (path, plain) in &files[..3] {
        store
            .add_backup(&NewBackup {
                database: "db".into(),
                location: common::location(path),
                size_bytes: plain.len() as i64,
                created_at: Timestamp::now(),
                creator_user_id: Some(1),
                creator_key: Fingerprint::from_bytes([1; 32]),
                server_keys: vec![old],
                format_version: 2,
                ciphertext_blake3: None,
            })
            .unwrap();
    }
    drop(store);

    rotate(&site);
    let new = server_fps(&site)[1];
    // The old key is still needed: retiring it is refused, with the backups listed.
    let o = run_new(&site, &["server-key", "retire", &old.to_string()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("f000.pgseal"), "{}", stderr(&o));

    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|(p, _)| std::fs::read(p).unwrap())
        .collect();
    let mut args: Vec<String> = vec!["rewrap".into()];
    args.extend(files.iter().map(|(p, _)| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&run_new(&site, &args));
    for ((path, plain), old_bytes) in files.iter().zip(&before) {
        let after = std::fs::read(path).unwrap();
        assert_eq!(after.len(), old_bytes.len());
        let prelude = v2::read_prelude(&mut &after[..]).unwrap();
        assert_eq!(prelude.active_slot().unwrap().1.recipients(), vec![new]);
        ok(&run_new(&site, &["verify", path.to_str().unwrap()]));
        let _ = plain;
    }
    assert!(opens(&site, &files[0].0, &files[0].1) && opens(&site, &files[99].0, &files[99].1));
    // Rewrapping again is a no-op.
    let o = run_new(&site, &["rewrap", files[0].0.to_str().unwrap()]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("already current"));
    // The catalog follows, and the old key can now go.
    for b in site.store().backups(None).unwrap() {
        assert_eq!(b.entry.server_keys, vec![new]);
    }
    ok(&run_new(&site, &["server-key", "retire", &old.to_string()]));
    let keys = site.store().server_keys().unwrap();
    assert_eq!(keys[0].status, pgseal_store::ServerKeyStatus::Retired);
    let actions: Vec<String> = site
        .store()
        .audit_entries(1000)
        .unwrap()
        .into_iter()
        .map(|e| e.entry.action.into())
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "REWRAP").count(), 101);
    assert!(actions.contains(&"KEY_RETIRE".to_owned()));
}

#[test]
fn kill_9_during_rewrap_never_leaves_a_file_that_does_not_open() {
    let site = Site::new();
    let files = seal_many(&site, 300);
    rotate(&site);
    let new = server_fps(&site)[1];
    let moved = || {
        files
            .iter()
            .filter(|(p, _)| {
                let bytes = std::fs::read(p).unwrap();
                let prelude = v2::read_prelude(&mut &bytes[..]).unwrap();
                prelude.active_slot().unwrap().1.recipients() == vec![new]
            })
            .count()
    };
    let mut args: Vec<String> = vec!["rewrap".into()];
    args.extend(files.iter().map(|(p, _)| p.display().to_string()));
    let mut interrupted = 0;
    for delay_ms in [250u64, 300, 350, 400, 450, 500, 600] {
        let before = moved();
        // pgseal directly (not through setsid), so the kill hits exactly it.
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pgseal"));
        c.env("XDG_CONFIG_HOME", "/nonexistent-pgseal-test");
        let mut child = with_passwords(c)
            .current_dir(&site.dir)
            .env("SERVER_KEY_PASSWORD", NEW_PASSWORD)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Every file opens with the store's keys (old or new wrap) and still verifies.
        for (path, _) in &files {
            let bytes = std::fs::read(path).unwrap();
            let prelude = v2::read_prelude(&mut &bytes[..]).unwrap();
            assert!(
                prelude.active_slot().is_ok(),
                "{} after a kill at {delay_ms} ms",
                path.display()
            );
        }
        let after = moved();
        if after > before && after < files.len() {
            interrupted += 1;
        }
        assert!(opens(&site, &files[0].0, &files[0].1));
        assert!(opens(&site, &files[299].0, &files[299].1));
    }
    assert!(
        interrupted > 0,
        "no kill landed in the middle of a rewrap run"
    );
    // A final uninterrupted run finishes the job.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&run_new(&site, &args));
    for (path, plain) in files.iter().step_by(7) {
        assert!(opens(&site, path, plain), "{}", path.display());
    }
}

#[test]
fn legacy_hybrid_files_are_rewrapped_too() {
    let site = Site::new();
    let plain = data(20_000);
    std::fs::write(site.path("in"), &plain).unwrap();
    let server_pub = site.path("server.pub.pem");
    ok(&site.run(&["server-key", "export", "-o", server_pub.to_str().unwrap()]));
    ok(&site.run(&[
        "encrypt",
        "in",
        "-o",
        "old.backup",
        "--format",
        "v1",
        "--recipient",
        server_pub.to_str().unwrap(),
        "--user",
        "system_backup",
    ]));
    rotate(&site);
    ok(&run_new(&site, &["rewrap", "old.backup"]));
    // Now the new key alone opens it (tried first by the store), and the signature holds.
    ok(&run_new(&site, &["verify", "old.backup"]));
    assert!(opens(&site, &site.path("old.backup"), &plain));
    let o = run_new(&site, &["rewrap", "old.backup"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("already current"));
}

/// The server keys' private halves, unlocked (old keys are re-protected under the new password).
fn server_keys(site: &Site) -> Vec<PrivateKey> {
    site.store()
        .server_keys()
        .unwrap()
        .into_iter()
        .map(|k| {
            PrivateKey::from_pem(&k.private_key_pem, "server key", || {
                Ok(Password::new(NEW_PASSWORD.into()))
            })
            .unwrap()
        })
        .collect()
}

/// Whether `key` alone opens the v2 file at `path` (signatures checked with the creator's key).
fn v2_opens_with(site: &Site, path: &Path, key: &PrivateKey, plain: &[u8]) -> bool {
    use pgseal_core::keys::Identity;
    let creator = PublicKey::from_pem(
        &std::fs::read_to_string(site.path("keys/users/system_backup.pub.pem")).unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(path).unwrap();
    let mut input = &bytes[..];
    let Ok(prelude) = v2::read_prelude(&mut input) else {
        return false;
    };
    let mut out = Vec::new();
    prelude
        .decrypt(
            input,
            &mut out,
            &[key as &dyn Identity],
            v2::SignerCheck::Require(&[creator]),
        )
        .is_ok()
        && out == plain
}

fn slots_of(path: &Path) -> [v2::SlotState; 2] {
    v2::read_prelude(&mut &std::fs::read(path).unwrap()[..])
        .unwrap()
        .slots
}

/// Overwrites 64 bytes in the middle of the active slot.
fn damage_active_slot(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let prelude = v2::read_prelude(&mut &bytes[..]).unwrap();
    let (active, _) = prelude.active_slot().unwrap();
    let at = prelude.slots_offset as usize + active * prelude.header.slot_size as usize + 1000;
    bytes[at..at + 64].fill(0x5A);
    std::fs::write(path, bytes).unwrap();
}

/// The state an older pgseal left after a rewrap: the new slot installed, the old one not wiped.
fn rewrap_without_wipe(path: &Path, from: &PrivateKey, to: &PrivateKey) {
    use pgseal_core::keys::Identity;
    let bytes = std::fs::read(path).unwrap();
    let mut plan = v2::read_prelude(&mut &bytes[..])
        .unwrap()
        .plan_rewrap(
            &[from as &dyn Identity],
            std::slice::from_ref(to.public()),
            &[],
        )
        .unwrap();
    plan.writes.retain(|w| w.step == v2::Step::Install);
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    plan.apply(&mut file, |f, _| f.sync_data()).unwrap();
}

fn catalogue(site: &Site, path: &Path, key: Fingerprint) {
    site.store()
        .add_backup(&NewBackup {
            database: "db".into(),
            location: common::location(path),
            size_bytes: 1,
            created_at: Timestamp::now(),
            creator_user_id: Some(1),
            creator_key: Fingerprint::from_bytes([1; 32]),
            server_keys: vec![key],
            format_version: 2,
            ciphertext_blake3: None,
        })
        .unwrap();
}

#[test]
fn after_rotation_and_rewrap_the_leaked_old_key_opens_nothing() {
    // The reproduction, step by step, through the CLI alone.
    let site = Site::new();
    let plain = data(30_000);
    site.write("in", &plain);
    ok(&site.run(&["server-key", "export", "--private", "-o", "old.key.pem"]));
    ok(&site.run(&["user-key", "export", "system_backup", "-o", "ops.pub.pem"]));
    ok(&site.run(&["encrypt", "in", "-o", "f.pgseal", "--user", "system_backup"]));
    rotate(&site);
    let [old, new] = server_fps(&site)[..] else {
        panic!("two server keys")
    };
    ok(&run_new(&site, &["rewrap", "f.pgseal"]));

    let o = run_new(&site, &["inspect", "f.pgseal", "--json"]);
    ok(&o);
    let facts: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(facts["slots"][0]["state"], "empty", "{facts}");
    assert_eq!(facts["slots"][1]["state"], "valid");
    assert_eq!(facts["slots"][1]["active"], true);
    assert_eq!(
        facts["slots"][1]["recipients"],
        serde_json::json!([new.to_string()])
    );
    assert!(facts["superseded_slot"].is_null(), "{facts}");
    let f = site.path("f.pgseal");
    assert!(slots_of(&f).iter().all(|s| !s.mentions(&old)));

    // The old key is named by no slot: refused as a key problem, nothing written.
    let decrypt_with_old = || {
        cmd(&site, PASSWORD)
            .args([
                "decrypt",
                "f.pgseal",
                "-o",
                "-",
                "--identity",
                "old.key.pem",
                "--signer",
                "ops.pub.pem",
            ])
            .output()
            .unwrap()
    };
    let o = decrypt_with_old();
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    // Damage the active slot: with the superseded slot wiped, no slot is left to open the file
    // with any key, so the old key still gets nothing (the file is reported damaged).
    damage_active_slot(&f);
    let o = decrypt_with_old();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no valid recipient slot"),
        "{}",
        stderr(&o)
    );
    assert!(
        o.stdout.is_empty(),
        "plaintext released with the rotated-out key"
    );
}

#[test]
fn a_file_rewrapped_before_wiping_existed_is_reported_blocks_retire_and_is_repaired() {
    let site = Site::new();
    let files = seal_many(&site, 1);
    rotate(&site);
    let keys = server_keys(&site);
    let (old, new) = (keys[0].fingerprint(), keys[1].fingerprint());
    let (path, plain) = &files[0];
    rewrap_without_wipe(path, &keys[0], &keys[1]);
    catalogue(&site, path, new); // the catalog already says "new key only"
    let name = path.to_str().unwrap();

    // inspect and verify say so (and how to fix it), text and JSON; verify still succeeds.
    let o = run_new(&site, &["inspect", name]);
    ok(&o);
    let text = common::stdout(&o);
    assert!(
        text.contains("warning:") && text.contains(&old.to_string()),
        "{text}"
    );
    assert!(text.contains(&format!("pgseal rewrap {name}")), "{text}");
    let o = run_new(&site, &["inspect", name, "--json"]);
    let facts: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(facts["superseded_slot"]["slot"], "A", "{facts}");
    assert_eq!(facts["superseded_slot"]["still_wraps_file_key"], true);
    assert_eq!(
        facts["superseded_slot"]["recipients"],
        serde_json::json!([old.to_string()])
    );
    let o = run_new(&site, &["verify", name]);
    ok(&o);
    let text = common::stdout(&o);
    assert!(
        text.starts_with("OK:") && text.contains("warning: slot A"),
        "{text}"
    );
    let o = run_new(&site, &["verify", name, "--json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["superseded_slot"]["recipients"][0],
        old.to_string(),
        "{v}"
    );

    // Retire looks at every slot of the file, not at the catalog's word.
    let o = run_new(&site, &["server-key", "retire", &old.to_string()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{name} (superseded slot A)")),
        "{}",
        stderr(&o)
    );
    // The fault: damage the active slot (of a copy) and the old key opens the file.
    let damaged_copy_opens_with_old_key = || {
        let copy = site.path("damaged-copy.pgseal");
        std::fs::copy(path, &copy).unwrap();
        damage_active_slot(&copy);
        v2_opens_with(&site, &copy, &keys[0], plain)
    };
    assert!(damaged_copy_opens_with_old_key());

    // rewrap --all wipes it though the active slot already names the active key.
    let o = run_new(&site, &["rewrap", "--all"]);
    ok(&o);
    assert!(
        common::stdout(&o).contains("wiped superseded slot"),
        "{}",
        common::stdout(&o)
    );
    assert_eq!(slots_of(path)[0], v2::SlotState::Empty);
    assert!(!damaged_copy_opens_with_old_key());
    assert!(v2_opens_with(&site, path, &keys[1], plain));
    let entry = site.last_audit();
    assert_eq!(entry.entry.action, "REWRAP");
    assert!(
        entry.entry.details.contains("wiped_superseded_slot"),
        "{}",
        entry.entry.details
    );
    let o = run_new(&site, &["inspect", name]);
    assert!(
        !common::stdout(&o).contains("warning:"),
        "{}",
        common::stdout(&o)
    );
    ok(&run_new(&site, &["server-key", "retire", &old.to_string()]));
    // Nothing more to do.
    let o = run_new(&site, &["rewrap", name]);
    assert!(common::stdout(&o).contains("already current"));
}

#[test]
fn verify_notes_a_damaged_inactive_slot() {
    let site = Site::new();
    let files = seal_many(&site, 1);
    let path = &files[0].0;
    let mut bytes = std::fs::read(path).unwrap();
    let prelude = v2::read_prelude(&mut &bytes[..]).unwrap();
    let b = prelude.slots_offset as usize + prelude.header.slot_size as usize;
    bytes[b + 5] = 0xFF; // slot B is empty in a fresh file: this is a torn write there
    std::fs::write(path, &bytes).unwrap();
    let o = site.run(&["verify", path.to_str().unwrap()]);
    ok(&o);
    let text = common::stdout(&o);
    assert!(
        text.contains("warning: slot B (inactive) is damaged") && text.contains("pgseal rewrap"),
        "{text}"
    );
}

/// Runs `args` under the new password, stopping at the crash point `point`, and kills it there
/// with SIGKILL. Panics if the process ends without reaching the point.
fn kill_at(site: &Site, point: &str, args: &[&str]) {
    let mut c = site.direct();
    c.env("SERVER_KEY_PASSWORD", NEW_PASSWORD).args(args);
    common::kill_at(c, point);
}

#[test]
fn kill_9_at_every_step_of_a_rewrap_leaves_a_file_that_opens_and_a_rerun_revokes() {
    let points = [
        "rewrap:start",
        "rewrap:install:written",
        "rewrap:install:durable",
        "rewrap:wipe:written",
        "rewrap:wipe:durable",
    ];
    let site = Site::new();
    let files = seal_many(&site, points.len());
    rotate(&site);
    let keys = server_keys(&site);
    let (old, new) = (&keys[0], &keys[1]);
    for (point, (path, plain)) in points.iter().zip(&files) {
        let name = path.to_str().unwrap();
        kill_at(&site, point, &["rewrap", name]);
        let (by_old, by_new) = (
            v2_opens_with(&site, path, old, plain),
            v2_opens_with(&site, path, new, plain),
        );
        assert!(by_old || by_new, "killed at {point}: no key opens {name}");
        // Before the install is durable the file is on the old key; after it, on the new one.
        let installed = !matches!(*point, "rewrap:start");
        assert_eq!(by_new, installed, "killed at {point}");
        ok(&run_new(&site, &["rewrap", name]));
        assert!(
            v2_opens_with(&site, path, new, plain),
            "after a re-run ({point})"
        );
        assert!(
            !v2_opens_with(&site, path, old, plain),
            "old key after a re-run ({point})"
        );
        assert!(
            slots_of(path)
                .iter()
                .all(|s| !s.mentions(&old.fingerprint())),
            "a slot still names the old key after a re-run ({point})"
        );
    }
}

#[test]
fn kill_9_at_every_step_of_a_legacy_rewrap_leaves_no_stray_copy() {
    use pgseal_core::keys::Identity;
    use pgseal_core::legacy::hybrid;
    let site = Site::new();
    let plain = data(50_000);
    site.write("in", &plain);
    let server_pub = site.path("server.pub.pem");
    ok(&site.run(&["server-key", "export", "-o", server_pub.to_str().unwrap()]));
    let points = [
        "rewrap:legacy:copied",
        "replace:linked",
        "rewrap:legacy:replaced",
    ];
    std::fs::create_dir(site.path("legacy")).unwrap();
    for i in 0..points.len() {
        ok(&site.run(&[
            "encrypt",
            "in",
            "-o",
            &format!("legacy/old{i}.backup"),
            "--format",
            "v1",
            "--recipient",
            server_pub.to_str().unwrap(),
            "--user",
            "system_backup",
        ]));
    }
    rotate(&site);
    let keys = server_keys(&site);
    let opens_with = |path: &Path, key: &PrivateKey| {
        let bytes = std::fs::read(path).unwrap();
        let mut r = &bytes[..];
        let header = hybrid::read_header(&mut r, Some(bytes.len() as u64)).unwrap();
        let mut out = Vec::new();
        key.unwrap_file_key(&header.wrapped_key).is_ok()
            && hybrid::decrypt(&header, r, &mut out, key as &dyn Identity).is_ok()
            && out == plain
    };
    let expected: Vec<String> = (0..points.len())
        .map(|i| format!("old{i}.backup"))
        .collect();
    for (i, point) in points.iter().enumerate() {
        let path = site.path(&format!("legacy/old{i}.backup"));
        kill_at(&site, point, &["rewrap", path.to_str().unwrap()]);
        let (by_old, by_new) = (opens_with(&path, &keys[0]), opens_with(&path, &keys[1]));
        assert!(
            by_old != by_new,
            "killed at {point}: exactly one key opens it"
        );
        assert_eq!(
            by_new,
            *point == "rewrap:legacy:replaced",
            "killed at {point}"
        );
        ok(&run_new(&site, &["rewrap", path.to_str().unwrap()]));
        assert!(
            opens_with(&path, &keys[1]) && !opens_with(&path, &keys[0]),
            "{point}"
        );
        // No temporary, hidden or old copy is left beside it.
        assert_eq!(
            common::listing(&site.path("legacy")),
            expected,
            "after {point}"
        );
    }
}

#[test]
fn a_legacy_file_with_other_hard_links_is_not_rewritten() {
    let site = Site::new();
    site.write("in", &data(1000));
    let server_pub = site.path("server.pub.pem");
    ok(&site.run(&["server-key", "export", "-o", server_pub.to_str().unwrap()]));
    ok(&site.run(&[
        "encrypt",
        "in",
        "-o",
        "old.backup",
        "--format",
        "v1",
        "--recipient",
        server_pub.to_str().unwrap(),
        "--user",
        "system_backup",
    ]));
    std::fs::hard_link(site.path("old.backup"), site.path("copy.backup")).unwrap();
    rotate(&site);
    let before = std::fs::read(site.path("old.backup")).unwrap();
    let o = run_new(&site, &["rewrap", "old.backup"]);
    assert_ne!(code(&o), 0);
    assert!(
        common::stdout(&o).contains("hard links"),
        "{}",
        common::stdout(&o)
    );
    assert_eq!(std::fs::read(site.path("old.backup")).unwrap(), before);
}

#[test]
fn retire_reads_the_backup_directory_not_only_the_catalog() {
    // Whoever can write the store can drop catalog rows; the files in the backup directory
    // still hold the key, and retire must see them.
    let site = Site::new();
    let files = seal_many(&site, 1);
    rotate(&site);
    let old = server_fps(&site)[0];
    let o = run_new(&site, &["server-key", "retire", &old.to_string()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("f000.pgseal (active slot A)"),
        "{}",
        stderr(&o)
    );
    ok(&run_new(&site, &["rewrap", files[0].0.to_str().unwrap()]));
    ok(&run_new(&site, &["server-key", "retire", &old.to_string()]));
}
