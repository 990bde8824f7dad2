//! Cookies issued by the real tower-sessions and actix-session, over their
//! real Redis stores, accepted once by tessera-axum and tessera-actix
//! through the readers; on a private redis-server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use tessera_core::{MemoryStore, SessionManager};
use tessera_import::{ActixSessionRedis, TowerSessionsRedis};
use tower::ServiceExt;

/// A redis-server of this test's own, stopped when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup)");
        let redis = Self { child, port };
        let client = redis.client();
        for _ in 0..200 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {port} never answered");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("url")
    }

    async fn keys(&self) -> Vec<String> {
        let mut conn = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .expect("KEYS")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `name=value` of every `Set-Cookie` in `headers` not removing a cookie.
fn set_cookies<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    values
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("pair").to_owned()
}

// ---------------------------------------------------------------- tower-sessions

mod tower_side {
    use axum::Router;
    use axum::routing::get;
    use tower_sessions::{Session, SessionManagerLayer};
    use tower_sessions_redis_store::RedisStore;
    use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

    /// An app on tower-sessions' Redis store whose `/put` signs user 42 in
    /// the way such apps do: the user id and a cart in the session.
    pub async fn app(url: &str) -> Router {
        let pool =
            Pool::new(Config::from_url(url).expect("url"), None, None, None, 1).expect("pool");
        pool.init().await.expect("connect");
        Router::new()
            .route(
                "/put",
                get(|session: Session| async move {
                    session.insert("user_id", 42).await.expect("insert");
                    session
                        .insert("cart", vec!["apple", "pear"])
                        .await
                        .expect("insert");
                    "stored"
                }),
            )
            .layer(SessionManagerLayer::new(RedisStore::new(pool)).with_secure(false))
    }
}

fn tessera_axum_app(reader: TowerSessionsRedis) -> axum::Router {
    use axum::routing::get;
    use tessera_axum::{Error, Session, SessionLayer};
    let manager = SessionManager::builder(MemoryStore::new())
        .build()
        .expect("manager");
    axum::Router::new()
        .route(
            "/me",
            get(|s: Session| async move {
                let subject = s.subject().await?.unwrap_or_else(|| "anonymous".into());
                let cart: Option<serde_json::Value> = s.get("cart").await?;
                Ok::<_, Error>(format!("{subject} {}", cart.unwrap_or_default()))
            }),
        )
        .route("/untouched", get(|| async { "static" }))
        .layer(
            SessionLayer::builder(manager)
                .import_from(reader)
                .build()
                .expect("layer"),
        )
}

struct AxumReply {
    body: String,
    set_cookies: Vec<String>,
}

async fn call_axum(app: &axum::Router, path: &str, cookie: &str) -> AxumReply {
    let request = http::Request::get(path)
        .header("cookie", cookie)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let set_cookies = set_cookies(
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.as_bytes()),
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    AxumReply {
        body: String::from_utf8_lossy(&body).into_owned(),
        set_cookies,
    }
}

