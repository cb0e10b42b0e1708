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
///
/// The schemas state [`proto::validation`]'s rules, from its constants, as far as JSON Schema
/// can; the descriptions say the rest (README, "The OpenAPI contract").
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignupBody {
    /// Described by [`email_schema`].
    #[schema(schema_with = email_schema)]
    pub email: String,
    /// Described by [`password_schema`].
    #[schema(schema_with = password_schema)]
    pub password: String,
    /// Described by [`name_schema`].
    #[schema(schema_with = name_schema)]
    pub name: String,
}

use proto::validation::{
    MAX_EMAIL_BYTES, MAX_EMAIL_LOCAL_BYTES, MAX_NAME_CHARS, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS,
};

fn email_schema() -> utoipa::openapi::Object {
    string_schema(
        &format!(
            "An ASCII address (an internationalised domain in its `xn--` form), at most \
             {MAX_EMAIL_BYTES} bytes with a local part of at most {MAX_EMAIL_LOCAL_BYTES}; \
             surrounding white space is ignored; stored lower-cased."
        ),
        "ada@example.com",
    )
    .pattern(Some(email_pattern()))
    .max_length(Some(MAX_EMAIL_BYTES))
    .build()
}

fn password_schema() -> utoipa::openapi::Object {
    string_schema(
        &format!(
            "{MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes of UTF-8 (bcrypt \
             reads no further, so longer ones are refused rather than truncated)."
        ),
        "correct horse battery staple",
    )
    .min_length(Some(MIN_PASSWORD_CHARS))
    .max_length(Some(MAX_PASSWORD_BYTES))
    .build()
}

fn name_schema() -> utoipa::openapi::Object {
    string_schema(
        &format!(
            "Display name: 1 to {MAX_NAME_CHARS} characters once surrounding white space is \
             removed and the text NFC-normalised; no control, format (zero-width, bidi), \
             private-use, unassigned or line/paragraph-separator characters."
        ),
        "Ada Lovelace",
    )
    .pattern(Some(name_pattern()))
    .build()
}

fn string_schema(description: &str, example: &str) -> utoipa::openapi::ObjectBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .examples([example])
}

/// ASCII white space, which the server trims from emails and names.
const WS: &str = r"[\t\n\x0b\x0c\r ]*";

/// [`proto::validation::email`]: printable ASCII but `@` before it, dot-separated DNS labels
/// (letters, digits, inner hyphens, at most 63) after it, at least two.
fn email_pattern() -> String {
    let label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    format!(r"^{WS}[!-?A-~]{{1,{MAX_EMAIL_LOCAL_BYTES}}}@{label}(?:\.{label})+{WS}$")
}

/// [`proto::validation::name`] as far as a regex can say it: 1 to [`MAX_NAME_CHARS`]
/// characters, none of them an ASCII control character, between optional white space.
fn name_pattern() -> String {
    let inner = MAX_NAME_CHARS - 2;
    format!(r"^{WS}[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]{{0,{inner}}}[^\x00-\x20\x7f])?{WS}$")
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
        (status = 408, description = "`request_timeout`: the body arrived too slowly", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
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
        (status = 408, description = "`request_timeout`: the body arrived too slowly", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
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

    /// The document's patterns say what [`proto::validation`] does, for every ASCII case here:
    /// schemathesis trusts them in both directions (README, "The OpenAPI contract").
    #[test]
    fn the_documented_patterns_agree_with_the_server_rules() {
        let email = regex::Regex::new(&email_pattern()).unwrap();
        let long_local = format!("{}@example.com", "a".repeat(64));
        let longer_local = format!("{}@example.com", "a".repeat(65));
        let long_label = format!("a@{}.com", "b".repeat(63));
        let longer_label = format!("a@{}.com", "b".repeat(64));
        let emails = [
            "ada@example.com",
            "Ada@Example.COM",
            " ada@example.com\t",
            "\n\x0ba@b.co\r",
            "a!#$%&'*+/=?^_`{|}~-@b.co",
            "\"quoted\"@b.co",
            "a.b..c@b.co",
            "a@xn--bcher-kva.de",
            "a@b",
            "a@.b.co",
            "a@b..co",
            "a@-b.co",
            "a@b-.co",
            "a@b_c.co",
            "@b.co",
            "a@@b.co",
            "a b@c.co",
            "a@b.co x",
            "\x1fa@b.co",
            "a\x7f@b.co",
            "",
            " ",
            &long_local,
            &longer_local,
            &long_label,
            &longer_label,
        ];
        for raw in emails {
            assert_eq!(
                email.is_match(raw),
                proto::validation::email(raw).is_ok(),
                "email {raw:?}"
            );
        }
        let name = regex::Regex::new(&name_pattern()).unwrap();
        let names = [
            "Ada".to_owned(),
            "A".to_owned(),
            " Ada Lovelace \t".to_owned(),
            "a b".to_owned(),
            "x".repeat(100),
            "x".repeat(101),
            format!("  {}  ", "x".repeat(100)),
            String::new(),
            "   ".to_owned(),
            "a\tb".to_owned(),
            "a\x00b".to_owned(),
            "a\x7f".to_owned(),
            "\x1bname".to_owned(),
            "~!@#$%^&*()".to_owned(),
        ];
        for raw in &names {
            assert_eq!(
                name.is_match(raw),
                proto::validation::name(raw).is_ok(),
                "name {raw:?}"
            );
        }
    }

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
