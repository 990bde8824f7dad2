//! The session layer over HTTP: the framework scenario suite of
//! `tessera-web` (`crates/tessera-web/src/testkit/`) against an axum
//! server on a loopback port. This file only wires the suite's standard
//! routes to axum handlers.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Form, Path};
use axum::routing::{get, post};
use serde::Deserialize;
use tessera_axum::{Session, SessionLayer};
use tessera_web::testkit::routes as r;
use tessera_web::testkit::{AppUnderTest, Served};

/// The axum integration under test.
struct Axum;

impl AppUnderTest for Axum {
    type Layer = SessionLayer;

    async fn serve(layer: SessionLayer) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = routes()
            .layer(layer)
            .into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        Served::new(addr, move || server.abort())
    }
}

#[derive(Deserialize)]
struct Note {
    text: String,
}

fn routes() -> Router {
    Router::new()
        .route(
            "/untouched",
            get(|| async { "static" }).post(|| async { "posted" }),
        )
        .route(
            "/private",
            get(|s: Session| async move { r::private(&s).await })
                .post(|s: Session| async move { r::private(&s).await }),
        )
        .route(
            "/whoami",
            get(|s: Session| async move { r::whoami(&s).await }),
        )
        .route(
            "/rejected",
            get(|s: Session| async move { r::rejected(&s).await }),
        )
        .route(
            "/get/{key}",
            get(|s: Session, Path(key): Path<String>| async move { r::get(&s, &key).await }),
        )
        .route(
            "/set/{key}/{value}",
            post(
                |s: Session, Path((key, value)): Path<(String, String)>| async move {
                    r::set(&s, &key, &value).await
                },
            ),
        )
        .route(
            "/remove/{key}",
            post(|s: Session, Path(key): Path<String>| async move { r::remove(&s, &key).await }),
        )
        .route("/incr", post(|s: Session| async move { r::incr(&s).await }))
        .route("/csrf", get(|s: Session| async move { r::csrf(&s).await }))
        .route(
            "/login/{user}",
            post(|s: Session, Path(user): Path<String>| async move { r::login(&s, &user).await }),
        )
        .route(
            "/signin/{user}",
            post(|s: Session, Path(user): Path<String>| async move { r::signin(&s, &user).await }),
        )
        .route(
            "/late-login",
            post(|s: Session| async move { r::late_login(&s) }),
        )
        .route(
            "/logout",
            post(|s: Session| async move { r::logout(&s).await }),
        )
        .route(
            "/flush",
            post(|s: Session| async move { r::flush(&s).await }),
        )
        .route(
            "/cycle-id",
            post(|s: Session| async move { r::cycle_id(&s).await }),
        )
        .route(
            "/note",
            post(|s: Session, Form(note): Form<Note>| async move { r::note(&s, &note.text).await }),
        )
        .route(
            "/big/{bytes}",
            post(|s: Session, Path(bytes): Path<usize>| async move { r::big(&s, bytes).await }),
        )
        .route(
            "/revoke-others",
            post(|s: Session| async move { r::revoke_others(&s).await }),
        )
}

mod scenarios {
    tessera_web::framework_scenarios!(
        super::Axum,
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    );
}
