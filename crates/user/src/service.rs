//! The `user.v1.UserService` implementation.

use proto::user::v1::{
    CreateUserRequest, CreateUserResponse, GetCredentialRequest, GetCredentialResponse,
    GetUserRequest, GetUserResponse, User, user_service_server::UserService,
};
use service_runtime::grpc::answer;
use tonic::{Request, Response, Status};

use crate::db::{Database, UserRow};
use crate::error::UserError;

/// Serves the user API from a [`Database`].
#[derive(Debug, Clone)]
pub struct UserApi {
    db: Database,
    /// Password hashes below this bcrypt cost are refused: a caller cannot weaken what is stored.
    min_bcrypt_cost: u32,
    logger: slog::Logger,
}

impl UserApi {
    /// Serves from `db`, storing hashes of at least `min_bcrypt_cost`, logging server faults
    /// through `logger`.
    pub fn new(db: Database, min_bcrypt_cost: u32, logger: slog::Logger) -> Self {
        Self {
            db,
            min_bcrypt_cost,
            logger,
        }
    }

    async fn create_user(
        &self,
        request: CreateUserRequest,
    ) -> Result<CreateUserResponse, UserError> {
        validate_create(&request, self.min_bcrypt_cost)?;
        let row = UserRow::new(request.email, request.name, request.password_hash);
        let row = self.db.insert(row).await?;
        slog::info!(self.logger, "user created"; "user_id" => &row.id);
        Ok(CreateUserResponse {
            user: Some(to_proto(row)),
        })
    }

    async fn get_user(&self, request: GetUserRequest) -> Result<GetUserResponse, UserError> {
        if uuid::Uuid::parse_str(&request.id).is_err() {
            return Err(invalid("INVALID_USER_ID", "id must be a UUID"));
        }
        let row = self
            .db
            .by_id(request.id)
            .await?
            .ok_or(UserError::NotFound)?;
        Ok(GetUserResponse {
            user: Some(to_proto(row)),
        })
    }

    async fn get_credential(
        &self,
        request: GetCredentialRequest,
    ) -> Result<GetCredentialResponse, UserError> {
        if request.email.is_empty() {
            return Err(invalid("INVALID_EMAIL", "email is required"));
        }
        let row = self
            .db
            .by_email(request.email)
            .await?
            .ok_or(UserError::NotFound)?;
        Ok(GetCredentialResponse {
            user_id: row.id,
            password_hash: row.password_hash,
        })
    }
}

fn invalid(reason: &'static str, message: &str) -> UserError {
    UserError::InvalidArgument {
        reason,
        message: message.to_owned(),
    }
}

fn to_proto(row: UserRow) -> User {
    let created = row.created_at.and_utc();
    User {
        id: row.id,
        email: row.email,
        name: row.name,
        created_at: Some(prost_types::Timestamp {
            seconds: created.timestamp(),
            nanos: i32::try_from(created.timestamp_subsec_nanos()).unwrap_or(0),
        }),
    }
}

/// Defence in depth: auth validates first, but the owner of the data refuses, whoever asks,
/// anything the shared rules (`proto::validation`) would not have produced: values must already
/// be in their normalised form, and the hash a well-formed bcrypt hash of at least `min_cost`.
fn validate_create(request: &CreateUserRequest, min_cost: u32) -> Result<(), UserError> {
    use proto::validation;
    let normalised = |value: &str, parsed: Result<String, validation::Violation>| match parsed {
        Ok(normal) if normal == value => Ok(()),
        Ok(_) => Err(None),
        Err(violation) => Err(Some(violation)),
    };
    normalised(&request.email, validation::email(&request.email)).map_err(|violation| {
        let message = violation.map_or_else(
            || "email must be trimmed and lower-cased".to_owned(),
            |v| v.message,
        );
        invalid("INVALID_EMAIL", &message)
    })?;
    normalised(&request.name, validation::name(&request.name)).map_err(|violation| {
        let message =
            violation.map_or_else(|| "name must be trimmed and NFC".to_owned(), |v| v.message);
        invalid("INVALID_NAME", &message)
    })?;
    match validation::bcrypt_cost(&request.password_hash) {
        None => Err(invalid(
            "INVALID_PASSWORD_HASH",
            "password_hash must be a bcrypt hash",
        )),
        Some(cost) if cost < min_cost => Err(invalid(
            "WEAK_PASSWORD_HASH",
            &format!("password_hash must have a bcrypt cost of at least {min_cost}"),
        )),
        Some(_) => Ok(()),
    }
}

/// The gRPC surface: each method answers with what the method of the same name above returns.
#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<CreateUserResponse>, Status> {
        answer(
            &self.logger,
            UserApi::create_user(self, request.into_inner()).await,
        )
    }

    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        answer(
            &self.logger,
            UserApi::get_user(self, request.into_inner()).await,
        )
    }

    async fn get_credential(
        &self,
        request: Request<GetCredentialRequest>,
    ) -> Result<Response<GetCredentialResponse>, Status> {
        answer(
            &self.logger,
            UserApi::get_credential(self, request.into_inner()).await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(email: &str, name: &str, hash: &str) -> CreateUserRequest {
        CreateUserRequest {
            email: email.into(),
            name: name.into(),
            password_hash: hash.into(),
        }
    }

    #[test]
    fn create_requests_are_validated_with_the_shared_rules() {
        let hash = "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5KRzqzVuINNlrDjAwJfGLtbH6mh2cU.";
        assert!(validate_create(&request("a@b.co", "Ann", hash), 12).is_ok());
        let bad = [
            (request("", "Ann", hash), "INVALID_EMAIL"),
            (request("A@B.CO", "Ann", hash), "INVALID_EMAIL"),
            (request("a@b", "Ann", hash), "INVALID_EMAIL"),
            (request("a\r\n@b.co", "Ann", hash), "INVALID_EMAIL"),
            (request("a@b.co", " ", hash), "INVALID_NAME"),
            (request("a@b.co", " Ann", hash), "INVALID_NAME"),
            (request("a@b.co", "Ann\u{202e}", hash), "INVALID_NAME"),
            (request("a@b.co", "Jose\u{301}", hash), "INVALID_NAME"),
            (request("a@b.co", &"x".repeat(101), hash), "INVALID_NAME"),
            (
                request("a@b.co", "Ann", "plaintext"),
                "INVALID_PASSWORD_HASH",
            ),
            (
                request("a@b.co", "Ann", "$2b$12$truncated"),
                "INVALID_PASSWORD_HASH",
            ),
            (
                request("a@b.co", "Ann", &hash.replace("$12$", "$04$")),
                "WEAK_PASSWORD_HASH",
            ),
        ];
        for (request, expected) in bad {
            match validate_create(&request, 12) {
                Err(UserError::InvalidArgument { reason, .. }) => assert_eq!(reason, expected),
                other => panic!("{request:?}: {other:?}"),
            }
        }
    }
}
