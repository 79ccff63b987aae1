//! Reaching object stores with the AWS configuration users already have.
//!
//! S3 settings are read the way the AWS CLI and SDKs read them (`aws-config`):
//! `AWS_ENDPOINT_URL` (an S3-compatible engine: Garage, MinIO, Ceph), `AWS_REGION` (else the
//! profile's region, else `us-east-1`), `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//! `AWS_SESSION_TOKEN`, `AWS_PROFILE` with `~/.aws/credentials` and `~/.aws/config`, and the
//! rest of the standard chain. None of it is in pgseal.toml, none is printed, and none reaches
//! the programs pgseal runs ([`crate::secrets::scrub_env`]). The configuration is read — and
//! the connection made — only when a command first reaches an `s3://` location.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use pgseal_ops::repo::S3Access;
use pgseal_ops::repo::s3::{Addressing, DEFAULT_PART_SIZE, S3Connection};

use crate::config::RepositorySettings;

/// Access to object stores with `settings` (addressing, part size; the defaults without a
/// configuration), its connection made on first use.
pub fn access(settings: Option<&RepositorySettings>) -> Arc<S3Access> {
    let (addressing, part_size) = match settings {
        Some(s) => (
            addressing(&s.s3_addressing),
            s.s3_part_size_mib as usize * 1024 * 1024,
        ),
        None => (Addressing::Auto, DEFAULT_PART_SIZE),
    };
    S3Access::lazy(move || {
        let region = RegionProviderChain::default_provider().or_else("us-east-1");
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .load();
        S3Connection::load(loader, addressing, part_size)
    })
}

/// The configuration's spelling of an addressing style (checked when it was read).
fn addressing(text: &str) -> Addressing {
    match text {
        "path" => Addressing::Path,
        "virtual-host" => Addressing::VirtualHost,
        _ => Addressing::Auto,
    }
}
