//! The command-line front end: one file per `scamscreen` command (and the benchmarks'
//! drivers). Everything here reads flags and files and prints; the work is in the library.

pub mod bench;
pub mod bench_hostile;
pub mod bench_listening;
pub mod bench_relay;
pub mod bench_screening;
pub mod bench_two_pass;
pub mod calls;
pub mod demo;
pub mod detect;
pub mod eval_audio;
pub mod preflight;
pub mod reload;
pub mod run;
pub mod screening_setup;
pub mod transcribe;
pub mod wer;
