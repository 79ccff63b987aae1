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
    /// The database holds no pgseal store (no schema at all).
    #[error("no pgseal store here (the database has no pgseal schema); `pgseal init` makes one")]
    NotAStore,
    /// A row holds a value pgseal never writes.
    #[error("store holds an invalid value: {0}")]
    Corrupt(String),
}
