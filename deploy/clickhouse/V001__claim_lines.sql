-- One row per adjudicated claim line, with every amount and code. ReplacingMergeTree keyed by
-- the claim and line (the decision's date first, fixed per claim, so that date ranges read only
-- their part of the key): a replay writes identical rows, merged away; queries read with FINAL
-- so they are exact before merges too. Runs on ClickHouse 18.16 and current ones.
CREATE TABLE IF NOT EXISTS claim_lines (
    claim_id String,
    line_number Int32,
    event_id String,
    member_id String,
    provider_id String,
    plan_id String,
    status String,
    decided_date Date,
    billed_idr Int64,
    allowed_idr Int64,
    deductible_idr Int64,
    copay_idr Int64,
    coinsurance_idr Int64,
    plan_paid_idr Int64,
    carcs Array(String),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(decided_date)
ORDER BY (decided_date, claim_id, line_number);
