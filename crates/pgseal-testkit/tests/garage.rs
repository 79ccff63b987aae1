//! The Garage S3 engine the testkit starts: it serves S3 with the credentials it hands out,
//! and nothing of it remains afterwards.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::upload_part::UploadPartOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use common::{alive, assert_cleaned_up, processes_related_to, read_child_values, spawn_child_test};
use pgseal_testkit::{BucketPermissions, GarageKey, TestGarage, TestkitError};

/// An S3 client for `garage`: path-style addressing, and the SDK's request checksums as
/// `checksums` says.
fn client_with(garage: &TestGarage, checksums: RequestChecksumCalculation) -> Client {
    let config = aws_sdk_s3::config::Builder::from(&garage.sdk_config())
        .force_path_style(true)
        .request_checksum_calculation(checksums)
        .build();
    Client::from_conf(config)
}

/// A client with the SDK's default request checksums (`WhenSupported`).
fn client(garage: &TestGarage) -> Client {
    client_with(garage, RequestChecksumCalculation::WhenSupported)
}

async fn get(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn start_put_get_and_drop_leaves_nothing_behind() {
    let garage = TestGarage::start().unwrap();
    assert!(garage.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(garage.region(), "garage");
    let s3 = client(&garage);

    s3.put_object()
        .bucket(garage.bucket())
        .key("dir/hello.txt")
        .body(ByteStream::from_static(b"hello, garage"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        get(&s3, garage.bucket(), "dir/hello.txt").await,
        b"hello, garage"
    );
    let listed = s3
        .list_objects_v2()
        .bucket(garage.bucket())
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["dir/hello.txt"]);

    let dir = garage.dir().to_path_buf();
    let pid = garage.pid().unwrap();
    assert!(alive(pid));
    assert!(dir.join("meta").is_dir());
    drop(garage);
    // Drop is synchronous: the server is reaped and the directory removed before it returns.
    assert!(!alive(pid), "garage server {pid} still runs");
    assert!(!dir.exists(), "{} still exists", dir.display());
    let related = processes_related_to(&dir, pid);
    assert!(related.is_empty(), "{related:#?}");
}

const MIB: usize = 1 << 20;

/// `len` bytes that differ from one `seed` to another and along the way (so a part copied
/// from the wrong offset cannot pass for the right one).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

async fn put(client: &Client, bucket: &str, key: &str, body: Vec<u8>) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

/// The S3 error code of a failed request (`NoSuchKey`, `InvalidDigest`, ...).
fn code<E: ProvideErrorMetadata>(error: &E) -> String {
    error.code().unwrap_or("(no code)").to_owned()
}

async fn complete(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) {
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn multipart_upload_with_a_ranged_upload_part_copy() {
    let garage = TestGarage::shared();
    let s3 = client(garage);
    let bucket = garage.bucket();
    let source = pattern(6 * MIB + 123, 1);
    put(&s3, bucket, "copy/source", source.clone()).await;

    let key = "copy/assembled";
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    // Part 1: new bytes, the 5 MiB S3 asks of every part but the last.
    let head = pattern(5 * MIB, 2);
    let part1 = s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from(head.clone()))
        .send()
        .await
        .unwrap();
    // Part 2: a range of the source, copied inside the engine (HTTP ranges are inclusive).
    let (first, last) = (1000, source.len() - 2);
    let part2 = s3
        .upload_part_copy()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(2)
        .copy_source(format!("{bucket}/copy/source"))
        .copy_source_range(format!("bytes={first}-{last}"))
        .send()
        .await
        .unwrap();
    let parts = vec![
        CompletedPart::builder()
            .part_number(1)
            .e_tag(part1.e_tag().unwrap())
            .build(),
        CompletedPart::builder()
            .part_number(2)
            .e_tag(part2.copy_part_result().unwrap().e_tag().unwrap())
            .build(),
    ];
    complete(&s3, bucket, key, upload_id, parts).await;

    let expected = [&head[..], &source[first..=last]].concat();
    let assembled = get(&s3, bucket, key).await;
    assert_eq!(assembled.len(), expected.len());
    assert!(assembled == expected, "the assembled object differs");
    // A ranged GET across the part boundary.
    let ranged = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes={}-{}", 5 * MIB - 10, 5 * MIB + 9))
        .send()
        .await
        .unwrap();
    let bytes = ranged.body.collect().await.unwrap().to_vec();
    assert_eq!(bytes, expected[5 * MIB - 10..5 * MIB + 10]);
}

#[tokio::test]
async fn incomplete_uploads_are_listed_and_aborted() {
    let garage = TestGarage::shared();
    let s3 = client(garage);
    let bucket = garage.bucket();
    let key = "abort/me";
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    s3.upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from(pattern(1000, 3)))
        .send()
        .await
        .unwrap();

    let listed = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix("abort/")
        .send()
        .await
        .unwrap();
    let uploads: Vec<(&str, &str)> = listed
        .uploads()
        .iter()
        .map(|u| (u.key().unwrap(), u.upload_id().unwrap()))
        .collect();
    assert_eq!(uploads, [(key, upload_id)]);
    assert!(listed.uploads()[0].initiated().is_some());

    s3.abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .unwrap();
    let listed = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix("abort/")
        .send()
        .await
        .unwrap();
    assert!(listed.uploads().is_empty(), "{:?}", listed.uploads());
    let objects = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("abort/")
        .send()
        .await
        .unwrap();
    assert!(objects.contents().is_empty(), "{:?}", objects.contents());
    let late = s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(2)
        .body(ByteStream::from(pattern(10, 4)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&late), "NoSuchUpload");
}

#[tokio::test]
async fn own_buckets_keys_with_fewer_rights_and_bad_credentials() {
    let garage = TestGarage::shared();
    let s3 = client(garage);
    garage.create_bucket("pgseal-own-bucket").unwrap();
    put(&s3, "pgseal-own-bucket", "k", b"mine".to_vec()).await;
    assert_eq!(get(&s3, "pgseal-own-bucket", "k").await, b"mine");
    // A name taken is an error, as is a name S3 does not allow.
    let taken = garage.create_bucket("pgseal-own-bucket").unwrap_err();
    assert!(matches!(taken, TestkitError::Command { .. }), "{taken:?}");
    assert!(garage.create_bucket("Not_A_Bucket").is_err());

    // A read-only key reads, and may neither write nor delete.
    let reader = garage.create_key("reader").unwrap();
    assert!(!format!("{reader:?}").contains(&reader.secret_access_key));
    garage
        .allow(
            "pgseal-own-bucket",
            &reader.access_key_id,
            BucketPermissions::READ_ONLY,
        )
        .unwrap();
    let as_reader = client_for_key(garage, &reader);
    assert_eq!(get(&as_reader, "pgseal-own-bucket", "k").await, b"mine");
    let denied = as_reader
        .put_object()
        .bucket("pgseal-own-bucket")
        .key("k2")
        .body(ByteStream::from_static(b"no"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&denied), "AccessDenied");
    let denied = as_reader
        .delete_object()
        .bucket("pgseal-own-bucket")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&denied), "AccessDenied");
    // The default bucket is not the reader's at all.
    let denied = as_reader
        .get_object()
        .bucket(garage.bucket())
        .key("anything")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&denied), "AccessDenied");

    // A wrong secret is refused.
    let forged = GarageKey {
        access_key_id: garage.access_key_id().to_owned(),
        secret_access_key: "0".repeat(64),
    };
    let refused = client_for_key(garage, &forged)
        .list_objects_v2()
        .bucket(garage.bucket())
        .send()
        .await
        .unwrap_err();
    // Garage says AccessDenied ("Invalid signature"), where AWS says SignatureDoesNotMatch.
    assert_eq!(code(&refused), "AccessDenied", "{refused:?}");
    // An unknown key id too.
    let unknown = GarageKey {
        access_key_id: "GK000000000000000000000000".to_owned(),
        secret_access_key: "0".repeat(64),
    };
    let refused = client_for_key(garage, &unknown)
        .list_objects_v2()
        .bucket(garage.bucket())
        .send()
        .await
        .unwrap_err();
    // AWS: InvalidAccessKeyId. On Garage, a bad key, a bad secret and a missing right are
    // all 403 AccessDenied: only the message tells them apart.
    assert_eq!(code(&refused), "AccessDenied", "{refused:?}");
    // A bucket that does not exist.
    let missing = s3
        .list_objects_v2()
        .bucket("pgseal-no-such-bucket")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "NoSuchBucket", "{missing:?}");
}

