//! NATS servers for tests (filled in by the bus work).
