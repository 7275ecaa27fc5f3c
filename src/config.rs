//! Configuration (`scamscreen.toml`). Being written.
