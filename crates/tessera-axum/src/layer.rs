//! The tower [`SessionLayer`] and its service: reads the cookie, checks
//! CSRF on unsafe requests, hands the handler a [`Session`], and writes at
//! most one cookie change into the response.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE, USER_AGENT};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tessera_core::{ClientInfo, SessionManager};
use tokio::sync::Mutex;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{SessionLayerBuilder, Shared};
use crate::csrf::{self, CsrfError};
use crate::error::Error;
use crate::session::Session;
use crate::state::{CookieChange, State};

/// Adds Tessera sessions to an axum router (or any tower service over
/// axum's body): `router.layer(SessionLayer::new(manager))`.
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("cookie_name", &self.shared.cookie_name)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// Server-side sessions in `manager`'s store, with every default:
    /// `__Host-tessera` cookie, `SameSite=Lax`, CSRF protection on.
    pub fn new(manager: SessionManager) -> Self {
        Self::builder(manager)
            .build()
            .expect("the default layer configuration is valid")
    }

    /// Starts a configuration with every default.
    pub fn builder(manager: SessionManager) -> SessionLayerBuilder {
        SessionLayerBuilder::new(manager)
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The manager behind the layer.
    pub fn manager(&self) -> &SessionManager {
        &self.shared.manager
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around a router.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
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
        let shared = self.shared.clone();
        Box::pin(async move { Ok(serve(shared, inner, request).await) })
    }
}

async fn serve<S>(shared: Arc<Shared>, mut inner: S, mut request: Request<Body>) -> Response
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let presented = shared.cookies.read(request.headers());
    let client = client_info(&shared, &request);
    if shared.reject_guessing
        && presented.cookie_count() > 0
        && client.ip.is_some_and(|ip| shared.manager.is_guessing(ip))
    {
        return Error::Guessing.into_response();
    }
    let state = Arc::new(Mutex::new(State::new(shared.clone(), presented, client)));
    request
        .extensions_mut()
        .insert(Session::new(state.clone(), shared.manager.clone()));

    let needs_csrf = shared.csrf.enabled && csrf::is_unsafe(request.method()) && {
        let (parts, body) = request.into_parts();
        let exempt = shared.csrf.exempt.as_ref().is_some_and(|e| e(&parts));
        request = Request::from_parts(parts, body);
        !exempt
    };
    let response = if needs_csrf {
        // Boxed: only unsafe requests pay for the CSRF check's future.
        match Box::pin(check_csrf(&shared, &state, request)).await {
            Ok(request) => call(&mut inner, request).await,
            Err(err) => err.into_response(),
        }
    } else {
        call(&mut inner, request).await
    };
    finish(&shared, &state, response).await
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
    shared: &Shared,
    state: &Mutex<State>,
    request: Request<Body>,
) -> Result<Request<Body>, Error> {
    let settings = &shared.csrf;
    csrf::check_origin(request.headers(), &settings.trusted_origins)?;
    let from_header = request
        .headers()
        .get(&settings.header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let (token, request) = match from_header {
        Some(token) => (Some(token), request),
        None if is_form => {
            let (parts, body) = request.into_parts();
            let bytes = Limited::new(body, settings.max_form_bytes)
                .collect()
                .await
                .map_err(|err| Error::Body {
                    too_large: err.downcast_ref::<LengthLimitError>().is_some(),
                    message: err.to_string(),
                })?
                .to_bytes();
            let token = form_urlencoded::parse(&bytes)
                .find(|(name, _)| name == settings.field.as_str())
                .map(|(_, value)| value.into_owned());
            (token, Request::from_parts(parts, Body::from(bytes)))
        }
        None => (None, request),
    };
    let Some(token) = token else {
        return Err(CsrfError::MissingToken {
            header: settings.header.to_string(),
            field: settings.field.clone(),
        }
        .into());
    };
    state.lock().await.verify_csrf(&token).await?;
    Ok(request)
}

/// Writes the request's cookie change into the response.
async fn finish(shared: &Shared, state: &Mutex<State>, mut response: Response) -> Response {
    let mut state = state.lock().await;
    // A sign-in the handler left pending is written now, before its cookie.
    // Should that fail, the error is the answer, and a cookie change made
    // before the sign-in (a renewed token) still goes out with it.
    if let Err(err) = state.flush().await {
        response = err.into_response();
    }
    state.finish();
    let presented = state.presented_cookies;
    let no_store = HeaderValue::from_static("no-store");
    match std::mem::replace(&mut state.cookie, CookieChange::Keep) {
        CookieChange::Keep => {
            if state.served_session() && !response.headers().contains_key(CACHE_CONTROL) {
                response.headers_mut().insert(CACHE_CONTROL, no_store);
            }
        }
        CookieChange::Set(credential) => match shared.cookies.set(&credential, presented) {
            Ok(values) => {
                let headers = response.headers_mut();
                for value in values {
                    headers.append(SET_COOKIE, value);
                }
                headers.insert(CACHE_CONTROL, no_store);
            }
            Err(err) => return Error::CookieTooLarge(err).into_response(),
        },
        CookieChange::Remove => {
            let headers = response.headers_mut();
            for value in shared.cookies.remove(presented) {
                headers.append(SET_COOKIE, value);
            }
            headers.insert(
                http::HeaderName::from_static("clear-site-data"),
                HeaderValue::from_static("\"cookies\""),
            );
            headers.insert(CACHE_CONTROL, no_store);
        }
    }
    response
}

fn client_info(shared: &Shared, request: &Request<Body>) -> ClientInfo {
    let from_header = shared.client_ip_header.as_ref().and_then(|name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    });
    let ip = from_header.or_else(|| {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
    });
    let user_agent = request
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok());
    ClientInfo::new(ip, user_agent)
}
