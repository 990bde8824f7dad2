//! The session middleware over HTTP: the framework scenario suite of
//! `tessera-web` (`crates/tessera-web/src/testkit/`) against an actix-web
//! server on a loopback port. This file only wires the suite's standard
//! routes to actix-web handlers.

use actix_web::{App, HttpServer, web};
use serde::Deserialize;
use tessera_actix::{Error, Session, SessionMiddleware};
use tessera_web::testkit::routes as r;
use tessera_web::testkit::{AppUnderTest, Served};

/// The actix-web integration under test.
struct Actix;

impl AppUnderTest for Actix {
    type Layer = SessionMiddleware;

    async fn serve(middleware: SessionMiddleware) -> Served {
        // Two workers, so that requests truly run in parallel.
        let server = HttpServer::new(move || App::new().wrap(middleware.clone()).configure(routes))
            .workers(2)
            .disable_signals()
            .shutdown_timeout(0)
            .bind(("127.0.0.1", 0))
            .expect("bind");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Served::new(addr, move || drop(handle.stop(false)))
    }
}

type Answer = Result<String, Error>;

#[derive(Deserialize)]
struct Note {
    text: String,
}

async fn private(s: Session) -> Answer {
    r::private(&s).await
}

async fn whoami(s: Session) -> Answer {
    r::whoami(&s).await
}

async fn rejected(s: Session) -> Answer {
    r::rejected(&s).await
}

async fn get_key(s: Session, key: web::Path<String>) -> Answer {
    r::get(&s, &key).await
}

async fn set_key(s: Session, path: web::Path<(String, String)>) -> Answer {
    r::set(&s, &path.0, &path.1).await
}

async fn remove_key(s: Session, key: web::Path<String>) -> Answer {
    r::remove(&s, &key).await
}

async fn incr(s: Session) -> Answer {
    r::incr(&s).await
}

async fn csrf(s: Session) -> Answer {
    r::csrf(&s).await
}

async fn login(s: Session, user: web::Path<String>) -> Answer {
    r::login(&s, &user).await
}

async fn signin(s: Session, user: web::Path<String>) -> Answer {
    r::signin(&s, &user).await
}

async fn late_login(s: Session) -> String {
    r::late_login(&s)
}

async fn logout(s: Session) -> Answer {
    r::logout(&s).await
}

async fn flush(s: Session) -> Answer {
    r::flush(&s).await
}

async fn cycle_id(s: Session) -> Answer {
    r::cycle_id(&s).await
}

async fn note(s: Session, note: web::Form<Note>) -> Answer {
    r::note(&s, &note.text).await
}

async fn big(s: Session, bytes: web::Path<usize>) -> Answer {
    r::big(&s, *bytes).await
}

async fn revoke_others(s: Session) -> Answer {
    r::revoke_others(&s).await
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/untouched", web::get().to(|| async { "static" }))
        .route("/untouched", web::post().to(|| async { "posted" }))
        .route("/private", web::get().to(private))
        .route("/private", web::post().to(private))
        .route("/whoami", web::get().to(whoami))
        .route("/rejected", web::get().to(rejected))
        .route("/get/{key}", web::get().to(get_key))
        .route("/set/{key}/{value}", web::post().to(set_key))
        .route("/remove/{key}", web::post().to(remove_key))
        .route("/incr", web::post().to(incr))
        .route("/csrf", web::get().to(csrf))
        .route("/login/{user}", web::post().to(login))
        .route("/signin/{user}", web::post().to(signin))
        .route("/late-login", web::post().to(late_login))
        .route("/logout", web::post().to(logout))
        .route("/flush", web::post().to(flush))
        .route("/cycle-id", web::post().to(cycle_id))
        .route("/note", web::post().to(note))
        .route("/big/{bytes}", web::post().to(big))
        .route("/revoke-others", web::post().to(revoke_others));
}

mod scenarios {
    tessera_web::framework_scenarios!(super::Actix, #[actix_web::test]);
}
