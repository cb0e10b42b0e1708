//! The `auth.v1.AuthService` implementation.

use std::sync::Arc;

use proto::auth::v1::{
    LoginRequest, LoginResponse, SignupRequest, SignupResponse, ValidateTokenRequest,
    ValidateTokenResponse, auth_service_server::AuthService,
};
use proto::user::v1::{
    CreateUserRequest, GetCredentialRequest, user_service_client::UserServiceClient,
};
use service_runtime::grpc::answer;
use telemetry::grpc::ClientService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::error::AuthError;
use crate::password::Hasher;
use crate::tokens::Tokens;
use crate::validation::{Email, MAX_PASSWORD_BYTES, Name, Password};

/// The user service client, with trace propagation and client metrics.
pub type UsersClient = UserServiceClient<ClientService<Channel>>;

/// Serves the auth API.
#[derive(Debug, Clone)]
pub struct AuthApi {
    users: UsersClient,
    tokens: Arc<Tokens>,
    hasher: Hasher,
    /// A hash to verify against when the email is unknown, so that an unknown email costs the
    /// same bcrypt time as a wrong password and response times do not reveal who is registered.
    dummy_hash: Arc<str>,
    logger: slog::Logger,
}

impl AuthApi {
    /// Builds the API; computes the timing-equaliser hash once, at the hasher's cost.
    pub async fn new(
        users: UsersClient,
        tokens: Tokens,
        hasher: Hasher,
        logger: slog::Logger,
    ) -> Result<Self, AuthError> {
        let bcrypt_cost = hasher.cost();
        // Not through `password::hash`: start-up work belongs to no request and must not
        // appear in Tempo as a stray root span.
        let dummy_hash = tokio::task::spawn_blocking(move || {
            bcrypt::hash("timing-equaliser-not-a-password", bcrypt_cost)
        })
        .await
        .map_err(|e| AuthError::Internal(format!("hash task failed: {e}")))?
        .map_err(|e| AuthError::Internal(format!("bcrypt failed: {e}")))?;
        Ok(Self {
            users,
            tokens: Arc::new(tokens),
            hasher,
            dummy_hash: dummy_hash.into(),
            logger,
        })
    }

    async fn signup(&self, request: SignupRequest) -> Result<SignupResponse, AuthError> {
        let email = Email::parse(&request.email)?;
        let password = Password::parse_new(request.password)?;
        let name = Name::parse(&request.name)?;
        let password_hash = self.hasher.hash(password).await?;
        let created = self
            .users
            .clone()
            .create_user(CreateUserRequest {
                email: email.as_str().to_owned(),
                name: name.as_str().to_owned(),
                password_hash,
            })
            .await
            .map_err(AuthError::from_user_service)?
            .into_inner();
        let user = created
            .user
            .ok_or_else(|| AuthError::Internal("user service returned no user".into()))?;
        slog::info!(self.logger, "user signed up"; "user_id" => &user.id);
        Ok(SignupResponse { user: Some(user) })
    }

    async fn login(&self, request: LoginRequest) -> Result<LoginResponse, AuthError> {
        // bcrypt ignores bytes past the 72nd: without this check, a 72-byte password followed by
        // anything would log in. Sign-up refuses such passwords, so none can match.
        let too_long = request.password.len() > MAX_PASSWORD_BYTES;
        let password = Password::offered(request.password);
        // A malformed email cannot belong to anyone: same answer as an unknown one.
        let email = match Email::parse(&request.email) {
            Ok(email) if !too_long => email,
            _ => {
                // Spend the same bcrypt time as a real check, so timing reveals nothing either.
                self.hasher
                    .verify(password, self.dummy_hash.to_string())
                    .await?;
                return Err(AuthError::InvalidCredentials);
            }
        };
        let credential = self
            .users
            .clone()
            .get_credential(GetCredentialRequest {
                email: email.as_str().to_owned(),
            })
            .await;
        let (user_id, hash) = match credential {
            Ok(response) => {
                let credential = response.into_inner();
                (Some(credential.user_id), credential.password_hash)
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                (None, self.dummy_hash.to_string())
            }
            Err(status) => return Err(AuthError::from_user_service(status)),
        };
        let matches = match self.hasher.verify(password, hash).await {
            Ok(matches) => matches,
            // The account cannot log in until its hash is repaired: say so to the operators,
            // and to the caller exactly what any failed login says.
            Err(AuthError::StoredHashUnusable(cause)) => {
                slog::error!(self.logger, "stored password hash unusable";
                    "user_id" => user_id.as_deref().unwrap_or_default(), "error" => cause);
                false
            }
            Err(error) => return Err(error),
        };
        let Some(user_id) = user_id.filter(|_| matches) else {
            slog::info!(self.logger, "login refused");
            return Err(AuthError::InvalidCredentials);
        };
        let access_token = self.tokens.issue(&user_id)?;
        slog::info!(self.logger, "login succeeded"; "user_id" => &user_id);
        Ok(LoginResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in: self.tokens.ttl_seconds(),
        })
    }

    fn validate_token(
        &self,
        request: ValidateTokenRequest,
    ) -> Result<ValidateTokenResponse, AuthError> {
        let validated = self.tokens.validate(&request.access_token)?;
        Ok(ValidateTokenResponse {
            user_id: validated.user_id,
            expires_at: validated.expires_at,
        })
    }
}

/// The gRPC surface: each method answers with what the method of the same name above returns.
#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn signup(
        &self,
        request: Request<SignupRequest>,
    ) -> Result<Response<SignupResponse>, Status> {
        answer(
            &self.logger,
            AuthApi::signup(self, request.into_inner()).await,
        )
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        answer(
            &self.logger,
            AuthApi::login(self, request.into_inner()).await,
        )
    }

    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        answer(
            &self.logger,
            AuthApi::validate_token(self, request.into_inner()),
        )
    }
}
