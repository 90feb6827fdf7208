//! The control plane's errors. Each says what went wrong and, where there is something to do,
//! how to fix it; the API maps each to an HTTP status and a JSON [`strata_core::api::ErrorBody`].

use strata_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{what} not found")]
    NotFound { what: String, hint: Option<String> },
    #[error("{message}")]
    BadRequest {
        message: String,
        hint: Option<String>,
    },
    #[error("{message}")]
    Conflict {
        message: String,
        hint: Option<String>,
    },
    #[error("{message}")]
    Unauthorized { message: String, hint: String },
    #[error("{message}")]
    Forbidden { message: String, hint: String },
    #[error("{message}")]
    TooLarge { message: String, hint: String },
    #[error("{message}")]
    TooManyRequests { message: String, hint: String },
    #[error("this server is not the leader (controllers run on the leader only)")]
    NotLeader,
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("stored record {key} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    pub fn not_found(what: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        ControlError::NotFound {
            what: what.into(),
            hint: hint.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        ControlError::BadRequest {
            message: message.into(),
            hint: hint.into(),
        }
    }
    pub fn hint(&self) -> Option<String> {
        match self {
            ControlError::NotFound { hint, .. }
            | ControlError::BadRequest { hint, .. }
            | ControlError::Conflict { hint, .. } => hint.clone(),
            ControlError::Unauthorized { hint, .. }
            | ControlError::Forbidden { hint, .. }
            | ControlError::TooLarge { hint, .. }
            | ControlError::TooManyRequests { hint, .. } => Some(hint.clone()),
            ControlError::NotLeader => {
                Some("retry in a moment; a leader is elected within the lease".into())
            }
            ControlError::Store(_) | ControlError::Corrupt { .. } | ControlError::Internal(_) => {
                None
            }
        }
    }
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::NotFound { .. } => "not_found",
            ControlError::BadRequest { .. } => "bad_request",
            ControlError::Conflict { .. } => "conflict",
            ControlError::Unauthorized { .. } => "unauthorized",
            ControlError::Forbidden { .. } => "forbidden",
            ControlError::TooLarge { .. } => "too_large",
            ControlError::TooManyRequests { .. } => "too_many_requests",
            ControlError::Store(StoreError::Unavailable(_) | StoreError::Closed) => {
                "store_unavailable"
            }
            ControlError::Store(_) => "store_error",
            ControlError::NotLeader => "not_leader",
            ControlError::Corrupt { .. } => "corrupt_state",
            ControlError::Internal(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn store_errors_are_unavailable_only_when_retrying_can_help() {
        let table = [
            (
                StoreError::Unavailable("no leader".into()),
                503,
                "store_unavailable",
            ),
            (StoreError::Closed, 503, "store_unavailable"),
            (
                StoreError::Corrupt {
                    key: "/k".into(),
                    reason: "truncated".into(),
                },
                500,
                "store_error",
            ),
            (StoreError::InvalidKey("k".into()), 500, "store_error"),
            (StoreError::Backend("disk full".into()), 500, "store_error"),
        ];
        for (error, status, code) in table {
            let error = ControlError::Store(error);
            assert_eq!(error.code(), code, "{error}");
            assert_eq!(error.into_response().status().as_u16(), status, "{code}");
        }
    }
}
