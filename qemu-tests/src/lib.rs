//! Shared helpers for the QEMU tests.
