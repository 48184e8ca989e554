//! Reference data of an Indonesian insurer: regions, names, diagnoses, procedures, plans and
//! the clinical encounters claims are made of. Prices are whole rupiah, roughly at 2026
//! private-hospital levels in Jakarta.

use arus_schemas::events::{ClaimType, PlanTier, ProviderType};

/// A region members live in and providers practise in: the capital of a province.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    /// BPS province code.
    pub province_code: &'static str,
    /// BPS regency/city code.
    pub regency_code: &'static str,
    /// City name.
    pub city: &'static str,
    /// Latitude in microdegrees.
    pub lat_e6: i32,
    /// Longitude in microdegrees.
    pub lon_e6: i32,
    /// Relative population (hundred thousands), the weight for placing members and providers.
    pub weight: u32,
}

macro_rules! regions {
    ($(($p:literal, $r:literal, $city:literal, $lat:literal, $lon:literal, $w:literal)),+ $(,)?) => {
        /// Regions, weighted by population.
        pub const REGIONS: &[Region] = &[$(Region {
            province_code: $p, regency_code: $r, city: $city, lat_e6: $lat, lon_e6: $lon, weight: $w,
        }),+];
    };
}

regions![
    ("11", "1171", "Banda Aceh", 5_548_290, 95_323_753, 54),
    ("12", "1275", "Medan", 3_595_196, 98_672_226, 153),
    ("13", "1371", "Padang", -947_083, 100_417_181, 56),
    ("14", "1471", "Pekanbaru", 507_068, 101_447_777, 66),
    ("16", "1671", "Palembang", -2_976_074, 104_775_431, 86),
    ("18", "1871", "Bandar Lampung", -5_429_745, 105_262_146, 91),
    ("31", "3174", "Jakarta Selatan", -6_261_493, 106_810_600, 106),
    ("32", "3273", "Bandung", -6_917_464, 107_619_123, 495),
    ("33", "3374", "Semarang", -6_966_667, 110_416_664, 372),
    ("34", "3471", "Yogyakarta", -7_797_068, 110_370_529, 37),
    ("35", "3578", "Surabaya", -7_257_472, 112_752_088, 410),
    ("36", "3671", "Tangerang", -6_178_306, 106_631_889, 120),
    ("51", "5171", "Denpasar", -8_650_000, 115_216_667, 44),
    ("52", "5271", "Mataram", -8_583_333, 116_116_667, 55),
    ("53", "5371", "Kupang", -10_178_757, 123_607_036, 55),
    ("61", "6171", "Pontianak", -27_017, 109_333_333, 55),
    ("64", "6472", "Samarinda", -502_106, 117_153_709, 38),
    ("71", "7171", "Manado", 1_474_830, 124_842_079, 26),
    ("73", "7371", "Makassar", -5_147_665, 119_432_732, 92),
    ("94", "9471", "Jayapura", -2_533_333, 140_716_667, 10),
];

/// Given names by sex, and family names, for generated (fictional) members.
pub const MALE_NAMES: &[&str] = &[
    "Agus",
    "Budi",
    "Dedi",
    "Eko",
    "Fajar",
    "Gilang",
    "Hendra",
    "Irfan",
    "Joko",
    "Kurniawan",
    "Made",
    "Nyoman",
    "Putu",
    "Rizki",
    "Slamet",
    "Teguh",
    "Wahyu",
    "Yusuf",
    "Arif",
    "Bayu",
];
/// Female given names.
pub const FEMALE_NAMES: &[&str] = &[
    "Ayu", "Dewi", "Fitri", "Indah", "Kartika", "Lestari", "Maya", "Nur", "Putri", "Ratna", "Sari", "Siti", "Tri",
    "Wulan", "Yuni", "Rina", "Anisa", "Citra", "Intan", "Ketut",
];
/// Family names (many Indonesians have none; the generator still gives one for realism).
pub const FAMILY_NAMES: &[&str] = &[
    "Santoso",
    "Wijaya",
    "Saputra",
    "Hidayat",
    "Nasution",
    "Siregar",
    "Simanjuntak",
    "Lubis",
    "Pratama",
    "Setiawan",
    "Kusuma",
    "Gunawan",
    "Halim",
    "Tanjung",
    "Harahap",
    "Wibowo",
    "Susanto",
    "Manurung",
    "Purba",
    "Sitompul",
];

