//! The S3 repository against a real S3 engine: a single-node Garage cluster on loopback
//! (pgseal-testkit's `TestGarage`), each test in a bucket of its own.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use pgseal_core::keys::{Identity, KeyBits};
use pgseal_core::legacy::hybrid;
use pgseal_core::v2::{self, Compression, SealParams, SignerCheck};
use pgseal_core::{PrivateKey, PublicKey};
use pgseal_ops::repo::s3::{
    Addressing, Checksums, MIN_PART, S3Connection, S3Repository, S3Settings,
};
use pgseal_ops::repo::{Location, Reach, RepoError, Repository, prelude};
use pgseal_ops::{Error, ErrorKind};
use pgseal_testkit::{BucketPermissions, TestGarage};

fn garage() -> &'static TestGarage {
    TestGarage::shared()
}

fn connection_to(sdk: aws_types::SdkConfig) -> Arc<S3Connection> {
    S3Connection::new(S3Settings {
        sdk,
        addressing: Addressing::Path,
        part_size: MIN_PART,
    })
    .unwrap()
}

fn connection() -> Arc<S3Connection> {
    let g = garage();
    connection_to(g.sdk_config())
}

/// `name` made unique to this run (the engine may outlive one test process).
fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{:x}{nanos:x}", std::process::id())
}

/// A bucket of the test's own, and a repository in it under `site1/backups`.
fn repository(name: &str) -> S3Repository {
    let bucket = unique(name);
    garage().create_bucket(&bucket).unwrap();
    S3Repository::new(connection(), &bucket, "site1/backups").unwrap()
}

/// `len` bytes that do not compress (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write(repo: &S3Repository, name: &str, bytes: &[u8]) -> Location {
    let mut new = repo.create(name).unwrap();
    new.write_all(bytes).unwrap();
    new.commit().unwrap()
}

fn read_all(repo: &S3Repository, location: &Location) -> Vec<u8> {
    let mut all = Vec::new();
    repo.open(location)
        .unwrap()
        .unwrap()
        .read_to_end(&mut all)
        .unwrap();
    all
}

fn key() -> PrivateKey {
    PrivateKey::generate(KeyBits::from_bits(2048).unwrap()).unwrap()
}

#[test]
fn create_commit_list_open_read_at_delete() {
    let repo = repository("pgseal-basics");
    assert!(repo.exists());
    let small = write(&repo, "shop_1.pgseal", b"0123456789");
    assert_eq!(
        small.as_str(),
        format!("s3://{}/site1/backups/shop_1.pgseal", repo.bucket())
    );
    assert_eq!(repo.location("shop_1.pgseal").unwrap(), small);
    assert!(repo.contains(&small));
    // Larger than a part: a multipart upload of three parts, the last one short.
    let big_bytes = noise(2 * MIN_PART + 12345, 7);
    let big = write(&repo, "shop_2.pgseal", &big_bytes);

    // The same name again: a free variant, never over the first.
    let again = write(&repo, "shop_1.pgseal", b"abc");
    assert!(again.as_str().ends_with("/shop_1-2.pgseal"), "{again}");
    assert_eq!(read_all(&repo, &small), b"0123456789");

    let listing = repo.list().unwrap();
    let listed: Vec<(String, u64)> = listing
        .objects
        .iter()
        .map(|l| (l.location.to_string(), l.size))
        .collect();
    assert_eq!(
        listed,
        vec![
            (again.to_string(), 3),
            (small.to_string(), 10),
            (big.to_string(), big_bytes.len() as u64),
        ]
    );
    assert!(listing.partial.is_empty(), "{:?}", listing.partial);

    let object = repo.open(&big).unwrap().unwrap();
    assert_eq!(object.size, big_bytes.len() as u64);
    assert_eq!(read_all(&repo, &big), big_bytes);
    assert_eq!(repo.read_at(&small, 3, 4).unwrap(), b"3456");
    assert_eq!(repo.read_at(&small, 8, 100).unwrap(), b"89");
    assert_eq!(repo.read_at(&small, 10, 5).unwrap(), b"");
    assert_eq!(
        repo.read_at(&big, MIN_PART as u64 - 2, 4).unwrap(),
        big_bytes[MIN_PART - 2..MIN_PART + 2]
    );
    let mut head = Vec::new();
    prelude(&repo, &big)
        .unwrap()
        .take(100_000)
        .read_to_end(&mut head)
        .unwrap();
    assert_eq!(head, big_bytes[..100_000]);

    // Deleting checks the version: a replaced object is refused.
    let stale = repo.open(&small).unwrap().unwrap().version;
    repo.delete(&again, None).unwrap();
    let _ = write(&repo, "shop_1-2.pgseal", b"new");
    let newer = repo.location("shop_1-2.pgseal").unwrap();
    assert!(matches!(
        repo.delete(&newer, Some(&stale)),
        Err(Error::Repository(RepoError::Changed(_)))
    ));
    repo.delete(&small, Some(&stale)).unwrap();
    assert!(repo.open(&small).unwrap().is_none());
    assert!(matches!(
        repo.delete(&small, None),
        Err(Error::Repository(RepoError::NotFound(_)))
    ));
    assert_eq!(repo.list().unwrap().objects.len(), 2);
}

