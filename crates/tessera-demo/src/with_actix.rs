//! The demo on actix-web: its routes wired to the shared handlers
//! (`handlers.rs`) behind `tessera-actix`'s session middleware. Serve it
//! with `HttpServer::new(move || demo.app())`, as `src/main.rs` does.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, ContentType};
use actix_web::web::resource;
use actix_web::{App, HttpRequest, HttpResponse, Responder, Route, guard, web};
use tessera::SessionManager;
use tessera::actix::{DbscSettings, Error, LayerConfigError, Session, SessionMiddleware};

use crate::handlers::{self, Credentials, Reply};
use crate::{Demo, DemoMode};

/// The demo for actix-web: the session middleware and the demo's state,
/// shared by every worker's [`App`](ActixDemo::app).
#[derive(Clone)]
pub struct ActixDemo {
    middleware: SessionMiddleware,
    demo: web::Data<Demo>,
}

impl std::fmt::Debug for ActixDemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActixDemo")
            .field("mode", &self.demo.mode)
            .finish_non_exhaustive()
    }
}

impl ActixDemo {
    /// The demo with its session middleware (default cookie settings), with
    /// device-bound sessions (DBSC) when `dbsc` is given.
    pub fn new(
        manager: SessionManager,
        mode: DemoMode,
        dbsc: Option<DbscSettings>,
    ) -> Result<Self, LayerConfigError> {
        let demo = web::Data::from(Arc::new(Demo { mode: mode.name() }));
        let mut middleware = SessionMiddleware::builder(manager);
        if let DemoMode::Cookie(keys) = mode {
            middleware = middleware.sealed(keys);
        }
        if let Some(dbsc) = dbsc {
            middleware = middleware.device_binding(dbsc);
        }
        Ok(Self {
            middleware: middleware.build()?,
            demo,
        })
    }

    /// One worker's app: the demo's routes behind the session middleware.
    pub fn app(
        &self,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody + use<>>,
            Error = actix_web::Error,
            InitError = (),
        > + use<>,
    > {
        App::new()
            .app_data(self.demo.clone())
            .wrap(self.middleware.clone())
            .service(resource("/").route(get().to(home)))
            .service(
                resource("/login")
                    .route(get().to(login_page))
                    .route(web::post().to(login)),
            )
            .service(resource("/logout").route(web::post().to(logout)))
            .service(resource("/counter").route(web::post().to(counter)))
            .service(resource("/sessions").route(get().to(sessions)))
            .service(resource("/sessions/revoke-others").route(web::post().to(revoke_others)))
            .service(resource("/sessions/{id}/revoke").route(web::post().to(revoke)))
    }
}

/// A route for `GET` and `HEAD`, as axum's `get` routes answer both.
fn get() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

impl Responder for Reply {
    type Body = BoxBody;

    fn respond_to(self, _request: &HttpRequest) -> HttpResponse {
        match self {
            Reply::Page(page) => HttpResponse::Ok()
                .content_type(ContentType::html())
                .body(page.into_string()),
            Reply::Unauthorized(page) => HttpResponse::Unauthorized()
                .content_type(ContentType::html())
                .body(page.into_string()),
            Reply::SeeOther(path) => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, path))
                .finish(),
            Reply::NotFound(message) => HttpResponse::NotFound()
                .content_type(ContentType::plaintext())
                .body(message),
        }
    }
}

type Answer = Result<Reply, Error>;

async fn home(demo: web::Data<Demo>, session: Session) -> Answer {
    handlers::home(&session, demo.mode).await
}

async fn login_page(session: Session) -> Answer {
    handlers::login_page(&session).await
}

async fn login(session: Session, credentials: web::Form<Credentials>) -> Answer {
    handlers::login(&session, credentials.into_inner()).await
}

async fn logout(session: Session) -> Answer {
    handlers::logout(&session).await
}

async fn counter(session: Session) -> Answer {
    handlers::counter(&session).await
}

async fn sessions(demo: web::Data<Demo>, session: Session) -> Answer {
    handlers::sessions(&session, demo.mode).await
}

async fn revoke(session: Session, id: web::Path<String>) -> Answer {
    handlers::revoke(&session, &id).await
}

async fn revoke_others(session: Session) -> Answer {
    handlers::revoke_others(&session).await
}

/// What can be wrong with `--tls-cert`/`--tls-key` for the actix-web build.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or held no certificate or key.
    #[error("cannot read the PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// The certificate and key do not make a TLS configuration.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// A TLS server configuration (ring, TLS 1.2 and 1.3) from a PEM
/// certificate chain and its PEM private key, for
/// `HttpServer::listen_rustls_0_23`.
pub fn tls_config(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<rustls::ServerConfig, TlsError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?)
}
