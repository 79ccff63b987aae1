//! The Garage S3 engine the testkit starts: it serves S3 with the credentials it hands out,
//! and nothing of it remains afterwards.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, RequestChecksumCalculation, SharedCredentialsProvider};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::{alive, assert_cleaned_up, processes_related_to, read_child_values, spawn_child_test};
use pgseal_testkit::{BucketPermissions, GarageKey, TestGarage, TestkitError};

/// The shared AWS configuration for `garage` with its key: endpoint, region, static
/// credentials. Built directly (as the front end builds the one it hands the S3 repository),
/// not loaded: the tests must not depend on the environment or `~/.aws`.
fn shared_config(garage: &TestGarage) -> SdkConfig {
    let credentials = Credentials::new(
        garage.access_key_id(),
        garage.secret_access_key(),
        None,
        None,
        "pgseal-testkit",
    );
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(garage.endpoint())
        .region(Region::new(garage.region().to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

/// An S3 client for `garage`: path-style addressing, and the SDK's request checksums as
/// `checksums` says.
fn client_with(garage: &TestGarage, checksums: RequestChecksumCalculation) -> Client {
    let config = aws_sdk_s3::config::Builder::from(&shared_config(garage))
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
async fn own_buckets_and_keys_with_fewer_rights() {
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
    assert!(
        [
            "SignatureDoesNotMatch",
            "AccessDenied",
            "InvalidAccessKeyId"
        ]
        .contains(&code(&refused).as_str()),
        "{refused:?}"
    );
}

fn client_for_key(garage: &TestGarage, key: &GarageKey) -> Client {
    let credentials = Credentials::new(
        &key.access_key_id,
        &key.secret_access_key,
        None,
        None,
        "pgseal-testkit",
    );
    let config = aws_sdk_s3::config::Builder::from(&shared_config(garage))
        .credentials_provider(credentials)
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
