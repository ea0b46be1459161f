//! The trace model of RQL: HLC timestamps, values, trace records (`rql-trace/1`), the NDJSON
//! reader and per-node state. The log server itself (feature `server`) and its client library
//! (feature `client`: the recorder nodes use, and stream subscriptions) build on these.

mod chunked;
#[cfg(feature = "client")]
pub mod client;
pub mod columnar;
mod fast;
pub mod hlc;
mod json;
pub mod ndjson;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod record;
#[cfg(feature = "server")]
pub mod server;
pub mod sorted;
pub mod state;
#[cfg(feature = "server")]
pub mod store;
pub mod synth;
pub mod value;

pub use hlc::{Hlc, HlcClock, HlcError};
pub use ndjson::{
    parse_record, parse_value, read_trace, read_trace_file, read_traces, MergedTrace, NdjsonReader,
    Origin, ReadOptions, Trace, TraceError, TraceErrorKind, TraceInput,
};
pub use record::{Record, VarName, VarNameError};
pub use sorted::SortedMerge;
pub use state::{ApplyCheck, ApplyError, NodeState};
pub use value::{NotScalar, SetValue, Value, ValueKey};
