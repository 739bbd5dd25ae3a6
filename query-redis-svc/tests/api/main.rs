//! End-to-end tests: a real command-svc (with its relay), RabbitMQ, Redis and query-redis-svc,
//! driven through their tonic clients.

mod audit;
mod authorization;
mod big_course;
mod dead_letters;
mod delivery;
mod edge;
mod helpers;
mod outage;
mod partitions;
mod queries;
mod rebuild;
mod telemetry;
