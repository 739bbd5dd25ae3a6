//! End-to-end tests: a real command-svc (PostgreSQL, relay to RabbitMQ) and a real
//! query-mongo-svc (RabbitMQ consumer, MongoDB read model) in this process, driven through
//! their tonic clients. Each test has its own exchange, queue and databases.

mod audit;
mod authorization;
mod big_course;
mod courses;
mod dead_letters;
mod edge;
mod helpers;
mod people;
mod projection;
mod service;
mod store;
