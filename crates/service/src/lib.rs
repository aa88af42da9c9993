//! # silt-service: the HTTP services
//!
//! The schema registry's HTTP API ([`registry`], SPEC 4), with Prometheus metrics
//! ([`metrics`]) and an OpenAPI 3 document at `/openapi.json` so that clients in any language
//! can be generated, and the gateway ([`gateway`], SPEC 5) that checks events at the door and
//! puts them on the stream; and the metrics endpoint of a job that runs as a service ([`job`]).

pub mod gateway;
pub mod job;
pub mod metrics;
pub mod registry;
