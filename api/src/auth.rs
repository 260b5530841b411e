//! Who is calling and what they may do.
//!
//! Input: `Authorization: Bearer <token>` or the seed clients' `tke` cookie, looked up (hashed)
//! in the store's API tokens; `X-Remote-TenantID` when the request comes from a trusted front
//! proxy. Output: a [`Caller`] — principal, tenant, role — that handlers take as their first
//! argument.
//!
//! [`authenticate`] runs as middleware on the API scope and records the outcome in the request;
//! the [`Caller`] extractor reads it and answers 401 when there is no valid identity. Routes that
//! do not take a [`Caller`] (`/healthz`, `/readyz`, the version catalog) answer everyone, and
//! unknown paths still answer 404.
//!
//! Roles: `admin` sees every tenant and writes anywhere; `editor` reads and writes its own
//! tenant; `viewer` only reads its own tenant (writes answer 403). Reads are scoped by
//! [`Caller::scope`], so another tenant's objects answer 404 exactly like missing ones.
//!
//! `X-Remote-TenantID` is honoured only from an address in [`ApiState::trusted_proxies`], and
//! then only for an administrator's identity (the proxy's own token, or the anonymous caller when
//! tokens are not required): it pins the caller to that tenant. From anyone else the header is
//! ignored, so it can never widen what a token grants.

use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use mesh_core::TenantId;
use mesh_schema::TenantScope;
use mesh_schema::store::token::TokenRole;

use crate::envelope::ApiError;
use crate::state::ApiState;

/// Header a trusted front proxy names the caller's tenant in.
pub const TENANT_HEADER: &str = "X-Remote-TenantID";
/// Cookie the seed's clients carry the token in.
pub const TOKEN_COOKIE: &str = "tke";
/// Tenant of the anonymous caller when tokens are not required.
pub const ANONYMOUS_TENANT: &str = "default";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who (`user:alice`, `anonymous`); recorded as the principal of published commands.
    pub principal: String,
    /// The tenant the caller acts for.
    pub tenant: TenantId,
    /// What the caller may do.
    pub role: TokenRole,
    /// Whether a trusted proxy pinned an administrator to [`Caller::tenant`].
    pub pinned: bool,
}

impl Caller {
    /// Which tenants' objects the caller may see.
    pub fn scope(&self) -> TenantScope {
        if self.role == TokenRole::Admin && !self.pinned {
            TenantScope::All
        } else {
            TenantScope::Tenant(self.tenant.clone())
        }
    }

    /// Refuses viewers: 403 for a write.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role == TokenRole::Viewer {
            return Err(ApiError::Forbidden(format!(
                "{} has the viewer role and may not change anything",
                self.principal
            )));
        }
        Ok(())
    }

    fn anonymous() -> Self {
        Self {
            principal: "anonymous".into(),
            tenant: TenantId::new(ANONYMOUS_TENANT).expect("invariant: a valid tenant id"),
            role: TokenRole::Admin,
            pinned: false,
        }
    }
}

/// What [`authenticate`] concluded, kept in the request's extensions.
#[derive(Debug, Clone)]
enum Outcome {
    Caller(Caller),
    Refused(RefusedBecause),
}

#[derive(Debug, Clone)]
enum RefusedBecause {
    Missing,
    Invalid,
    NotBearer,
    BadTenantHeader(String),
    NoStore,
    StoreDown,
}

impl RefusedBecause {
    fn error(&self) -> ApiError {
        match self {
            Self::Missing => ApiError::Unauthorized(
                "authentication required: send Authorization: Bearer <token> or the tke cookie"
                    .into(),
            ),
            Self::Invalid => ApiError::Unauthorized("the token is not valid or was revoked".into()),
            Self::NotBearer => ApiError::Unauthorized(
                "unsupported Authorization scheme: use Authorization: Bearer <token>".into(),
            ),
            Self::BadTenantHeader(reason) => {
                ApiError::BadRequest(format!("invalid {TENANT_HEADER} header: {reason}"))
            }
            Self::NoStore => {
                ApiError::Unavailable("tokens cannot be checked: no database is configured".into())
            }
            Self::StoreDown => {
                ApiError::Unavailable("the database is unavailable, retry later".into())
            }
        }
    }
}

