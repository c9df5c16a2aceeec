//! `govsync demo`: the whole job on embedded defaults.

pub mod generate;
