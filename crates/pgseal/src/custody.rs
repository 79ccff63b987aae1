//! The caller's side of the key-custody service: the service named by `--custody`,
//! `PGSEAL_CUSTODY` or `[custody] url`, reached over the custody crate's transport, asked as the
//! acting user (`PGSEAL_USER`) with their signing key.

use pgseal_custody::transport::{Client, Endpoint, TransportError};
use pgseal_ops::Error;

use crate::cli::CustodyArgs;
use crate::context::Context;
use crate::failure::{CliResult, Failure};

/// The transport as the operations' [`pgseal_ops::custody::Link`].
struct HttpLink(Client);

impl pgseal_ops::custody::Link for HttpLink {
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> pgseal_ops::error::Result<(u16, Vec<u8>)> {
        self.0
            .send(method, path, headers, body)
            .map_err(|e| transport_error(&self.0, e))
    }

    fn describe(&self) -> String {
        self.0.endpoint().to_string()
    }
}

/// What a transport failure means to the user: an untrusted certificate is an authentication
/// failure, anything else the service being unreachable.
fn transport_error(client: &Client, e: TransportError) -> Error {
    let service = client.endpoint().to_string();
    match e {
        TransportError::Untrusted { .. } => {
            Error::Authentication(format!("the custody service {service}: {e}"))
        }
        other => Error::Io {
            context: format!("reaching the custody service {service}"),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// Has the session ask the key-custody service, when one is named (the flag, else the
/// configuration); does nothing otherwise.
pub fn attach(ctx: &mut Context, args: &CustodyArgs) -> CliResult {
    let configured = ctx
        .config
        .as_ref()
        .map(|c| c.custody.clone())
        .unwrap_or_default();
    let Some(url) = args.custody.clone().or(configured.url) else {
        return Ok(());
    };
    let ca_file = args.custody_ca.clone().or(configured.ca_file);
    let endpoint = Endpoint::parse(&url, ca_file.as_deref())
        .map_err(|e| Failure::usage(format!("--custody {url}: {e}")))?;
    let client = Client::new(endpoint)
        .map_err(|e| Failure::usage(format!("the custody service {url}: {e}")))?;
    let name = ctx.actor().user.clone().ok_or_else(|| {
        Failure::usage(
            "asking a custody service needs the acting pgseal user: set PGSEAL_USER to your \
             user name (requests are signed with your key)",
        )
    })?;
    let password = crate::secrets::user_password(&args.user_password);
    let (key, _) = pgseal_ops::keys::signing_key_for_user(ctx, &name, None, &password)?;
    let link = Box::new(HttpLink(client));
    let totp = args
        .totp
        .clone()
        .or_else(|| std::env::var("PGSEAL_TOTP").ok().filter(|c| !c.is_empty()));
    let client = match totp {
        Some(code) => pgseal_ops::custody::CustodyClient::with_totp(link, name.as_str(), key, code),
        None => pgseal_ops::custody::CustodyClient::new(link, name.as_str(), key),
    };
    ctx.set_custody(client);
    Ok(())
}
