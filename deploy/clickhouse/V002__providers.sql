-- The provider dimension: where each provider is, what kind, in network or not.
CREATE TABLE IF NOT EXISTS providers (
    provider_id String,
    provider_type String,
    province_code String,
    regency_code String,
    city String,
    network_status String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY provider_id;
