-- The member dimension, without personal data (no NIK, name, phone or e-mail): family,
-- relationship, where, sex, year of birth.
CREATE TABLE IF NOT EXISTS members (
    member_id String,
    family_id String,
    relationship String,
    province_code String,
    regency_code String,
    sex String,
    birth_year Int32,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY member_id;