fn client_for_key(garage: &TestGarage, key: &GarageKey) -> Client {
    let config = aws_sdk_s3::config::Builder::from(
        &garage.sdk_config_for(&key.access_key_id, &key.secret_access_key),
    )
    .force_path_style(true)
    .build();
    Client::from_conf(config)
}

#[tokio::test]
async fn a_killed_engine_refuses_and_a_restarted_one_has_the_data() {
    let garage = TestGarage::start().unwrap();
    let s3 = client(&garage);
    put(&s3, garage.bucket(), "durable", b"still here".to_vec()).await;
    let pid = garage.pid().unwrap();
    garage.kill().unwrap();
    assert!(!alive(pid));
    assert_eq!(garage.pid(), None);
    let refused = s3
        .get_object()
        .bucket(garage.bucket())
        .key("durable")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(refused, SdkError::DispatchFailure(_)),
        "{refused:?}"
    );
    garage.kill().unwrap(); // Killing a stopped engine does nothing.

    garage.restart().unwrap();
    let new_pid = garage.pid().unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(get(&s3, garage.bucket(), "durable").await, b"still here");

    // Restart also works on a running engine. A client made before (with connections to the
    // killed server in its pool) fails its next request (DispatchFailure, hyper's
    // IncompleteMessage) even with the SDK's 3 attempts, at once or 3 s later: a new
    // client, whose pool is empty, reaches the new server at once.
    garage.restart().unwrap();
    assert!(!alive(new_pid));
    assert!(alive(garage.pid().unwrap()));
    let s3 = client(&garage);
    assert_eq!(get(&s3, garage.bucket(), "durable").await, b"still here");
}

