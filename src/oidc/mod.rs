//! The OpenID Connect provider, as doorman's sign-in (DESIGN.md §10) needs it.
//!
//! The room's files: [`provider`] talks to the provider (discovery, the code exchange, its
//! keys, verifying ID tokens; with `discovery`, `token`, `jwks`, `claims`, `http` and `error`
//! beside it); [`flow`] carries one sign-in's secrets in a sealed cookie; [`seal`] is the
//! authenticated encryption under the state key. The endpoints that use them
//! (`<prefix>/oidc/start`, `<prefix>/oidc/callback`, logout's half at the provider) are the
//! login room's (its `openid` file). This room sits below the request and access layers
//! (it knows nothing of requests or sessions), so `access::Shared` can hold an [`Oidc`].
//!
//! [`Oidc`] is what a running doorman holds for `[oidc]`: the provider (kept across reloads
//! that leave the provider's settings alone, so its discovered metadata and keys survive a
//! SIGHUP) and the sealer of the config it was built for.

mod claims;
mod discovery;
mod error;
pub mod flow;
mod http;
mod jwks;
pub mod provider;
mod token;

#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::sync::Arc;

use crate::config::{OidcConfig, StateKey, STATE_KEY_LEN};
use crate::seal::Sealer;
use provider::{Provider, ProviderSettings};

/// `[oidc]` at run time.
pub struct Oidc {
    /// The provider, discovered in the background.
    pub provider: Arc<Provider>,
    sealer: Sealer,
}

impl Oidc {
    /// The runtime for `config`, reusing `previous`'s provider when its settings are the same.
    /// Makes the embedded store's default state key when it does not exist yet. Must run
    /// inside the tokio runtime (a new provider starts its discovery).
    pub fn new(
        config: &OidcConfig,
        previous: Option<(&OidcConfig, &Oidc)>,
    ) -> Result<Oidc, String> {
        let key = match config.state_key.loaded() {
            Some(key) => *key,
            None => make_state_key(&config.state_key)?,
        };
        let sealer = Sealer::new(&key).ok_or("the state key cannot be used")?;
        let provider = match previous {
            Some((old, oidc)) if old.same_provider(config) => Arc::clone(&oidc.provider),
            _ => {
                let provider = Provider::new(ProviderSettings {
                    issuer: config.issuer.clone(),
                    client_id: config.client_id.clone(),
                    client_secret: config.client_secret.clone(),
                    ca: config.ca.clone(),
                })
                .map_err(|e| format!("OpenID Connect provider client: {e}"))?;
                let provider = Arc::new(provider);
                provider.spawn_discovery();
                provider
            }
        };
        Ok(Oidc { provider, sealer })
    }

    /// The state key's sealer.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }
}

/// Make the default state key beside the embedded store (mode 0600), or read the one another
/// start made in the meantime.
fn make_state_key(key: &StateKey) -> Result<[u8; STATE_KEY_LEN], String> {
    let path = key.path();
    let mut bytes = [0u8; STATE_KEY_LEN];
    getrandom::fill(&mut bytes).map_err(|e| format!("random source: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            crate::config::read_state_key(path)
        }
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}
