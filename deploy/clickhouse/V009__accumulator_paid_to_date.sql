-- What completed payments paid out for the member's standing claims of the year (the
-- Cost_Accumulator's paid-to-date; accumulator.updates carries it from AccumulatorUpdated v2).
-- Rows written before this version read 0.
ALTER TABLE accumulator_snapshots ADD COLUMN paid_to_date_idr Int64 DEFAULT 0;
