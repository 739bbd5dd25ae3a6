use sea_orm::entity::prelude::*;

/// One row per event. `id` is insertion order (never exposed); `global_position` is assigned
/// after commit by the sequencer and is what readers order by.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub global_position: Option<i64>,
    #[sea_orm(unique)]
    pub event_id: Uuid,
    pub stream_id: Uuid,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    #[sea_orm(column_type = "JsonBinary")]
    pub payload: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub metadata: Json,
    pub occurred_at: DateTimeWithTimeZone,
    pub committed_at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
