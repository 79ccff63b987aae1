//! `pgseal keygen` and `pgseal key info`: standalone key files.

use std::path::{Path, PathBuf};

use pgseal_core::keys::{KeyBits, pem_is_encrypted};
use pgseal_core::{PrivateKey, PublicKey};
use serde_json::json;

use super::{load_private, print_json};
use crate::cli::{KeyInfoArgs, KeyPasswordArgs, KeygenArgs};
use crate::failure::{CliResult, Failure};
use crate::secrets::{PasswordSource, read_text};

fn keygen_password(args: KeyPasswordArgs) -> PasswordSource {
    PasswordSource {
        purpose: "the key",
        env: "PGSEAL_KEY_PASSWORD",
        file: args.password_file,
        command: args.password_command,
        credential: None,
        file_flag: "--password-file",
    }
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
    pgseal_ops::files::refuse_existing(&[&key_path, &pub_path], args.force)?;
    // Ask for the password before the slow key generation.
    let password = keygen_password(args.password).get_new()?;
    let key = if args.pq {
        PrivateKey::generate_hybrid(bits)?
    } else {
        PrivateKey::generate(bits)?
    };
    pgseal_ops::keys::write_key_pair(&key, &password, &key_path, &pub_path, args.force)?;

    let public = key.public();
    if args.json.on {
        print_json(&json!({
            "private_key": key_path,
            "public_key": pub_path,
            "bits": public.bits(),
            "fingerprint": public.fingerprint().to_string(),
            "pq_fingerprint": public.pq_fingerprint().map(|f| f.to_string()),
            "legacy_fingerprint": public.legacy_fingerprint().to_string(),
        }));
    } else {
        outln!("private key: {} (encrypted, mode 0600)", key_path.display());
        outln!("public key:  {}", pub_path.display());
        outln!("RSA-{} {}", public.bits(), public.fingerprint());
        if let Some(pq) = public.pq_fingerprint() {
            outln!("ML-KEM-768 {pq}");
        }
    }
    Ok(())
}

pub fn info(args: KeyInfoArgs) -> CliResult {
    let text = read_text(&args.file, "key")?;
    let (kind, public): (&str, PublicKey) = if text.contains("PRIVATE KEY-----") {
        let source = keygen_password(args.password);
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
    // The legacy fingerprint hashes the PEM text as the file has it; a hybrid file's text holds
    // a second key, so its RSA key's canonical PEM is used instead.
    let legacy_of_file = (text.contains("-----BEGIN PUBLIC KEY-----") && public.pq().is_none())
        .then(|| pgseal_core::LegacyFingerprint::of_pem_text(&text).to_string());
    if args.json.on {
        print_json(&json!({
            "file": args.file,
            "type": kind,
            "algorithm": if public.pq().is_some() { "RSA+ML-KEM-768" } else { "RSA" },
            "bits": public.bits(),
            "fingerprint": public.fingerprint().to_string(),
            "pq_fingerprint": public.pq_fingerprint().map(|f| f.to_string()),
            "legacy_fingerprint": legacy_of_file.unwrap_or_else(|| public.legacy_fingerprint().to_string()),
        }));
    } else {
        outln!("file:               {}", args.file.display());
        outln!("type:               {kind}");
        outln!("algorithm:          RSA-{}", public.bits());
        outln!("fingerprint:        {}", public.fingerprint());
        if let Some(pq) = public.pq_fingerprint() {
            outln!("post-quantum half:  ML-KEM-768 {pq}");
        }
        outln!(
            "legacy fingerprint: {}",
            legacy_of_file.unwrap_or_else(|| public.legacy_fingerprint().to_string())
        );
    }
    Ok(())
}
