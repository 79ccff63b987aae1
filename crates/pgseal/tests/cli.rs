//! The `pgseal` binary end to end: round trips through files and pipes, every failure path's
//! exit code and message, and the rule that a failed command leaves nothing behind.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::{PASSWORD, bin, code, data, listing, run, stderr, with_passwords};

/// Keys made once for the whole test binary: server, user (signer) and a stranger.
struct Keys {
    _dir: tempfile::TempDir,
    server: PathBuf,
    user: PathBuf,
    stranger: PathBuf,
}

impl Keys {
    fn key(&self, base: &Path) -> String {
        format!("{}.key.pem", base.display())
    }
    fn public(&self, base: &Path) -> String {
        format!("{}.pub.pem", base.display())
    }
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str| {
            let base = dir.path().join(name);
            let o = run(&[
                "keygen",
                "--out",
                base.to_str().unwrap(),
                "--key-size",
                "2048",
            ]);
            assert!(o.status.success(), "keygen: {}", stderr(&o));
            base
        };
        Keys {
            server: make("server"),
            user: make("user"),
            stranger: make("stranger"),
            _dir: dir,
        }
    })
}

/// Seals `plain` into `dir/name` with the shared keys; extra flags appended.
fn seal(dir: &Path, name: &str, plain: &[u8], extra: &[&str]) -> PathBuf {
    let k = keys();
    let input = dir.join(format!("{name}.in"));
    std::fs::write(&input, plain).unwrap();
    let out = dir.join(name);
    let mut args = vec![
        "encrypt".to_owned(),
        input.display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--recipient".into(),
        k.public(&k.server),
        "--sign-key".into(),
        k.key(&k.user),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args);
    assert!(o.status.success(), "encrypt: {}", stderr(&o));
    out
}

fn decrypt_args(file: &Path, out: &Path) -> Vec<String> {
    let k = keys();
    vec![
        "decrypt".into(),
        file.display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--identity".into(),
        k.key(&k.server),
        "--signer".into(),
        k.public(&k.user),
    ]
}

fn run_owned(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args)
}

