//! Unit tests of the message module.