#[test]
fn shared_engine_is_gone_after_the_process_exits() {
    let mut child = spawn_child_test("child_process", "shared-then-exit", &[]);
    let values = read_child_values(&mut child, &["GARAGE_DIR", "GARAGE_PID"]);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let (dir, pid) = (PathBuf::from(&values[0]), values[1].parse().unwrap());
    // The static is never dropped; the watchdog cleans up right after the exit.
    assert_cleaned_up(&dir, pid, Duration::from_secs(30));
}

#[test]
fn a_killed_test_process_leaves_no_engine_behind() {
    let mut child = spawn_child_test("child_process", "own-then-sleep", &[]);
    let values = read_child_values(&mut child, &["GARAGE_DIR", "GARAGE_PID"]);
    let (dir, pid) = (PathBuf::from(&values[0]), values[1].parse().unwrap());
    assert!(alive(pid));
    child.kill().unwrap(); // SIGKILL: no Drop, no atexit, nothing.
    child.wait().unwrap();
    assert_cleaned_up(&dir, pid, Duration::from_secs(30));
}

#[test]
fn a_missing_garage_binary_says_to_run_the_install_script() {
    let mut child = spawn_child_test(
        "child_process",
        "missing-binary",
        &[("PGSEAL_GARAGE_BIN", "/nonexistent/pgseal-garage")],
    );
    let [message] =
        <[String; 1]>::try_from(read_child_values(&mut child, &["GARAGE_ERROR"])).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(message.contains("/nonexistent/pgseal-garage"), "{message}");
    assert!(message.contains("run scripts/garage.sh"), "{message}");
}

