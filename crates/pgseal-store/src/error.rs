//! Store errors: what went wrong, in terms a user can act on.

use pgseal_core::Fingerprint;

use crate::username::Username;

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What went wrong in the store. Each case a caller may need to tell apart is its own variant;
/// messages say what is wrong, never which command or flag fixes it (that is the front end's
/// to add).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule held: the thing exists already (a name, a fingerprint), or another
    /// writer changed what an operation expected first.
    #[error("{0}")]
    Conflict(String),
    /// No user has this name.
    #[error("no user named {0}")]
    UnknownUser(Username),
    /// A new server key cannot be made active: this one is (only a rotation replaces it).
    #[error("an active server key already exists ({0})")]
    ActiveServerKeyExists(Fingerprint),
    /// A new key cannot be made the user's active key: this one is (only a rotation replaces
    /// it).
    #[error("the user already has an active key ({0})")]
    ActiveUserKeyExists(Fingerprint),
    /// Something looked up does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store URL is not one pgseal understands.
    #[error("invalid store URL `{0}`: use sqlite:PATH or postgres://...")]
    BadUrl(String),
    /// The database could not be reached or refused a statement.
    #[error("store ({backend}): {message}")]
    Backend {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What the database said.
        message: String,
    },
    /// A statement named a table the database does not have (PostgreSQL's `undefined_table`).
    #[error("store ({backend}): {message}")]
    NoSuchTable {
        /// `postgres`.
        backend: &'static str,
        /// What the database said.
        message: String,
    },
    /// The store's schema is newer than this pgseal.
    #[error(
        "the store's schema is version {found}, newer than this pgseal knows ({known}); upgrade pgseal"
    )]
    SchemaTooNew {
        /// The store's schema version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A read-only opening found a store whose schema needs upgrading (which writes).
    #[error(
        "the store's schema is version {found}, older than this pgseal's ({known}); reading \
         does not upgrade it"
    )]
    SchemaTooOld {
        /// The store's schema version.
        found: i64,
        /// The version this build would upgrade it to.
        known: i64,
    },
    /// A row holds a value pgseal never writes.
    #[error("store holds an invalid value: {0}")]
    Corrupt(String),
    /// An audit entry's stored hash (`prev_hash` or `entry_hash`) is not a SHA-256 in hex:
    /// pgseal never writes one. (Verifying the chain reports it as a break instead.)
    #[error("store holds an invalid value: audit entry {seq} holds a malformed hash")]
    MalformedAuditHash {
        /// The entry's `seq`.
        seq: i64,
    },
    /// There is no pgseal store where one was expected (only creating opens make one).
    #[error(transparent)]
    NoStore(#[from] NoStore),
}

/// No pgseal store where one was expected: [`Store::open_existing`](crate::Store::open_existing)
/// refuses to make one, so a store that was deleted, truncated or emptied is noticed instead of
/// silently replaced by a new, empty one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at {store}")]
pub struct NoStore {
    /// The store as shown to users (no password).
    pub store: String,
    /// Why it is not a store.
    pub reason: NoStoreReason,
}

/// Why there is no store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStoreReason {
    /// The SQLite file does not exist.
    Missing,
    /// The SQLite file is empty (0 bytes).
    Empty,
    /// The database holds no pgseal schema.
    NoSchema,
}

impl std::fmt::Display for NoStoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoStoreReason::Missing => "no store file",
            NoStoreReason::Empty => "an empty (0-byte) store file",
            NoStoreReason::NoSchema => "no pgseal schema",
        })
    }
}
