//! Decrypts arbitrary bytes as a legacy `PGBACKUP_AES256_V1` file with a fixed password. Every
//! input past the 62-byte header costs one PBKDF2 (100,000 rounds), so this target is slow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgseal_core::Password;
use pgseal_core::legacy::symmetric;

/// The password the seed script encrypts its valid seed with.
const PASSWORD: &str = "fuzz-password-0123456789";

fuzz_target!(|data: &[u8]| {
    let password = Password::new(PASSWORD.into());
    let _ = symmetric::decrypt(data, std::io::sink(), &password);
});
