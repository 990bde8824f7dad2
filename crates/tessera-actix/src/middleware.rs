//! The actix-web [`SessionMiddleware`] and its service: reads the cookie,
//! checks CSRF on unsafe requests, hands the handler a [`Session`], and
//! writes at most one cookie change into the response. Every decision is
//! [`RequestFlow`]'s; this file only translates actix-web's types.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use futures_util::StreamExt;
use tessera_core::SessionManager;
use tessera_web::{
    CsrfStep, FromWebConfig, HeaderChange, Headers, RequestFlow, WebConfig, WebConfigBuilder,
};

use crate::error::Error;
use crate::session::Session;

/// Builds a [`SessionMiddleware`]: cookie attributes, sealed sessions, CSRF
/// settings, client addresses (see [`WebConfigBuilder`]'s methods).
pub type SessionMiddlewareBuilder = WebConfigBuilder<SessionMiddleware>;

/// Adds Tessera sessions to an actix-web app:
/// `App::new().wrap(SessionMiddleware::new(manager))`.
#[derive(Clone)]
pub struct SessionMiddleware {
    config: Arc<WebConfig>,
}

impl std::fmt::Debug for SessionMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMiddleware")
            .field("config", &self.config)
            .finish()
    }
}

impl FromWebConfig for SessionMiddleware {
    fn from_web_config(config: Arc<WebConfig>) -> Self {
        Self { config }
    }
}

impl SessionMiddleware {
    /// Sessions in `manager`'s store, with every default: `__Host-tessera`
    /// cookie, `SameSite=Lax`, CSRF protection on.
    pub fn new(manager: SessionManager) -> Self {
        Self::builder(manager)
            .build()
            .expect("the default middleware configuration is valid")
    }

    /// Starts a configuration with every default.
    pub fn builder(manager: SessionManager) -> SessionMiddlewareBuilder {
        WebConfigBuilder::new(manager)
    }

    /// The manager behind the middleware.
    pub fn manager(&self) -> &SessionManager {
        self.config.manager()
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            service: Rc::new(service),
            config: self.config.clone(),
        }))
    }
}

/// The service [`SessionMiddleware`] wraps around an app's services.
pub struct SessionService<S> {
    service: Rc<S>,
    config: Arc<WebConfig>,
}

impl<S> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

type Served<B> = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Served<B>>>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let config = self.config.clone();
        Box::pin(serve(config, service, request))
    }
}

/// An actix-web header map as [`Headers`].
struct ActixHeaders<'a>(&'a HeaderMap);

impl Headers for ActixHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }

    fn all(&self, name: &str) -> Vec<&[u8]> {
        self.0.get_all(name).map(|v| v.as_bytes()).collect()
    }
}

/// A copy of a request's headers, kept past the handler.
struct OwnedHeaders(HeaderMap);

impl Headers for OwnedHeaders {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }

    fn all(&self, name: &str) -> Vec<&[u8]> {
        self.0.get_all(name).map(|v| v.as_bytes()).collect()
    }
}

async fn serve<S, B>(
    config: Arc<WebConfig>,
    service: Rc<S>,
    mut request: ServiceRequest,
) -> Served<B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let peer = request.peer_addr().map(|addr| addr.ip());
    let mut flow = match RequestFlow::start(&config, &ActixHeaders(request.headers()), peer) {
        Ok(flow) => flow,
        Err(err) => return Ok(refuse(request, Error(err))),
    };
    let endpoint = flow
        .dbsc_endpoint(
            request.method().as_str(),
            request.path(),
            &ActixHeaders(request.headers()),
        )
        .await;
    if let Some(answer) = endpoint {
        let response = request.into_response(dbsc_response(answer));
        return Ok(finish(&flow, response.map_into_right_body()).await);
    }
    request.extensions_mut().insert(Session::new(flow.handle()));
    flow.keep_visit(
        request.method().as_str(),
        request
            .uri()
            .path_and_query()
            .map_or_else(|| request.path(), |p| p.as_str()),
        || OwnedHeaders(request.headers().clone()),
    );
    let step = flow.csrf(
        request.method().as_str(),
        request.path(),
        &ActixHeaders(request.headers()),
    );
    let checked = match step {
        Ok(CsrfStep::NotNeeded) => Ok(()),
        Ok(step) => check_csrf(&flow, step, &mut request).await,
        Err(err) => Err(Error(err)),
    };
    let response = match checked {
        Ok(()) => match service.call(request).await {
            Ok(response) => response.map_into_left_body(),
            Err(err) => {
                // An error from a service below (handlers' own errors are
                // responses by now): actix-web answers it without the
                // request, so the session's changes cannot go out with it.
                // The session is closed all the same, so that a task
                // keeping it writes a late sign-in at once.
                let _ = flow.finish().await;
                return Err(err);
            }
        },
        Err(err) => refuse(request, err),
    };
    let response = sign_in_redirect(&flow, response);
    Ok(finish(&flow, response).await)
}

