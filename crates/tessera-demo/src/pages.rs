//! The demo's HTML, with the stable element ids of `docs/demo.md`.

use maud::{DOCTYPE, Markup, html};
use tessera::{SessionRecord, Timestamp};

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Tessera demo" }
                style { (STYLE) }
            }
            body {
                header { a href="/" { "Tessera demo" } }
                main { (body) }
            }
        }
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}\
header a{font-weight:bold;text-decoration:none;color:#333}\
form.inline{display:inline}\
label{display:block;margin:.5rem 0}\
.error{color:#a00}\
li{margin:.4rem 0}\
small{color:#666}";

/// What the home page shows.
pub struct Home<'a> {
    /// The signed-in user.
    pub user: Option<&'a str>,
    /// The counter's value.
    pub counter: u64,
    /// A CSRF token for the forms (signed-in only).
    pub csrf_token: Option<&'a str>,
    /// `server` or `cookie`.
    pub mode: &'a str,
}

/// `GET /`.
pub fn home(page: &Home<'_>) -> Markup {
    layout(
        "Home",
        html! {
            p { "Signed in as " strong #whoami { (page.user.unwrap_or("anonymous")) } }
            @if let (Some(_), Some(token)) = (page.user, page.csrf_token) {
                p { "Counter: " strong #counter { (page.counter) } }
                form method="post" action="/counter" {
                    input type="hidden" name="csrf_token" value=(token);
                    button #increment type="submit" { "Add one" }
                }
                p { a href="/sessions" { "Your sessions" } }
                form method="post" action="/logout" {
                    input type="hidden" name="csrf_token" value=(token);
                    button #logout type="submit" { "Sign out" }
                }
            } @else {
                p { a #login-link href="/login" { "Sign in" } }
            }
            p { small { "Sessions are kept " (if page.mode == "cookie" { "sealed in the cookie" } else { "on the server" }) "." } }
        },
    )
}

/// `GET /login` (and a failed `POST /login`).
pub fn login(csrf_token: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(error) = error {
                p .error #login-error { (error) }
            }
            form #login-form method="post" action="/login" {
                input type="hidden" name="csrf_token" value=(csrf_token);
                label { "User name " input name="username" autocomplete="username" required; }
                label { "Password " input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
            p { small { "Demo users: alice / alice-demo-password, bob / bob-demo-password." } }
        },
    )
}

/// `GET /sessions`.
pub fn sessions(
    sessions: &[std::sync::Arc<SessionRecord>],
    device_bound: &[bool],
    current: &str,
    csrf_token: &str,
    mode: &str,
) -> Markup {
    layout(
        "Your sessions",
        html! {
            h1 { "Your sessions" }
            ul #sessions {
                @for (index, session) in sessions.iter().enumerate() {
                    @let id = session.id.to_string();
                    @let is_current = id == current;
                    @let bound = device_bound.get(index).copied().unwrap_or(false);
                    li data-session-id=(id) data-current=(if is_current { "true" } else { "false" }) data-device-bound=(if bound { "true" } else { "false" }) {
                        (device(session))
                        @if bound { " · " span.bound { "bound to its device" } }
                        " · " (session.client.as_ref().and_then(|c| c.ip).map_or("unknown address".to_owned(), |ip| ip.to_string()))
                        " · last seen " (when(session.last_seen_at))
                        @if is_current { " · " strong { "this browser" } }
                        " "
                        form.inline method="post" action={ "/sessions/" (id) "/revoke" } {
                            input type="hidden" name="csrf_token" value=(csrf_token);
                            button type="submit" { @if is_current { "Sign out" } @else { "Revoke" } }
                        }
                    }
                }
            }
            form method="post" action="/sessions/revoke-others" {
                input type="hidden" name="csrf_token" value=(csrf_token);
                button #revoke-others type="submit" { "Sign out everywhere else" }
            }
            @if mode == "cookie" {
                p { small { "Sessions sealed in cookies live only in their browsers, so only this one is listed; \"sign out everywhere else\" still ends all the others at once." } }
            }
            p { a href="/" { "Home" } }
        },
    )
}

fn device(session: &SessionRecord) -> String {
    let agent = session
        .client
        .as_ref()
        .and_then(|c| c.user_agent.as_deref())
        .unwrap_or("unknown device");
    let mut short: String = agent.chars().take(80).collect();
    if agent.chars().count() > 80 {
        short.push('…');
    }
    short
}

fn when(at: Timestamp) -> String {
    let text = at.to_rfc3339();
    text.get(..19)
        .map_or(text.clone(), |t| t.replace('T', " ") + " UTC")
}
