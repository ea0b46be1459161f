//! The columnar trace form the engine runs on. It lives in `log_server::columnar` (its reader
//! parses NDJSON straight into it); re-exported here because the engine is written against it.

pub use log_server::columnar::*;
