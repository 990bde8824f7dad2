//! The tower [`SessionLayer`] and its service: reads the cookie, checks
//! CSRF on unsafe requests, hands the handler a [`Session`], and writes at
//! most one cookie change into the response.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Redirect, Response};
use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tessera_core::SessionManager;
use tessera_web::{ExemptCheck, FromWebConfig, RequestSession, WebConfig, WebConfigBuilder};
use tokio::sync::Mutex;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::Error;
use crate::session::Session;

/// Builds a [`SessionLayer`]: cookie attributes, sealed sessions, CSRF
/// settings, client addresses (see [`WebConfigBuilder`]'s methods).
pub type SessionLayerBuilder = WebConfigBuilder<SessionLayer>;

/// Adds Tessera sessions to an axum router (or any tower service over
/// axum's body): `router.layer(SessionLayer::new(manager))`.
#[derive(Clone)]
pub struct SessionLayer {
    config: Arc<WebConfig>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl FromWebConfig for SessionLayer {
    fn from_web_config(config: Arc<WebConfig>) -> Self {
        Self { config }
    }
}

impl SessionLayer {
    /// Sessions in `manager`'s store, with every default: `__Host-tessera`
    /// cookie, `SameSite=Lax`, CSRF protection on.
    pub fn new(manager: SessionManager) -> Self {
        Self::builder(manager)
            .build()
            .expect("the default layer configuration is valid")
    }

    /// Starts a configuration with every default.
    pub fn builder(manager: SessionManager) -> SessionLayerBuilder {
        WebConfigBuilder::new(manager)
    }

    /// The manager behind the layer.
    pub fn manager(&self) -> &SessionManager {
        self.config.manager()
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around a router.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    config: Arc<WebConfig>,
}

impl<S> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

impl<S> Service<Request<Body>> for SessionService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let config = self.config.clone();
        Box::pin(async move { Ok(serve(config, inner, request).await) })
    }
}

async fn serve<S>(config: Arc<WebConfig>, mut inner: S, mut request: Request<Body>) -> Response
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let presented = config.cookies().read(request.headers());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let client = config.client_info(request.headers(), peer);
    if config.rejects_guessing()
        && presented.cookie_count() > 0
        && client.ip.is_some_and(|ip| config.manager().is_guessing(ip))
    {
        return Error(tessera_web::Error::Guessing).into_response();
    }
    let mut session = RequestSession::new(config.clone(), presented, client);
    if let Some(dbsc) = config.dbsc() {
        tessera_web::dbsc::report_skipped(config.manager(), request.headers());
        let is_post = request.method() == http::Method::POST;
        if is_post && request.uri().path() == dbsc.refresh_path() {
            let answer =
                tessera_web::dbsc::refresh(dbsc, config.manager(), request.headers()).await;
            return dbsc_response(answer);
        }
        session.set_bound_cookie(dbsc.bound_cookie(request.headers()));
        if is_post && request.uri().path() == dbsc.register_path() {
            let answer = tessera_web::dbsc::register(dbsc, &mut session, request.headers()).await;
            let state = Mutex::new(session);
            return finish(&state, dbsc_response(answer)).await;
        }
    }
    let state = Arc::new(Mutex::new(session));
    request
        .extensions_mut()
        .insert(Session::new(state.clone(), config.manager().clone()));

    // What a redirect to the sign-in page needs, kept only when one is set.
    let visit = config.has_sign_in_page().then(|| Visit {
        method: request.method().clone(),
        target: request.uri().path_and_query().map_or_else(
            || request.uri().path().to_owned(),
            |p| p.as_str().to_owned(),
        ),
        headers: request.headers().clone(),
    });
    let needs_csrf = config.csrf_applies(&ExemptCheck {
        method: request.method().as_str(),
        path: request.uri().path(),
        headers: request.headers(),
    });
    let response = if needs_csrf {
        // Boxed: only unsafe requests pay for the CSRF check's future.
        match Box::pin(check_csrf(&config, &state, request)).await {
            Ok(request) => call(&mut inner, request).await,
            Err(err) => err.into_response(),
        }
    } else {
        call(&mut inner, request).await
    };
    let response = match visit {
        Some(visit) => visit.sign_in_redirect(&config, response),
        None => response,
    };
    finish(&state, response).await
}

