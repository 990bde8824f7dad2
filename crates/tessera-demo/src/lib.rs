//! The Tessera demo site: the example to copy for an axum or actix-web app
//! with sessions.
//!
//! A login form (two demo users, argon2id-hashed passwords), a home page
//! showing who is signed in, a counter kept in the session, a "your
//! sessions" page with revoke buttons and "sign out everywhere else", and
//! logout — in server-side or sealed-cookie mode. Its routes, flags and
//! element ids are a contract (`docs/demo.md`; browser tests drive them).
//!
//! The handlers are written once (`src/handlers.rs`) over the session handle
//! both integrations share; [`with_axum`] and [`with_actix`] only wire them
//! into routes behind each framework's session layer.
#![forbid(unsafe_code)]

mod handlers;
pub mod pages;
pub mod users;
pub mod with_actix;
pub mod with_axum;

use tessera::sealed::KeyRing;

pub use with_actix::ActixDemo;
pub use with_axum::{app, app_with_dbsc};

/// Where the demo keeps sessions.
#[derive(Debug, Clone)]
pub enum DemoMode {
    /// In the manager's store; the cookie holds a token (`--mode server`).
    Server,
    /// Sealed into the cookie with these keys (`--mode cookie`).
    Cookie(KeyRing),
}

impl DemoMode {
    /// `server` or `cookie`.
    pub fn name(&self) -> &'static str {
        match self {
            DemoMode::Server => "server",
            DemoMode::Cookie(_) => "cookie",
        }
    }
}

/// The demo's own state, shared by its handlers.
struct Demo {
    mode: &'static str,
}
