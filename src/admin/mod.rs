//! The admin HTTP server (`[admin] listen`, default `127.0.0.1:9060`), on the same tokio
//! runtime as the SIP edge, with axum (tokio's own HTTP framework: routing, forms, query
//! strings; no extra runtime):
//! - `GET /healthz`: `200 ready`, or `503 loading|draining|saturated` (always open, for a
//!   load balancer or a dispatcher);
//! - `GET /metrics`: Prometheus text ([`metrics`]);
//! - `GET /`: the call log page ([`page`]), filters `?action=…&date=YYYY-MM-DD`;
//! - `POST /calls/feedback`: "scam" / "not a scam" for one call (a form on the page);
//! - `GET /calls/message?id=…`: the message a blocked caller left, as WAV;
//! - `GET|POST /login`: when a token is set, the page's login form (sets a cookie).
//!
//! Access: with no `[admin] token` (allowed only on loopback, see config validation) every
//! route is open to whoever can reach the address. With a token, everything but `/healthz`
//! needs `Authorization: Bearer TOKEN` or the login cookie.

pub mod metrics;
pub mod page;

use crate::runtime::live::{Health, Live};
use crate::store::{CallStore, Feedback};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What the handlers share.
pub struct AdminState {
    pub live: Arc<Live>,
    pub metrics: Arc<metrics::Metrics>,
    /// The call database (`None` in mark mode: no calls are screened).
    pub db: Option<PathBuf>,
    pub token: Option<String>,
    /// Where `POST /reload` asks for a reload (`None`: not offered).
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
}

/// A reload request: the channel for its outcome (`None` for SIGHUP, which only logs).
pub type ReloadRequest = Option<tokio::sync::oneshot::Sender<Result<(), String>>>;

type Shared = Arc<AdminState>;

const COOKIE: &str = "scamscreen_admin";

/// Bind the admin address (errors name it).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serve until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: AdminState) {
    let app = router(Arc::new(state));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "admin server stopped");
    }
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/", get(call_log))
        .route("/calls/feedback", post(feedback))
        .route("/calls/message", get(message))
        .route("/login", get(login_form).post(login))
        .route("/reload", post(reload))
        .with_state(state)
}

/// Whether the request carries the token (Bearer or the login cookie).
fn authorized(state: &AdminState, headers: &HeaderMap) -> bool {
    let Some(token) = state.token.as_deref() else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == COOKIE && constant_time_eq(v.as_bytes(), token.as_bytes()));
    bearer || cookie
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(page: bool) -> Response {
    if page {
        Redirect::to("/login").into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "token required\n",
        )
            .into_response()
    }
}

async fn healthz(State(s): State<Shared>) -> Response {
    let h = s.live.health();
    let code = if h == Health::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", h.as_str())).into_response()
}

async fn metrics_text(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized(false);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// Open the call database for one request (SQLite: cheap, and never shared with the writer).
async fn with_store<T: Send + 'static>(
    s: &AdminState,
    f: impl FnOnce(&CallStore) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    let Some(db) = s.db.clone() else {
        return Err((StatusCode::NOT_FOUND, "no call database (mark mode)\n").into_response());
    };
    let r = tokio::task::spawn_blocking(move || {
        let store = CallStore::open_existing(&db)?;
        f(&store)
    })
    .await;
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()),
        Err(_) => Err((StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()),
    }
}

async fn call_log(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(filter): Query<page::Filter>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized(true);
    }
    let since = filter.since();
    let calls = match with_store(&s, move |store| {
        let calls = store.recent(page::MAX_ROWS, since)?;
        let mut out = Vec::new();
        for c in calls {
            let fb = store.feedback(&c.call_id)?;
            out.push((c, fb));
        }
        Ok(out)
    })
    .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    Html(page::render(&calls, &filter, s.live.health())).into_response()
}

#[derive(serde::Deserialize)]
struct FeedbackForm {
    id: String,
    verdict: String,
    /// Where to go back to (the page with its filters).
    back: Option<String>,
}

async fn feedback(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<FeedbackForm>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized(false);
    }
    let Some(verdict) = Feedback::parse(&form.verdict) else {
        return (
            StatusCode::BAD_REQUEST,
            "verdict must be scam or not_scam\n",
        )
            .into_response();
    };
    let id = form.id.clone();
    match with_store(&s, move |store| store.set_feedback(&id, verdict)).await {
        Ok(true) => {
            tracing::info!(verdict = verdict.as_str(), "feedback on a call stored");
            // Only our own page's query string goes back: never an open redirect.
            let back = form
                .back
                .filter(|b| b.starts_with("/?") || b == "/")
                .unwrap_or_else(|| "/".into());
            Redirect::to(&back).into_response()
        }
        Ok(false) => (StatusCode::NOT_FOUND, "no such call\n").into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct MessageQuery {
    id: String,
}

async fn message(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<MessageQuery>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized(false);
    }
    match with_store(&s, move |store| store.message(&q.id)).await {
        Ok(Some(m)) => {
            let wav = page::wav_8k(&m.pcm_8k);
            ([(header::CONTENT_TYPE, "audio/wav")], wav).into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no message\n").into_response(),
        Err(r) => r,
    }
}

/// `POST /reload`: re-read the configuration; 200 when it took effect, 422 with every problem
/// when it was refused (the running configuration stays).
async fn reload(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized(false);
    }
    let Some(tx) = &s.reload else {
        return (StatusCode::NOT_FOUND, "reload not available\n").into_response();
    };
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if tx.send(Some(reply)).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response();
    }
    match outcome.await {
        Ok(Ok(())) => (StatusCode::OK, "reloaded\n").into_response(),
        Ok(Err(problems)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reload refused, the running configuration stays:\n{problems}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "no answer\n").into_response(),
    }
}

async fn login_form() -> Html<&'static str> {
    Html(page::LOGIN)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(s): State<Shared>, Form(form): Form<LoginForm>) -> Response {
    match s.token.as_deref() {
        Some(t) if constant_time_eq(form.token.trim().as_bytes(), t.as_bytes()) => {
            let cookie = format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Some(_) => (StatusCode::UNAUTHORIZED, Html(page::LOGIN)).into_response(),
        None => Redirect::to("/").into_response(),
    }
}
