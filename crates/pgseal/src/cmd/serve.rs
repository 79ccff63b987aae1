//! `pgseal serve`: the key-custody service (docs/CUSTODY.md). The operations are
//! `pgseal_ops::custody::Custody`'s, the transport the custody crate's; this module picks the
//! listeners and the password, keeps the process from dumping its memory, and hands each request
//! to the operations in a session of its own.

use std::sync::{Arc, Mutex};

use pgseal_custody::transport::{Handler, Listen, Peer, Request, Response, Server, TlsFiles};
use pgseal_ops::Session;
use pgseal_ops::custody::{Call, Custody, Policy};

use super::server_password;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::context::{Context, session_for};
use crate::failure::{CliResult, Failure};

pub fn run(args: ServeArgs, ctx: &mut Context) -> CliResult {
    let config = ctx.config()?.clone();
    let listens = listeners(&args, &config)?;
    protect_memory()?;
    // Also systemd's LoadCredential=server-key-password:… ($CREDENTIALS_DIRECTORY).
    let password = server_password(&args.server_password);
    let policy = Policy {
        trusted_proxies: config.serve.trusted_proxies.clone(),
        second_factor_for_unwrap: config.serve.second_factor_for_unwrap,
        ..Policy::default()
    };
    let custody = Arc::new(Custody::start(
        ctx,
        &password,
        policy,
        Some(&config.serve.head_file),
    )?);
    let held = custody.held().len();
    let service = Arc::new(Service {
        custody,
        config,
        idle: Mutex::new(Vec::new()),
    });
    let server = Server::bind(listens.clone(), service)
        .map_err(|e| Failure::usage(format!("pgseal serve: {e}")))?;
    let mut places: Vec<String> = server
        .local_addrs()
        .iter()
        .map(|a| format!("https://{a}"))
        .collect();
    places.extend(listens.iter().filter_map(|l| match l {
        Listen::Unix { path } => Some(format!("unix://{}", path.display())),
        Listen::Tls { .. } => None,
    }));
    eprintln!(
        "pgseal serve: holding {held} server key(s); listening on {}",
        places.join(", ")
    );
    server
        .run(stopped())
        .map_err(|e| Failure::usage(format!("pgseal serve: {e}")))?;
    eprintln!("pgseal serve: stopped");
    Ok(())
}

/// The listeners the flags and `[serve]` name: TLS needs a certificate and its key.
fn listeners(args: &ServeArgs, config: &Config) -> CliResult<Vec<Listen>> {
    let serve = &config.serve;
    let mut listens = Vec::new();
    if let Some(addr) = args.listen.clone().or(serve.listen.clone()) {
        let addr = addr.parse().map_err(|_| {
            Failure::usage(format!(
                "--listen {addr}: not an address and port (127.0.0.1:8443)"
            ))
        })?;
        let (Some(cert_chain), Some(private_key)) = (
            args.cert.clone().or(serve.cert_file.clone()),
            args.key.clone().or(serve.key_file.clone()),
        ) else {
            return Err(Failure::usage(
                "TLS needs the service's certificate and key: --cert FILE --key FILE, or \
                 cert_file and key_file in [serve]",
            ));
        };
        listens.push(Listen::Tls {
            addr,
            tls: TlsFiles {
                cert_chain,
                private_key,
            },
        });
    }
    if let Some(path) = args.unix.clone().or(serve.unix_socket.clone()) {
        listens.push(Listen::Unix { path });
    }
    if listens.is_empty() {
        return Err(Failure::usage(
            "nowhere to listen: pass --listen ADDR:PORT (with --cert and --key) or --unix PATH, \
             or set them in [serve]",
        ));
    }
    Ok(listens)
}

/// No core dump, no `ptrace` by other processes of the same user: the held keys stay in this
/// process's memory.
fn protect_memory() -> CliResult {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| Failure::usage(format!("turning core dumps off: {e}")))?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| Failure::usage(format!("marking the process not dumpable: {e}")))?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handling the default dispositions still end the process.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The service as the transport's handler: each request in a session of its own (sessions are
/// kept for the next request, each with its store connection).
struct Service {
    custody: Arc<Custody>,
    config: Config,
    idle: Mutex<Vec<Session>>,
}

impl Handler for Service {
    fn handle(&self, request: Request) -> Response {
        // A poisoned lock only means a thread panicked while taking or returning a session.
        let kept = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut session = match kept.map(Ok).unwrap_or_else(|| session_for(&self.config)) {
            Ok(s) => s,
            Err(e) => {
                return Response::error(500, "internal", crate::failure::message(&e));
            }
        };
        let header = |name: &str| request.header(name);
        let (peer, peer_label) = match &request.peer {
            Peer::Tcp(addr) => (Some(addr.ip()), addr.ip().to_string()),
            Peer::Unix { uid, .. } => (
                None,
                format!(
                    "unix:uid={}",
                    uid.map_or_else(|| "?".to_owned(), |u| u.to_string())
                ),
            ),
        };
        let call = Call {
            method: &request.method,
            path: &request.path,
            header: &header,
            body: &request.body,
            peer,
            peer_label,
        };
        let answer = self.custody.respond(&mut session, &call);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
        Response::json(answer.status, answer.body)
    }
}
