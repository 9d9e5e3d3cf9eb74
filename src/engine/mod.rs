//! The local inference engine: loads models and generates tokens; knows nothing of users.
