//! Call records. Being written.
