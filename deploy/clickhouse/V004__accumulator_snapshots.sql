-- Accumulator snapshots: a member's totals for a year after each change; the latest is the
-- row of the highest version per (member, year).
CREATE TABLE IF NOT EXISTS accumulator_snapshots (
    member_id String,
    plan_year Int32,
    version Int64,
    family_id String,
    plan_id String,
    snapshot_date Date,
    deductible_met_idr Int64,
    oop_met_idr Int64,
    family_deductible_met_idr Int64,
    family_oop_met_idr Int64,
    plan_paid_to_date_idr Int64,
    claim_id String
) ENGINE = ReplacingMergeTree()
ORDER BY (member_id, plan_year, version);