/// A procedure (CPT-style code) with its list price.
#[derive(Debug, Clone, Copy)]
pub struct Procedure {
    /// Procedure code.
    pub code: &'static str,
    /// What it is.
    pub name: &'static str,
    /// List price per unit, whole rupiah.
    pub price_idr: i64,
    /// Minutes per unit for timed services.
    pub minutes: Option<i32>,
    /// Needs prior authorization under every plan.
    pub needs_auth: bool,
}

macro_rules! procedures {
    ($(($code:literal, $name:literal, $price:literal, $min:expr, $auth:literal)),+ $(,)?) => {
        /// Every procedure the generator bills.
        pub const PROCEDURES: &[Procedure] = &[$(Procedure {
            code: $code, name: $name, price_idr: $price, minutes: $min, needs_auth: $auth,
        }),+];
    };
}

procedures![
    ("99211", "Office visit, minimal", 100_000, Some(10), false),
    ("99212", "Office visit, low", 150_000, Some(15), false),
    ("99213", "Office visit, moderate", 250_000, Some(20), false),
    ("99214", "Office visit, moderate-high", 350_000, Some(30), false),
    ("99215", "Office visit, high complexity", 500_000, Some(40), false),
    ("99223", "Hospital admission, high", 1_200_000, None, false),
    ("99232", "Subsequent hospital care", 600_000, None, false),
    ("80048", "Basic metabolic panel", 200_000, None, false),
    ("80053", "Comprehensive metabolic panel", 300_000, None, false),
    ("82947", "Glucose", 50_000, None, false),
    ("84295", "Sodium", 40_000, None, false),
    ("82310", "Calcium", 40_000, None, false),
    ("84132", "Potassium", 40_000, None, false),
    ("82565", "Creatinine", 45_000, None, false),
    ("84520", "Urea nitrogen", 40_000, None, false),
    ("85025", "Complete blood count", 120_000, None, false),
    ("71046", "Chest X-ray, 2 views", 250_000, None, false),
    ("70450", "CT head without contrast", 1_500_000, None, true),
    ("72148", "MRI lumbar spine", 3_500_000, None, true),
    ("93000", "Electrocardiogram", 150_000, None, false),
    ("97110", "Therapeutic exercise, 15 min", 200_000, Some(15), false),
    ("90837", "Psychotherapy, 60 min", 400_000, Some(60), false),
    ("59400", "Vaginal delivery, routine care", 8_000_000, None, true),
    ("44970", "Laparoscopic appendectomy", 25_000_000, None, true),
    ("96413", "Chemotherapy infusion", 10_000_000, None, true),
    ("43239", "Upper GI endoscopy with biopsy", 4_000_000, None, true),
    ("92004", "Eye examination, new patient", 300_000, None, false),
    ("D2740", "Dental crown, porcelain", 3_000_000, None, false),
    ("15780", "Dermabrasion (cosmetic)", 5_000_000, None, false),
    ("RX-AMX500", "Amoxicillin 500 mg, 10 caps", 35_000, None, false),
    ("RX-MET500", "Metformin 500 mg, 30 tabs", 45_000, None, false),
    ("RX-AML5", "Amlodipine 5 mg, 30 tabs", 60_000, None, false),
    ("RX-OMZ20", "Omeprazole 20 mg, 14 caps", 50_000, None, false),
];

/// Position of a procedure code in [`PROCEDURES`] (binary search over a sorted index: claim
/// lines are looked up several times each).
pub fn procedure_index(code: &str) -> Option<usize> {
    static SORTED: std::sync::OnceLock<Vec<(&'static str, usize)>> = std::sync::OnceLock::new();
    let sorted = SORTED.get_or_init(|| {
        let mut v: Vec<_> = PROCEDURES.iter().enumerate().map(|(i, p)| (p.code, i)).collect();
        v.sort_unstable();
        v
    });
    sorted.binary_search_by(|(c, _)| (*c).cmp(code)).ok().map(|i| sorted[i].1)
}

/// The procedure with this code. The generator only bills codes of [`PROCEDURES`].
pub fn procedure(code: &str) -> &'static Procedure {
    procedure_index(code).map(|i| &PROCEDURES[i]).unwrap_or_else(|| panic!("unknown procedure {code}"))
}

