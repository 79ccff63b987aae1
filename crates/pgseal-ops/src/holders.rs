//! Which backups still hold a server key: what must be rewrapped before the key is retired.
//!
//! The catalog says which keys each backup's active slot names; the files themselves also show
//! superseded slots a rewrap has not wiped yet, and only they are the truth. And whoever can
//! write the store can edit the catalog: every object in the repository counts too,
//! catalogued or not. Each file is read by its prelude only.

use std::collections::BTreeMap;

use pgseal_core::Fingerprint;

use crate::error::Result;
use crate::repo::{Location, Reach, Repository, prelude};
use crate::session::Session;

/// The backups that hold `key` in a recipient slot, each (as shown) with where: "active slot
/// A", "superseded slot B", or "per the catalog" for one whose file cannot be read here (on
/// another host, or not a v2 file) and whose catalog entry names the key.
pub fn backups_holding(
    session: &mut Session,
    repo: &dyn Repository,
    reach: &Reach,
    key: &Fingerprint,
) -> Result<BTreeMap<String, String>> {
    let mut holding: BTreeMap<String, String> = BTreeMap::new();
    for b in session.store()?.backups(None)? {
        let location = &b.entry.location;
        let on_file = match reach.repository_of(location) {
            Ok(Some(holder)) => slots_naming(holder.as_ref(), location, key),
            _ => None,
        };
        match on_file {
            Some(slots) if !slots.is_empty() => {
                holding.insert(location.shown(), slots.join(" and "));
            }
            None if b.entry.server_keys.contains(key) => {
                holding.insert(location.shown(), "per the catalog".to_owned());
            }
            _ => {}
        }
    }
    for object in repo.list()?.objects {
        if let Some(slots) = slots_naming(repo, &object.location, key).filter(|s| !s.is_empty()) {
            holding
                .entry(object.location.shown())
                .or_insert(slots.join(" and "));
        }
    }
    Ok(holding)
}

/// Which recipient slots of the v2 file at `location` name `key` ("active slot B",
/// "superseded slot A"), an empty list if none; `None` when the file cannot be read or is not
/// v2 (legacy files name no key: the catalog is all there is).
fn slots_naming(
    repo: &dyn Repository,
    location: &Location,
    key: &Fingerprint,
) -> Option<Vec<String>> {
    let mut input = std::io::BufReader::new(prelude(repo, location).ok()?);
    let prelude = pgseal_core::v2::read_prelude(&mut input).ok()?;
    let active = prelude.active_slot().ok().map(|(i, _)| i);
    Some(
        prelude
            .slots
            .iter()
            .enumerate()
            .filter(|(_, state)| state.mentions(key))
            .map(|(i, _)| {
                let role = if Some(i) == active {
                    "active"
                } else {
                    "superseded"
                };
                format!("{role} slot {}", ["A", "B"][i])
            })
            .collect(),
    )
}
