//! A repository in an S3 bucket (any S3-compatible engine): `s3://BUCKET/PREFIX`.
//!
//! # The client
//!
//! `aws-sdk-s3` (with `aws-types` for the configuration the front end builds): it has every
//! request this needs — multipart upload with abort (a backup streams into one, no spool file),
//! ranged GET (headers without downloading), ranged `UploadPartCopy` (a rewrap copies a file's
//! unchanged bytes server-side), conditional requests (`If-None-Match: *` to create,
//! `If-Match` to read, copy, replace and delete only the version that was checked), a custom
//! endpoint with path-style or virtual-host addressing, and the standard credential chain
//! (environment, profiles, SSO, instance roles — read by the front end with `aws-config`,
//! never here: ops reads no environment variable). `object_store` has no public ranged part
//! copy. The SDK is asynchronous; the operations are not: a [`S3Connection`] owns a small
//! tokio runtime (one worker thread) and blocks on it. Call it from synchronous code (a
//! blocking thread, not from inside an async task).
//!
//! The SDK's own default request checksums (which some S3-compatible engines reject) are
//! turned off (`WhenRequired`); pgseal sends its own per-part CRC32C checksums where a probe
//! (once per bucket and connection: [`S3Repository::probe`]) showed that the engine checks
//! them — it must refuse a part whose checksum is wrong, so a flipped bit on the wire fails
//! the upload. Where the engine does not check them nothing is sent, and the SigV4 signature's
//! payload hash (which every engine checks) is the only check in transit.
//!
//! # Objects
//!
//! An object's [`Version`] is its ETag and size; reads, copies and replacements of a version
//! send `If-Match`, so an object replaced meanwhile is refused ([`RepoError::Changed`]).
//!
//! - **create → commit**: [`Repository::create`] returns a writer that fills one part buffer
//!   ([`S3Settings::part_size`], 8 MiB by default) and uploads each full part while the next
//!   fills: at most two parts are in memory, and the same two buffers serve the whole upload
//!   (a part's buffer comes back to be filled again once its request is done). A backup smaller than one part is one `PutObject`
//!   at commit. Nothing is visible until the commit completes the upload; dropping the writer
//!   (a failed backup) aborts it, and a killed process leaves only an incomplete upload, which
//!   [`S3Repository::abort_incomplete`] removes (`pgseal repo cleanup`).
//! - **never overwritten**: the key is chosen free (by `HEAD`; `-2`, `-3`… as locally) when
//!   the upload starts, checked free again just before completing, and the completion (or
//!   `PutObject`) carries `If-None-Match: *`. Engines that enforce the condition (AWS S3,
//!   MinIO) close every race; on engines that ignore it (Garage 2.5) a writer that takes the
//!   same key between the last `HEAD` and the completion — a few milliseconds — would be
//!   overwritten. Backup names carry the time to the millisecond, so only two writers of the
//!   same database in the same millisecond could meet there. A key taken at the last check
//!   fails the commit ([`RepoError::Taken`]) and aborts the upload: the key was fixed when the
//!   upload started and S3 cannot rename.
//!
//! # Rewrapping
//!
//! S3 objects cannot be written in place, and S3 has no rename. A rewrap (and a legacy
//! header's replacement) makes a multipart upload *onto the object's own key*: part 1 is the
//! new prelude — the rewrap's writes all applied in memory to the first bytes, read by a
//! ranged `GET` with `If-Match` — extended to the 5 MiB minimum part size, and the rest is
//! copied from the object itself by ranged `UploadPartCopy` with `x-amz-copy-source-if-match`
//! (256 MiB parts, four at a time; larger parts, up to 5 GiB, for a file that would need more
//! than 10,000). Completing the upload replaces the object atomically: at every instant the
//! key holds a complete object, the old one until the completion and the new one after it,
//! and no temporary object is ever made. Nothing of the old wrapping is left at any key; a
//! process killed before the completion leaves the old object and an incomplete upload
//! (cleaned up like a killed backup). The client sends 5 MiB and one request per copied part
//! whatever the size: what crosses the network does not grow with the file. The engine's own
//! work may: Garage reads every copied byte to compute the parts' MD5 ETags (on a 2-core test
//! machine: 1 MiB in 0.05 s, 64 MiB in 0.3 s, 1 GiB in 3.2 s, against 7 s to upload 1 GiB),
//! and the rewrite of an object below the minimum part size is a whole GET and PUT of at most
//! 5 MiB. If the bucket keeps versions,
//! the replaced version is deleted by its version id right after; if that fails the
//! rewrap fails with [`RepoError::OldVersionKept`], naming the version that still holds the
//! old wrapping. An object smaller than one minimum part is simply read, rewritten and put
//! (`If-Match`) whole.
//!
//! Crash points: `rewrap:s3:assembled` (every part uploaded or copied, before the completion)
//! and `rewrap:s3:replaced` (after it); the rewrap operation's `rewrap:start` comes before.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, mpsc};
use std::time::SystemTime;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use pgseal_core::v2::Rewrap;
use tokio::task::JoinHandle;

use super::{
    Listed, Listing, Location, NewObject, Object, RepoError, Repository, Unfinished, Version,
};
use crate::crashpoint;
use crate::error::{Error, Result};

/// The smallest part S3 accepts (but for an upload's last part).
pub const MIN_PART: usize = 5 * 1024 * 1024;
/// The largest part S3 accepts, uploaded or copied.
pub const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
/// The part size when the front end names none.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// The most parts one upload may have.
const MAX_PARTS: u64 = 10_000;
/// The size of a rewrap's copied parts (larger when a file would need more than
/// [`MAX_PARTS`]; at most [`MAX_PART`]).
const COPY_PART: u64 = 256 * 1024 * 1024;
/// How many parts a rewrap copies at once.
const COPY_CONCURRENCY: usize = 4;

/// How bucket names become URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Addressing {
    /// `https://ENDPOINT/BUCKET/KEY`: what most S3-compatible engines on a custom endpoint
    /// (Garage, MinIO) expect.
    Path,
    /// `https://BUCKET.ENDPOINT/KEY`: AWS S3's own style.
    VirtualHost,
    /// Path style on a custom endpoint or for a bucket whose name holds a `.`; virtual-host
    /// style otherwise.
    #[default]
    Auto,
}

/// What a front end passes in to reach object stores: the AWS configuration it read (the CLI:
/// `aws_config` — `AWS_ENDPOINT_URL`, `AWS_REGION`, the credential chain), how to address
/// buckets, and the part size of uploads.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Region, endpoint, credentials, retries, timeouts.
    pub sdk: aws_types::SdkConfig,
    /// Path or virtual-host addressing.
    pub addressing: Addressing,
    /// The size of an upload's parts, at least [`MIN_PART`] (5 MiB) and at most 5 GiB; an
    /// upload holds at most two in memory.
    pub part_size: usize,
}

