//! `/api/v1`: sign-up, login and the caller's profile.

use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use proto::auth::v1::{LoginRequest, SignupRequest, ValidateTokenRequest};
use proto::user::v1::{GetUserRequest, User};
use serde::{Deserialize, Serialize};

use crate::clients::Clients;
use crate::error::{ApiError, ErrorBody};
use crate::limits::Limits;

/// A request body that must be a JSON object. serde accepts a struct written as an array of
/// its fields in order (`["a@b.co", "pw", "Ann"]`); a public API should not, so the body is
/// read as a map first and anything else is refused with 400 `invalid_request`.
pub struct Object<T>(pub T);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = serde_json::Map::deserialize(deserializer)?;
        T::deserialize(serde_json::Value::Object(map))
            .map(Object)
            .map_err(serde::de::Error::custom)
    }
}

/// `POST /api/v1/signup` body. No `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignupBody {
    /// A valid address; stored lower-cased.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// 8 characters to 72 bytes.
    #[schema(example = "correct horse battery staple", min_length = 8)]
    pub password: String,
    /// Display name, 1 to 100 characters.
    #[schema(example = "Ada Lovelace")]
    pub name: String,
}

/// `POST /api/v1/login` body. No `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginBody {
    /// The address used at sign-up.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// The password chosen at sign-up.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

/// A user's public profile.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    /// UUID.
    pub id: String,
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
}

/// A bearer token for `Authorization: Bearer <access_token>`. No `Debug`: it holds the token.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    /// Signed JWT.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

impl TryFrom<Option<User>> for UserView {
    type Error = ApiError;

    fn try_from(user: Option<User>) -> Result<Self, ApiError> {
        let user = user.ok_or_else(|| ApiError::Internal("service returned no user".into()))?;
        let created_at = user
            .created_at
            .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
            .ok_or_else(|| ApiError::Internal("user without a valid created_at".into()))?;
        Ok(Self {
            id: user.id,
            email: user.email,
            name: user.name,
            created_at,
        })
    }
}

/// Create an account.
#[utoipa::path(
    post, path = "/api/v1/signup", request_body = SignupBody,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "`malformed_json` or `invalid_request` (missing field, wrong type)", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_email`, `password_too_short`, `password_too_long`, `invalid_name`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sign-ups from this address; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`, or `overloaded` (see `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn signup(
    clients: web::Data<Clients>,
    limits: web::Data<Limits>,
    request: HttpRequest,
    body: web::Json<Object<SignupBody>>,
) -> Result<HttpResponse, ApiError> {
    limits.signup(telemetry::http::client_ip(&request))?;
    let Object(body) = body.into_inner();
    let response = clients
        .auth
        .clone()
        .signup(SignupRequest {
            email: body.email,
            password: body.password,
            name: body.name,
        })
        .await?
        .into_inner();
    Ok(HttpResponse::Created().json(UserView::try_from(response.user)?))
}

/// Exchange email and password for an access token.
#[utoipa::path(
    post, path = "/api/v1/login", request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in", body = TokenView),
        (status = 400, description = "`malformed_json` or `invalid_request`", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: unknown email and wrong password alike", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many logins from this address or for this account; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`, or `overloaded` (see `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn login(
    clients: web::Data<Clients>,
    limits: web::Data<Limits>,
    request: HttpRequest,
    body: web::Json<Object<LoginBody>>,
) -> Result<HttpResponse, ApiError> {
    let Object(body) = body.into_inner();
    limits.login(telemetry::http::client_ip(&request), &body.email)?;
    let response = clients
        .auth
        .clone()
        .login(LoginRequest {
            email: body.email,
            password: body.password,
        })
        .await?
        .into_inner();
    Ok(HttpResponse::Ok().json(TokenView {
        access_token: response.access_token,
        token_type: response.token_type,
        expires_in: response.expires_in,
    }))
}

/// The caller's own profile.
#[utoipa::path(
    get, path = "/api/v1/users/me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile", body = UserView),
        (status = 401, description = "`missing_token`, `invalid_token` or `token_expired`", body = ErrorBody),
        (status = 404, description = "`user_not_found`: the token's user no longer exists", body = ErrorBody),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    )
)]
pub async fn me(
    clients: web::Data<Clients>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = bearer_token(&request)?;
    let validated = clients
        .auth
        .clone()
        .validate_token(ValidateTokenRequest {
            access_token: token.to_owned(),
        })
        .await?
        .into_inner();
    let user = clients
        .user
        .clone()
        .get_user(GetUserRequest {
            id: validated.user_id,
        })
        .await?
        .into_inner();
    Ok(HttpResponse::Ok().json(UserView::try_from(user.user)?))
}

/// The token in `Authorization: Bearer <token>`.
fn bearer_token(request: &HttpRequest) -> Result<&str, ApiError> {
    let invalid = || {
        ApiError::client(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "expected Authorization: Bearer <token>",
        )
    };
    let header = request.headers().get(AUTHORIZATION).ok_or_else(|| {
        ApiError::client(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "this endpoint needs Authorization: Bearer <token>",
        )
    })?;
    let (scheme, token) = header
        .to_str()
        .map_err(|_| invalid())?
        .split_once(' ')
        .ok_or_else(invalid)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(invalid());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn code(result: Result<&str, ApiError>) -> String {
        result.unwrap_err().code().to_owned()
    }

    #[test]
    fn bearer_tokens_are_extracted_strictly() {
        let ok = TestRequest::default()
            .insert_header((AUTHORIZATION, "Bearer abc.def"))
            .to_http_request();
        assert_eq!(bearer_token(&ok).unwrap(), "abc.def");
        let lower = TestRequest::default()
            .insert_header((AUTHORIZATION, "bearer abc"))
            .to_http_request();
        assert_eq!(bearer_token(&lower).unwrap(), "abc");
        assert_eq!(
            code(bearer_token(&TestRequest::default().to_http_request())),
            "missing_token"
        );
        for value in ["Basic abc", "Bearer", "Bearer   ", "abc"] {
            let request = TestRequest::default()
                .insert_header((AUTHORIZATION, value))
                .to_http_request();
            assert_eq!(code(bearer_token(&request)), "invalid_token", "{value}");
        }
    }
}