#[test]
fn a_garage_of_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("garage");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'garage cargo:1.1.0 [features: k2v, lmdb]'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut child = spawn_child_test(
        "child_process",
        "missing-binary",
        &[("PGSEAL_GARAGE_BIN", fake.to_str().unwrap())],
    );
    let [message] =
        <[String; 1]>::try_from(read_child_values(&mut child, &["GARAGE_ERROR"])).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        message.contains("it is Garage 1.1.0, the tests need 2.5.x"),
        "{message}"
    );
    assert!(message.contains("run scripts/garage.sh"), "{message}");
}

/// Not a test of its own: the body of the child processes above, selected by
/// `PGSEAL_TESTKIT_CHILD`. Without it (a normal run) it does nothing.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var("PGSEAL_TESTKIT_CHILD") else {
        return;
    };
    let report = |garage: &TestGarage| {
        println!("GARAGE_DIR={}", garage.dir().display());
        println!("GARAGE_PID={}", garage.pid().unwrap());
    };
    match mode.as_str() {
        "missing-binary" => {
            let error = TestGarage::start().unwrap_err();
            assert!(
                matches!(error, TestkitError::GarageNotInstalled { .. }),
                "{error:?}"
            );
            println!("GARAGE_ERROR={error}");
        }
        "shared-then-exit" => report(TestGarage::shared()),
        "own-then-sleep" => {
            let garage = TestGarage::start().unwrap();
            report(&garage);
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown PGSEAL_TESTKIT_CHILD mode {other}"),
    }
}

// ---- Probes: what Garage 2.5.0 does with the requests the S3 repository sends ----
//
// Garage 2.5.0 with aws-sdk-s3 1.96.0. The S3 repository relies on these; each is asserted
// here (or in the tests above), so an engine or SDK upgrade that changes one fails first here.
//
// - The SDK's default request checksums work: with `RequestChecksumCalculation::WhenSupported`
//   (the default) every PutObject/UploadPart carries a CRC32 — a header for an in-memory body,
//   an aws-chunked trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER) for a streaming one — and
//   Garage accepts both, verifies the value, and echoes a header checksum in its response.
//   Nothing needs switching off for Garage.
// - Per-part SHA-256 and CRC32C are verified: CreateMultipartUpload and UploadPart with
//   `checksum_algorithm`, under WhenSupported, make the SDK send each part's checksum; a wrong
//   one is 400 InvalidDigest and the part is not stored; CompleteMultipartUpload naming a part
//   checksum that is not the part's is 400 InvalidDigest; a PutObject with a wrong
//   x-amz-checksum-sha256 is 400 InvalidDigest and leaves no object.
// - Under `WhenRequired` the SDK sends NO checksum for PutObject/UploadPart, even with
//   `checksum_algorithm` set (it only computes for operations that require one). A value set
//   by hand (`checksum_sha256(..)`, `checksum_crc32_c(..)`) is sent, and verified, either way.
// - `If-None-Match: *` is ignored on PutObject and on CompleteMultipartUpload: both overwrite
//   an existing object (AWS: 412). Create-only must be emulated (HEAD before completing).
// - `If-Match` is ignored on DeleteObject (it deletes whatever is there); a GET with a stale
//   `If-Match` is 412 with an empty body (no error code: match the status).
// - ListMultipartUploads (with a prefix; `Initiated` is set) and AbortMultipartUpload work;
//   UploadPart to an aborted upload is NoSuchUpload; nothing of it is listed afterwards.
// - No minimum part size: parts of 1 and 2 bytes complete (AWS: EntityTooSmall for any part
//   but the last under 5 MiB). Keep 5 MiB parts for real S3.
// - UploadPartCopy with `x-amz-copy-source-range` works (see
//   multipart_upload_with_a_ranged_upload_part_copy), but not from an object under 3072
//   bytes, which Garage keeps inline in its metadata: 400 InvalidRequest.
// - Errors: a wrong secret and an unknown key id are both 403 AccessDenied (AWS:
//   SignatureDoesNotMatch, InvalidAccessKeyId), like a missing permission: the code cannot
//   tell bad credentials from a missing right. A missing bucket is NoSuchBucket. A stopped
//   engine is a DispatchFailure (connection refused). After a restart, a client with
//   connections pooled to the old server fails its next request (DispatchFailure,
//   IncompleteMessage) despite the SDK's 3 attempts.

