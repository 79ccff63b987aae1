//! A large upload into the S3 repository holds at most two parts in memory: 200 MiB streamed
//! through a `NewObject` against a real Garage (pgseal-testkit's `TestGarage`) grows the peak
//! resident set by little more than two 8 MiB parts. Measured with the CLI's allocator
//! (mimalloc) and, like the CLI, without transparent huge pages: an upload that allocated a
//! buffer for every part and freed it on the runtime's thread grew by 24 MiB there, against 16
//! with the buffers reused (glibc's malloc, the test's default, reused such memory at once and
//! showed 17 MiB either way). Its own test binary, so that no other test's allocations count.

use std::io::Write;

use pgseal_ops::repo::Repository;
use pgseal_ops::repo::s3::{Addressing, DEFAULT_PART_SIZE, S3Connection, S3Repository, S3Settings};
use pgseal_testkit::TestGarage;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The peak resident set size so far, in KiB (`VmHWM`).
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_200_mib_upload_keeps_at_most_two_parts_in_memory() {
    rustix::thread::disable_transparent_huge_pages(true).unwrap();
    let g = TestGarage::shared();
    let bucket = format!("pgseal-memory-{}", std::process::id());
    g.create_bucket(&bucket).unwrap();
    let sdk = g.sdk_config();
    let conn = S3Connection::new(S3Settings {
        sdk,
        addressing: Addressing::Path,
        part_size: DEFAULT_PART_SIZE,
    })
    .unwrap();
    let repo = S3Repository::new(conn, &bucket, "big").unwrap();
    // Warm up: the probe, a first small object, the connection pool.
    let mut warm = repo.create("warm.pgseal").unwrap();
    warm.write_all(b"warm").unwrap();
    warm.commit().unwrap();

    let before = peak_kib();
    let mut new = repo.create("big.pgseal").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut piece = vec![0u8; 64 * 1024];
    let total = 200usize << 20;
    for _ in 0..total / piece.len() {
        for word in piece.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        new.write_all(&piece).unwrap();
    }
    let location = new.commit().unwrap();
    let grown_mib = (peak_kib() - before) / 1024;
    eprintln!("peak RSS grew by {grown_mib} MiB streaming 200 MiB in 8 MiB parts");
    let listed = repo.list().unwrap();
    assert_eq!(
        listed
            .objects
            .iter()
            .find(|o| o.location == location)
            .map(|o| o.size),
        Some(total as u64)
    );
    // Two parts and 4 MiB to spare: 16 MiB measured, 24 MiB before the buffers were reused.
    let bound = 2 * (DEFAULT_PART_SIZE as u64 >> 20) + 4;
    assert!(
        grown_mib <= bound,
        "peak RSS grew by {grown_mib} MiB (at most {bound} MiB)"
    );
}