/// The parts of a request a redirect to the sign-in page looks at.
struct Visit {
    method: http::Method,
    target: String,
    headers: http::HeaderMap,
}

impl Visit {
    /// A signed-out visit of a page, answered with a `303 See Other` to the
    /// sign-in page ([`WebConfig::sign_in_redirect`]); any other response
    /// as it is.
    fn sign_in_redirect(self, config: &WebConfig, response: Response) -> Response {
        let Some(code) = response
            .headers()
            .get("tessera-error")
            .and_then(|code| code.to_str().ok())
        else {
            return response;
        };
        match config.sign_in_redirect(self.method.as_str(), &self.target, &self.headers, code) {
            Some(location) => Redirect::to(&location).into_response(),
            None => response,
        }
    }
}

async fn call<S>(inner: &mut S, request: Request<Body>) -> Response
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    match inner.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The CSRF check of an unsafe request; returns the request (with its body
/// restored if it was read to find the form field).
async fn check_csrf(
    config: &WebConfig,
    state: &Mutex<RequestSession>,
    request: Request<Body>,
) -> Result<Request<Body>, Error> {
    let from_header = config.csrf_token_from_headers(request.headers())?;
    let (token, request) = match from_header {
        Some(token) => (Some(token), request),
        None if config.wants_form_body(request.headers()) => {
            let (parts, body) = request.into_parts();
            let bytes = Limited::new(body, config.max_form_bytes())
                .collect()
                .await
                .map_err(|err| {
                    Error(tessera_web::Error::Body {
                        too_large: err.downcast_ref::<LengthLimitError>().is_some(),
                        message: err.to_string(),
                    })
                })?
                .to_bytes();
            let token = config.csrf_token_from_form(&bytes);
            (token, Request::from_parts(parts, Body::from(bytes)))
        }
        None => (None, request),
    };
    let Some(token) = token else {
        return Err(config.missing_csrf_token().into());
    };
    state
        .lock()
        .await
        .verify_csrf(&token, request.headers())
        .await?;
    Ok(request)
}

/// A DBSC endpoint's answer as a response.
fn dbsc_response(answer: tessera_web::dbsc::DbscAnswer) -> Response {
    let status = http::StatusCode::from_u16(answer.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match answer.body {
        Some(body) => (
            status,
            [(http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
        None => status.into_response(),
    };
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .append(http::HeaderName::from_static(name), value);
        }
    }
    response
}

/// Writes the request's cookie change into the response.
async fn finish(state: &Mutex<RequestSession>, mut response: Response) -> Response {
    let mut state = state.lock().await;
    // A sign-in the handler left pending is written now, before its cookie.
    // Should that fail, the error is the answer, and a cookie change made
    // before the sign-in (a renewed token) still goes out with it.
    if let Err(err) = state.flush().await {
        response = Error(err).into_response();
    }
    let changes = match state.finish() {
        Ok(changes) => changes,
        Err(err) => return Error(err).into_response(),
    };
    let headers = response.headers_mut();
    for value in &changes.set_cookies {
        match HeaderValue::from_str(value) {
            Ok(value) => {
                headers.append(SET_COOKIE, value);
            }
            Err(_) => {
                tracing::error!("a session cookie is not a valid header value");
            }
        }
    }
    for (name, value) in &changes.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(http::HeaderName::from_static(name), value);
        }
    }
    if changes.clear_site_data {
        headers.insert(
            http::HeaderName::from_static("clear-site-data"),
            HeaderValue::from_static("\"cookies\""),
        );
    }
    if changes.cookie_changed || (changes.no_store && !headers.contains_key(CACHE_CONTROL)) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
