//! Device-bound sessions (DBSC) through the layer, driven by a hand-made
//! client that keeps a P-256 key and signs proofs as a browser does.

use std::time::Duration;

use serde_json::Value;
use tessera_core::BindingPolicy;
use tessera_core::testkit::device::{TestDevice, challenge_in, header_param};

use crate::dbsc::DbscSettings;
use crate::testkit::{AppUnderTest, Client, Mode, Reply, Req, TestApp, app_with};

const REGISTER: &str = "/tessera/dbsc/register";
const REFRESH: &str = "/tessera/dbsc/refresh";
const BOUND: &str = "__Host-tessera-bound";

async fn dbsc_app<A: AppUnderTest>() -> TestApp {
    app_with::<A>(Mode::Server, BindingPolicy::Log, |b| {
        b.device_binding(DbscSettings::default())
    })
    .await
}

/// The string item at the start of a reply's `Secure-Session-Challenge`.
fn challenge_of(reply: &Reply) -> String {
    challenge_in(
        reply
            .header("secure-session-challenge")
            .expect("a challenge header"),
    )
}

fn json(reply: &Reply) -> Value {
    reply.json()
}

/// Logs in, registers `device` as a DBSC browser would; returns the
/// session identifier.
async fn login_and_register(app: &TestApp, client: &mut Client, device: &TestDevice) -> String {
    let login = client.post(app, "/login/alice").await;
    assert_eq!(login.status, 200);
    let offer = login
        .header("secure-session-registration")
        .expect("a registration offer after login")
        .to_owned();
    assert!(offer.starts_with("(ES256 RS256);"), "{offer}");
    assert_eq!(header_param(&offer, "path"), REGISTER);
    assert!(
        login.header("secure-session-challenge").is_none(),
        "no separate challenge on the registration response"
    );
    let proof = device.registration_proof(&header_param(&offer, "challenge"));
    let registered = client
        .send(
            app,
            Req::post(REGISTER)
                .header("sec-fetch-site", "same-origin")
                // As a structured-field string.
                .header("secure-session-response", format!("\"{proof}\"")),
        )
        .await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    let instructions = json(&registered);
    assert_eq!(instructions["refresh_url"], REFRESH);
    assert_eq!(instructions["scope"]["include_site"], false);
    assert_eq!(instructions["credentials"][0]["type"], "cookie");
    assert_eq!(instructions["credentials"][0]["name"], BOUND);
    let set = registered.set_cookies();
    assert!(
        set.iter()
            .any(|c| c.starts_with(BOUND) && c.contains("Max-Age=600") && c.contains("Secure")),
        "{set:?}"
    );
    instructions["session_identifier"]
        .as_str()
        .expect("an identifier")
        .to_owned()
}

/// A refresh as the browser sends it: first without a proof (403 and a
/// challenge), then with one.
async fn refresh(app: &TestApp, client: &mut Client, device: &TestDevice, id: &str) -> Reply {
    let first = refresh_without_proof(app, client, &format!("\"{id}\"")).await;
    assert_eq!(first.status, 403);
    let header = first.header("secure-session-challenge").expect("challenge");
    assert_eq!(header_param(header, "id"), id);
    let proof = device.refresh_proof(&challenge_of(&first));
    client
        .send(
            app,
            Req::post(REFRESH)
                // Bare, as browsers also send them.
                .header("sec-secure-session-id", id)
                .header("secure-session-response", proof),
        )
        .await
}

