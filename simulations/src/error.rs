//! Kubernetes API errors as the simulated API server returns them.
//!
//! Every failed request answers with a `meta.k8s.io/v1` `Status` body whose `reason` and `code`
//! follow the API conventions, so clients (kube's `Error::Api`, kubectl) see what a real server
//! would send. [`ApiError`] is the one error type of the store and the HTTP layer.

use serde_json::{Value, json};

/// The `reason` of a failed request, with its HTTP code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// 400: the request itself is malformed.
    BadRequest,
    /// 401: missing or invalid bearer token.
    Unauthorized,
    /// 403: the request is understood but refused (e.g. a namespace being terminated).
    Forbidden,
    /// 404: the object or resource does not exist.
    NotFound,
    /// 405: the verb is not supported on this path.
    MethodNotAllowed,
    /// 406: the requested representation cannot be produced.
    NotAcceptable,
    /// 409: an object of that name already exists.
    AlreadyExists,
    /// 409: the write lost an optimistic-concurrency race or an apply conflict.
    Conflict,
    /// 410: the requested resourceVersion is older than the retained history.
    Expired,
    /// 415: the patch content type is not supported.
    UnsupportedMediaType,
    /// 422: the object fails validation.
    Invalid,
    /// 500: an internal (or injected) server error.
    InternalError,
    /// 503: the server cannot answer right now.
    ServiceUnavailable,
}

impl Reason {
    /// The HTTP status code Kubernetes uses for this reason.
    pub fn code(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::NotAcceptable => 406,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Expired => 410,
            Reason::UnsupportedMediaType => 415,
            Reason::Invalid => 422,
            Reason::InternalError => 500,
            Reason::ServiceUnavailable => 503,
        }
    }

    /// The `reason` string of the `Status` body.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "BadRequest",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "NotFound",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Expired => "Expired",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::Invalid => "Invalid",
            Reason::InternalError => "InternalError",
            Reason::ServiceUnavailable => "ServiceUnavailable",
        }
    }
}

/// A failed API request: reason, message and the object it concerns.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Why it failed.
    pub reason: Reason,
    /// Human-readable message, in the wording of the real API server where it matters.
    pub message: String,
    /// `details` of the Status: group, kind (resource plural), name.
    pub details: Option<Details>,
}

/// The `details` of a `Status` body.
#[derive(Debug, Clone, Default)]
pub struct Details {
    /// API group ("" for core).
    pub group: String,
    /// Resource plural, as the real server reports it (e.g. `namespaces`).
    pub kind: String,
    /// Object name.
    pub name: String,
}

impl ApiError {
    /// An error with a reason and message and no details.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        ApiError {
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// Attach `details` to the error.
    pub fn with_details(mut self, group: &str, resource: &str, name: &str) -> Self {
        self.details = Some(Details {
            group: group.to_string(),
            kind: resource.to_string(),
            name: name.to_string(),
        });
        self
    }

    /// `<resource>.<group> "<name>" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(
            Reason::NotFound,
            format!("{} \"{name}\" not found", qualified(group, resource)),
        )
        .with_details(group, resource, name)
    }

    /// `<resource>.<group> "<name>" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(
            Reason::AlreadyExists,
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        )
        .with_details(group, resource, name)
    }

    /// The optimistic-concurrency conflict of a stale `resourceVersion`.
    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(
            Reason::Conflict,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
        )
        .with_details(group, resource, name)
    }

    /// A validation failure (422).
    pub fn invalid(group: &str, kind: &str, name: &str, message: impl Into<String>) -> Self {
        ApiError::new(
            Reason::Invalid,
            format!("{kind}.{group} \"{name}\" is invalid: {}", message.into()),
        )
        .with_details(group, kind, name)
    }

    /// A malformed request (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(Reason::BadRequest, message)
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.reason.code(),
        });
        if let Some(d) = &self.details {
            let mut details = json!({ "name": d.name, "kind": d.kind });
            if !d.group.is_empty() {
                details["group"] = json!(d.group);
            }
            status["details"] = details;
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.reason.as_str(),
            self.reason.code(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// Shorthand result of store and handler operations.
pub type ApiResult<T> = Result<T, ApiError>;
