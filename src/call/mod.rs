//! The per-call B2BUA for screened calls. Being written.