/// base64 of 32 zero bytes: a SHA-256 no part has.
const WRONG_SHA256: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
/// base64 of 4 zero bytes: a CRC32C (or CRC32) the parts below do not have.
const WRONG_CRC32: &str = "AAAAAA==";

#[tokio::test]
async fn probe_the_sdk_default_request_checksums_are_accepted_and_verified() {
    let garage = TestGarage::shared();
    let bucket = garage.bucket();
    // WhenSupported (the SDK's default): a CRC32 of every body goes along; Garage checks it
    // and echoes it back.
    let s3 = client(garage);
    let put = s3
        .put_object()
        .bucket(bucket)
        .key("probe/default-put")
        .body(ByteStream::from(pattern(100_000, 5)))
        .send()
        .await
        .unwrap();
    assert!(put.checksum_crc32().is_some(), "{put:?}");
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key("probe/default-mpu")
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let part = s3
        .upload_part()
        .bucket(bucket)
        .key("probe/default-mpu")
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from(pattern(100_000, 6)))
        .send()
        .await
        .unwrap();
    assert!(part.checksum_crc32().is_some(), "{part:?}");
    let parts = vec![
        CompletedPart::builder()
            .part_number(1)
            .e_tag(part.e_tag().unwrap())
            .build(),
    ];
    complete(&s3, bucket, "probe/default-mpu", upload_id, parts).await;
    // Responses are validated too (WhenSupported), and pass.
    assert_eq!(
        get(&s3, bucket, "probe/default-mpu").await,
        pattern(100_000, 6)
    );

    // WhenRequired: no checksum at all, also accepted.
    let quiet = client_with(garage, RequestChecksumCalculation::WhenRequired);
    let put = quiet
        .put_object()
        .bucket(bucket)
        .key("probe/no-checksum")
        .body(ByteStream::from(pattern(1000, 7)))
        .send()
        .await
        .unwrap();
    assert_eq!(put.checksum_crc32(), None, "{put:?}");
    assert_eq!(
        get(&quiet, bucket, "probe/no-checksum").await,
        pattern(1000, 7)
    );
}

/// The part checksum `algorithm` in an UploadPart response.
fn part_checksum(output: &UploadPartOutput, algorithm: &ChecksumAlgorithm) -> Option<String> {
    match algorithm {
        ChecksumAlgorithm::Sha256 => output.checksum_sha256(),
        _ => output.checksum_crc32_c(),
    }
    .map(str::to_owned)
}

