//! Rewrap after rotation: 100 files move to the new key with data and signatures untouched,
//! `kill -9` at arbitrary instants never leaves a file that does not open, legacy hybrid files
//! follow, and the old key can be retired only once no catalogued backup needs it.

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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
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
                path: path.display().to_string(),
                host: hostname(),
                size_bytes: plain.len() as i64,
                created_at: Timestamp::now(),
                creator_user_id: Some(1),
                creator_key: Fingerprint::from_bytes([1; 32]),
                server_keys: vec![old],
                format_version: 2,
                ciphertext_blake3: String::new(),
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
        .map(|e| e.entry.action)
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
