//! Store errors: what went wrong, in terms a user can act on.

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule held: the thing exists already (a name, a fingerprint, an active key).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The store URL is not one pgseal understands.
    #[error("invalid store URL `{0}`: use sqlite:PATH or postgres://...")]
    BadUrl(String),
    /// The database could not be reached or refused a statement.
    #[error("store ({backend}): {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
    /// The store's schema is newer than this pgseal.
    #[error(
        "the store's schema is version {found}, newer than this pgseal knows ({known}); upgrade pgseal"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// A command that only reads found a store whose schema needs upgrading (which writes).
    #[error(
        "the store's schema is version {found}, older than this pgseal's ({known}); reading \
         does not upgrade it: run a command that writes (`pgseal user add`, a backup) with \
         write access to the store first"
    )]
    SchemaTooOld { found: i64, known: i64 },
    /// A row holds a value pgseal never writes.
    #[error("store holds an invalid value: {0}")]
    Corrupt(String),
    /// There is no pgseal store where one was expected (only creating opens make one).
    #[error(transparent)]
    NoStore(#[from] NoStore),
}

/// No pgseal store where one was expected: [`Store::open_existing`](crate::Store::open_existing)
/// refuses to make one, so a store that was deleted, truncated or emptied is noticed instead of
/// silently replaced by a new, empty one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at {store}: {}", reason.advice())]
pub struct NoStore {
    /// The store as shown to users (no password).
    pub store: String,
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

impl NoStoreReason {
    fn advice(self) -> &'static str {
        match self {
            NoStoreReason::Missing => {
                "pgseal never creates a store by accident; `pgseal init` makes a new site, or point \
                 --store (or the config) at the existing store"
            }
            NoStoreReason::Empty | NoStoreReason::NoSchema => {
                "a pgseal store always holds its schema and audit log, so this one was truncated, \
                 emptied or never initialised; restore it from a copy (`pgseal init` makes a new \
                 site)"
            }
        }
    }
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
