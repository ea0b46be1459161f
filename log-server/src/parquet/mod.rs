//! Parquet traces (SPEC §1.3: "the same records may also be stored as Parquet"): the schema,
//! writing records as Parquet, and reading Parquet files back, through DataFusion, either as
//! [`Record`](crate::Record)s or straight into the engine's [`Columnar`](crate::columnar::Columnar)
//! form with filters pushed down and the HLC sort spilling to disk under a memory limit.
//!
//! One row per change (schema in [`trace_schema`]):
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `rec` | u64 | record number; the rows of one record share it (file order of records) |
//! | `idx` | u32 | position of the change within its record (apply order) |
//! | `node` | utf8 | node id |
//! | `hlc` | u64 | packed HLC `l << 16 \| c` |
//! | `op` | utf8 | `set`, `unset`, `add`, `remove`, `leave`, `heartbeat` |
//! | `key` | utf8, null | `log.key`; null for `leave` and `heartbeat` |
//! | `v_int` `v_float` `v_str` `v_bool` | i64, f64, utf8, bool, null | a scalar `set` value |
//! | `v_json` | utf8, null | canonical JSON: a set or struct `set` value, the element list of `add`/`remove` |
//! | `pt` | u64, null | the record's physical clock reading (repeated on each of its rows) |
//!
//! A `set` row with every value column null is `"set": {"k": null}` (which unsets). A record
//! without changes is one `heartbeat` row; `leave` is its own row, after the changes. Within a
//! record rows go unset, set, remove, add, leave (the order of application, SPEC §1.3). Files
//! written here are sorted by (hlc, rec, idx); readers sort anyway (equal HLCs: file order,
//! then `rec`), so files from other tools may be in any order.

mod read;
mod sql;
mod write;

pub use read::{
    parquet_files, read_parquet_columnar, read_parquet_records, scan_parquet, stream_parquet,
    trace_summary, ParquetOptions, ParquetScan, ParquetTrace, PushDown, TraceSummary, BATCH_GROUPS,
};
pub use sql::{run_sql, ResultRow, SqlFormat, SqlRun, SqlTrace};
pub use write::{write_parquet, ParquetWriter};

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Stored in each file's key-value metadata (`rql.format`), so a reader can tell a trace from
/// other Parquet files; readers do not require it (files from other tools lack it).
pub const FORMAT_NAME: &str = "rql-trace-parquet/1";

/// Footer metadata written by [`ParquetWriter`]: the sorted JSON array of every variable named,
/// the largest packed HLC, and the number of records. Readers use them (when every file has
/// them) to learn a trace's names and NOW without a scan.
pub const META_KEYS: &str = "rql.keys";
pub const META_MAX_HLC: &str = "rql.max_hlc";
pub const META_RECORDS: &str = "rql.records";

/// The operations of the `op` column, in the order they apply within a record.
pub const OPS: [&str; 6] = ["unset", "set", "remove", "add", "leave", "heartbeat"];

/// The Arrow schema of a Parquet trace (see the module documentation).
pub fn trace_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("rec", DataType::UInt64, false),
        Field::new("idx", DataType::UInt32, false),
        Field::new("node", DataType::Utf8, false),
        Field::new("hlc", DataType::UInt64, false),
        Field::new("op", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, true),
        Field::new("v_int", DataType::Int64, true),
        Field::new("v_float", DataType::Float64, true),
        Field::new("v_str", DataType::Utf8, true),
        Field::new("v_bool", DataType::Boolean, true),
        Field::new("v_json", DataType::Utf8, true),
        Field::new("pt", DataType::UInt64, true),
    ]))
}

#[cfg(test)]
mod tests;
