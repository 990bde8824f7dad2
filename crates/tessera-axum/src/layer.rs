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
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tessera_core::SessionManager;
use tessera_web::{
    CsrfStep, FromWebConfig, HeaderChange, RequestFlow, WebConfig, WebConfigBuilder,
};
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
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let mut flow = match RequestFlow::start(&config, request.headers(), peer) {
        Ok(flow) => flow,
        Err(err) => return Error(err).into_response(),
    };
    let endpoint = flow.dbsc_endpoint(
        request.method().as_str(),
        request.uri().path(),
        request.headers(),
    );
    if let Some(answer) = endpoint.await {
        return finish(&flow, answer.into_http().into_response()).await;
    }
    request.extensions_mut().insert(Session::new(flow.handle()));
    flow.keep_visit(
        request.method().as_str(),
        request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().path(), |p| p.as_str()),
        || request.headers().clone(),
    );
    let step = flow.csrf(
        request.method().as_str(),
        request.uri().path(),
        request.headers(),
    );
    let response = match step {
        Ok(CsrfStep::NotNeeded) => call(&mut inner, request).await,
        // Boxed: only unsafe requests pay for the CSRF check's future.
        Ok(step) => match Box::pin(check_csrf(&flow, step, request)).await {
            Ok(request) => call(&mut inner, request).await,
            Err(err) => err.into_response(),
        },
        Err(err) => Error(err).into_response(),
    };
    let response = sign_in_redirect(&flow, response);
    finish(&flow, response).await
}

/// A signed-out visit of a page answered with a `303 See Other` to the
/// sign-in page ([`RequestFlow::sign_in_redirect`]); any other response as
/// it is.
fn sign_in_redirect(flow: &RequestFlow, response: Response) -> Response {
    let code = response
        .headers()
        .get("tessera-error")
        .and_then(|code| code.to_str().ok());
    match code.and_then(|code| flow.sign_in_redirect(code)) {
        Some(location) => Redirect::to(&location).into_response(),
        None => response,
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
    flow: &RequestFlow,
    step: CsrfStep,
    request: Request<Body>,
) -> Result<Request<Body>, Error> {
    let (step, request) = if step == CsrfStep::ReadForm {
        let (parts, body) = request.into_parts();
        let bytes = Limited::new(body, flow.config().max_form_bytes())
            .collect()
            .await
            .map_err(|err| {
                Error(tessera_web::Error::Body {
                    too_large: err.downcast_ref::<LengthLimitError>().is_some(),
                    message: err.to_string(),
                })
            })?
            .to_bytes();
        let step = flow.token_from_form(&bytes);
        (step, Request::from_parts(parts, Body::from(bytes)))
    } else {
        (step, request)
    };
    flow.verify_csrf(step, request.headers()).await?;
    Ok(request)
}

/// Writes the request's cookie change into the response.
async fn finish(flow: &RequestFlow, mut response: Response) -> Response {
    let finished = flow.finish().await;
    if let Some(err) = finished.error {
        response = Error(err).into_response();
    }
    let headers = response.headers_mut();
    let has_cache_control = headers.contains_key(http::header::CACHE_CONTROL);
    for change in finished.changes.header_changes(has_cache_control) {
        match change {
            HeaderChange::Append(name, value) => match HeaderValue::from_str(&value) {
                Ok(value) => {
                    headers.append(HeaderName::from_static(name), value);
                }
                Err(_) => tracing::error!("a session header is not a valid header value"),
            },
            HeaderChange::Insert(name, value) => match HeaderValue::from_str(&value) {
                Ok(value) => {
                    headers.insert(HeaderName::from_static(name), value);
                }
                Err(_) => tracing::error!("a session header is not a valid header value"),
            },
        }
    }
    response
}