impl S3Settings {
    /// Settings from `sdk`, with automatic addressing and [`DEFAULT_PART_SIZE`].
    pub fn new(sdk: aws_types::SdkConfig) -> Self {
        S3Settings {
            sdk,
            addressing: Addressing::Auto,
            part_size: DEFAULT_PART_SIZE,
        }
    }
}

/// What a probe found an engine does with per-part checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    /// It refuses a part whose CRC32C checksum is wrong: pgseal sends them.
    Crc32c,
    /// It refuses them, or accepts wrong ones: pgseal sends none.
    Unchecked,
}

/// A connection to object stores: clients for both addressing styles, the runtime they run on,
/// and what probes found per bucket. Shared by every [`S3Repository`] made from it.
pub struct S3Connection {
    runtime: tokio::runtime::Runtime,
    path_style: Client,
    virtual_host: Client,
    addressing: Addressing,
    custom_endpoint: Option<String>,
    part_size: usize,
    probed: Mutex<HashMap<String, Checksums>>,
}

impl std::fmt::Debug for S3Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Connection")
            .field("endpoint", &self.custom_endpoint)
            .field("addressing", &self.addressing)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl S3Connection {
    /// A connection with `settings`. A part size out of range is refused.
    pub fn new(settings: S3Settings) -> Result<Arc<Self>> {
        Self::build(runtime()?, settings)
    }

    /// A connection whose AWS configuration `load` reads — on the connection's own runtime,
    /// so that what the configuration holds (its HTTP client, credential providers) runs where
    /// it will be used. The front end's loader reads the environment (`aws_config`); this
    /// crate reads none.
    pub fn load<F>(load: F, addressing: Addressing, part_size: usize) -> Result<Arc<Self>>
    where
        F: Future<Output = aws_types::SdkConfig>,
    {
        let runtime = runtime()?;
        let sdk = runtime.block_on(load);
        Self::build(
            runtime,
            S3Settings {
                sdk,
                addressing,
                part_size,
            },
        )
    }

    fn build(runtime: tokio::runtime::Runtime, settings: S3Settings) -> Result<Arc<Self>> {
        if settings.part_size < MIN_PART || settings.part_size as u64 > MAX_PART {
            return Err(Error::usage(format!(
                "a part size of {} bytes is out of range: S3 parts are 5 MiB to 5 GiB",
                settings.part_size
            )));
        }
        let client = |path_style: bool| {
            let config = aws_sdk_s3::config::Builder::from(&settings.sdk)
                .force_path_style(path_style)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
                .build();
            Client::from_conf(config)
        };
        Ok(Arc::new(S3Connection {
            path_style: client(true),
            virtual_host: client(false),
            runtime,
            addressing: settings.addressing,
            custom_endpoint: settings.sdk.endpoint_url().map(str::to_owned),
            part_size: settings.part_size,
            probed: Mutex::new(HashMap::new()),
        }))
    }

    /// The client for `bucket`, by the addressing style.
    fn client(&self, bucket: &str) -> &Client {
        let path = match self.addressing {
            Addressing::Path => true,
            Addressing::VirtualHost => false,
            Addressing::Auto => self.custom_endpoint.is_some() || bucket.contains('.'),
        };
        if path {
            &self.path_style
        } else {
            &self.virtual_host
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The endpoint as shown in messages.
    fn endpoint(&self) -> String {
        self.custom_endpoint
            .clone()
            .unwrap_or_else(|| "the AWS S3 endpoint".to_owned())
    }
}

/// The runtime a connection's requests run on: one worker thread. The caller's own thread
/// drives what it blocks on; the worker runs the connections and an upload's part in flight
/// (one at a time) or a rewrap's concurrent copies (which wait on the engine). A second
/// worker only added its stack and its allocator heap to the resident set.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pgseal-s3")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the object store client", e))
}

/// An upload that was started and never completed nor aborted: a killed backup's, or a killed
/// rewrap's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// The key it would have completed onto.
    pub location: Location,
    /// The engine's id for it.
    pub upload_id: String,
    /// When it was started, as the engine says.
    pub initiated: Option<SystemTime>,
}

/// A prefix of a bucket (see the module docs).
#[derive(Debug, Clone)]
pub struct S3Repository {
    conn: Arc<S3Connection>,
    bucket: String,
    /// Empty, or ending with `/`.
    prefix: String,
}

/// What went wrong talking to the engine, before it is said in terms of an operation.
#[derive(Debug)]
enum Fault {
    /// No answer: connection refused, DNS, TLS, timeout.
    Unreachable(String),
    /// An answer with an error status.
    Status {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// Anything else (a request that could not be built, an unreadable answer).
    Other(String),
}

impl Fault {
    fn from_sdk<E, R>(e: SdkError<E, R>) -> Fault
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + HasStatus,
    {
        match &e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                Fault::Unreachable(chain(&e))
            }
            SdkError::ServiceError(ctx) => Fault::Status {
                status: ctx.raw().status_code(),
                code: ctx.err().code().map(str::to_owned),
                message: ctx.err().message().map(str::to_owned),
            },
            SdkError::ResponseError(ctx) => Fault::Status {
                status: ctx.raw().status_code(),
                code: None,
                message: Some(chain(&e)),
            },
            _ => Fault::Other(chain(&e)),
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Fault::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn code(&self) -> Option<&str> {
        match self {
            Fault::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self.code(), Some("NoSuchKey" | "NotFound"))
            || (self.status() == Some(404) && self.code() != Some("NoSuchBucket"))
    }

    fn is_precondition(&self) -> bool {
        self.status() == Some(412) || self.code() == Some("PreconditionFailed")
    }

    fn is_not_implemented(&self) -> bool {
        self.status() == Some(501) || self.code() == Some("NotImplemented")
    }

