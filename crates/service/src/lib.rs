//! # silt-service: the HTTP services
//!
//! The schema registry's HTTP API ([`registry`], SPEC 4), with Prometheus metrics
//! ([`metrics`]) and an OpenAPI 3 document at `/openapi.json` so that clients in any language
//! can be generated. The gateway (SPEC 5) joins it here.

pub mod metrics;
pub mod registry;
