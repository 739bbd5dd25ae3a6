use sea_orm::entity::prelude::*;

/// One row per command that carried a `command_id`: what it answered, for idempotent retries.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "command_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub command_id: Uuid,
    /// SHA-256 of (method, actor, request bytes): the same id with another request is refused.
    pub fingerprint: Vec<u8>,
    pub stream_id: Uuid,
    #[sea_orm(column_type = "JsonBinary")]
    pub response: Json,
    pub created_at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
