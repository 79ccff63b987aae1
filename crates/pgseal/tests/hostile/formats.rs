//! Files that claim to be backups and are not whole.

use crate::common::{code, run, stderr};

#[test]
fn inspect_of_a_legacy_symmetric_file_cut_short_says_it_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    // The magic and a few bytes: 28 bytes, shorter than the 62-byte header alone.
    let short = dir.path().join("short.backup");
    let mut bytes = b"PGBACKUP_AES256_V1".to_vec();
    bytes.extend_from_slice(&[7u8; 10]);
    std::fs::write(&short, &bytes).unwrap();
    let o = run(&["inspect", short.to_str().unwrap()]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("ends early"), "{}", stderr(&o));
    // A whole header without the 16-byte tag is cut short too; with the tag it is whole.
    bytes.resize(62 + 15, 1);
    std::fs::write(&short, &bytes).unwrap();
    let o = run(&["inspect", "--json", short.to_str().unwrap()]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    bytes.push(1);
    std::fs::write(&short, &bytes).unwrap();
    let o = run(&["inspect", "--json", short.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let facts: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            facts["file_bytes"].as_u64(),
            facts["ciphertext_bytes"].as_u64()
        ),
        (Some(78), Some(0))
    );
}
