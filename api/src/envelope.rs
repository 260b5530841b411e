//! The response envelope of the seed API and the mapping of errors to HTTP.
//!
//! Every answer, success or failure, is an [`ApiResponse`]; errors are [`ErrorResponse`]s built
//! by [`ApiError`]'s `ResponseError` implementation, the one place an error becomes a status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// The seed's response body: `{"result": bool, "err": "...", "rev": n, "data": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiResponse<T: Serialize> {
    /// Whether the request succeeded.
    pub result: bool,
    /// What went wrong, empty on success.
    pub err: String,
    /// Revision of the returned data (e.g. a mesh's generation), 0 when not applicable.
    pub rev: i64,
    /// The payload.
    pub data: Option<T>,
}

/// What every error answers: `{"result": false, "err": "<what to fix>", "rev": 0, "data": null}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"result": false, "err": "invalid mesh: name: must be a DNS-1123 label", "rev": 0, "data": null}))]
pub struct ErrorResponse {
    /// Always `false`.
    pub result: bool,
    /// What went wrong, in words a person can act on.
    pub err: String,
    /// Always 0.
    pub rev: i64,
    /// Always `null`.
    #[schema(value_type = Option<Object>)]
    pub data: Option<()>,
}

impl<T: Serialize> ApiResponse<T> {
    /// A successful answer carrying `data`.
    pub fn ok(data: T) -> Self {
        Self {
            result: true,
            err: String::new(),
            rev: 0,
            data: Some(data),
        }
    }

    /// Sets the revision.
    pub fn with_rev(mut self, rev: i64) -> Self {
        self.rev = rev;
        self
    }
}

/// Every error an API handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad JSON, invalid names, out-of-range values).
    #[error("{0}")]
    BadRequest(String),
    /// The caller is not authenticated.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing does not exist (or the caller may not see it).
    #[error("{0}")]
    NotFound(String),
    /// The method is not allowed on this route.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request conflicts with the current state (exists already, stale generation).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not JSON (or YAML where accepted).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request is well formed but cannot be carried out as given (a cluster that fails its
    /// registration probe).
    #[error("{0}")]
    Unprocessable(String),
    /// A Kubernetes cluster the request needs did not answer as it should.
    #[error("{0}")]
    ClusterUnavailable(String),
    /// A backend (database, bus) is unavailable; retrying later may help.
    #[error("{0}")]
    Unavailable(String),
    /// Our fault; the detail goes to the log, not to the caller.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ClusterUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(detail) = self {
            tracing::error!(error = %detail, "request failed");
        }
        HttpResponse::build(self.status()).json(ErrorResponse {
            result: false,
            err: self.to_string(),
            rev: 0,
            data: None,
        })
    }
}

impl From<mesh_bus::BusError> for ApiError {
    fn from(error: mesh_bus::BusError) -> Self {
        tracing::warn!(%error, "message bus unavailable");
        Self::Unavailable("the message bus is unavailable, retry later".into())
    }
}

impl From<mesh_bus::InvalidMessage> for ApiError {
    fn from(error: mesh_bus::InvalidMessage) -> Self {
        Self::BadRequest(error.to_string())
    }
}

impl From<mesh_core::NameError> for ApiError {
    fn from(error: mesh_core::NameError) -> Self {
        Self::BadRequest(error.to_string())
    }
}

impl From<mesh_schema::StoreError> for ApiError {
    fn from(error: mesh_schema::StoreError) -> Self {
        use mesh_schema::StoreError as E;
        match &error {
            E::NotFound { .. } => Self::NotFound(error.to_string()),
            E::AlreadyExists { .. } | E::GenerationConflict { .. } => {
                Self::Conflict(error.to_string())
            }
            E::Database(_) | E::Pool { .. } => {
                tracing::warn!(%error, "database unavailable");
                Self::Unavailable("the database is unavailable, retry later".into())
            }
            _ => Self::Internal(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak_their_detail() {
        let error = ApiError::Internal("password=hunter2 in query".into());
        assert_eq!(error.to_string(), "internal error");
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn store_errors_map_to_what_the_caller_can_do() {
        let conflict = ApiError::from(mesh_schema::StoreError::GenerationConflict {
            mesh: "m".into(),
            expected: 1,
            actual: 2,
        });
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        let missing = ApiError::from(mesh_schema::StoreError::NotFound {
            what: "mesh",
            key: "m".into(),
        });
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