#[test]
fn locations_outside_the_prefix_or_bucket_are_not_contained() {
    let repo = repository("pgseal-contains");
    let mine = repo.location("x.pgseal").unwrap();
    assert!(repo.contains(&mine));
    let b = repo.bucket();
    for other in [
        format!("s3://{b}/site1/x.pgseal"),
        format!("s3://{b}/site1/backups/deeper/x.pgseal"),
        "s3://another-bucket/site1/backups/x.pgseal".to_owned(),
        format!("s3://{b}/site1/backups/../backups/x.pgseal"),
        format!("s3://{b}/site1/backups/a%2Fb.pgseal"),
        "file://db1/site1/backups/x.pgseal".to_owned(),
    ] {
        let l = Location::parse(&other).unwrap();
        assert!(!repo.contains(&l), "{other}");
        assert!(repo.open(&l).is_err(), "{other}");
        assert!(repo.delete(&l, None).is_err(), "{other}");
    }
    for bad in ["../x.pgseal", "a/b.pgseal", "", ".."] {
        assert!(
            matches!(
                repo.create(bad),
                Err(Error::Repository(RepoError::BadName { .. }))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn an_abandoned_upload_leaves_no_object_and_no_upload() {
    let repo = repository("pgseal-abandon");
    let mut new = repo.create("shop_1.pgseal").unwrap();
    // Two full parts sent, a third filling: the upload was started.
    new.write_all(&noise(2 * MIN_PART + 100, 3)).unwrap();
    assert_eq!(repo.incomplete_uploads().unwrap().len(), 1);
    drop(new);
    let listing = repo.list().unwrap();
    assert!(listing.objects.is_empty(), "{:?}", listing.objects);
    assert!(listing.partial.is_empty(), "{:?}", listing.partial);
    assert!(repo.incomplete_uploads().unwrap().is_empty());
    // A small one never started an upload.
    let mut new = repo.create("shop_2.pgseal").unwrap();
    new.write_all(b"abc").unwrap();
    drop(new);
    assert!(repo.list().unwrap().objects.is_empty());
}

#[test]
fn a_commit_never_replaces_a_key_taken_while_it_was_written() {
    let repo = repository("pgseal-taken");
    let mut slow = repo.create("shop_1.pgseal").unwrap();
    slow.write_all(&noise(MIN_PART + 10, 5)).unwrap();
    // Meanwhile another writer takes the same name (the upload is not visible, so the other
    // writer finds the name free). Garage drops the unfinished upload then; engines that keep
    // it meet the HEAD before the completion and `If-None-Match: *`.
    let theirs = write(&repo, "shop_1.pgseal", b"theirs");
    assert!(theirs.as_str().ends_with("/shop_1.pgseal"));
    let refused = slow.commit().unwrap_err();
    assert!(
        matches!(&refused, Error::Repository(RepoError::Taken(l)) if *l == theirs),
        "{refused:?}"
    );
    assert_eq!(refused.kind(), ErrorKind::Io);
    assert_eq!(read_all(&repo, &theirs), b"theirs");
    assert!(repo.incomplete_uploads().unwrap().is_empty());
    assert_eq!(repo.list().unwrap().objects.len(), 1);
}

#[test]
fn wrong_credentials_and_a_missing_bucket_are_named() {
    let g = garage();
    let wrong = S3Connection::new(S3Settings {
        sdk: g.sdk_config_for(g.access_key_id(), "not-the-secret-access-key-0000000000000"),
        addressing: Addressing::Path,
        part_size: MIN_PART,
    })
    .unwrap();
    let bucket = unique("pgseal-creds");
    g.create_bucket(&bucket).unwrap();
    let repo = S3Repository::new(wrong, &bucket, "").unwrap();
    // Garage answers a wrong secret as any refusal: 403 AccessDenied (engines that say
    // InvalidAccessKeyId or SignatureDoesNotMatch give RepoError::BadCredentials).
    let e = repo.list().unwrap_err();
    assert!(
        matches!(&e, Error::Repository(RepoError::AccessDenied { code, .. }) if code == "AccessDenied"),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(!e.to_string().contains("not-the-secret"), "{e}");

    let missing = S3Repository::new(connection(), "pgseal-no-such-bucket", "").unwrap();
    let e = missing.list().unwrap_err();
    assert!(
        matches!(&e, Error::Repository(RepoError::NoSuchBucket { .. })),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Usage);
    let mut new = missing.create("x.pgseal").unwrap();
    new.write_all(b"x").unwrap();
    assert!(new.commit().is_err());

    // Nothing listens there.
    let nowhere = S3Connection::new(S3Settings {
        sdk: g
            .sdk_config()
            .into_builder()
            .endpoint_url("http://127.0.0.1:9")
            .build(),
        addressing: Addressing::Path,
        part_size: MIN_PART,
    })
    .unwrap();
    let e = S3Repository::new(nowhere, &bucket, "")
        .unwrap()
        .list()
        .unwrap_err();
    assert!(
        matches!(&e, Error::Repository(RepoError::Unreachable { .. })),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Io);
}

#[test]
fn the_engine_is_probed_for_checksums_once() {
    let repo = repository("pgseal-probe");
    let found = repo.probe().unwrap();
    eprintln!("Garage per-part CRC32C checksums: {found:?}");
    assert_eq!(repo.probe().unwrap(), found);
    // The probe leaves nothing behind.
    assert!(repo.incomplete_uploads().unwrap().is_empty());
    assert!(repo.list().unwrap().objects.is_empty());
    // Garage 2.5 checks them.
    assert_eq!(found, Checksums::Crc32c);
}

#[test]
fn unfinished_uploads_older_than_an_age_are_aborted() {
    let repo = repository("pgseal-cleanup");
    let mut killed = repo.create("shop_1.pgseal").unwrap();
    killed.write_all(&noise(MIN_PART + 1, 9)).unwrap();
    // A killed process never aborts: forget the writer without dropping it.
    std::mem::forget(killed);
    let uploads = repo.incomplete_uploads().unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].location, repo.location("shop_1.pgseal").unwrap());
    assert_eq!(
        repo.list().unwrap().partial,
        vec![uploads[0].location.clone()]
    );
    // Not old enough yet.
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    assert!(repo.abort_incomplete(hour_ago).unwrap().is_empty());
    let aborted = repo
        .abort_incomplete(SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    assert_eq!(aborted.len(), 1);
    assert!(aborted[0].1.is_ok());
    assert!(repo.incomplete_uploads().unwrap().is_empty());
    assert!(repo.list().unwrap().objects.is_empty());
}

/// A v2 file of about `size` bytes sealed to `to`, in `repo` as `name`.
fn sealed(
    repo: &S3Repository,
    name: &str,
    size: usize,
    signer: &PrivateKey,
    to: &[PublicKey],
) -> (Location, Vec<u8>) {
    let plain = noise(size, size as u64);
    let mut params = SealParams::new(signer, to);
    params.compression = Compression::None;
    let mut new = repo.create(name).unwrap();
    v2::seal(&plain[..], &mut new, &params).unwrap();
    (new.commit().unwrap(), plain)
}

/// Rewraps `location` from `old` to `new` through `apply_rewrap`; returns how long it took.
fn rewrap(
    repo: &S3Repository,
    location: &Location,
    old: &PrivateKey,
    new: &PrivateKey,
) -> Duration {
    let object = repo.open(location).unwrap().unwrap();
    let version = object.version.clone();
    let prelude = v2::read_prelude(&mut prelude(repo, location).unwrap()).unwrap();
    drop(object);
    let plan = prelude
        .plan_rewrap(
            &[old as &dyn Identity],
            std::slice::from_ref(new.public()),
            &[],
        )
        .unwrap();
    let started = Instant::now();
    repo.apply_rewrap(location, &version, &plan).unwrap();
    started.elapsed()
}

/// Every byte of every object in the bucket (the test buckets are small).
fn bucket_bytes(repo: &S3Repository) -> Vec<u8> {
    let mut all = Vec::new();
    let mut prefixes = vec![String::new()];
    while let Some(prefix) = prefixes.pop() {
        let r = S3Repository::new(repo.connection().clone(), repo.bucket(), &prefix).unwrap();
        let listing = r.list().unwrap();
        for o in &listing.objects {
            all.extend(read_all(&r, &o.location));
        }
        for other in &listing.other {
            // A folder: `s3://bucket/a/b/`, its key ending with `/`.
            let folder = other.encoded_path().trim_start_matches('/').to_owned();
            prefixes.push(folder);
        }
    }
    all
}

fn rewrap_replaces_the_object_and_leaves_no_old_wrapping(size: usize, bucket: &str) -> Duration {
    let repo = repository(bucket);
    let (signer, old, new) = (key(), key(), key());
    let (location, plain) = sealed(
        &repo,
        "shop_1.pgseal",
        size,
        &signer,
        &[old.public().clone()],
    );
    let before = read_all(&repo, &location);
    let old_prelude = v2::read_prelude(&mut &before[..]).unwrap();
    let (active, _) = old_prelude.active_slot().unwrap();
    // The old slot's bytes: what must be nowhere in the bucket afterwards.
    let slot_len = old_prelude.header.slot_size as usize;
    let slot_at = old_prelude.slots_offset as usize + active * slot_len;
    let old_slot = before[slot_at..slot_at + slot_len].to_vec();

    let took = rewrap(&repo, &location, &old, &new);

    let after = read_all(&repo, &location);
    assert_eq!(after.len(), before.len());
    let prelude = v2::read_prelude(&mut &after[..]).unwrap();
    assert!(prelude.superseded_slot().is_none(), "the old slot is wiped");
    assert!(prelude.check_key(&[&old as &dyn Identity]).is_err());
    let mut out = Vec::new();
    prelude
        .decrypt(
            &after[prelude_len(&after)..],
            &mut out,
            &[&new as &dyn Identity],
            SignerCheck::Require(std::slice::from_ref(signer.public())),
        )
        .unwrap();
    assert!(out == plain, "the data is intact");
    // One object, no temporary, no unfinished upload; the old slot nowhere in the bucket.
    let listing = repo.list().unwrap();
    assert_eq!(listing.objects.len(), 1);
    assert!(listing.partial.is_empty());
    let everything = bucket_bytes(&repo);
    assert!(
        !everything
            .windows(old_slot.len())
            .any(|w| w == old_slot.as_slice()),
        "the old wrapping survives in the bucket"
    );
    took
}

/// Where a v2 file's prelude ends (what `read_prelude` consumed).
fn prelude_len(bytes: &[u8]) -> usize {
    let mut reader = bytes;
    v2::read_prelude(&mut reader).unwrap();
    bytes.len() - reader.len()
}

#[test]
fn rewrap_of_a_small_and_a_large_object_costs_the_same() {
    let small = rewrap_replaces_the_object_and_leaves_no_old_wrapping(1 << 20, "pgseal-rewrap-1m");
    let large =
        rewrap_replaces_the_object_and_leaves_no_old_wrapping(64 << 20, "pgseal-rewrap-64m");
    eprintln!("rewrap on Garage: 1 MiB {small:?}, 64 MiB {large:?}");
    // Server-side copies: the large one sends the same first part and a few requests more.
    assert!(
        large < small * 4 + Duration::from_secs(2),
        "1 MiB {small:?}, 64 MiB {large:?}"
    );
}

#[test]
fn a_rewrap_of_an_object_replaced_meanwhile_is_refused() {
    let repo = repository("pgseal-rewrap-changed");
    let (signer, old, new) = (key(), key(), key());
    let (location, _) = sealed(
        &repo,
        "shop_1.pgseal",
        6 << 20,
        &signer,
        &[old.public().clone()],
    );
    let version = repo.open(&location).unwrap().unwrap().version;
    let first = v2::read_prelude(&mut prelude(&repo, &location).unwrap()).unwrap();
    let plan = first
        .plan_rewrap(
            &[&old as &dyn Identity],
            std::slice::from_ref(new.public()),
            &[],
        )
        .unwrap();
    // Someone replaces the object (deletes it; another backup takes the name).
    repo.delete(&location, None).unwrap();
    let (again, _) = sealed(
        &repo,
        "shop_1.pgseal",
        6 << 20,
        &signer,
        &[old.public().clone()],
    );
    assert_eq!(again, location);
    let refused = repo.apply_rewrap(&location, &version, &plan).unwrap_err();
    assert!(
        matches!(refused, Error::Repository(RepoError::Changed(_))),
        "{refused:?}"
    );
    assert!(repo.incomplete_uploads().unwrap().is_empty());
    // Still the old key's.
    let now = v2::read_prelude(&mut prelude(&repo, &location).unwrap()).unwrap();
    now.check_key(&[&old as &dyn Identity]).unwrap();
}

#[test]
fn a_key_that_may_only_read_can_neither_delete_nor_write() {
    let repo = repository("pgseal-readonly");
    let location = write(&repo, "shop_1.pgseal", b"kept");
    let g = garage();
    let reader = g.create_key(&unique("reader")).unwrap();
    g.allow(
        repo.bucket(),
        &reader.access_key_id,
        BucketPermissions::READ_ONLY,
    )
    .unwrap();
    let ro = S3Repository::new(
        connection_to(g.sdk_config_for(&reader.access_key_id, &reader.secret_access_key)),
        repo.bucket(),
        "site1/backups",
    )
    .unwrap();
    assert_eq!(read_all(&ro, &location), b"kept");
    let e = ro.delete(&location, None).unwrap_err();
    assert!(
        matches!(&e, Error::Repository(RepoError::AccessDenied { .. })),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Io);
    let mut new = ro.create("shop_2.pgseal").unwrap();
    new.write_all(&noise(MIN_PART + 1, 17)).unwrap_err();
    drop(new);
    let mut new = ro.create("shop_3.pgseal").unwrap();
    new.write_all(b"small").unwrap();
    let e = new.commit().unwrap_err();
    assert!(
        matches!(&e, Error::Repository(RepoError::AccessDenied { .. })),
        "{e:?}"
    );
    let listing = repo.list().unwrap();
    assert_eq!(listing.objects.len(), 1);
    assert!(listing.partial.is_empty());
    assert_eq!(read_all(&repo, &location), b"kept");
}

#[test]
fn an_upload_cut_off_by_the_engine_dying_leaves_no_object_and_is_cleaned_up() {
    // An engine of its own: this one is killed.
    let g = TestGarage::start().unwrap();
    let bucket = unique("pgseal-killed");
    g.create_bucket(&bucket).unwrap();
    let repo = S3Repository::new(connection_to(g.sdk_config()), &bucket, "site1/backups").unwrap();
    let mut new = repo.create("shop_1.pgseal").unwrap();
    new.write_all(&noise(MIN_PART + 1, 13)).unwrap();
    g.kill().unwrap();
    let e = new.write_all(&noise(2 * MIN_PART, 14)).unwrap_err();
    let e = e.into_inner().unwrap().downcast::<Error>().unwrap();
    assert!(
        matches!(*e, Error::Repository(RepoError::Unreachable { .. })),
        "{e:?}"
    );
    assert!(new.commit().is_err());
    g.restart().unwrap();
    let listing = repo.list().unwrap();
    assert!(listing.objects.is_empty(), "{:?}", listing.objects);
    // The abort could not reach the engine: the upload is left, and the cleanup takes it.
    assert_eq!(listing.partial.len(), 1);
    let aborted = repo
        .abort_incomplete(SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    assert_eq!(aborted.len(), 1);
    assert!(aborted[0].1.is_ok());
    assert!(repo.list().unwrap().partial.is_empty());
}

#[test]
fn a_read_broken_off_by_the_engine_restarting_resumes_where_it_stopped() {
    // An engine of its own: this one is restarted mid-read.
    let g = TestGarage::start().unwrap();
    let bucket = unique("pgseal-resume");
    g.create_bucket(&bucket).unwrap();
    let repo = S3Repository::new(connection_to(g.sdk_config()), &bucket, "site1/backups").unwrap();
    let data = noise(48 << 20, 21);
    let mut new = repo.create("big.pgseal").unwrap();
    new.write_all(&data).unwrap();
    let location = new.commit().unwrap();

    let mut object = repo.open(&location).unwrap().unwrap();
    let mut read = vec![0u8; 1 << 20];
    object.read_exact(&mut read).unwrap();
    // The engine goes away and comes back while the body is being read.
    g.kill().unwrap();
    g.restart().unwrap();
    object.read_to_end(&mut read).unwrap();
    assert_eq!(read.len(), data.len());
    assert!(
        read == data,
        "the resumed body is the object, byte for byte"
    );

    // Replaced while being read: resuming refuses to splice another version in.
    let mut object = repo.open(&location).unwrap().unwrap();
    let mut first = vec![0u8; 1 << 20];
    object.read_exact(&mut first).unwrap();
    g.kill().unwrap();
    g.restart().unwrap();
    let client = g.client();
    let (bucket2, key) = location.s3_object().unwrap().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(
            client
                .put_object()
                .bucket(&bucket2)
                .key(&key)
                .body(noise(48 << 20, 22).into())
                .send(),
        )
        .unwrap();
    let mut rest = Vec::new();
    let e = object.read_to_end(&mut rest).unwrap_err();
    assert!(
        e.to_string().contains("changed while it was being read"),
        "{e}"
    );
}

#[test]
fn a_legacy_header_is_replaced_whole_and_the_old_wrapped_key_is_nowhere() {
    for size in [1usize << 20, 6 << 20] {
        let repo = repository(&format!("pgseal-legacy-{}m", size >> 20));
        let (signer, old, new) = (key(), key(), key());
        let plain = noise(size, 11);
        let mut file = std::io::Cursor::new(Vec::new());
        hybrid::encrypt(
            &plain[..],
            &mut file,
            old.public(),
            &signer,
            7,
            1_700_000_000,
        )
        .unwrap();
        let bytes = file.into_inner();
        let location = write(&repo, "legacy.pgseal", &bytes);
        let version = repo.open(&location).unwrap().unwrap().version;
        let header = hybrid::read_header(&mut &bytes[..], Some(bytes.len() as u64)).unwrap();
        let session_key = old.unwrap_file_key(&header.wrapped_key).unwrap();
        let new_header = hybrid::LegacyHeader {
            wrapped_key: new.public().wrap_file_key(&session_key).unwrap(),
            ..header.clone()
        };
        repo.replace_head(
            &location,
            &version,
            &new_header.encode(),
            header.encoded_len(),
            header.wrapped_key_range(),
        )
        .unwrap();
        let after = read_all(&repo, &location);
        assert_eq!(after.len(), bytes.len());
        let h = hybrid::read_header(&mut &after[..], Some(after.len() as u64)).unwrap();
        assert!(old.unwrap_file_key(&h.wrapped_key).is_err());
        let mut out = Vec::new();
        hybrid::decrypt(&h, &after[h.encoded_len() as usize..], &mut out, &new).unwrap();
        assert!(out == plain, "{size}: the data is intact");
        let listing = repo.list().unwrap();
        assert_eq!(listing.objects.len(), 1);
        assert!(listing.partial.is_empty());
        let everything = bucket_bytes(&repo);
        assert!(
            !everything
                .windows(header.wrapped_key.len())
                .any(|w| w == header.wrapped_key.as_slice()),
            "{size}: the old wrapped key survives in the bucket"
        );
    }
}

#[test]
fn reach_finds_the_repository_of_an_s3_location() {
    let repo = repository("pgseal-reach");
    let location = write(&repo, "shop_1.pgseal", b"reached");
    let without = Reach::new("db1");
    assert!(!without.reaches(&location));
    assert!(without.repository_of(&location).unwrap().is_none());
    let reach = Reach::new("db1").with_s3(connection());
    assert!(reach.reaches(&location));
    let found = reach.repository_of(&location).unwrap().unwrap();
    assert!(found.contains(&location));
    assert_eq!(
        found.describe(),
        format!("s3://{}/site1/backups/", repo.bucket())
    );
    assert_eq!(found.read_at(&location, 0, 100).unwrap(), b"reached");
    let bad = Location::parse(&format!("s3://{}/a/../b", repo.bucket())).unwrap();
    assert!(matches!(
        reach.repository_of(&bad),
        Err(Error::Repository(RepoError::NotPlain { .. }))
    ));
}

mod flow {
    //! backup → verify → restore through the operations API with an S3 repository, and a
    //! tampered object refused by both.

    use std::path::Path;

    use pgseal_ops::Session;
    use pgseal_ops::backup::{self, Backup, Source};
    use pgseal_ops::observe::Silent;
    use pgseal_ops::open::OpenKeys;
    use pgseal_ops::pgtools::PgTools;
    use pgseal_ops::restore::{self, Destination, Restore, Restored};
    use pgseal_ops::testsite::{HOST, TestSite, password};
    use pgseal_ops::verify::{self, Proof, VerifyKeys};
    use pgseal_store::Action;
    use pgseal_testkit::TestCluster;

    use super::*;

    fn verify(session: &mut Session, input: &str) -> Result<Proof, Error> {
        let pw = password();
        let v = verify::verify(
            session,
            input,
            &VerifyKeys {
                signers: &[],
                identity: None,
                decrypt_check: true,
                server_password: &pw,
            },
        );
        let recorded = session.finish(match &v.result {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::invalid(e.to_string())),
        });
        assert_eq!(recorded.is_ok(), v.result.is_ok(), "{recorded:?}");
        v.result
    }

    fn restore_into(
        session: &mut Session,
        tools: &PgTools,
        input: &str,
        database: &str,
    ) -> Result<Restored, Error> {
        let (server_pw, legacy_pw) = (password(), password());
        let result = restore::restore(
            session,
            &Restore {
                file: Path::new(input),
                keys: OpenKeys {
                    identities: &[],
                    signers: &[],
                    server_password: &server_pw,
                    legacy_password: &legacy_pw,
                    verify: true,
                },
                destination: Destination::Into {
                    database: database.to_owned(),
                    create: true,
                    merge: false,
                },
                clean: false,
                jobs: 1,
                tools,
            },
            || Ok(()),
        );
        let _ = session.finish(
            result
                .as_ref()
                .map(drop)
                .map_err(|e| Error::invalid(e.to_string())),
        );
        result.map(|r| r.restored)
    }

    #[test]
    fn backup_verify_restore_through_an_s3_repository_and_a_tampered_object_is_refused() {
        let cluster = TestCluster::shared();
        let repo = repository("pgseal-flow");
        let TestSite {
            tmp: _tmp,
            site,
            session,
            server,
            ..
        } = TestSite::new();
        let mut session = session.with_s3(repo.connection().clone());

        let db = cluster.create_database("s3_flow").unwrap();
        cluster
            .psql(
                &db,
                "CREATE TABLE t (id int PRIMARY KEY, note text); \
                 INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g;",
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
        let pw = password();
        let record = backup::backup(
            &mut session,
            &Backup {
                creator: "system_backup",
                sign_key: None,
                creator_password: &pw,
                tools: &tools,
                repository: &repo,
                schemas: &[],
                source_host: Some(HOST.into()),
                sweep_older_than: None,
            },
            Source::Name(db.clone()),
        );
        session.finish(record.map(drop)).unwrap();
        let backups = pgseal_ops::catalog::list(&mut session, Some(&db)).unwrap();
        let location = backups[0].entry.location.clone();
        assert_eq!(location.scheme(), "s3");
        assert!(repo.contains(&location), "{location}");
        assert!(
            !site.backup_dir.exists() || std::fs::read_dir(&site.backup_dir).unwrap().count() == 0
        );

        let proof = verify(&mut session, location.as_str()).unwrap();
        assert!(
            matches!(proof, Proof::V2 { decrypted_with: Some(f), .. } if f == server.fingerprint())
        );
        let copy = format!("{db}_copy");
        let restored = restore_into(&mut session, &tools, location.as_str(), &copy).unwrap();
        assert!(matches!(&restored, Restored::Into(d) if *d == copy));
        assert_eq!(
            restore::row_counts(&tools, &copy).unwrap(),
            restore::row_counts(&tools, &db).unwrap()
        );

        // One byte flipped in the middle of the ciphertext.
        let mut bytes = read_all(&repo, &location);
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        let tampered = write(&repo, "tampered.pgseal", &bytes);
        let refused = verify(&mut session, tampered.as_str()).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Authentication, "{refused}");
        let target = format!("{db}_tampered");
        let refused = restore_into(&mut session, &tools, tampered.as_str(), &target).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Authentication, "{refused}");
        let exists = cluster
            .psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{target}'"),
            )
            .unwrap();
        assert_eq!(exists.trim(), "0", "the restore committed nothing");

        let actions: Vec<(Action, bool)> = session
            .store()
            .unwrap()
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
                (Action::Verify, false),
                (Action::Restore, false),
            ]
        );
    }
}

