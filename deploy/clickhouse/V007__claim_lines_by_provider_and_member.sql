-- The claim lines again, ordered by provider and by member, for the scorecard and a member's
-- history (a query by provider or member reads only its part of the key). Filled by
-- materialized views on every insert into claim_lines; the same replacing identity (provider
-- and member are fixed per claim), so replays merge away here too.
CREATE TABLE IF NOT EXISTS claim_lines_by_provider AS claim_lines
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(decided_date)
ORDER BY (provider_id, decided_date, claim_id, line_number);

CREATE MATERIALIZED VIEW IF NOT EXISTS claim_lines_by_provider_mv TO claim_lines_by_provider
AS SELECT * FROM claim_lines;

CREATE TABLE IF NOT EXISTS claim_lines_by_member AS claim_lines
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(decided_date)
ORDER BY (member_id, decided_date, claim_id, line_number);

CREATE MATERIALIZED VIEW IF NOT EXISTS claim_lines_by_member_mv TO claim_lines_by_member
AS SELECT * FROM claim_lines;