/// The basic metabolic panel's components: billing them one by one is unbundling.
pub const BMP_COMPONENTS: &[&str] = &["82947", "84295", "82310", "84132", "82565", "84520"];

/// One line of an encounter template: a procedure and its usual unit range.
#[derive(Debug, Clone, Copy)]
pub struct TemplateLine {
    /// Procedure code.
    pub code: &'static str,
    /// Fewest units.
    pub min_units: i32,
    /// Most units.
    pub max_units: i32,
    /// Chance the line is present, in basis points.
    pub presence_bp: u32,
}

/// A kind of clinical encounter a claim bills.
#[derive(Debug, Clone, Copy)]
pub struct Encounter {
    /// Name, for labels and docs.
    pub name: &'static str,
    /// Principal ICD-10 diagnosis.
    pub diagnosis: &'static str,
    /// Where it happens.
    pub provider_type: ProviderType,
    /// X12 claim type.
    pub claim_type: ClaimType,
    /// Relative frequency.
    pub weight: u32,
    /// Who can have it: (min age, max age, female only).
    pub ages: (i32, i32, bool),
    /// Billed lines.
    pub lines: &'static [TemplateLine],
}

const fn line(code: &'static str, min_units: i32, max_units: i32, presence_bp: u32) -> TemplateLine {
    TemplateLine { code, min_units, max_units, presence_bp }
}

use ClaimType::{INSTITUTIONAL, PHARMACY as RX, PROFESSIONAL};
use ProviderType::{CLINIC, HOSPITAL, LAB, PHARMACY};

