//! `tesserad`: Tessera's session server. It gives the sessions of
//! [`tessera`] to services in any language over HTTP (docs/http-api.md), guards
//! upstreams behind a reverse proxy (forward-auth), exports Prometheus
//! metrics, and carries its own admin command line.
#![forbid(unsafe_code)]

pub mod admin_client;
pub mod api;
pub mod cli;
pub mod connections;
pub mod console;
pub mod keys;
pub mod logging;
pub mod metered_store;
pub mod metrics;
pub mod migrate;
pub mod serve;