#[test]
fn keygen_writes_private_key_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("k");
    let o = run(&[
        "keygen",
        "--out",
        base.to_str().unwrap(),
        "--key-size",
        "2048",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = std::fs::metadata(dir.path().join("k.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(json["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    assert!(!String::from_utf8_lossy(&o.stdout).contains(PASSWORD));

    let before = std::fs::read(dir.path().join("k.key.pem")).unwrap();
    let o = run(&[
        "keygen",
        "--out",
        base.to_str().unwrap(),
        "--key-size",
        "2048",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"));
    assert_eq!(std::fs::read(dir.path().join("k.key.pem")).unwrap(), before);
}

#[test]
fn keygen_password_rules_and_sources() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("k");
    let o = bin()
        .args([
            "keygen",
            "--out",
            base.to_str().unwrap(),
            "--key-size",
            "2048",
        ])
        .env("PGSEAL_KEY_PASSWORD", "short")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("at least 16"));
    let o = bin()
        .args([
            "keygen",
            "--out",
            base.to_str().unwrap(),
            "--key-size",
            "2048",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("PGSEAL_KEY_PASSWORD"));
    assert!(listing(dir.path()).is_empty());

    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    let o = bin()
        .args([
            "keygen",
            "--out",
            base.to_str().unwrap(),
            "--key-size",
            "2048",
            "--password-file",
        ])
        .arg(&pwfile)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The same password through a command opens it.
    let o = bin()
        .args([
            "key",
            "info",
            &format!("{}.key.pem", base.display()),
            "--password-command",
            &format!("echo {PASSWORD}"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("RSA-2048"));
}

#[test]
fn round_trips_through_files_for_many_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for (i, len) in [0usize, 1, 1023, 1024, 4096, 3 * 1024 + 7]
        .into_iter()
        .enumerate()
    {
        for compress in ["none", "zstd"] {
            let plain = data(len);
            let name = format!("f{i}-{compress}");
            let file = seal(
                dir.path(),
                &name,
                &plain,
                &["--compress", compress, "--chunk-size", "1024"],
            );
            let back = dir.path().join(format!("{name}.out"));
            let o = run_owned(&decrypt_args(&file, &back));
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(std::fs::read(&back).unwrap(), plain, "len {len} {compress}");
        }
    }
}

#[test]
fn round_trip_through_pipes() {
    let k = keys();
    let plain = data(3 * 1024 * 1024 + 5);
    let mut enc = with_passwords(bin())
        .args([
            "encrypt",
            "-",
            "-o",
            "-",
            "--recipient",
            &k.public(&k.server),
            "--sign-key",
            &k.key(&k.user),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = enc.stdin.take().unwrap();
    let feeder = {
        let plain = plain.clone();
        std::thread::spawn(move || stdin.write_all(&plain).unwrap())
    };
    let dec = with_passwords(bin())
        .args([
            "decrypt",
            "-",
            "-o",
            "-",
            "--identity",
            &k.key(&k.server),
            "--signer",
            &k.public(&k.user),
        ])
        .stdin(enc.stdout.take().unwrap())
        .output()
        .unwrap();
    feeder.join().unwrap();
    assert!(enc.wait().unwrap().success());
    assert!(dec.status.success(), "{}", stderr(&dec));
    assert_eq!(dec.stdout, plain);
}

#[test]
fn tampered_file_fails_with_exit_4_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plain = data(10_000);
    let file = seal(dir.path(), "t.pgseal", &plain, &["--chunk-size", "1024"]);
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 600] ^= 0x20; // inside the last chunk (signatures are 256 bytes)
    std::fs::write(&file, &bytes).unwrap();
    let before = listing(dir.path());
    let out = dir.path().join("plain.out");
    let o = run_owned(&decrypt_args(&file, &out));
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("failed authentication"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        listing(dir.path()),
        before,
        "a failed decrypt left a file behind"
    );

    let k = keys();
    let o = run(&[
        "verify",
        file.to_str().unwrap(),
        "--signer",
        &k.public(&k.user),
        "--json",
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["valid"], false);
}

#[test]
fn signer_problems_are_refused_before_any_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let file = seal(dir.path(), "s.pgseal", &data(5000), &[]);
    let out = dir.path().join("out");
    // No signer given.
    let o = run(&[
        "decrypt",
        file.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--identity",
        &k.key(&k.server),
    ]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("--signer"));
    // The wrong signer.
    let mut args = decrypt_args(&file, &out);
    args[7] = k.public(&k.stranger);
    let o = run_owned(&args);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(!out.exists());
    // --no-verify decrypts, with a warning.
    let o = run(&[
        "decrypt",
        file.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--identity",
        &k.key(&k.server),
        "--no-verify",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("NOT checked"));
}

#[test]
fn key_and_password_problems_exit_5() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let file = seal(dir.path(), "k.pgseal", &data(100), &[]);
    let out = dir.path().join("out");
    // Wrong server password: the message names the key, never the password.
    let o = with_passwords(bin())
        .args(decrypt_args(&file, &out))
        .env("SERVER_KEY_PASSWORD", "not-the-password-at-all")
        .output()
        .unwrap();
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("wrong password"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("not-the-password-at-all"));
    // A key the file is not encrypted to.
    let mut args = decrypt_args(&file, &out);
    args[5] = k.key(&k.stranger);
    let o = run_owned(&args);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("encrypted to"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn plain_unknown_and_truncated_inputs_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("db.dump");
    std::fs::write(&dump, b"PGDMP\x01\x0e\x00 plain dump").unwrap();
    let out = dir.path().join("out");
    let o = run_owned(&decrypt_args(&dump, &out));
    assert_eq!(code(&o), 3);
    assert!(
        stderr(&o).contains("not an encrypted backup"),
        "{}",
        stderr(&o)
    );
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"hello world").unwrap();
    assert_eq!(code(&run_owned(&decrypt_args(&junk, &out))), 3);

    let file = seal(
        dir.path(),
        "c.pgseal",
        &data(9000),
        &["--chunk-size", "1024"],
    );
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let o = run_owned(&decrypt_args(&file, &out));
    assert!(matches!(code(&o), 3 | 4), "{}", stderr(&o));
    assert!(!out.exists());

    let mut v9 = bytes.clone();
    v9[7] = 9;
    std::fs::write(&file, &v9).unwrap();
    let o = run_owned(&decrypt_args(&file, &out));
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("upgrade"), "{}", stderr(&o));
}

#[test]
fn existing_output_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let plain = data(777);
    let file = seal(dir.path(), "f.pgseal", &plain, &[]);
    let out = dir.path().join("out");
    std::fs::write(&out, b"keep me").unwrap();
    let o = run_owned(&decrypt_args(&file, &out));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    let mut args = decrypt_args(&file, &out);
    args.push("--force".into());
    assert!(run_owned(&args).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), plain);
    assert_eq!(listing(dir.path()), vec!["f.pgseal", "f.pgseal.in", "out"]);
}

#[test]
fn killed_decrypt_leaves_no_file_and_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let plain = data(4 * 1024 * 1024);
    let file = seal(dir.path(), "big.pgseal", &plain, &["--compress", "none"]);
    let bytes = std::fs::read(&file).unwrap();
    let out = dir.path().join("restored");
    // Spawned directly (not through setsid) so that `child` is exactly pgseal; passwords come
    // from the environment, so nothing prompts.
    let mut direct = Command::new(env!("CARGO_BIN_EXE_pgseal"));
    direct.env("XDG_CONFIG_HOME", "/nonexistent-pgseal-test");
    let mut child = with_passwords(direct)
        .args([
            "decrypt",
            "-",
            "-o",
            out.to_str().unwrap(),
            "--identity",
            &k.key(&k.server),
            "--signer",
            &k.public(&k.user),
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Feed half, give it time to write plaintext, then kill -9 mid-stream.
    stdin.write_all(&bytes[..bytes.len() / 2]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "pgseal stopped before it was killed"
    );
    child.kill().unwrap();
    let _ = child.wait();
    drop(stdin);
    assert_eq!(listing(dir.path()), vec!["big.pgseal", "big.pgseal.in"]);
}

#[test]
fn legacy_symmetric_and_v1_hybrid_files_open() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let plain = data(50_000);
    // v1 written by pgseal itself, read back with signature checks.
    let v1 = seal(
        dir.path(),
        "v1.backup",
        &plain,
        &["--format", "v1", "--user-id", "42"],
    );
    let o = run(&["inspect", "--json", v1.to_str().unwrap()]);
    let facts: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(facts["format"], "legacy-hybrid");
    assert_eq!(facts["creator"]["user_id"], 42);
    let out = dir.path().join("v1.out");
    let o = run_owned(&decrypt_args(&v1, &out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), plain);
    let o = run(&[
        "verify",
        v1.to_str().unwrap(),
        "--signer",
        &k.public(&k.user),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // ... and to standard output.
    let mut args = decrypt_args(&v1, Path::new("-"));
    args.retain(|a| !a.is_empty());
    let o = run_owned(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, plain);

    // Legacy symmetric, made with the library exactly as the old system did.
    let sym = dir.path().join("old.backup.encrypted");
    let mut f = std::fs::File::create(&sym).unwrap();
    let pw = pgseal_core::Password::new("the-old-backup-password".into());
    pgseal_core::legacy::symmetric::encrypt(&plain[..], &mut f, &pw).unwrap();
    drop(f);
    let out = dir.path().join("sym.out");
    let o = bin()
        .args([
            "decrypt",
            sym.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .env("BACKUP_ENCRYPTION_PASSWORD", "the-old-backup-password")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), plain);
    let out2 = dir.path().join("sym2.out");
    let o = bin()
        .args([
            "decrypt",
            sym.to_str().unwrap(),
            "-o",
            out2.to_str().unwrap(),
        ])
        .env("BACKUP_ENCRYPTION_PASSWORD", "wrong-old-password")
        .output()
        .unwrap();
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(!out2.exists());
}

#[test]
fn the_real_legacy_files_inspect_correctly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/legacy-wild");
    for (name, unix, iso) in [
        (
            "db_management_20251217_170240_encrypted.backup",
            1_765_965_760u64,
            "2025-12-17T10:02:40Z",
        ),
        (
            "db_study_44en_20251217_170742_encrypted.backup",
            1_765_966_062,
            "2025-12-17T10:07:42Z",
        ),
    ] {
        let o = run(&["inspect", "--json", dir.join(name).to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let facts: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(facts["format"], "legacy-hybrid");
        assert_eq!(facts["version"], 1);
        assert_eq!(facts["creator"]["user_id"], 7);
        assert_eq!(facts["created_unix"], unix);
        assert_eq!(facts["created_at"], iso);
        // Without the creator's key nothing can be proven: verify must fail, not pass.
        let k = keys();
        let o = run(&[
            "verify",
            dir.join(name).to_str().unwrap(),
            "--signer",
            &k.public(&k.user),
        ]);
        assert_eq!(code(&o), 4, "{}", stderr(&o));
    }
}

#[test]
fn a_write_error_fails_with_exit_1_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let plain = data(2 * 1024 * 1024);
    let file = seal(dir.path(), "w.pgseal", &plain, &["--compress", "none"]);
    let out = dir.path().join("restored");
    // A 512 KiB file-size limit with SIGXFSZ ignored: writes past it fail with EFBIG, as on a
    // full disk, instead of killing the process.
    let script = format!(
        "trap '' XFSZ; ulimit -f 1024; exec {} decrypt {} -o {} --identity {} --signer {}",
        env!("CARGO_BIN_EXE_pgseal"),
        file.display(),
        out.display(),
        k.key(&k.server),
        k.public(&k.user)
    );
    let mut c = Command::new("bash");
    c.arg("-c").arg(&script).stdin(Stdio::null());
    let o = with_passwords(c).output().unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("writing output"), "{}", stderr(&o));
    assert_eq!(listing(dir.path()), vec!["w.pgseal", "w.pgseal.in"]);

    // The same for encrypt: no partial sealed file.
    let sealed = dir.path().join("again.pgseal");
    let script = format!(
        "trap '' XFSZ; ulimit -f 1024; exec {} encrypt {} -o {} --recipient {} --sign-key {} --compress none",
        env!("CARGO_BIN_EXE_pgseal"),
        dir.path().join("w.pgseal.in").display(),
        sealed.display(),
        k.public(&k.server),
        k.key(&k.user)
    );
    let mut c = Command::new("bash");
    c.arg("-c").arg(&script).stdin(Stdio::null());
    let o = with_passwords(c).output().unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(listing(dir.path()), vec!["w.pgseal", "w.pgseal.in"]);
}

#[test]
fn help_lists_every_exit_code() {
    let o = run(&["--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = common::stdout(&o);
    for code in [
        "0 success",
        "1 I/O",
        "2 usage",
        "3 invalid",
        "4 authentication",
        "5 key",
        "6 a PostgreSQL tool",
    ] {
        assert!(
            text.contains(code),
            "--help omits exit code {code:?}:\n{text}"
        );
    }
}

#[test]
fn a_reader_that_goes_away_is_an_io_failure_not_a_panic() {
    // `pgseal inspect F | head -0`: standard output is a pipe whose reader is already gone.
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("x.backup");
    let mut bytes = b"PGBACKUP_AES256_V1".to_vec();
    bytes.resize(200, 7);
    std::fs::write(&legacy, &bytes).unwrap();
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let o = bin()
        .args(["inspect", legacy.to_str().unwrap()])
        .stdout(Stdio::from(std::fs::File::from(writer)))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("writing standard output"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}