/// Every encounter, weighted by how common it is.
pub const ENCOUNTERS: &[Encounter] = &[
    Encounter {
        name: "upper respiratory infection",
        diagnosis: "J06.9",
        provider_type: CLINIC,
        claim_type: PROFESSIONAL,
        weight: 220,
        ages: (0, 99, false),
        lines: &[line("99213", 1, 1, 10_000), line("85025", 1, 1, 2_000)],
    },
    Encounter {
        name: "hypertension follow-up",
        diagnosis: "I10",
        provider_type: CLINIC,
        claim_type: PROFESSIONAL,
        weight: 120,
        ages: (30, 99, false),
        lines: &[line("99214", 1, 1, 10_000), line("93000", 1, 1, 4_000), line("80048", 1, 1, 5_000)],
    },
    Encounter {
        name: "type 2 diabetes follow-up",
        diagnosis: "E11.9",
        provider_type: CLINIC,
        claim_type: PROFESSIONAL,
        weight: 100,
        ages: (30, 99, false),
        lines: &[line("99214", 1, 1, 10_000), line("82947", 1, 1, 8_000), line("80048", 1, 1, 5_000)],
    },
    Encounter {
        name: "gastritis",
        diagnosis: "K29.7",
        provider_type: CLINIC,
        claim_type: PROFESSIONAL,
        weight: 80,
        ages: (12, 99, false),
        lines: &[line("99213", 1, 1, 10_000)],
    },
    Encounter {
        name: "gastroscopy",
        diagnosis: "K29.7",
        provider_type: HOSPITAL,
        claim_type: PROFESSIONAL,
        weight: 10,
        ages: (25, 99, false),
        lines: &[line("99214", 1, 1, 10_000), line("43239", 1, 1, 10_000)],
    },
    Encounter {
        name: "low back pain with physiotherapy",
        diagnosis: "M54.5",
        provider_type: CLINIC,
        claim_type: PROFESSIONAL,
        weight: 60,
        ages: (20, 99, false),
        lines: &[line("99213", 1, 1, 10_000), line("97110", 2, 4, 10_000)],
    },
    Encounter {
        name: "lumbar MRI",
        diagnosis: "M54.5",
        provider_type: HOSPITAL,
        claim_type: PROFESSIONAL,
        weight: 8,
        ages: (25, 99, false),
        lines: &[line("72148", 1, 1, 10_000)],
    },
    Encounter {
        name: "dengue fever admission",
        diagnosis: "A91",
        provider_type: HOSPITAL,
        claim_type: INSTITUTIONAL,
        weight: 25,
        ages: (0, 99, false),
        lines: &[line("99223", 1, 1, 10_000), line("99232", 2, 4, 10_000), line("85025", 2, 4, 10_000)],
    },
    Encounter {
        name: "pneumonia admission",
        diagnosis: "J18.9",
        provider_type: HOSPITAL,
        claim_type: INSTITUTIONAL,
        weight: 15,
        ages: (0, 99, false),
        lines: &[line("99223", 1, 1, 10_000), line("71046", 1, 1, 10_000), line("99232", 2, 5, 10_000)],
    },
    Encounter {
        name: "appendicitis",
        diagnosis: "K35.8",
        provider_type: HOSPITAL,
        claim_type: INSTITUTIONAL,
        weight: 6,
        ages: (5, 70, false),
        lines: &[line("99223", 1, 1, 10_000), line("44970", 1, 1, 10_000)],
    },
    Encounter {
        name: "normal delivery",
        diagnosis: "O80",
        provider_type: HOSPITAL,
        claim_type: INSTITUTIONAL,
        weight: 10,
        ages: (18, 45, true),
        lines: &[line("59400", 1, 1, 10_000)],
    },
    Encounter {
        name: "breast cancer chemotherapy",
        diagnosis: "C50.9",
        provider_type: HOSPITAL,
        claim_type: PROFESSIONAL,
        weight: 3,
        ages: (30, 90, true),
        lines: &[line("96413", 1, 1, 10_000)],
    },
    Encounter {
        name: "head injury CT",
        diagnosis: "S06.0",
        provider_type: HOSPITAL,
        claim_type: PROFESSIONAL,
        weight: 5,
        ages: (0, 99, false),
        lines: &[line("99215", 1, 1, 10_000), line("70450", 1, 1, 10_000)],
    },
    Encounter {
        name: "depression therapy",
        diagnosis: "F32.9",
        provider_type: CLINIC,
        claim_type: PROFESSIONAL,
        weight: 20,
        ages: (15, 99, false),
        lines: &[line("90837", 1, 1, 10_000)],
    },
    Encounter {
        name: "eye examination",
        diagnosis: "H52.1",
        provider_type: CLINIC,
        claim_type: PROFESSIONAL,
        weight: 15,
        ages: (5, 99, false),
        lines: &[line("92004", 1, 1, 10_000)],
    },
    Encounter {
        name: "dental crown",
        diagnosis: "K02.9",
        provider_type: CLINIC,
        claim_type: PROFESSIONAL,
        weight: 6,
        ages: (12, 99, false),
        lines: &[line("D2740", 1, 1, 10_000)],
    },
    Encounter {
        name: "cosmetic dermabrasion",
        diagnosis: "L90.5",
        provider_type: CLINIC,
        claim_type: PROFESSIONAL,
        weight: 2,
        ages: (18, 70, false),
        lines: &[line("15780", 1, 1, 10_000)],
    },
    Encounter {
        name: "general check-up labs",
        diagnosis: "Z00.0",
        provider_type: LAB,
        claim_type: PROFESSIONAL,
        weight: 60,
        ages: (18, 99, false),
        lines: &[line("80053", 1, 1, 10_000), line("85025", 1, 1, 8_000)],
    },
    Encounter {
        name: "antibiotic prescription",
        diagnosis: "J06.9",
        provider_type: PHARMACY,
        claim_type: RX,
        weight: 70,
        ages: (0, 99, false),
        lines: &[line("RX-AMX500", 1, 2, 10_000)],
    },
    Encounter {
        name: "chronic medication refill",
        diagnosis: "I10",
        provider_type: PHARMACY,
        claim_type: RX,
        weight: 90,
        ages: (30, 99, false),
        lines: &[line("RX-AML5", 1, 3, 10_000), line("RX-MET500", 1, 3, 4_000), line("RX-OMZ20", 1, 1, 2_000)],
    },
];

/// ICD-10 codes billed as severe (for upcoding and peer-group features).
pub const HIGH_SEVERITY_DIAGNOSES: &[&str] = &["A91", "J18.9", "K35.8", "C50.9", "S06.0", "I21.9"];

