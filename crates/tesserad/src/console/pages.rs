//! The console's HTML (element ids are listed in `docs/console.md`). Pages
//! show session ids, subjects and clients, never a token or a key.

use std::sync::Arc;
use std::time::Duration;

use maud::{DOCTYPE, Markup, html};
use tessera::SessionRecord;

use super::audit::AuditEntry;
use super::history::Counters;
use super::{REVOKE_EVERYTHING_PHRASE, agent, chart, encode};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:64rem;margin:1.5rem auto;padding:0 1rem;color:#1d2330}\
nav{display:flex;gap:1rem;align-items:center;border-bottom:1px solid #dde;padding-bottom:.6rem;margin-bottom:1rem}\
nav .who{margin-left:auto;color:#556;font-size:.9rem}\
nav form{display:inline}\
table{border-collapse:collapse;width:100%;font-size:.88rem}\
th,td{text-align:left;padding:.3rem .4rem;border-bottom:1px solid #eef;vertical-align:top}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(370px,1fr));gap:.6rem}\
figure{margin:0}figcaption{font-size:.85rem;margin-bottom:.2rem}\
.done{background:#e8f5e9;padding:.5rem}.error{background:#fdecea;padding:.5rem}\
.danger{border:1px solid #c62828;padding:.8rem;margin-top:1.5rem}\
button{cursor:pointer}code{font-size:.85rem}";

fn layout(title: &str, operator: Option<(&str, &str)>, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                @if refresh { meta http-equiv="refresh" content="30"; }
                title { (title) " · tesserad console" }
                style { (STYLE) }
            }
            body {
                nav {
                    strong { "tesserad" }
                    @if let Some((key_id, csrf_token)) = operator {
                        a #nav-overview href="/admin" { "Overview" }
                        a #nav-users href="/admin/users" { "Find a user" }
                        a #nav-sessions href="/admin/sessions" { "Everything" }
                        a #nav-audit href="/admin/audit" { "Audit" }
                        span.who { "key " code #operator { (key_id) } }
                        form method="post" action="/admin/sign-out" {
                            input type="hidden" name="csrf_token" value=(csrf_token);
                            button #sign-out type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page with a title and one paragraph.
pub fn message(title: &str, text: &str) -> Markup {
    layout(title, None, false, html! { p #message { (text) } })
}

/// The sign-in form.
pub fn sign_in(csrf_token: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        false,
        html! {
            @if let Some(error) = error { p.error #sign-in-error { (error) } }
            p { "Sign in with an API key that has the " code { "admin" } " scope." }
            form #sign-in-form method="post" action="/admin/sign-in" {
                input type="hidden" name="csrf_token" value=(csrf_token);
                label { "API key " input #key type="password" name="key" autocomplete="off" required; }
                " "
                button #sign-in type="submit" { "Sign in" }
            }
        },
    )
}

/// What the overview shows.
pub struct Overview<'a> {
    pub operator: &'a str,
    pub csrf_token: &'a str,
    pub minutes: &'a [Counters],
    pub held: Option<u64>,
    pub store: &'a str,
    pub store_error: Option<String>,
    pub version: &'a str,
    pub uptime: Duration,
}

fn uptime(duration: Duration) -> String {
    let s = duration.as_secs();
    format!(
        "{}d {}h {}m {}s",
        s / 86_400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

/// `GET /admin`.
pub fn overview(page: &Overview<'_>) -> Markup {
    let series = |f: fn(&Counters) -> u64| page.minutes.iter().map(f).collect::<Vec<_>>();
    layout(
        "Overview",
        Some((page.operator, page.csrf_token)),
        true,
        html! {
            table #status {
                tr { th { "Sessions held" } td #held { @match page.held { Some(n) => (n), None => "not counted by this store" } } }
                tr { th { "Store" } td { code { (page.store) } " — "
                    @match &page.store_error {
                        None => span #store-status { "answering" },
                        Some(error) => span #store-status .error { "not answering: " (error) },
                    }
                } }
                tr { th { "Version" } td #version { (page.version) } }
                tr { th { "Uptime" } td #uptime { (uptime(page.uptime)) } }
            }
            h2 { "The last hour, per minute" }
            p { small { "This page refreshes every 30 seconds." } }
            div.charts {
                (chart::bars("chart-held", "Sessions held", &series(|c| c.held.unwrap_or(0))))
                (chart::bars("chart-creations", "Creations", &series(|c| c.creations)))
                (chart::bars("chart-validations", "Validations", &series(|c| c.validations)))
                (chart::bars("chart-logins", "Logins", &series(|c| c.logins)))
                (chart::bars("chart-failures", "Failures", &series(|c| c.failures)))
                (chart::bars("chart-security", "Security events", &series(|c| c.security_events)))
            }
        },
    )
}

fn client_cells(session: &SessionRecord) -> Markup {
    let client = session.client.as_deref();
    let ip = client.and_then(|c| c.ip).map(|ip| ip.to_string());
    let (browser, os) = agent::describe(client.and_then(|c| c.user_agent.as_deref()).unwrap_or(""));
    html! {
        td.ip { (ip.unwrap_or_else(|| "—".to_owned())) }
        td.agent { (browser) " on " (os) }
    }
}

/// What "Find a user" shows.
pub struct FindUser<'a> {
    pub operator: &'a str,
    pub csrf_token: &'a str,
    pub subject: Option<&'a str>,
    pub sessions: Option<&'a [Arc<SessionRecord>]>,
    /// Whether each of `sessions` is bound to a device (DBSC), in order.
    pub device_bound: &'a [bool],
    pub next: Option<&'a str>,
    pub done: Option<&'a str>,
}

fn confirm_link(action: &str, subject: &str, id: Option<&str>) -> String {
    let mut link = format!("/admin/confirm?action={action}&subject={}", encode(subject));
    if let Some(id) = id {
        link.push_str(&format!("&id={}", encode(id)));
    }
    link
}

/// `GET /admin/users`.
pub fn find_user(page: &FindUser<'_>) -> Markup {
    layout(
        "Find a user",
        Some((page.operator, page.csrf_token)),
        false,
        html! {
            @if let Some(done) = page.done { p.done #done { (done) } }
            form #find-form method="get" action="/admin/users" {
                label { "Subject " input #subject type="text" name="subject" value=(page.subject.unwrap_or("")) required; }
                " " button #find type="submit" { "Find" }
            }
            @if let (Some(subject), Some(sessions)) = (page.subject, page.sessions) {
                h2 { "Sessions of " code #found-subject { (subject) } " (" span #session-count { (sessions.len()) } @if page.next.is_some() { "+" } ")" }
                @if sessions.is_empty() {
                    p #no-sessions { "No live sessions." }
                } @else {
                    p { a #revoke-subject href=(confirm_link("revoke-subject", subject, None)) { "Revoke all of them" } }
                    table #user-sessions {
                        tr { th { "Session" } th { "Created" } th { "Last seen" } th { "Idle deadline" } th { "Absolute deadline" } th { "Auth level" } th { "IP" } th { "Browser and OS" } th { "Device-bound" } th {} }
                        @for (index, session) in sessions.iter().enumerate() {
                            @let id = session.id.to_string();
                            @let bound = page.device_bound.get(index).copied().unwrap_or(false);
                            tr.session data-id=(id) {
                                td { code { (id) } }
                                td { (session.created_at.to_rfc3339()) }
                                td { (session.last_seen_at.to_rfc3339()) }
                                td { (session.idle_expires_at().to_rfc3339()) }
                                td { (session.absolute_expires_at.to_rfc3339()) }
                                td { (session.auth_level.0) }
                                (client_cells(session))
                                td.device-bound data-device-bound=(bound) { @if bound { "yes" } @else { "no" } }
                                td {
                                    a.revoke href=(confirm_link("revoke-session", subject, Some(&id))) { "Revoke" }
                                    " · "
                                    a.revoke-others href=(confirm_link("revoke-all-but", subject, Some(&id))) { "Revoke all but this" }
                                }
                            }
                        }
                    }
                    @if let Some(next) = page.next {
                        p { a #next-page href={"/admin/users?subject=" (encode(subject)) "&cursor=" (encode(next))} { "More sessions" } }
                    }
                }
            }
        },
    )
}

/// What a confirmation page shows.
pub struct Confirm<'a> {
    pub operator: &'a str,
    pub csrf_token: &'a str,
    pub description: &'a str,
    pub action: &'a str,
    pub subject: Option<&'a str>,
    pub id: Option<&'a str>,
}

/// `GET /admin/confirm`.
pub fn confirm(page: &Confirm<'_>) -> Markup {
    layout(
        "Confirm",
        Some((page.operator, page.csrf_token)),
        false,
        html! {
            p #confirm-what { "You are about to " strong { (page.description) } ". The users concerned are signed out at once." }
            form #confirm-form method="post" action="/admin/actions" {
                input type="hidden" name="csrf_token" value=(page.csrf_token);
                input type="hidden" name="action" value=(page.action);
                @if let Some(subject) = page.subject { input type="hidden" name="subject" value=(subject); }
                @if let Some(id) = page.id { input type="hidden" name="id" value=(id); }
                button #confirm type="submit" { "Yes, do it" }
                " "
                a #cancel href={"/admin/users?subject=" (encode(page.subject.unwrap_or("")))} { "Cancel" }
            }
        },
    )
}

/// What "Everything" shows.
pub struct Everything<'a> {
    pub operator: &'a str,
    pub csrf_token: &'a str,
    pub sessions: &'a [SessionRecord],
    pub next: Option<&'a str>,
    pub done: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// `GET /admin/sessions`.
pub fn everything(page: &Everything<'_>) -> Markup {
    layout(
        "Everything",
        Some((page.operator, page.csrf_token)),
        false,
        html! {
            @if let Some(done) = page.done { p.done #done { (done) } }
            @if let Some(error) = page.error { p.error #revoke-everything-error { (error) } }
            table #all-sessions {
                tr { th { "Session" } th { "Subject" } th { "Created" } th { "Last seen" } th { "Auth level" } th { "IP" } th { "Browser and OS" } }
                @for session in page.sessions {
                    tr.session data-id=(session.id.to_string()) {
                        td { code { (session.id.to_string()) } }
                        td { @match &session.subject {
                            Some(subject) => a href={"/admin/users?subject=" (encode(subject))} { (subject) },
                            None => "anonymous",
                        } }
                        td { (session.created_at.to_rfc3339()) }
                        td { (session.last_seen_at.to_rfc3339()) }
                        td { (session.auth_level.0) }
                        (client_cells(session))
                    }
                }
            }
            @if page.sessions.is_empty() { p #no-sessions { "No live sessions." } }
            @if let Some(next) = page.next {
                p { a #next-page href={"/admin/sessions?cursor=" (encode(next))} { "Next page" } }
            }
            div.danger {
                h2 { "Revoke every session" }
                p { "Signs out every user of every application using this server. Type "
                    code { (REVOKE_EVERYTHING_PHRASE) } " to confirm." }
                form #revoke-everything-form method="post" action="/admin/actions" {
                    input type="hidden" name="csrf_token" value=(page.csrf_token);
                    input type="hidden" name="action" value="revoke-everything";
                    input #confirmation type="text" name="confirmation" autocomplete="off";
                    " "
                    button #revoke-everything type="submit" { "Revoke every session" }
                }
            }
        },
    )
}

/// What the audit page shows.
pub struct Audit<'a> {
    pub operator: &'a str,
    pub csrf_token: &'a str,
    pub entries: &'a [AuditEntry],
    pub next: Option<&'a str>,
}

/// `GET /admin/audit`.
pub fn audit(page: &Audit<'_>) -> Markup {
    layout(
        "Audit",
        Some((page.operator, page.csrf_token)),
        false,
        html! {
            p { "Every console action, newest first, kept in the session store." }
            table #audit {
                tr { th { "When" } th { "Key" } th { "What" } th { "From" } }
                @for entry in page.entries {
                    tr.entry {
                        td { (entry.at.to_rfc3339()) }
                        @match &entry.record {
                            Some(record) => {
                                td { code { (record.key_id) } }
                                td.action { (record.action) }
                                td { (record.ip.as_deref().unwrap_or("—")) }
                            },
                            None => { td colspan="3" { "(an entry this version cannot read)" } },
                        }
                    }
                }
            }
            @if let Some(next) = page.next {
                p { a #next-page href={"/admin/audit?cursor=" (encode(next))} { "Older" } }
            }
        },
    )
}
