//! Who may do what (SPEC §12): the credentials a request can carry and what
//! each may do. The HTTP side (`http::auth`) only extracts them.

pub mod spent;
pub mod token;