/// One plan tier's cost sharing (plan year independent).
#[derive(Debug, Clone, Copy)]
pub struct TierRules {
    /// Tier.
    pub tier: PlanTier,
    /// Name.
    pub name: &'static str,
    /// Share of families choosing it (weight).
    pub weight: u32,
    /// Individual deductible.
    pub deductible_individual_idr: i64,
    /// Individual out-of-pocket maximum.
    pub oop_max_individual_idr: i64,
    /// Copay per office-type line.
    pub copay_idr: i64,
    /// In-network coinsurance, basis points.
    pub coinsurance_bp: i32,
    /// Out-of-network coinsurance, basis points (10 000: not covered).
    pub out_of_network_coinsurance_bp: i32,
    /// Annual limit.
    pub annual_limit_idr: i64,
    /// Excluded procedure codes.
    pub excluded: &'static [&'static str],
}

/// The four tiers sold.
pub const TIERS: &[TierRules] = &[
    TierRules {
        tier: PlanTier::BRONZE,
        name: "Arus Perunggu",
        weight: 35,
        deductible_individual_idr: 5_000_000,
        oop_max_individual_idr: 15_000_000,
        copay_idr: 100_000,
        coinsurance_bp: 3_000,
        out_of_network_coinsurance_bp: 10_000,
        annual_limit_idr: 100_000_000,
        excluded: &["D2740", "15780", "92004"],
    },
    TierRules {
        tier: PlanTier::SILVER,
        name: "Arus Perak",
        weight: 35,
        deductible_individual_idr: 2_500_000,
        oop_max_individual_idr: 10_000_000,
        copay_idr: 75_000,
        coinsurance_bp: 2_000,
        out_of_network_coinsurance_bp: 5_000,
        annual_limit_idr: 250_000_000,
        excluded: &["D2740", "15780"],
    },
    TierRules {
        tier: PlanTier::GOLD,
        name: "Arus Emas",
        weight: 20,
        deductible_individual_idr: 1_000_000,
        oop_max_individual_idr: 6_000_000,
        copay_idr: 50_000,
        coinsurance_bp: 1_000,
        out_of_network_coinsurance_bp: 3_000,
        annual_limit_idr: 500_000_000,
        excluded: &["15780"],
    },
    TierRules {
        tier: PlanTier::PLATINUM,
        name: "Arus Platinum",
        weight: 10,
        deductible_individual_idr: 0,
        oop_max_individual_idr: 3_000_000,
        copay_idr: 25_000,
        coinsurance_bp: 500,
        out_of_network_coinsurance_bp: 2_000,
        annual_limit_idr: 1_000_000_000,
        excluded: &["15780"],
    },
];

/// Specialties by facility type.
pub fn specialties(provider_type: ProviderType) -> &'static [&'static str] {
    match provider_type {
        HOSPITAL => &["INTERNAL_MEDICINE", "SURGERY", "OBSTETRICS", "ONCOLOGY", "RADIOLOGY", "EMERGENCY"],
        CLINIC => &["GENERAL_PRACTICE", "PHYSIOTHERAPY", "PSYCHOLOGY", "OPHTHALMOLOGY", "DENTISTRY"],
        LAB => &["CLINICAL_PATHOLOGY"],
        PHARMACY => &["DISPENSING"],
    }
}

/// Distance in whole kilometres between two points given in microdegrees (equirectangular
/// approximation, good to a few percent at Indonesia's latitudes). A distance is a fraud
/// feature, not money, so floating point is fine; IEEE arithmetic keeps it deterministic.
#[allow(clippy::float_arithmetic)]
pub fn distance_km(lat1_e6: i32, lon1_e6: i32, lat2_e6: i32, lon2_e6: i32) -> i64 {
    let to_rad = |e6: i32| f64::from(e6) / 1e6 * std::f64::consts::PI / 180.0;
    let (la1, lo1, la2, lo2) = (to_rad(lat1_e6), to_rad(lon1_e6), to_rad(lat2_e6), to_rad(lon2_e6));
    let x = (lo2 - lo1) * ((la1 + la2) / 2.0).cos();
    let y = la2 - la1;
    ((x * x + y * y).sqrt() * 6371.0) as i64
}