/// The token a request presents, if any; `Err` for an Authorization header that is not Bearer.
fn presented_token(request: &ServiceRequest) -> Result<Option<String>, RefusedBecause> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| RefusedBecause::NotBearer)?;
        let (scheme, token) = value.split_once(' ').ok_or(RefusedBecause::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(RefusedBecause::NotBearer);
        }
        let token = token.trim();
        return Ok((!token.is_empty()).then(|| token.to_owned()));
    }
    Ok(request
        .cookie(TOKEN_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|t| !t.is_empty()))
}

async fn identify(state: &ApiState, request: &ServiceRequest) -> Outcome {
    let token = match presented_token(request) {
        Ok(token) => token,
        Err(reason) => return Outcome::Refused(reason),
    };
    let caller = match token {
        Some(token) => {
            let Some(store) = &state.store else {
                return Outcome::Refused(RefusedBecause::NoStore);
            };
            match store.authenticate_api_token(&token).await {
                Ok(Some(identity)) => Caller {
                    principal: identity.principal,
                    tenant: identity.tenant,
                    role: identity.role,
                    pinned: false,
                },
                Ok(None) => return Outcome::Refused(RefusedBecause::Invalid),
                Err(error) => {
                    tracing::warn!(%error, "cannot check an API token");
                    return Outcome::Refused(RefusedBecause::StoreDown);
                }
            }
        }
        None if state.auth_required => return Outcome::Refused(RefusedBecause::Missing),
        None => Caller::anonymous(),
    };
    apply_tenant_header(state, request, caller)
}

/// Pins an administrator to the tenant a trusted proxy names; ignores the header otherwise.
fn apply_tenant_header(state: &ApiState, request: &ServiceRequest, mut caller: Caller) -> Outcome {
    let Some(value) = request.headers().get(TENANT_HEADER) else {
        return Outcome::Caller(caller);
    };
    let trusted = request
        .peer_addr()
        .is_some_and(|peer| state.trusted_proxies.contains(&peer.ip()));
    if !trusted || caller.role != TokenRole::Admin {
        return Outcome::Caller(caller);
    }
    let tenant = value
        .to_str()
        .map_err(|_| "not ASCII".to_owned())
        .and_then(|v| TenantId::new(v.trim()).map_err(|e| e.to_string()));
    match tenant {
        Ok(tenant) => {
            caller.tenant = tenant;
            caller.pinned = true;
            Outcome::Caller(caller)
        }
        Err(reason) => Outcome::Refused(RefusedBecause::BadTenantHeader(reason)),
    }
}

/// Middleware: identifies the caller of every API request and records the outcome for the
/// [`Caller`] extractor. It never answers by itself, so public and unknown routes behave as
/// without it.
pub async fn authenticate(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !is_public(request.path())
        && let Some(state) = request.app_data::<web::Data<ApiState>>().cloned()
    {
        let outcome = identify(&state, &request).await;
        request.extensions_mut().insert(outcome);
    }
    next.call(request).await
}

/// Paths that answer without a token.
pub fn is_public(path: &str) -> bool {
    const PUBLIC: [&str; 5] = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/apis/v1/mesh/config/istioversions",
        "/apis/v1/mesh/openapi.json",
    ];
    PUBLIC.contains(&path.trim_end_matches('/'))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let outcome = request.extensions().get::<Outcome>().cloned();
        ready(match outcome {
            Some(Outcome::Caller(caller)) => Ok(caller),
            Some(Outcome::Refused(reason)) => Err(reason.error()),
            None => Err(ApiError::Internal(
                "the authentication middleware is not installed on this route".into(),
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_paths_are_public() {
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/apis/v1/mesh/config/istioversions",
            "/apis/v1/mesh/openapi.json",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in ["/apis/v1/mesh/meshes", "/apis/v1/mesh/clusters", "/"] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[test]
    fn admins_see_every_tenant_until_pinned() {
        let mut caller = Caller::anonymous();
        assert_eq!(caller.scope(), TenantScope::All);
        caller.pinned = true;
        assert!(matches!(caller.scope(), TenantScope::Tenant(_)));
        caller.role = TokenRole::Viewer;
        assert!(caller.require_write().is_err());
    }
}
