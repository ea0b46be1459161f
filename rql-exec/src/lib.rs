//! RQL execution: the cut state, incremental evaluation of WHEN over consistent cuts, output
//! records and the drivers that feed steps to the engine (replay of saved traces today).
//!
//! Entry points: [`replay::replay`] runs a [`rql_planner::Plan`] over sorted records;
//! [`engine::Engine`] is the step-at-a-time core the drivers share; [`output::RecordWriter`]
//! prints records as JSON Lines, a table or CSV.

pub mod columnar;
pub mod compile;
pub mod engine;
pub mod incremental;
pub mod live;
pub mod output;
pub mod replay;
pub mod state;
pub mod stream;

pub use columnar::{Columnar, NameCollector, Names, StepBuilder, Steps};
pub use engine::{Emitted, Engine, ExecError, ExecOptions, Flow, Stats, DEFAULT_MAX_BINDINGS};
pub use output::{Format, OutputRecord, RecordWriter};
pub use replay::{
    catalog_of, catalog_of_columnar, catalog_of_names, replay, replay_columnar, Replay,
};