#[tokio::test]
async fn probe_part_checksums_sha256_and_crc32c_are_verified() {
    let garage = TestGarage::shared();
    let bucket = garage.bucket();
    let s3 = client(garage);
    for algorithm in [ChecksumAlgorithm::Sha256, ChecksumAlgorithm::Crc32C] {
        let key = format!("probe/checksum-{}", algorithm.as_str());
        let upload = s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(&key)
            .checksum_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap();
        let upload_id = upload.upload_id().unwrap();
        let part = |number: i32, body: Vec<u8>| {
            s3.upload_part()
                .bucket(bucket)
                .key(&key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(body))
        };
        // The SDK computes the part's checksum (a header: the body is in memory); Garage
        // checks it and echoes it.
        let first = part(1, pattern(5 * MIB, 8))
            .checksum_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap();
        let first_checksum = part_checksum(&first, &algorithm).unwrap();
        // A part whose bytes do not match its checksum (a flipped bit on the wire) fails.
        let wrong = match algorithm {
            ChecksumAlgorithm::Sha256 => part(2, pattern(1000, 9)).checksum_sha256(WRONG_SHA256),
            _ => part(2, pattern(1000, 9)).checksum_crc32_c(WRONG_CRC32),
        };
        let refused = wrong.send().await.unwrap_err();
        assert_eq!(
            code(&refused),
            "InvalidDigest",
            "{algorithm:?}: {refused:?}"
        );
        // ... and is not kept.
        let listed = s3
            .list_parts()
            .bucket(bucket)
            .key(&key)
            .upload_id(upload_id)
            .send()
            .await
            .unwrap();
        let numbers: Vec<i32> = listed
            .parts()
            .iter()
            .filter_map(|p| p.part_number())
            .collect();
        assert_eq!(numbers, [1], "{algorithm:?}");
        let second = part(2, pattern(1000, 9))
            .checksum_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap();
        let second_checksum = part_checksum(&second, &algorithm).unwrap();
        assert_ne!(first_checksum, second_checksum);
        let completed = |number: i32, etag: &str, checksum: &str| {
            let builder = CompletedPart::builder().part_number(number).e_tag(etag);
            match algorithm {
                ChecksumAlgorithm::Sha256 => builder.checksum_sha256(checksum),
                _ => builder.checksum_crc32_c(checksum),
            }
            .build()
        };
        // Completing with a part checksum that is not the part's is refused.
        let mismatched = s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(&key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(completed(1, first.e_tag().unwrap(), &second_checksum))
                    .parts(completed(2, second.e_tag().unwrap(), &second_checksum))
                    .build(),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            code(&mismatched),
            "InvalidDigest",
            "{algorithm:?}: {mismatched:?}"
        );
        let parts = vec![
            completed(1, first.e_tag().unwrap(), &first_checksum),
            completed(2, second.e_tag().unwrap(), &second_checksum),
        ];
        complete(&s3, bucket, &key, upload_id, parts).await;
        let expected = [pattern(5 * MIB, 8), pattern(1000, 9)].concat();
        assert!(get(&s3, bucket, &key).await == expected, "{algorithm:?}");
    }

    // A single PutObject with a wrong checksum fails, and leaves no object.
    let refused = s3
        .put_object()
        .bucket(bucket)
        .key("probe/bad-put")
        .body(ByteStream::from(pattern(1000, 10)))
        .checksum_sha256(WRONG_SHA256)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&refused), "InvalidDigest", "{refused:?}");
    let head = s3
        .head_object()
        .bucket(bucket)
        .key("probe/bad-put")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&head), "NotFound", "{head:?}");
}

#[tokio::test]
async fn probe_when_required_the_sdk_sends_no_checksum_even_for_a_chosen_algorithm() {
    let garage = TestGarage::shared();
    let bucket = garage.bucket();
    let key = "probe/when-required";
    let s3 = client_with(garage, RequestChecksumCalculation::WhenRequired);
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    // UploadPart does not require a checksum, so with WhenRequired the SDK computes none,
    // even with checksum_algorithm set: nothing is verified on the way (Garage still
    // computes the part's SHA-256 itself, for the object's checksum).
    let part = s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(pattern(1000, 12)))
        .send()
        .await
        .unwrap();
    assert_eq!(part.checksum_sha256(), None, "{part:?}");
    // A value set by hand is sent, and verified, whatever the setting.
    let refused = s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(2)
        .checksum_sha256(WRONG_SHA256)
        .body(ByteStream::from(pattern(1000, 12)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&refused), "InvalidDigest", "{refused:?}");
    s3.abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn probe_a_streaming_body_goes_as_aws_chunked_with_a_trailing_checksum_and_is_accepted() {
    let garage = TestGarage::shared();
    let bucket = garage.bucket();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, pattern(3 * MIB + 17, 13)).unwrap();
    // A body of unknown content (a file): the SDK cannot put its checksum in a header, so it
    // sends STREAMING-UNSIGNED-PAYLOAD-TRAILER, the checksum after the data.
    let body = ByteStream::from_path(&file).await.unwrap();
    client(garage)
        .put_object()
        .bucket(bucket)
        .key("probe/streamed")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(get(&client(garage), bucket, "probe/streamed").await == pattern(3 * MIB + 17, 13));
}