mod crash {
    //! A rewrap killed (`kill -9`) at each S3 step leaves a complete object at the key, opened
    //! by the old key before the completion and by the new one after it, and at most an
    //! unfinished upload, which the cleanup aborts.

    use std::process::{Command, Stdio};
    use std::sync::OnceLock;

    use pgseal_core::Password;

    use super::*;

    const PASSWORD: &str = "correct-horse-battery-staple";
    static STOP_AT: OnceLock<String> = OnceLock::new();

    fn env(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| panic!("{name}: set by the parent test"))
    }

    /// The child: rewraps the object its parent names, stopping itself (`SIGSTOP`) at the
    /// crash point named, for the parent to kill.
    #[test]
    #[ignore = "the child process of a_rewrap_killed_at_each_s3_step_leaves_an_object_one_key_opens"]
    fn rewrap_child_stops_at_a_crash_point() {
        STOP_AT.set(env("PGSEAL_S3_STOP_AT")).unwrap();
        pgseal_ops::crashpoint::set_handler(|name| {
            if STOP_AT.get().is_some_and(|at| at == name) {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::STOP,
                );
                // A process-directed stop may reach this thread a moment later: go no further.
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        });
        let sdk = aws_types::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(env("PGSEAL_S3_REGION")))
            .endpoint_url(env("PGSEAL_S3_ENDPOINT"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                env("PGSEAL_S3_KEY_ID"),
                env("PGSEAL_S3_SECRET"),
                None,
                None,
                "pgseal-tests",
            )))
            .build();
        let conn = S3Connection::new(S3Settings {
            sdk,
            addressing: Addressing::Path,
            part_size: MIN_PART,
        })
        .unwrap();
        let repo = S3Repository::new(conn, &env("PGSEAL_S3_BUCKET"), "site1/backups").unwrap();
        let pw = || Ok(Password::new(PASSWORD.into()));
        let old = PrivateKey::from_pem(&env("PGSEAL_S3_OLD_KEY"), "old", pw).unwrap();
        let new = PrivateKey::from_pem(&env("PGSEAL_S3_NEW_KEY"), "new", pw).unwrap();
        let location = Location::parse(&env("PGSEAL_S3_LOCATION")).unwrap();
        rewrap(&repo, &location, &old, &new);
        panic!("{} was never reached", env("PGSEAL_S3_STOP_AT"));
    }

    /// Whether process `pid` is stopped (`T` in /proc/PID/stat).
    fn stopped(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
            .unwrap_or(false)
    }

    #[test]
    fn a_rewrap_killed_at_each_s3_step_leaves_an_object_one_key_opens() {
        let g = garage();
        let pem = |k: &PrivateKey| {
            k.to_encrypted_pem(&Password::new(PASSWORD.into()))
                .unwrap()
                .to_string()
        };
        for (point, replaced) in [("rewrap:s3:assembled", false), ("rewrap:s3:replaced", true)] {
            let repo = repository(&format!(
                "pgseal-crash-{}",
                point.rsplit(':').next().unwrap()
            ));
            let bucket = repo.bucket().to_owned();
            let (signer, old, new) = (key(), key(), key());
            let (location, plain) = sealed(
                &repo,
                "shop_1.pgseal",
                6 << 20,
                &signer,
                &[old.public().clone()],
            );
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "crash::rewrap_child_stops_at_a_crash_point",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("PGSEAL_S3_STOP_AT", point)
                .env("PGSEAL_S3_REGION", g.region())
                .env("PGSEAL_S3_ENDPOINT", g.endpoint())
                .env("PGSEAL_S3_KEY_ID", g.access_key_id())
                .env("PGSEAL_S3_SECRET", g.secret_access_key())
                .env("PGSEAL_S3_BUCKET", &bucket)
                .env("PGSEAL_S3_OLD_KEY", pem(&old))
                .env("PGSEAL_S3_NEW_KEY", pem(&new))
                .env("PGSEAL_S3_LOCATION", location.as_str())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stopped(child.id()) {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("the child ended ({status}) before stopping at {point}");
                }
                assert!(
                    Instant::now() < deadline,
                    "the child never stopped at {point}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().unwrap();
            child.wait().unwrap();

            // A complete object is at the key: the old key's before the completion, the new
            // key's after it.
            let bytes = read_all(&repo, &location);
            let found = v2::read_prelude(&mut &bytes[..]).unwrap();
            let (opener, refused) = if replaced { (&new, &old) } else { (&old, &new) };
            found
                .check_key(&[opener as &dyn Identity])
                .unwrap_or_else(|e| panic!("{point}: {e}"));
            assert!(
                found.check_key(&[refused as &dyn Identity]).is_err(),
                "{point}"
            );
            let mut out = Vec::new();
            found
                .decrypt(
                    &bytes[prelude_len(&bytes)..],
                    &mut out,
                    &[opener as &dyn Identity],
                    SignerCheck::Require(std::slice::from_ref(signer.public())),
                )
                .unwrap();
            assert!(out == plain, "{point}: the data is intact");
            // Killed before the completion: one unfinished upload, which the cleanup aborts.
            let unfinished = repo.incomplete_uploads().unwrap();
            assert_eq!(unfinished.len(), usize::from(!replaced), "{point}");
            let aborted = repo
                .abort_incomplete(SystemTime::now() + Duration::from_secs(60))
                .unwrap();
            assert!(aborted.iter().all(|(_, r)| r.is_ok()));
            assert!(repo.incomplete_uploads().unwrap().is_empty());
            assert_eq!(repo.list().unwrap().objects.len(), 1);
            if !replaced {
                // The rewrap runs again, to the end.
                rewrap(&repo, &location, &old, &new);
                let now = v2::read_prelude(&mut prelude(&repo, &location).unwrap()).unwrap();
                now.check_key(&[&new as &dyn Identity]).unwrap();
                assert!(now.check_key(&[&old as &dyn Identity]).is_err());
            }
        }
    }
}
