//! Offline test kit for claude-conduit.