#[tokio::test]
async fn probe_garage_2_5_ignores_if_none_match_on_put_object() {
    let garage = TestGarage::shared();
    let s3 = client(garage);
    let bucket = garage.bucket();
    put(&s3, bucket, "probe/inm-put", b"first".to_vec()).await;
    // On AWS S3 this is 412 PreconditionFailed. Garage 2.5.0 overwrites.
    let result = s3
        .put_object()
        .bucket(bucket)
        .key("probe/inm-put")
        .if_none_match("*")
        .body(ByteStream::from_static(b"second"))
        .send()
        .await;
    assert!(
        result.is_ok(),
        "If-None-Match on PutObject is enforced now: {result:?}"
    );
    assert_eq!(get(&s3, bucket, "probe/inm-put").await, b"second");
}

#[tokio::test]
async fn probe_garage_2_5_ignores_if_none_match_on_complete_multipart_upload() {
    let garage = TestGarage::shared();
    let s3 = client(garage);
    let bucket = garage.bucket();
    let key = "probe/inm-mpu";
    put(&s3, bucket, key, b"first".to_vec()).await;
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let part = s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from_static(b"second"))
        .send()
        .await
        .unwrap();
    // On AWS S3 this is 412 PreconditionFailed. Garage 2.5.0 overwrites.
    let result = s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .if_none_match("*")
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await;
    assert!(
        result.is_ok(),
        "If-None-Match on CompleteMultipartUpload is enforced now: {result:?}"
    );
    assert_eq!(get(&s3, bucket, key).await, b"second");
}

#[tokio::test]
async fn probe_garage_2_5_ignores_if_match_on_delete_but_honours_it_on_get() {
    let garage = TestGarage::shared();
    let s3 = client(garage);
    let bucket = garage.bucket();
    let key = "probe/if-match";
    put(&s3, bucket, key, b"first".to_vec()).await;
    let old = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let old_etag = old.e_tag().unwrap().to_owned();
    put(&s3, bucket, key, b"second".to_vec()).await;
    // A read of a version that is gone: 412.
    let stale = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .if_match(&old_etag)
        .send()
        .await
        .unwrap_err();
    // 412, with no body (so no error code): match the status.
    let status = stale.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(412), "{stale:?}");
    // A delete of a version that is gone: Garage 2.5.0 deletes anyway.
    let result = s3
        .delete_object()
        .bucket(bucket)
        .key(key)
        .if_match(&old_etag)
        .send()
        .await;
    assert!(
        result.is_ok(),
        "If-Match on DeleteObject is enforced now: {result:?}"
    );
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&head), "NotFound", "{head:?}");
}

#[tokio::test]
async fn probe_garage_2_5_has_no_minimum_part_size() {
    let garage = TestGarage::shared();
    let s3 = client(garage);
    let bucket = garage.bucket();
    let key = "probe/tiny-parts";
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (number, body) in [(1, &b"a"[..]), (2, &b"bc"[..])] {
        let part = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    // AWS S3 refuses this (EntityTooSmall: every part but the last must be 5 MiB or more).
    complete(&s3, bucket, key, upload_id, parts).await;
    assert_eq!(get(&s3, bucket, key).await, b"abc");
}

#[tokio::test]
async fn probe_upload_part_copy_refuses_a_source_garage_keeps_inline() {
    let garage = TestGarage::shared();
    let s3 = client(garage);
    let bucket = garage.bucket();
    // Objects under 3 KiB live in Garage's metadata, not in data blocks.
    put(&s3, bucket, "probe/inline-source", pattern(3000, 11)).await;
    put(&s3, bucket, "probe/block-source", pattern(3100, 11)).await;
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key("probe/copy-small")
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let copy = |number: i32, source: &str| {
        s3.upload_part_copy()
            .bucket(bucket)
            .key("probe/copy-small")
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(format!("{bucket}/{source}"))
            .copy_source_range("bytes=0-99")
            .send()
    };
    let refused = copy(1, "probe/inline-source").await.unwrap_err();
    assert_eq!(code(&refused), "InvalidRequest", "{refused:?}");
    copy(1, "probe/block-source").await.unwrap();
    s3.abort_multipart_upload()
        .bucket(bucket)
        .key("probe/copy-small")
        .upload_id(upload_id)
        .send()
        .await
        .unwrap();
}
