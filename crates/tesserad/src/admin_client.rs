//! The admin commands that talk to a running server over HTTP
//! (`tesserad sessions …`, `tesserad stats`) and the local key commands
//! (`tesserad keys …`), printing readable tables.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::api::model::StatsResponse;
use crate::cli::{DataDirArgs, KeysCommand, RemoteArgs, SessionsCommand};
use crate::keys::{KeyError, KeyStore};

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The server could not be reached.
    #[error("cannot reach {server}: {source}")]
    Unreachable {
        /// The server URL.
        server: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("the server answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error body's message (or the raw body).
        message: String,
    },
    /// No API key was given.
    #[error("give the server's API key with --api-key or TESSERA_API_KEY")]
    NoApiKey,
    /// The CA certificate could not be read.
    #[error("cannot use the CA certificate {path}: {message}")]
    CaCert {
        /// The path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A key operation failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// A session as the API shows it (the fields the tables use).
#[derive(Debug, Deserialize)]
struct SessionRow {
    id: String,
    subject: Option<String>,
    auth_level: u8,
    created_at: String,
    last_seen_at: String,
    idle_expires_at: String,
    absolute_expires_at: String,
    client: Option<ClientRow>,
}

#[derive(Debug, Deserialize)]
struct ClientRow {
    ip: Option<String>,
    user_agent: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SessionsBody {
    sessions: Vec<SessionRow>,
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RevokedBody {
    revoked: u64,
}

struct Remote {
    client: reqwest::Client,
    base: String,
    api_key: String,
}

impl Remote {
    fn new(args: &RemoteArgs) -> Result<Self, AdminError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Some(path) = &args.ca_cert {
            let ca_error = |message: String| AdminError::CaCert {
                path: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certificate =
                reqwest::Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder.build().map_err(|source| AdminError::Unreachable {
            server: args.server.clone(),
            source,
        })?;
        Ok(Self {
            client,
            base: args.server.trim_end_matches('/').to_owned(),
            api_key: args
                .api_key
                .as_ref()
                .map(|key| key.expose().to_owned())
                .filter(|key| !key.is_empty())
                .ok_or(AdminError::NoApiKey)?,
        })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AdminError> {
        let response = request
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(|source| AdminError::Unreachable {
                server: self.base.clone(),
                source,
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|body| {
                body.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or(text);
        Err(AdminError::Refused { status, message })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, AdminError> {
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|source| AdminError::Unreachable {
                server: self.base.clone(),
                source,
            })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Percent-encodes one path segment.
fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    table
}

/// Runs `tesserad sessions …`; returns what to print.
pub async fn sessions(
    remote: &RemoteArgs,
    command: &SessionsCommand,
) -> Result<String, AdminError> {
    let server = Remote::new(remote)?;
    match command {
        SessionsCommand::List {
            subject,
            limit,
            cursor,
        } => {
            let mut request = server
                .client
                .get(server.url(&format!("/v1/subjects/{}/sessions", segment(subject))))
                .query(&[("limit", limit.to_string())]);
            if let Some(cursor) = cursor {
                request = request.query(&[("cursor", cursor)]);
            }
            let body: SessionsBody = server.json(request).await?;
            let more = body.next_cursor.as_deref().map_or(String::new(), |next| {
                format!(
                    "\nmore: tesserad sessions list --subject {subject} --limit {limit} --cursor {next}"
                )
            });
            if body.sessions.is_empty() {
                return Ok(format!("no sessions for subject {subject}{more}"));
            }
            let mut out = table(&[
                "id",
                "subject",
                "level",
                "created",
                "last seen",
                "idle expiry",
                "absolute expiry",
                "client",
            ]);
            for s in &body.sessions {
                let client = s.client.as_ref().map_or(String::new(), |c| {
                    [c.ip.as_deref(), c.user_agent.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                out.add_row(vec![
                    s.id.clone(),
                    s.subject.clone().unwrap_or_default(),
                    s.auth_level.to_string(),
                    s.created_at.clone(),
                    s.last_seen_at.clone(),
                    s.idle_expires_at.clone(),
                    s.absolute_expires_at.clone(),
                    client,
                ]);
            }
            Ok(format!("{out}\n{} session(s){more}", body.sessions.len()))
        }
        SessionsCommand::Revoke { id } => {
            server
                .send(
                    server
                        .client
                        .delete(server.url(&format!("/v1/sessions/{}", segment(id)))),
                )
                .await?;
            Ok(format!("revoked session {id}"))
        }
        SessionsCommand::RevokeSubject { subject, except } => {
            let mut request = server
                .client
                .delete(server.url(&format!("/v1/subjects/{}/sessions", segment(subject))));
            if let Some(except) = except {
                request = request.query(&[("except", except)]);
            }
            let body: RevokedBody = server.json(request).await?;
            Ok(format!("revoked {} session(s) of {subject}", body.revoked))
        }
    }
}

/// Runs `tesserad stats`; returns what to print.
pub async fn stats(remote: &RemoteArgs) -> Result<String, AdminError> {
    let server = Remote::new(remote)?;
    let stats: StatsResponse = server
        .json(server.client.get(server.url("/v1/stats")))
        .await?;
    let mut summary = table(&["server", "store", "uptime", "store records"]);
    summary.add_row(vec![
        stats.version.clone(),
        stats.store.clone(),
        humantime::format_duration(std::time::Duration::from_secs(stats.uptime_s)).to_string(),
        stats
            .store_records
            .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
    ]);
    let mut operations = table(&["operation", "outcome", "count"]);
    for op in &stats.operations {
        operations.add_row(vec![
            op.operation.clone(),
            op.outcome.clone(),
            op.count.to_string(),
        ]);
    }
    let mut events = table(&["event", "count"]);
    for event in &stats.events {
        events.add_row(vec![event.kind.clone(), event.count.to_string()]);
    }
    Ok(format!(
        "{summary}\n\nOperations\n{operations}\n\nEvents\n{events}"
    ))
}

/// Runs `tesserad keys …`; returns what to print.
pub fn keys(location: &DataDirArgs, command: &KeysCommand) -> Result<String, AdminError> {
    let Some(data_dir) = location.data_dir() else {
        return Err(KeyError::NoDataDir {
            store: location.store.to_string(),
        }
        .into());
    };
    let store = KeyStore::open(&data_dir);
    match command {
        KeysCommand::Create { label, scopes } => {
            let new = store.create(label.as_deref(), *scopes)?;
            Ok(format!(
                "created API key {} with scopes {} (shown only this once):\n\n    {}\n",
                new.record.id, scopes, new.key
            ))
        }
        KeysCommand::List => {
            let keys = store.list()?;
            if keys.is_empty() {
                return Ok(format!("no API keys in {}", store.path().display()));
            }
            let mut out = table(&["id", "label", "scopes", "created"]);
            for key in &keys {
                let scopes: crate::keys::Scopes = key.scopes.iter().copied().collect();
                out.add_row(vec![
                    key.id.clone(),
                    key.label.clone().unwrap_or_default(),
                    scopes.to_string(),
                    key.created_at.clone(),
                ]);
            }
            Ok(out.to_string())
        }
        KeysCommand::Revoke { id } => {
            let removed = store.revoke(id)?;
            Ok(format!(
                "revoked API key {} (running servers stop accepting it within seconds)",
                removed.id
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("alice"), "alice");
        assert_eq!(segment("a/b c%"), "a%2Fb%20c%25");
        assert_eq!(segment("zoë"), "zo%C3%AB");
    }
}
