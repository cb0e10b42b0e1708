//! The `user.v1.UserService` implementation.

use proto::user::v1::{
    CreateUserRequest, CreateUserResponse, GetCredentialRequest, GetCredentialResponse,
    GetUserRequest, GetUserResponse, User, user_service_server::UserService,
};
use tonic::{Request, Response, Status};

use crate::db::{Database, UserRow};
use crate::error::UserError;

/// Longest display name we store, in characters.
const MAX_NAME_CHARS: usize = 100;

/// Serves the user API from a [`Database`].
#[derive(Debug, Clone)]
pub struct UserApi {
    db: Database,
    logger: slog::Logger,
}

impl UserApi {
    /// Serves from `db`, logging server faults through `logger`.
    pub fn new(db: Database, logger: slog::Logger) -> Self {
        Self { db, logger }
    }

    /// Turns an error into a status, logging our own faults with their cause (inside the request
    /// span, so the line carries the trace id); the caller only sees the generic message.
    fn fail(&self, error: UserError) -> Status {
        if error.is_server_fault() {
            slog::error!(self.logger, "user request failed"; "error" => %error);
        }
        error.into()
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

/// Defence in depth: auth validates first, but the owner of the data refuses junk on its own.
fn validate_create(request: &CreateUserRequest) -> Result<(), UserError> {
    let email = &request.email;
    if email.is_empty() || !email.contains('@') || *email != email.to_lowercase() {
        return Err(invalid(
            "INVALID_EMAIL",
            "email must be a lower-cased address",
        ));
    }
    let name_chars = request.name.trim().chars().count();
    if name_chars == 0 || name_chars > MAX_NAME_CHARS {
        return Err(invalid("INVALID_NAME", "name must be 1 to 100 characters"));
    }
    if !request.password_hash.starts_with("$2") {
        return Err(invalid(
            "INVALID_PASSWORD_HASH",
            "password_hash must be a bcrypt hash",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<CreateUserResponse>, Status> {
        let request = request.into_inner();
        validate_create(&request).map_err(|e| self.fail(e))?;
        let row = UserRow::new(
            request.email,
            request.name.trim().to_owned(),
            request.password_hash,
        );
        let row = self.db.insert(row).await.map_err(|e| self.fail(e))?;
        slog::info!(self.logger, "user created"; "user_id" => &row.id);
        Ok(Response::new(CreateUserResponse {
            user: Some(to_proto(row)),
        }))
    }

    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        let id = request.into_inner().id;
        if uuid::Uuid::parse_str(&id).is_err() {
            return Err(self.fail(invalid("INVALID_USER_ID", "id must be a UUID")));
        }
        match self.db.by_id(id).await.map_err(|e| self.fail(e))? {
            Some(row) => Ok(Response::new(GetUserResponse {
                user: Some(to_proto(row)),
            })),
            None => Err(self.fail(UserError::NotFound)),
        }
    }

    async fn get_credential(
        &self,
        request: Request<GetCredentialRequest>,
    ) -> Result<Response<GetCredentialResponse>, Status> {
        let email = request.into_inner().email;
        if email.is_empty() {
            return Err(self.fail(invalid("INVALID_EMAIL", "email is required")));
        }
        match self.db.by_email(email).await.map_err(|e| self.fail(e))? {
            Some(row) => Ok(Response::new(GetCredentialResponse {
                user_id: row.id,
                password_hash: row.password_hash,
            })),
            None => Err(self.fail(UserError::NotFound)),
        }
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
    fn create_requests_are_validated() {
        let hash = "$2b$04$abcdefghijklmnopqrstuv";
        assert!(validate_create(&request("a@b.c", "Ann", hash)).is_ok());
        let bad = [
            (request("", "Ann", hash), "INVALID_EMAIL"),
            (request("A@B.C", "Ann", hash), "INVALID_EMAIL"),
            (request("a@b.c", " ", hash), "INVALID_NAME"),
            (request("a@b.c", &"x".repeat(101), hash), "INVALID_NAME"),
            (
                request("a@b.c", "Ann", "plaintext"),
                "INVALID_PASSWORD_HASH",
            ),
        ];
        for (request, expected) in bad {
            match validate_create(&request) {
                Err(UserError::InvalidArgument { reason, .. }) => assert_eq!(reason, expected),
                other => panic!("{request:?}: {other:?}"),
            }
        }
    }
}
