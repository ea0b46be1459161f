//! The live driver: a query over records arriving from log servers (SPEC §5).

pub mod order;
pub mod query;

pub use order::{FinalGroup, Sequencer};
pub use query::{LiveOptions, LiveQuery};
