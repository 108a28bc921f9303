//! The API handlers. Cached GET handlers read, then answer through
//! [`Origin::answer`](super::origin::Origin::answer); handlers whose tags
//! depend on data (a session's owner) return them as [`Tags`], so the cache
//! layer or the invalidate layer picks them up.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tagcache::Tags;

use super::auth::Principal;
use super::data::{Session, Status, TeacherCounts, Title, Totals};
use super::errors::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::origin::route;
use super::AppState;

/// The result of every handler.
type ApiResult<T> = Result<T, ApiError>;

/// `?status=active|ended`; any other parameter is refused, so junk queries
/// cannot fill the cache with copies of the same list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<Status>,
}

/// A teacher's sessions.
#[derive(Debug, Serialize)]
pub struct SessionList {
    teacher_id: u32,
    sessions: Vec<Session>,
}

/// Body of `POST /api/teachers/{tid}/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    title: Title,
}

/// Body of `PUT /api/sessions/{sid}`: each field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionChange {
    title: Option<Title>,
    status: Option<Status>,
}

fn teacher_tag(teacher_id: u32) -> String {
    format!("teacher:{teacher_id}")
}

fn session_tags(session: &Session) -> Tags {
    Tags::new([
        format!("session:{}", session.id),
        teacher_tag(session.teacher_id),
    ])
}

fn unknown_teacher(teacher_id: u32) -> ApiError {
    ApiError::not_found(format!("teacher {teacher_id} not found"))
}

fn unknown_session(session_id: u64) -> ApiError {
    ApiError::not_found(format!("session {session_id} not found"))
}

/// `GET /api/teachers/{tid}/sessions[?status=]`
pub async fn session_list(
    State(app): State<AppState>,
    ApiPath(teacher_id): ApiPath<u32>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<(Tags, Json<SessionList>)> {
    let read = app.db.sessions_of(teacher_id, query.status).await?;
    let sessions = app
        .origin
        .answer(route::SESSION_LIST, read)
        .await
        .ok_or_else(|| unknown_teacher(teacher_id))?;
    Ok((
        Tags::new([teacher_tag(teacher_id)]),
        Json(SessionList {
            teacher_id,
            sessions,
        }),
    ))
}

/// `GET /api/sessions/{sid}`: tagged with its owner, which only the data knows.
pub async fn session_detail(
    State(app): State<AppState>,
    ApiPath(session_id): ApiPath<u64>,
) -> ApiResult<(Tags, Json<Session>)> {
    let read = app.db.session(session_id).await?;
    let session = app
        .origin
        .answer(route::SESSION_DETAIL, read)
        .await
        .ok_or_else(|| unknown_session(session_id))?;
    Ok((session_tags(&session), Json(session)))
}

/// `GET /api/me/sessions`: the calling teacher's sessions.
pub async fn my_sessions(
    State(app): State<AppState>,
    principal: Principal,
) -> ApiResult<(Tags, Json<SessionList>)> {
    let read = match principal {
        Principal::Teacher(teacher_id) => app
            .db
            .sessions_of(teacher_id, None)
            .await?
            .map(|sessions| (teacher_id, sessions))
            .ok_or_else(|| unknown_teacher(teacher_id)),
        Principal::Admin => Err(ApiError::forbidden(
            "only teachers have sessions of their own",
        )),
    };
    let (teacher_id, sessions) = app.origin.answer(route::MY_SESSIONS, read).await?;
    Ok((
        Tags::new([teacher_tag(teacher_id)]),
        Json(SessionList {
            teacher_id,
            sessions,
        }),
    ))
}

/// `GET /api/dashboard/teacher/{tid}`
pub async fn teacher_dashboard(
    State(app): State<AppState>,
    ApiPath(teacher_id): ApiPath<u32>,
) -> ApiResult<(Tags, Json<TeacherCounts>)> {
    let read = app.db.teacher_counts(teacher_id).await?;
    let counts = app
        .origin
        .answer(route::TEACHER_DASHBOARD, read)
        .await
        .ok_or_else(|| unknown_teacher(teacher_id))?;
    Ok((Tags::new([teacher_tag(teacher_id)]), Json(counts)))
}

/// `GET /api/dashboard/admin`: administrators only.
pub async fn admin_dashboard(
    State(app): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Totals>> {
    let read = match principal {
        Principal::Admin => Ok(app.db.totals().await?),
        Principal::Teacher(_) => Err(ApiError::forbidden("administrators only")),
    };
    let totals = app.origin.answer(route::ADMIN_DASHBOARD, read).await?;
    Ok(Json(totals))
}

/// `POST /api/teachers/{tid}/sessions`
pub async fn create_session(
    State(app): State<AppState>,
    ApiPath(teacher_id): ApiPath<u32>,
    ApiJson(new): ApiJson<NewSession>,
) -> ApiResult<(StatusCode, Tags, Json<Session>)> {
    let session = app
        .db
        .create(teacher_id, new.title)
        .await?
        .ok_or_else(|| unknown_teacher(teacher_id))?;
    Ok((StatusCode::CREATED, session_tags(&session), Json(session)))
}

/// `PUT /api/sessions/{sid}`
pub async fn update_session(
    State(app): State<AppState>,
    ApiPath(session_id): ApiPath<u64>,
    ApiJson(change): ApiJson<SessionChange>,
) -> ApiResult<(Tags, Json<Session>)> {
    let session = app
        .db
        .update(session_id, change.title, change.status)
        .await?
        .ok_or_else(|| unknown_session(session_id))?;
    Ok((session_tags(&session), Json(session)))
}

/// `DELETE /api/sessions/{sid}`
pub async fn delete_session(
    State(app): State<AppState>,
    ApiPath(session_id): ApiPath<u64>,
) -> ApiResult<(Tags, StatusCode)> {
    let session = app
        .db
        .delete(session_id)
        .await?
        .ok_or_else(|| unknown_session(session_id))?;
    Ok((session_tags(&session), StatusCode::NO_CONTENT))
}
