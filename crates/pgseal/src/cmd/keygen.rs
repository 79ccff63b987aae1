//! `pgseal keygen` and `pgseal key info`: standalone key files.

use std::io::Write;
use std::path::{Path, PathBuf};

use pgseal_core::keys::{KeyBits, pem_is_encrypted};
use pgseal_core::{PrivateKey, PublicKey};
use serde_json::json;

use super::{load_private, print_json};
use crate::cli::{KeyInfoArgs, KeygenArgs};
use crate::failure::{CliResult, Failure};
use crate::files::{AtomicFile, Target, check_output};
use crate::secrets::{PasswordSource, read_text};

fn keygen_password(file: Option<PathBuf>, command: Option<String>) -> PasswordSource {
    PasswordSource {
        purpose: "the key",
        env: "PGSEAL_KEY_PASSWORD",
        file,
        command,
        file_flag: "--password-file",
    }
}

/// Writes `NAME.key.pem` (encrypted under `password`, 0600) and `NAME.pub.pem` (0644), each
/// atomically; refuses to replace existing files unless `force`.
pub fn write_key_files(
    key: &PrivateKey,
    password: &pgseal_core::Password,
    key_path: &Path,
    pub_path: &Path,
    force: bool,
) -> CliResult {
    refuse_existing(&[key_path, pub_path], force)?;
    let pem = key.to_encrypted_pem(password)?;
    let write = |path: &Path, text: &[u8], mode: u32| -> CliResult {
        let mut file = AtomicFile::create(path, force)?;
        file.set_mode(mode);
        file.write_all(text)
            .map_err(|e| Failure::io(format!("writing {}", path.display()), e))?;
        file.commit()
    };
    write(key_path, pem.as_bytes(), 0o600)?;
    write(pub_path, key.public().to_pem().as_bytes(), 0o644)
}

/// Fails if any of `paths` exists, unless `force` and it is a regular file: checked before
/// slow key generation too. Key files are only ever regular files, never a FIFO or device.
pub fn refuse_existing(paths: &[&Path], force: bool) -> CliResult {
    for p in paths {
        if check_output(p, force, None)? == Target::Stream {
            return Err(Failure::usage(format!(
                "{} is a FIFO or device, not a regular file; a key file is not written there",
                p.display()
            )));
        }
    }
    Ok(())
}

pub fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn keygen(args: KeygenArgs) -> CliResult {
    let bits = KeyBits::from_bits(args.key_size)?;
    let key_path = with_suffix(&args.out, ".key.pem");
    let pub_path = with_suffix(&args.out, ".pub.pem");
    refuse_existing(&[&key_path, &pub_path], args.force)?;
    // Ask for the password before the slow key generation.
    let password = keygen_password(args.password_file, args.password_command).get_new()?;
    let key = PrivateKey::generate(bits)?;
    write_key_files(&key, &password, &key_path, &pub_path, args.force)?;

    let public = key.public();
    if args.json {
        print_json(&json!({
            "private_key": key_path,
            "public_key": pub_path,
            "bits": public.bits(),
            "fingerprint": public.fingerprint().to_string(),
            "legacy_fingerprint": public.legacy_fingerprint().to_string(),
        }));
    } else {
        outln!("private key: {} (encrypted, mode 0600)", key_path.display());
        outln!("public key:  {}", pub_path.display());
        outln!("RSA-{} {}", public.bits(), public.fingerprint());
    }
    Ok(())
}

pub fn info(args: KeyInfoArgs) -> CliResult {
    let text = read_text(&args.file, "key")?;
    let (kind, public): (&str, PublicKey) = if text.contains("PRIVATE KEY-----") {
        let source = keygen_password(args.password_file, args.password_command);
        let key = load_private(&args.file, &source)?;
        let kind = if pem_is_encrypted(&text) {
            "private (encrypted)"
        } else {
            "private (unencrypted)"
        };
        (kind, key.public().clone())
    } else {
        let key = PublicKey::from_pem(&text)
            .map_err(|e| Failure::key(format!("{}: {e}", args.file.display())))?;
        ("public", key)
    };
    let legacy_of_file = text
        .contains("-----BEGIN PUBLIC KEY-----")
        .then(|| pgseal_core::LegacyFingerprint::of_pem_text(&text).to_string());
    if args.json {
        print_json(&json!({
            "file": args.file,
            "type": kind,
            "algorithm": "RSA",
            "bits": public.bits(),
            "fingerprint": public.fingerprint().to_string(),
            "legacy_fingerprint": legacy_of_file.unwrap_or_else(|| public.legacy_fingerprint().to_string()),
        }));
    } else {
        outln!("file:               {}", args.file.display());
        outln!("type:               {kind}");
        outln!("algorithm:          RSA-{}", public.bits());
        outln!("fingerprint:        {}", public.fingerprint());
        outln!(
            "legacy fingerprint: {}",
            legacy_of_file.unwrap_or_else(|| public.legacy_fingerprint().to_string())
        );
    }
    Ok(())
}