/// A device registers and refreshes its bound cookie; a copied jar stops working when the bound cookie expires.
pub async fn dbsc_register_refresh_and_a_stolen_jar_through_the_layer<A: AppUnderTest>() {
    let app = dbsc_app::<A>().await;
    let device = TestDevice::es256();
    let mut browser = Client::new();
    let id = login_and_register(&app, &mut browser, &device).await;
    assert_eq!(browser.get(&app, "/whoami").await.body, "alice");
    assert_eq!(app.events.of_kind("dbsc_registered").len(), 1);

    // A copy of the jar without the bound cookie is not signed in.
    let mut partial = browser.clone();
    partial.jar.remove(BOUND);
    assert_eq!(partial.get(&app, "/whoami").await.body, "anonymous");
    assert_eq!(partial.get(&app, "/rejected").await.body, "device_bound");

    // The whole jar works until the bound cookie expires.
    let mut thief = browser.clone();
    assert_eq!(thief.get(&app, "/whoami").await.body, "alice");
    app.clock.advance(Duration::from_secs(600));
    assert_eq!(thief.get(&app, "/whoami").await.body, "anonymous");
    assert_eq!(browser.get(&app, "/whoami").await.body, "anonymous");

    // The device refreshes: a new value each time, and the page loads.
    let old = browser.jar[BOUND].clone();
    let refreshed = refresh(&app, &mut browser, &device, &id).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(json(&refreshed)["session_identifier"], id.as_str());
    let first = browser.jar[BOUND].clone();
    assert_ne!(first, old);
    assert_eq!(browser.get(&app, "/whoami").await.body, "alice");
    refresh(&app, &mut browser, &device, &id).await;
    assert_ne!(browser.jar[BOUND], first, "the value changes every refresh");
    assert_eq!(browser.get(&app, "/whoami").await.body, "alice");
    assert_eq!(app.events.of_kind("dbsc_refreshed").len(), 2);

    // The thief's copy (an earlier bound cookie) stays refused.
    assert_eq!(thief.get(&app, "/whoami").await.body, "anonymous");
    thief.jar.insert(BOUND.to_owned(), first);
    assert_eq!(thief.get(&app, "/whoami").await.body, "anonymous");

    // A thief's own key cannot refresh.
    let stranger = TestDevice::es256();
    let stolen = refresh(&app, &mut thief, &stranger, &id).await;
    assert_eq!(stolen.status, 400);
    assert_eq!(json(&stolen)["continue"], false);
    assert_eq!(browser.get(&app, "/whoami").await.body, "alice");
}

/// A refresh request naming session `id` (as the header's value), without a
/// proof.
async fn refresh_without_proof(app: &TestApp, client: &mut Client, id: &str) -> Reply {
    client
        .send(app, Req::post(REFRESH).header("sec-secure-session-id", id))
        .await
}

/// Refreshes without an id, with an unknown one or for an ended session are refused.
pub async fn dbsc_refresh_refuses_missing_ids_and_ended_sessions<A: AppUnderTest>() {
    let app = dbsc_app::<A>().await;
    let device = TestDevice::es256();
    let mut browser = Client::new();
    let id = login_and_register(&app, &mut browser, &device).await;
    let missing = browser.send(&app, Req::post(REFRESH)).await;
    assert_eq!(missing.status, 400);
    let wrong = refresh_without_proof(&app, &mut browser, "\"not-an-id\"").await;
    assert_eq!(wrong.status, 400);
    let unknown = refresh_without_proof(&app, &mut browser, "AAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(unknown.status, 401);
    // A registration without a proof, or with a replayed one, is refused.
    let no_proof = browser.send(&app, Req::post(REGISTER)).await;
    assert_eq!(no_proof.status, 400);

    browser.post(&app, "/logout").await;
    let after_logout = refresh_without_proof(&app, &mut browser, id.as_str()).await;
    assert_eq!(after_logout.status, 401);
    assert_eq!(json(&after_logout)["continue"], false);
}

/// Browsers without DBSC ignore the offer and are served as before.
pub async fn dbsc_browsers_without_it_are_served_as_before<A: AppUnderTest>() {
    let app = dbsc_app::<A>().await;
    let mut browser = Client::new();
    // The offer is ignored: no registration, no bound cookie.
    let login = browser.post(&app, "/login/bob").await;
    assert!(login.header("secure-session-registration").is_some());
    assert_eq!(browser.get(&app, "/whoami").await.body, "bob");
    app.clock.advance(Duration::from_secs(20 * 60));
    assert_eq!(browser.get(&app, "/whoami").await.body, "bob");
    assert!(!browser.jar.contains_key(BOUND));
    // Skipped requests are counted.
    browser
        .send(
            &app,
            Req::get("/whoami").header(
                "secure-session-skipped",
                "unreachable;session_identifier=\"x\"",
            ),
        )
        .await;
    assert_eq!(app.events.of_kind("dbsc_skipped").len(), 1);
}

/// A layer without device binding offers no registration.
pub async fn dbsc_layer_without_the_option_sends_no_offer<A: AppUnderTest>() {
    let app = app_with::<A>(Mode::Server, BindingPolicy::Log, |b| b).await;
    let mut browser = Client::new();
    let login = browser.post(&app, "/login/carol").await;
    assert!(login.header("secure-session-registration").is_none());
    let refresh = refresh_without_proof(&app, &mut browser, "AAAAAAAAAAAAAAAAAAAAAA").await;
    assert_ne!(refresh.status, 200);
    assert!(refresh.header("secure-session-challenge").is_none());
}