    /// The error, said of `doing` (e.g. "uploading s3://b/k") on `repo`.
    fn into_error(self, repo: &S3Repository, doing: &str) -> Error {
        let doing = doing.to_owned();
        match self {
            Fault::Unreachable(reason) => RepoError::Unreachable {
                endpoint: repo.conn.endpoint(),
                doing,
                reason,
            }
            .into(),
            Fault::Status {
                status,
                code,
                message,
            } => match code.as_deref() {
                Some("NoSuchBucket") => RepoError::NoSuchBucket {
                    bucket: repo.bucket.clone(),
                    endpoint: repo.conn.endpoint(),
                }
                .into(),
                Some(
                    c @ ("InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken"
                    | "TokenRefreshRequired"),
                ) => RepoError::BadCredentials {
                    doing,
                    code: c.to_owned(),
                }
                .into(),
                _ if status == 403 => RepoError::AccessDenied {
                    doing,
                    code: code.unwrap_or_default(),
                    message: message.unwrap_or_default(),
                }
                .into(),
                _ => RepoError::Engine {
                    doing,
                    status,
                    code: code.unwrap_or_default(),
                    message: message.unwrap_or_default(),
                }
                .into(),
            },
            Fault::Other(reason) => RepoError::Engine {
                doing,
                status: 0,
                code: String::new(),
                message: reason,
            }
            .into(),
        }
    }
}

/// The status code of a raw answer (for [`Fault::from_sdk`]).
trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// An error and its sources, in one line (no secret is in an SDK error's text: credentials are
/// never part of it).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// An object's ETag and size, as a [`Version`]: `SIZE:ETAG`.
fn version_of(etag: &str, size: u64) -> Version {
    Version::new(format!("{size}:{etag}"))
}

/// A CRC32C checksum as S3 headers spell it: base64 of the big-endian value.
fn crc32c(bytes: &[u8]) -> String {
    // CRC-32C is CRC-32/ISCSI; the value fits 32 bits.
    let value = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32;
    BASE64.encode(value.to_be_bytes())
}

/// `name`, `STEM-2.EXT`, `STEM-3.EXT`…: the n-th candidate name for a new object.
fn variant(name: &str, n: u32) -> String {
    if n == 1 {
        return name.to_owned();
    }
    match name.rfind('.').filter(|&i| i > 0) {
        Some(i) => format!("{}-{n}{}", &name[..i], &name[i..]),
        None => format!("{name}-{n}"),
    }
}

impl S3Repository {
    /// The objects under `prefix` in `bucket` (the prefix is a folder: `site1/backups` and
    /// `site1/backups/` are the same; empty: the whole bucket). Names are checked like a
    /// location's ([`Location::s3`]).
    pub fn new(conn: Arc<S3Connection>, bucket: &str, prefix: &str) -> Result<Self> {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        // The prefix and a name must make a valid location.
        Location::s3(bucket, &format!("{prefix}x")).map_err(|e| Error::usage(e.to_string()))?;
        Ok(S3Repository {
            conn,
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// The repository `url` names: `s3://BUCKET/PREFIX`.
    pub fn from_url(conn: Arc<S3Connection>, url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::usage(format!("{url:?} is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        Self::new(conn, bucket, prefix)
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix: empty, or ending with `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The connection it uses.
    pub fn connection(&self) -> &Arc<S3Connection> {
        &self.conn
    }

    fn client(&self) -> &Client {
        self.conn.client(&self.bucket)
    }

    fn location_of_key(&self, key: &str) -> Result<Location> {
        Location::s3(&self.bucket, key).map_err(|e| Error::invalid(e.to_string()))
    }

    /// The key `location` names in this repository: refused if it is another bucket's, another
    /// prefix's, or not plain.
    fn key_of(&self, location: &Location) -> Result<String> {
        let elsewhere = || {
            Error::from(RepoError::Elsewhere {
                location: location.clone(),
                repository: self.describe(),
            })
        };
        let (bucket, key) = location.s3_object().ok_or_else(elsewhere)?.map_err(|e| {
            Error::from(RepoError::NotPlain {
                location: location.clone(),
                why: e.reason,
            })
        })?;
        if bucket != self.bucket {
            return Err(elsewhere());
        }
        match key.strip_prefix(&self.prefix) {
            Some(name) if !name.contains('/') => Ok(key),
            _ => Err(RepoError::Outside {
                location: location.clone(),
                repository: self.describe(),
            }
            .into()),
        }
    }

    /// `HEAD` of `key`: its ETag, size and version id; `None` if there is none.
    fn head(&self, key: &str) -> Result<Option<(String, u64, Option<String>)>> {
        let answer = self.conn.block_on(
            self.client()
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
        match answer.map_err(Fault::from_sdk) {
            Ok(head) => Ok(Some((
                head.e_tag().unwrap_or_default().to_owned(),
                head.content_length().unwrap_or(0).max(0) as u64,
                head.version_id().map(str::to_owned),
            ))),
            Err(f) if f.is_not_found() => Ok(None),
            Err(f) => Err(f.into_error(self, &format!("reading s3://{}/{key}", self.bucket))),
        }
    }

    /// What the engine does with per-part checksums (probed once per bucket and connection):
    /// an upload is started with CRC32C, a part with a wrong checksum must be refused and the
    /// same part with the right one accepted; the upload is aborted.
    pub fn probe(&self) -> Result<Checksums> {
        if let Some(found) = self
            .conn
            .probed
            .lock()
            .expect("never poisoned")
            .get(&self.bucket)
        {
            return Ok(*found);
        }
        let key = format!("{}.pgseal-probe-{}", self.prefix, random_tag()?);
        let doing = format!("probing s3://{}/{}", self.bucket, self.prefix);
        let client = self.client().clone();
        let bucket = self.bucket.clone();
        let result = self.conn.block_on(async move {
            let started = client
                .create_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .send()
                .await;
            let upload_id = match started.map_err(Fault::from_sdk) {
                Ok(out) => out.upload_id().unwrap_or_default().to_owned(),
                // Refused outright: checksums are not for this engine.
                Err(f @ Fault::Status { status, .. }) if (400..500).contains(&status) => {
                    if f.code() == Some("NoSuchBucket") || status == 403 {
                        return Err(f);
                    }
                    return Ok(Checksums::Unchecked);
                }
                Err(f) if f.is_not_implemented() => return Ok(Checksums::Unchecked),
                Err(f) => return Err(f),
            };
            let body = b"pgseal checksum probe".as_slice();
            let part = |checksum: String| {
                client
                    .upload_part()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .part_number(1)
                    .checksum_crc32_c(checksum)
                    .body(ByteStream::from(body.to_vec()))
                    .send()
            };
            let wrong = part(crc32c(b"not the body")).await.map_err(Fault::from_sdk);
            let found = match wrong {
                Ok(_) => Ok(Checksums::Unchecked),
                Err(Fault::Status { status, .. }) if (400..500).contains(&status) => {
                    match part(crc32c(body)).await.map_err(Fault::from_sdk) {
                        Ok(_) => Ok(Checksums::Crc32c),
                        Err(Fault::Status { status, .. }) if (400..500).contains(&status) => {
                            Ok(Checksums::Unchecked)
                        }
                        Err(f) => Err(f),
                    }
                }
                Err(f) => Err(f),
            };
            let _ = client
                .abort_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await;
            found
        });
        let found = result.map_err(|f| f.into_error(self, &doing))?;
        self.conn
            .probed
            .lock()
            .expect("never poisoned")
            .insert(self.bucket.clone(), found);
        Ok(found)
    }

    /// The first free key among `name`'s variants (`-2`, `-3`…).
    fn free_key(&self, name: &str) -> Result<String> {
        for n in 1..1000 {
            let key = format!("{}{}", self.prefix, variant(name, n));
            if self.head(&key)?.is_none() {
                return Ok(key);
            }
        }
        Err(Error::usage(format!(
            "no free name for {name} in {}",
            self.describe()
        )))
    }

    /// Every upload under the prefix that was started and neither completed nor aborted.
    pub fn incomplete_uploads(&self) -> Result<Vec<Incomplete>> {
        let doing = format!("listing the unfinished uploads in {}", self.describe());
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .conn
                .block_on(
                    self.client()
                        .list_multipart_uploads()
                        .bucket(&self.bucket)
                        .prefix(&self.prefix)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send(),
                )
                .map_err(|e| Fault::from_sdk(e).into_error(self, &doing))?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let Ok(location) = self.location_of_key(key) else {
                    continue;
                };
                found.push(Incomplete {
                    location,
                    upload_id: id.to_owned(),
                    initiated: upload
                        .initiated()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(found)
    }

    /// Aborts one unfinished upload.
    pub fn abort_upload(&self, upload: &Incomplete) -> Result<()> {
        let key = self.key_of(&upload.location)?;
        self.conn
            .block_on(
                self.client()
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload.upload_id)
                    .send(),
            )
            .map(drop)
            .or_else(|e| match Fault::from_sdk(e) {
                // Gone already (completed or aborted meanwhile): nothing left to abort.
                f if f.code() == Some("NoSuchUpload") || f.status() == Some(404) => Ok(()),
                f => Err(f.into_error(
                    self,
                    &format!("aborting an unfinished upload to {}", upload.location),
                )),
            })
    }

    /// Aborts every unfinished upload started before `before` (those the engine gives no start
    /// time are left alone), each on its own: the caller audits each one.
    pub fn abort_incomplete(&self, before: SystemTime) -> Result<Vec<(Incomplete, Result<()>)>> {
        Ok(self
            .incomplete_uploads()?
            .into_iter()
            .filter(|u| u.initiated.is_some_and(|t| t < before))
            .map(|u| {
                let result = self.abort_upload(&u);
                (u, result)
            })
            .collect())
    }

    /// A ranged `GET` of `key` (`If-Match: etag` when given): the bytes of `range`, fewer at
    /// the object's end, none past it.
    fn get_range(
        &self,
        key: &str,
        location: &Location,
        etag: Option<&str>,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let doing = format!("reading {location}");
        let client = self.client().clone();
        let request = client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={start}-{}", start + len - 1))
            .set_if_match(etag.map(str::to_owned));
        let result = self.conn.block_on(async move {
            let out = request.send().await.map_err(Fault::from_sdk)?;
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| Fault::Unreachable(chain(&e)))?;
            Ok::<_, Fault>(bytes.into_bytes().to_vec())
        });
        match result {
            Ok(mut bytes) => {
                // An engine that ignores the range would send everything.
                bytes.truncate(len as usize);
                Ok(bytes)
            }
            Err(f) if f.status() == Some(416) || f.code() == Some("InvalidRange") => Ok(Vec::new()),
            Err(f) if f.is_not_found() => Err(RepoError::NotFound(location.clone()).into()),
            Err(f) if f.is_precondition() => Err(RepoError::Changed(location.clone()).into()),
            Err(f) => Err(f.into_error(self, &doing)),
        }
    }

    /// Replaces the object at `key` (version `etag`, `size` bytes) by `head` followed by its
    /// own bytes from `keep_from` on (see the module docs, "Rewrapping").
    fn rebuild(
        &self,
        location: &Location,
        key: &str,
        (etag, size): (&str, u64),
        old_version_id: Option<String>,
        mut head: Vec<u8>,
        keep_from: u64,
    ) -> Result<()> {
        let doing = format!("rewriting {location}");
        let changed = || Error::from(RepoError::Changed(location.clone()));
        let fail = |f: Fault| -> Error {
            if f.is_precondition() {
                changed()
            } else if f.is_not_found() {
                RepoError::NotFound(location.clone()).into()
            } else {
                f.into_error(self, &doing)
            }
        };
        let keep_from = keep_from.min(size);
        let new_size = head.len() as u64 + (size - keep_from);
        // Part 1: the head and enough of what follows to reach the minimum part size.
        let fill = (MIN_PART as u64).saturating_sub(head.len() as u64);
        let direct = keep_from + fill.min(size - keep_from);
        let tail = self.get_range(key, location, Some(etag), keep_from, direct - keep_from)?;
        if tail.len() as u64 != direct - keep_from {
            return Err(changed());
        }
        head.extend_from_slice(&tail);
        drop(tail);
        let client = self.client().clone();
        let bucket = self.bucket.clone();
        if new_size < MIN_PART as u64 || direct == size {
            // Small: one PUT of the whole new object, if the old one is still the one read.
            let body = ByteStream::from(head);
            self.conn
                .block_on(
                    client
                        .put_object()
                        .bucket(&bucket)
                        .key(key)
                        .if_match(etag)
                        .body(body)
                        .send(),
                )
                .map_err(|e| fail(Fault::from_sdk(e)))?;
            crashpoint::reached("rewrap:s3:replaced");
            return self.drop_old_version(location, key, old_version_id);
        }
        // No per-part checksums here: copied parts carry none on every engine, and an upload
        // that asks for them needs them on every part.
        let source = format!("{bucket}/{}", url_path(key));
        let etag = etag.to_owned();
        let key_owned = key.to_owned();
        let upload_id = self
            .conn
            .block_on(
                client
                    .create_multipart_upload()
                    .bucket(&bucket)
                    .key(key)
                    .send(),
            )
            .map_err(|e| fail(Fault::from_sdk(e)))?
            .upload_id()
            .unwrap_or_default()
            .to_owned();
        let assembled = self.conn.block_on({
            let (client, bucket, key, upload_id, etag) = (
                client.clone(),
                bucket.clone(),
                key_owned.clone(),
                upload_id.clone(),
                etag.clone(),
            );
            async move {
                let first = client
                    .upload_part()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .part_number(1)
                    .body(ByteStream::from(head))
                    .send()
                    .await
                    .map_err(Fault::from_sdk)?;
                let mut parts = vec![
                    CompletedPart::builder()
                        .part_number(1)
                        .set_e_tag(first.e_tag().map(str::to_owned))
                        .build(),
                ];
                // The rest in copied parts, a few at a time: engines that read what they copy
                // (Garage computes each part's MD5) work on several at once.
                let copy_part = COPY_PART
                    .max((size - direct).div_ceil(MAX_PARTS - 1))
                    .min(MAX_PART);
                let mut copies = tokio::task::JoinSet::new();
                let mut from = direct;
                let mut number = 2;
                while from < size || !copies.is_empty() {
                    while from < size && copies.len() < COPY_CONCURRENCY {
                        let to = (from + copy_part).min(size);
                        let request = client
                            .upload_part_copy()
                            .bucket(&bucket)
                            .key(&key)
                            .upload_id(&upload_id)
                            .part_number(number)
                            .copy_source(&source)
                            .copy_source_range(format!("bytes={from}-{}", to - 1))
                            .copy_source_if_match(&etag);
                        copies.spawn(async move {
                            let copied = request.send().await.map_err(Fault::from_sdk)?;
                            let result = copied.copy_part_result();
                            Ok::<_, Fault>(
                                CompletedPart::builder()
                                    .part_number(number)
                                    .set_e_tag(result.and_then(|r| r.e_tag()).map(str::to_owned))
                                    .build(),
                            )
                        });
                        from = to;
                        number += 1;
                    }
                    if let Some(done) = copies.join_next().await {
                        parts.push(done.map_err(|e| Fault::Other(e.to_string()))??);
                    }
                }
                parts.sort_by_key(|p| p.part_number());
                Ok::<_, Fault>(parts)
            }
        });
        let abort = || {
            let _ = self.conn.block_on(
                client
                    .abort_multipart_upload()
                    .bucket(&bucket)
                    .key(&key_owned)
                    .upload_id(&upload_id)
                    .send(),
            );
        };
        let parts = match assembled {
            Ok(parts) => parts,
            Err(f) => {
                abort();
                return Err(fail(f));
            }
        };
        crashpoint::reached("rewrap:s3:assembled");
        let completed = self.conn.block_on(
            client
                .complete_multipart_upload()
                .bucket(&bucket)
                .key(&key_owned)
                .upload_id(&upload_id)
                .if_match(&etag)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send(),
        );
        if let Err(e) = completed {
            abort();
            return Err(fail(Fault::from_sdk(e)));
        }
        crashpoint::reached("rewrap:s3:replaced");
        self.drop_old_version(location, key, old_version_id)
    }

    /// In a bucket that keeps versions, deletes the replaced version (its id, from the `HEAD`
    /// before the rewrite): it still holds the old wrapping.
    fn drop_old_version(
        &self,
        location: &Location,
        key: &str,
        version_id: Option<String>,
    ) -> Result<()> {
        let Some(id) = version_id.filter(|v| !v.is_empty() && v != "null") else {
            return Ok(());
        };
        self.conn
            .block_on(
                self.client()
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .version_id(&id)
                    .send(),
            )
            .map(drop)
            .map_err(|e| {
                let f = Fault::from_sdk(e);
                RepoError::OldVersionKept {
                    location: location.clone(),
                    version_id: id.clone(),
                    reason: f.into_error(self, "deleting it").to_string(),
                }
                .into()
            })
    }

    /// The object at `location`, if it is still `expected`: its key, ETag, size, version id.
    fn checked(
        &self,
        location: &Location,
        expected: &Version,
    ) -> Result<(String, (String, u64), Option<String>)> {
        let key = self.key_of(location)?;
        let (etag, size, version_id) = self
            .head(&key)?
            .ok_or_else(|| Error::from(RepoError::NotFound(location.clone())))?;
        if version_of(&etag, size) != *expected {
            return Err(RepoError::Changed(location.clone()).into());
        }
        Ok((key, (etag, size), version_id))
    }
}

/// A key as a copy source names it: each byte a URL path must escape, percent-encoded.
fn url_path(key: &str) -> String {
    const KEEP: &[u8] = b"-._~/!$&'()*+,;=:@";
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || KEEP.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A random tag for a probe's key.
fn random_tag() -> Result<String> {
    let mut bytes = [0u8; 8];
    pgseal_core::secret::fill_random(&mut bytes)?;
    Ok(hex::encode(bytes))
}

impl Repository for S3Repository {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn exists(&self) -> bool {
        self.conn
            .block_on(self.client().head_bucket().bucket(&self.bucket).send())
            .is_ok()
    }

    fn contains(&self, location: &Location) -> bool {
        self.key_of(location).is_ok()
    }

    fn location(&self, name: &str) -> Result<Location> {
        super::check_name(name)?;
        self.location_of_key(&format!("{}{name}", self.prefix))
    }

    fn create(&self, name: &str) -> Result<Box<dyn NewObject>> {
        // The name and the location it makes are checked now, not at the commit.
        self.location(name)?;
        Ok(Box::new(NewS3Object {
            repo: self.clone(),
            name: name.to_owned(),
            buffer: Vec::new(),
            buffers: PartBuffers::new(self.conn.part_size),
            upload: None,
            failed: false,
        }))
    }

    fn open(&self, location: &Location) -> Result<Option<Object>> {
        let key = self.key_of(location)?;
        let doing = format!("reading {location}");
        let answer = self.conn.block_on(
            self.client()
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send(),
        );
        let out = match answer.map_err(Fault::from_sdk) {
            Ok(out) => out,
            Err(f) if f.is_not_found() => return Ok(None),
            Err(f) => return Err(f.into_error(self, &doing)),
        };
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        let version = version_of(out.e_tag().unwrap_or_default(), size);
        let etag = out.e_tag().map(str::to_owned);
        Ok(Some(Object::new(
            self.location_of_key(&key)?,
            size,
            version,
            Box::new(BodyReader {
                conn: self.conn.clone(),
                body: out.body,
                chunk: Bytes::new(),
                shown: location.to_string(),
                client: self.client().clone(),
                bucket: self.bucket.clone(),
                key: key.clone(),
                etag,
                offset: 0,
                size,
                resumed: 0,
            }),
        )))
    }

    fn read_at(&self, location: &Location, offset: u64, len: usize) -> Result<Vec<u8>> {
        let key = self.key_of(location)?;
        self.get_range(&key, location, None, offset, len as u64)
    }

    fn apply_rewrap(&self, location: &Location, expected: &Version, plan: &Rewrap) -> Result<()> {
        let (key, (etag, size), version_id) = self.checked(location, expected)?;
        let end = plan
            .writes
            .iter()
            .map(|w| w.offset + w.bytes.len() as u64)
            .max()
            .unwrap_or(0);
        if end > size {
            return Err(Error::invalid(format!(
                "{location} is shorter than its prelude: the rewrap's writes end past it"
            )));
        }
        // The first bytes, with every write applied: the install and the wipe land together.
        let first = (MIN_PART as u64).max(end).min(size);
        let mut head = self.get_range(&key, location, Some(&etag), 0, first)?;
        if head.len() as u64 != first {
            return Err(RepoError::Changed(location.clone()).into());
        }
        for write in &plan.writes {
            let at = write.offset as usize;
            head[at..at + write.bytes.len()].copy_from_slice(&write.bytes);
        }
        self.rebuild(location, &key, (&etag, size), version_id, head, first)
    }

    fn replace_head(
        &self,
        location: &Location,
        expected: &Version,
        head: &[u8],
        keep_from: u64,
        _wipe: std::ops::Range<u64>,
    ) -> Result<()> {
        // The replaced object is reachable nowhere once replaced (a versioned bucket's old
        // version is deleted): there is nothing left to zero.
        let (key, (etag, size), version_id) = self.checked(location, expected)?;
        self.rebuild(
            location,
            &key,
            (&etag, size),
            version_id,
            head.to_vec(),
            keep_from,
        )
    }

    fn delete(&self, location: &Location, expected: Option<&Version>) -> Result<()> {
        let key = self.key_of(location)?;
        let (etag, size, _) = self
            .head(&key)?
            .ok_or_else(|| Error::from(RepoError::NotFound(location.clone())))?;
        if expected.is_some_and(|v| *v != version_of(&etag, size)) {
            return Err(RepoError::Changed(location.clone()).into());
        }
        let doing = format!("deleting {location}");
        let send = |conditional: bool| {
            self.conn
                .block_on(
                    self.client()
                        .delete_object()
                        .bucket(&self.bucket)
                        .key(&key)
                        .set_if_match((conditional && expected.is_some()).then(|| etag.clone()))
                        .send(),
                )
                .map(drop)
                .map_err(Fault::from_sdk)
        };
        match send(true) {
            Ok(()) => Ok(()),
            // An engine without conditional deletes: the HEAD above compared the version.
            Err(f) if f.is_not_implemented() => send(false).map_err(|f| f.into_error(self, &doing)),
            Err(f) if f.is_precondition() => Err(RepoError::Changed(location.clone()).into()),
            Err(f) if f.is_not_found() => Err(RepoError::NotFound(location.clone()).into()),
            Err(f) => Err(f.into_error(self, &doing)),
        }
    }

    fn list(&self) -> Result<Listing> {
        let doing = format!("listing {}", self.describe());
        let mut listing = Listing::default();
        let mut token = None::<String>;
        loop {
            let page = self
                .conn
                .block_on(
                    self.client()
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(&self.prefix)
                        .delimiter("/")
                        .set_continuation_token(token.clone())
                        .send(),
                )
                .map_err(|e| Fault::from_sdk(e).into_error(self, &doing))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let name = &key[self.prefix.len().min(key.len())..];
                if name.is_empty() {
                    continue; // a "folder" marker
                }
                match self.location_of_key(key) {
                    Ok(location) if super::check_name(name).is_ok() => {
                        listing.objects.push(Listed {
                            location,
                            size: object.size().unwrap_or(0).max(0) as u64,
                        })
                    }
                    // A key no location can name (a control character, a `..`): never read.
                    _ => {
                        if let Ok(l) = Location::parse(&format!(
                            "s3://{}/{}",
                            self.bucket,
                            url_path(&key.replace(|c: char| c.is_control(), "?"))
                        )) {
                            listing.other.push(l);
                        }
                    }
                }
            }
            for folder in page.common_prefixes() {
                if let Some(p) = folder.prefix()
                    && let Ok(l) = Location::parse(&format!("s3://{}/{}", self.bucket, url_path(p)))
                {
                    listing.other.push(l);
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        listing.partial = self
            .incomplete_uploads()?
            .into_iter()
            .map(|u| u.location)
            .collect();
        listing.objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(listing)
    }

    fn unfinished(&self) -> Result<Vec<Unfinished>> {
        Ok(self
            .incomplete_uploads()?
            .into_iter()
            .map(|u| Unfinished {
                location: u.location,
                id: u.upload_id,
                started: u.initiated,
            })
            .collect())
    }

    fn discard(&self, unfinished: &Unfinished) -> Result<()> {
        self.abort_upload(&Incomplete {
            location: unfinished.location.clone(),
            upload_id: unfinished.id.clone(),
            initiated: unfinished.started,
        })
    }
}

/// An object's body, read a chunk at a time as it arrives (the connection's flow control
/// bounds what is buffered). A body that breaks off — the connection dropped, the engine
/// restarted — is resumed where it stopped with a ranged GET of the same version (`If-Match` its
/// ETag), up to [`RESUMES`] times with a growing pause: a long restore survives a network blip,
/// and never reads two versions spliced together.
struct BodyReader {
    conn: Arc<S3Connection>,
    body: ByteStream,
    chunk: Bytes,
    shown: String,
    client: Client,
    bucket: String,
    key: String,
    etag: Option<String>,
    /// Bytes delivered so far.
    offset: u64,
    size: u64,
    resumed: u32,
}

/// How many times a broken-off body is resumed.
const RESUMES: u32 = 5;

impl BodyReader {
    /// Asks again for the rest of the object, from `offset`, of the same version.
    fn resume(&mut self, why: &str) -> io::Result<()> {
        if self.resumed >= RESUMES || self.etag.is_none() {
            return Err(io::Error::other(format!(
                "reading {}: {why} (at byte {} of {}; resumed {} times)",
                self.shown, self.offset, self.size, self.resumed
            )));
        }
        self.resumed += 1;
        std::thread::sleep(std::time::Duration::from_millis(250 << self.resumed));
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .range(format!("bytes={}-", self.offset))
            .set_if_match(self.etag.clone());
        match self.conn.block_on(request.send()).map_err(Fault::from_sdk) {
            // Only the rest, from exactly where it stopped: an engine that ignored the range
            // would splice the object's start in.
            Ok(out)
                if out
                    .content_range()
                    .is_some_and(|r| r.starts_with(&format!("bytes {}-", self.offset))) =>
            {
                self.body = out.body;
                Ok(())
            }
            Ok(_) => Err(io::Error::other(format!(
                "reading {}: the engine did not resume it at byte {} (it ignores ranges)",
                self.shown, self.offset
            ))),
            Err(f) if f.is_precondition() => Err(io::Error::other(format!(
                "reading {}: it changed while it was being read (at byte {})",
                self.shown, self.offset
            ))),
            // The engine may still be coming back: the next read resumes again.
            Err(_) => {
                self.body = ByteStream::from_static(b"");
                Ok(())
            }
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.conn.block_on(self.body.next()) {
                None if self.offset >= self.size => return Ok(0),
                None => self.resume("the body ended early")?,
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => self.resume(&chain(&e))?,
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        self.offset += n as u64;
        Ok(n)
    }
}

/// A multipart upload under way.
struct Upload {
    key: String,
    id: String,
    checksums: Checksums,
    parts: Vec<CompletedPart>,
    /// The part being uploaded while the next fills.
    in_flight: Option<JoinHandle<std::result::Result<CompletedPart, Fault>>>,
}

/// The part buffers of one upload. A part is sent from the buffer it was filled in, lent to
/// the request as its body (`Bytes` that own it, no copy); when the request has dropped the
/// body — on one of the runtime's threads — the buffer comes back here and is filled again.
/// So an upload allocates two buffers, the one being filled and the one being sent, and
/// frees them only when it ends. Allocating a new buffer for every part and freeing each on
/// the runtime's thread instead made the allocator (mimalloc, in the CLI) keep freed parts
/// resident (it purges freed memory a second later) while new ones were touched: 8-10 MiB
/// more at the peak of a backup (docs/BENCHMARKS.md, "Peak RSS of S3 backups").
struct PartBuffers {
    size: usize,
    home: mpsc::Sender<Vec<u8>>,
    returned: mpsc::Receiver<Vec<u8>>,
}

impl PartBuffers {
    fn new(size: usize) -> Self {
        let (home, returned) = mpsc::channel();
        PartBuffers {
            size,
            home,
            returned,
        }
    }

    /// An empty buffer for a part: one that came back, else a new one (the first two parts,
    /// or a body that a request still held). Any others that came back are freed.
    fn take(&self) -> Vec<u8> {
        let mut buffer = match self.returned.try_recv() {
            Ok(buffer) => buffer,
            Err(_) => return Vec::with_capacity(self.size),
        };
        while self.returned.try_recv().is_ok() {}
        buffer.clear();
        buffer
    }

    /// `buffer` as a request body; the buffer comes back when the last clone is dropped.
    fn lend(&self, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Lent {
            buffer,
            home: self.home.clone(),
        })
    }
}

/// A part buffer lent as a request body.
struct Lent {
    buffer: Vec<u8>,
    home: mpsc::Sender<Vec<u8>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // The upload is over if nobody waits for it: then the buffer is simply freed.
        let _ = self.home.send(std::mem::take(&mut self.buffer));
    }
}

/// A backup being written into an S3 repository (see the module docs).
struct NewS3Object {
    repo: S3Repository,
    name: String,
    /// The part being filled.
    buffer: Vec<u8>,
    /// Where parts that were sent come back to be filled again.
    buffers: PartBuffers,
    upload: Option<Upload>,
    /// A write failed: the object can only be abandoned.
    failed: bool,
}

impl NewS3Object {
    fn doing(&self) -> String {
        format!("uploading {}{}", self.repo.describe(), self.name)
    }

    /// Starts the upload at a free key.
    fn start(&mut self) -> Result<()> {
        let checksums = self.repo.probe()?;
        let key = self.repo.free_key(&self.name)?;
        let out = self
            .repo
            .conn
            .block_on(
                self.repo
                    .client()
                    .create_multipart_upload()
                    .bucket(&self.repo.bucket)
                    .key(&key)
                    .set_checksum_algorithm(
                        (checksums == Checksums::Crc32c).then_some(ChecksumAlgorithm::Crc32C),
                    )
                    .send(),
            )
            .map_err(|e| Fault::from_sdk(e).into_error(&self.repo, &self.doing()))?;
        self.upload = Some(Upload {
            key,
            id: out.upload_id().unwrap_or_default().to_owned(),
            checksums,
            parts: Vec::new(),
            in_flight: None,
        });
        Ok(())
    }

    /// A failed request of the upload, said: if the key was taken meanwhile, that is why
    /// (Garage drops an unfinished upload when another write completes at its key, and answers
    /// its next part by closing the connection).
    fn explain(&self, fault: Fault) -> Error {
        if let Some(upload) = &self.upload
            && let Ok(Some(_)) = self.repo.head(&upload.key)
            && let Ok(location) = self.repo.location_of_key(&upload.key)
        {
            return RepoError::Taken(location).into();
        }
        fault.into_error(&self.repo, &self.doing())
    }

    /// Waits for the part in flight, if any.
    fn settle(&mut self) -> Result<()> {
        let Some(handle) = self.upload.as_mut().and_then(|u| u.in_flight.take()) else {
            return Ok(());
        };
        let part = self
            .repo
            .conn
            .block_on(handle)
            .map_err(|e| Fault::Other(e.to_string()))
            .and_then(|r| r)
            .map_err(|f| self.explain(f))?;
        self.upload
            .as_mut()
            .expect("a part was in flight")
            .parts
            .push(part);
        Ok(())
    }

    /// Sends the buffer as the next part (waiting for the one before it first).
    fn send_part(&mut self) -> Result<()> {
        if self.upload.is_none() {
            self.start()?;
        }
        self.settle()?;
        let part_size = self.repo.conn.part_size;
        let upload = self.upload.as_mut().expect("started just above");
        let number = upload.parts.len() as u64 + 1;
        if number > MAX_PARTS {
            return Err(Error::usage(format!(
                "the backup is larger than {MAX_PARTS} parts of {part_size} bytes: \
                 choose a larger part size"
            )));
        }
        let body = self
            .buffers
            .lend(std::mem::replace(&mut self.buffer, self.buffers.take()));
        let checksum = (upload.checksums == Checksums::Crc32c).then(|| crc32c(&body));
        let request = self
            .repo
            .client()
            .upload_part()
            .bucket(&self.repo.bucket)
            .key(&upload.key)
            .upload_id(&upload.id)
            .part_number(number as i32)
            .set_checksum_crc32_c(checksum.clone())
            .body(ByteStream::from(body));
        upload.in_flight = Some(self.repo.conn.runtime.spawn(async move {
            let out = request.send().await.map_err(Fault::from_sdk)?;
            Ok(CompletedPart::builder()
                .part_number(number as i32)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_owned).or(checksum))
                .build())
        }));
        Ok(())
    }

    /// Aborts the upload, if one was started (waiting for a part in flight first, so that no
    /// part lands after the abort).
    fn abort(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        if let Some(handle) = upload.in_flight.take() {
            let _ = self.repo.conn.block_on(handle);
        }
        let _ = self.repo.conn.block_on(
            self.repo
                .client()
                .abort_multipart_upload()
                .bucket(&self.repo.bucket)
                .key(&upload.key)
                .upload_id(&upload.id)
                .send(),
        );
    }

    fn commit_upload(&mut self) -> Result<Location> {
        if self.failed {
            return Err(Error::io(
                self.doing(),
                io::Error::other("an earlier write failed; the upload was abandoned"),
            ));
        }
        if self.upload.is_none() {
            return self.put_whole();
        }
        if !self.buffer.is_empty() {
            self.send_part()?;
        }
        self.settle()?;
        let upload = self.upload.as_ref().expect("started");
        let location = self.repo.location_of_key(&upload.key)?;
        // Fail closed where the engine ignores If-None-Match: the key must still be free.
        if self.repo.head(&upload.key)?.is_some() {
            return Err(RepoError::Taken(location).into());
        }
        let request = self
            .repo
            .client()
            .complete_multipart_upload()
            .bucket(&self.repo.bucket)
            .key(&upload.key)
            .upload_id(&upload.id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(upload.parts.clone()))
                    .build(),
            );
        let answer = self
            .repo
            .conn
            .block_on(request.clone().if_none_match("*").send())
            .map_err(Fault::from_sdk);
        let answer = match answer {
            Err(f) if f.is_not_implemented() => self
                .repo
                .conn
                .block_on(request.send())
                .map_err(Fault::from_sdk),
            other => other,
        };
        match answer {
            Ok(_) => {
                self.upload = None;
                Ok(location)
            }
            Err(f) if f.is_precondition() => Err(RepoError::Taken(location).into()),
            Err(f) => Err(self.explain(f)),
        }
    }

    /// A backup smaller than one part: one `PutObject` at a free key.
    fn put_whole(&mut self) -> Result<Location> {
        let checksums = if self.buffer.is_empty() {
            Checksums::Unchecked
        } else {
            self.repo.probe()?
        };
        let key = self.repo.free_key(&self.name)?;
        let location = self.repo.location_of_key(&key)?;
        let body = Bytes::from(std::mem::take(&mut self.buffer));
        let checksum = (checksums == Checksums::Crc32c).then(|| crc32c(&body));
        let send = |conditional: bool| {
            self.repo
                .conn
                .block_on(
                    self.repo
                        .client()
                        .put_object()
                        .bucket(&self.repo.bucket)
                        .key(&key)
                        .set_checksum_crc32_c(checksum.clone())
                        .set_if_none_match(conditional.then(|| "*".to_owned()))
                        .body(ByteStream::from(body.clone()))
                        .send(),
                )
                .map(drop)
                .map_err(Fault::from_sdk)
        };
        let answer = match send(true) {
            Err(f) if f.is_not_implemented() => send(false),
            other => other,
        };
        match answer {
            Ok(_) => Ok(location),
            Err(f) if f.is_precondition() => Err(RepoError::Taken(location).into()),
            Err(f) => Err(f.into_error(&self.repo, &self.doing())),
        }
    }
}

impl Write for NewS3Object {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        let part_size = self.repo.conn.part_size;
        if self.buffer.capacity() == 0 {
            self.buffer.reserve_exact(part_size);
        }
        let n = buf.len().min(part_size - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == part_size
            && let Err(e) = self.send_part()
        {
            self.failed = true;
            return Err(io::Error::other(e));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl NewObject for NewS3Object {
    fn commit(mut self: Box<Self>) -> Result<Location> {
        self.commit_upload()
        // Dropped here: an upload still held (a failed commit) is aborted.
    }
}

impl Drop for NewS3Object {
    fn drop(&mut self) {
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline() -> Arc<S3Connection> {
        let sdk = aws_types::SdkConfig::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .build();
        S3Connection::new(S3Settings::new(sdk)).unwrap()
    }

    #[test]
    fn a_repository_url_names_a_bucket_and_a_folder() {
        let r = S3Repository::from_url(offline(), "s3://pgseal-backups/site1/db/").unwrap();
        assert_eq!((r.bucket(), r.prefix()), ("pgseal-backups", "site1/db/"));
        assert_eq!(r.describe(), "s3://pgseal-backups/site1/db/");
        let r = S3Repository::from_url(offline(), "s3://pgseal-backups").unwrap();
        assert_eq!(r.prefix(), "");
        assert_eq!(
            r.location("x.pgseal").unwrap().as_str(),
            "s3://pgseal-backups/x.pgseal"
        );
        for bad in [
            "file:///srv",
            "s3://Bad_Bucket/x",
            "s3://pgseal-backups/a/../b",
            "s3://pgseal-backups/a//b",
            "s3://pgseal-backups/a\nb",
        ] {
            assert!(S3Repository::from_url(offline(), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_part_size_outside_what_s3_accepts_is_refused() {
        let sdk = aws_types::SdkConfig::builder().build();
        for part_size in [MIN_PART - 1, MAX_PART as usize + 1] {
            let settings = S3Settings {
                part_size,
                ..S3Settings::new(sdk.clone())
            };
            assert!(matches!(S3Connection::new(settings), Err(Error::Usage(_))));
        }
    }

    #[test]
    fn variants_go_before_the_extension() {
        assert_eq!(variant("shop_1.pgseal", 1), "shop_1.pgseal");
        assert_eq!(variant("shop_1.pgseal", 2), "shop_1-2.pgseal");
        assert_eq!(variant("noext", 3), "noext-3");
        assert_eq!(variant(".hidden", 2), ".hidden-2");
    }

    #[test]
    fn a_version_is_size_and_etag() {
        assert_eq!(version_of("\"abc-2\"", 12).as_str(), "12:\"abc-2\"");
        assert_ne!(version_of("\"abc\"", 12), version_of("\"abc\"", 13));
    }

    #[test]
    fn a_copy_source_escapes_what_a_url_path_must() {
        assert_eq!(url_path("a b/c%d.pgseal"), "a%20b/c%25d.pgseal");
        assert_eq!(url_path("é"), "%C3%A9");
    }

    #[test]
    fn crc32c_is_base64_big_endian() {
        // RFC 3720's test vector: 32 bytes of zeros → 0x8a9136aa.
        assert_eq!(
            crc32c(&[0u8; 32]),
            BASE64.encode(0x8a91_36aa_u32.to_be_bytes())
        );
    }
}