/// A signed-out visit of a page answered with a `303 See Other` to the
/// sign-in page ([`RequestFlow::sign_in_redirect`]); any other response as
/// it is.
fn sign_in_redirect<B>(
    flow: &RequestFlow,
    response: ServiceResponse<EitherBody<B>>,
) -> ServiceResponse<EitherBody<B>> {
    let location = response
        .headers()
        .get("tessera-error")
        .and_then(|code| code.to_str().ok())
        .and_then(|code| flow.sign_in_redirect(code));
    match location {
        Some(location) => response
            .into_response(
                HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, location))
                    .finish(),
            )
            .map_into_right_body(),
        None => response,
    }
}

/// The response of a request refused before its handler ran.
fn refuse<B>(request: ServiceRequest, err: Error) -> ServiceResponse<EitherBody<B>> {
    let response = err.error_response();
    request.into_response(response).map_into_right_body()
}

/// The CSRF check of an unsafe request; reads (and puts back) a form body
/// to find the form field.
async fn check_csrf(
    flow: &RequestFlow,
    step: CsrfStep,
    request: &mut ServiceRequest,
) -> Result<(), Error> {
    let step = if step == CsrfStep::ReadForm {
        let body = read_body(request.take_payload(), flow.config().max_form_bytes()).await;
        let body = body?;
        let step = flow.token_from_form(&body);
        request.set_payload(Payload::from(body));
        step
    } else {
        step
    };
    Ok(flow
        .verify_csrf(step, &ActixHeaders(request.headers()))
        .await?)
}

async fn read_body(mut payload: Payload, limit: usize) -> Result<Bytes, Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| {
            Error(tessera_web::Error::Body {
                too_large: false,
                message: err.to_string(),
            })
        })?;
        if body.len() + chunk.len() > limit {
            return Err(Error(tessera_web::Error::Body {
                too_large: true,
                message: format!("the form body is larger than {limit} bytes"),
            }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A DBSC endpoint's answer as a response.
fn dbsc_response(answer: tessera_web::dbsc::DbscAnswer) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(answer.status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.append_header((HeaderName::from_static(name), value));
        }
    }
    match answer.body {
        Some(body) => response
            .content_type("application/json")
            .body(body.to_string()),
        None => response.finish(),
    }
}

/// Writes the request's cookie change into the response.
async fn finish<B>(
    flow: &RequestFlow,
    mut response: ServiceResponse<EitherBody<B>>,
) -> ServiceResponse<EitherBody<B>> {
    let finished = flow.finish().await;
    if let Some(err) = finished.error {
        let (request, _) = response.into_parts();
        response = ServiceResponse::new(request, Error(err).error_response()).map_into_right_body();
    }
    let headers = response.headers_mut();
    let has_cache_control = headers.contains_key(header::CACHE_CONTROL);
    for change in finished.changes.header_changes(has_cache_control) {
        match change {
            HeaderChange::Append(name, value) => match HeaderValue::from_str(&value) {
                Ok(value) => headers.append(HeaderName::from_static(name), value),
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
