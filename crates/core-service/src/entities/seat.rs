//! `seats`. `status`, `reservation_id` and `held_until` are written only by
//! [`crate::store`]; entities insert seats as `free`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "seats")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub performance_id: i64,
    pub section: String,
    pub row_label: String,
    pub number: i32,
    pub grade: String,
    pub price_krw: i64,
    pub status: String,
    pub reservation_id: Option<Uuid>,
    pub held_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::performance::Entity",
        from = "Column::PerformanceId",
        to = "super::performance::Column::Id"
    )]
    Performance,
}

impl Related<super::performance::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Performance.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
