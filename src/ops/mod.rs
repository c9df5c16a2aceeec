//! The commands behind the binary (`src/main.rs` only parses, dispatches
//! and maps results to an exit status). Those that print write through
//! `&mut impl Write`, so tests read exactly what a person sees.
//!
//! - `run`, the processor: [`serve`].
//! - `migrate`, `produce`, `rollback`, `batches`: [`admin`].
//! - `validate`, the processor's verdict per event: [`validate`].
//! - `check-config`: [`check`].
//! - `dlq inspect` and `dlq replay`: [`dlq`].
//! - `review list`, `review show`, `review decide`, `review hash-password`:
//!   [`review`]; `review serve`, the web console: [`console`].

pub mod admin;
pub mod check;
pub mod console;
pub mod dlq;
pub mod review;
pub mod serve;
mod signals;
pub mod validate;