#[tokio::test]
async fn a_tower_sessions_cookie_is_exchanged_once() {
    let redis = Redis::start().await;
    // The real tower-sessions writes a session and sets its cookie.
    let old_app = tower_side::app(&redis.url()).await;
    let response = old_app
        .oneshot(
            http::Request::get("/put")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let set = response
        .headers()
        .get("set-cookie")
        .expect("tower-sessions set its cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    let old_cookie = pair(&set);
    assert!(old_cookie.starts_with("id="), "{old_cookie}");
    assert_eq!(redis.keys().await.len(), 1, "one record in Redis");

    let reader = TowerSessionsRedis::connect(redis.client())
        .await
        .expect("connect")
        .subject_key("user_id");
    let app = tessera_axum_app(reader);

    // A request that never touches its session leaves the old cookie alone.
    let untouched = call_axum(&app, "/untouched", &old_cookie).await;
    assert!(untouched.set_cookies.is_empty());
    assert_eq!(redis.keys().await.len(), 1);

    // The first request that does: signed in as user 42 with the cart; the
    // Tessera cookie replaces the old one, and the old record is gone.
    let reply = call_axum(&app, "/me", &old_cookie).await;
    assert_eq!(reply.body, r#"42 ["apple","pear"]"#);
    assert!(
        reply
            .set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-tessera=tss_")),
        "{:?}",
        reply.set_cookies
    );
    assert!(
        reply
            .set_cookies
            .iter()
            .any(|c| c.starts_with("id=;") && c.contains("Max-Age=0")),
        "{:?}",
        reply.set_cookies
    );
    assert!(redis.keys().await.is_empty(), "the old record is taken");
    let tessera_cookie = reply
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-tessera="))
        .map(|c| pair(c))
        .expect("cookie");
    assert_eq!(
        call_axum(&app, "/me", &tessera_cookie).await.body,
        r#"42 ["apple","pear"]"#
    );

    // Accepted once: the old cookie again (a copy an attacker kept) is anonymous.
    assert_eq!(
        call_axum(&app, "/me", &old_cookie).await.body,
        "anonymous null"
    );
}

#[tokio::test]
async fn forged_old_cookies_name_no_other_key() {
    let redis = Redis::start().await;
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // Keys a forged cookie might try to read or delete through the reader.
    for key in ["tessera:epoch:global", "AAAAAAAAAAAAAAAAAAAAA*", "config"] {
        redis::cmd("SET")
            .arg(key)
            .arg("precious")
            .query_async::<()>(&mut conn)
            .await
            .expect("SET");
    }
    let reader = TowerSessionsRedis::connect(redis.client())
        .await
        .expect("connect");
    let app = tessera_axum_app(reader);
    for forged in [
        "id=tessera:epoch:global",
        "id=AAAAAAAAAAAAAAAAAAAAA*",
        "id=config",
        "id=%00",
        "id=",
    ] {
        let reply = call_axum(&app, "/me", forged).await;
        assert_eq!(reply.body, "anonymous null", "{forged}");
    }
    assert_eq!(redis.keys().await.len(), 3, "nothing was deleted");

    // actix-session: a cookie that does not open under the key is not read.
    let key = actix_web::cookie::Key::generate();
    let reader = ActixSessionRedis::new(
        redis::aio::ConnectionManager::new(redis.client())
            .await
            .expect("connect"),
        key.master(),
    )
    .expect("key");
    let app = tessera_actix_app(reader).await;
    let reply = call_actix(&app, "/me", "id=config").await;
    assert_eq!(reply.body, "anonymous null");
    assert_eq!(redis.keys().await.len(), 3, "nothing was deleted");
}

// ---------------------------------------------------------------- actix-session

struct ActixReply {
    body: String,
    set_cookies: Vec<String>,
}

async fn tessera_actix_app(reader: ActixSessionRedis) -> tessera_actix::SessionMiddleware {
    let manager = SessionManager::builder(MemoryStore::new())
        .build()
        .expect("manager");
    tessera_actix::SessionMiddleware::builder(manager)
        .import_from(reader)
        .build()
        .expect("middleware")
}

async fn me(s: tessera_actix::Session) -> Result<String, tessera_actix::Error> {
    let subject = s.subject().await?.unwrap_or_else(|| "anonymous".into());
    let n: Option<serde_json::Value> = s.get("n").await?;
    Ok(format!("{subject} {}", n.unwrap_or_default()))
}

async fn call_actix(
    middleware: &tessera_actix::SessionMiddleware,
    path: &str,
    cookie: &str,
) -> ActixReply {
    use actix_web::{App, test, web};
    let service = test::init_service(
        App::new()
            .wrap(middleware.clone())
            .route("/me", web::get().to(me)),
    )
    .await;
    let request = test::TestRequest::get()
        .uri(path)
        .insert_header(("cookie", cookie))
        .to_request();
    let response = test::call_service(&service, request).await;
    let set_cookies = set_cookies(
        response
            .headers()
            .get_all("set-cookie")
            .map(|v| v.as_bytes()),
    );
    let body = test::read_body(response).await;
    ActixReply {
        body: String::from_utf8_lossy(&body).into_owned(),
        set_cookies,
    }
}

#[actix_web::test]
async fn an_actix_session_cookie_is_exchanged_once() {
    use actix_session::storage::RedisSessionStore;
    use actix_web::{App, test, web};

    let redis = Redis::start().await;
    let key = actix_web::cookie::Key::generate();
    // The real actix-session writes a session and sets its (encrypted) cookie.
    let store = RedisSessionStore::new(redis.url()).await.expect("store");
    let old_app = test::init_service(
        App::new()
            .wrap(
                actix_session::SessionMiddleware::builder(store, key.clone())
                    .cookie_secure(false)
                    .build(),
            )
            .route(
                "/put",
                web::get().to(|session: actix_session::Session| async move {
                    session.insert("user_id", "alice").expect("insert");
                    session.insert("n", 3).expect("insert");
                    "stored"
                }),
            ),
    )
    .await;
    let response =
        test::call_service(&old_app, test::TestRequest::get().uri("/put").to_request()).await;
    let set = response
        .headers()
        .get("set-cookie")
        .expect("actix-session set its cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    let old_cookie = pair(&set);
    assert!(old_cookie.starts_with("id="), "{old_cookie}");
    assert_eq!(redis.keys().await.len(), 1, "one record in Redis");

    let reader = ActixSessionRedis::new(
        redis::aio::ConnectionManager::new(redis.client())
            .await
            .expect("connect"),
        key.master(),
    )
    .expect("key")
    .subject_key("user_id");
    let middleware = tessera_actix_app(reader).await;

    let reply = call_actix(&middleware, "/me", &old_cookie).await;
    assert_eq!(reply.body, "alice 3");
    assert!(
        reply
            .set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-tessera=tss_")),
        "{:?}",
        reply.set_cookies
    );
    assert!(
        reply.set_cookies.iter().any(|c| c.starts_with("id=;")),
        "{:?}",
        reply.set_cookies
    );
    assert!(redis.keys().await.is_empty(), "the old record is taken");
    // Accepted once.
    assert_eq!(
        call_actix(&middleware, "/me", &old_cookie).await.body,
        "anonymous null"
    );
}
