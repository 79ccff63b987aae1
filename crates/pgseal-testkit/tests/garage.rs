//! The Garage S3 engine the testkit starts: it serves S3 with the credentials it hands out,
//! and nothing of it remains afterwards.

mod common;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, RequestChecksumCalculation, SharedCredentialsProvider};
use aws_sdk_s3::primitives::ByteStream;
use common::{alive, processes_related_to};
use pgseal_testkit::TestGarage;

/// An S3 client for `garage`: static credentials, path-style addressing, and the SDK's
/// request checksums as `checksums` says. Built from an `SdkConfig` (as the S3 repository is)
/// but without reading the environment or `~/.aws`: the test must not depend on them.
fn client_with(garage: &TestGarage, checksums: RequestChecksumCalculation) -> Client {
    let credentials = Credentials::new(
        garage.access_key_id(),
        garage.secret_access_key(),
        None,
        None,
        "pgseal-testkit",
    );
    let shared = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(garage.endpoint())
        .region(Region::new(garage.region().to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build();
    let config = aws_sdk_s3::config::Builder::from(&shared)
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
