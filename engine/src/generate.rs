//! Deterministic, seeded generator of synthetic musicians and gigs placed around real cities
//! (GeoNames, ≥ 100k inhabitants), chosen with probability proportional to population.
//!
//! Promise: the same [`GenConfig`] and index always give the same record, on every machine and in
//! every version of this crate. Each record is derived from `(seed, kind, index)` alone, so records
//! are independent and can be generated in any order or in parallel. To keep that promise the
//! module uses its own SplitMix64 PRNG (not the `rand` crate), integer weight tables, and only
//! correctly rounded IEEE arithmetic (`+ - * /`, `round`; no `cos` or `ln` from the platform libm).
//! The embedded tables and `data/cities.csv` are part of the contract: changing them changes the
//! output, which the `golden_output_is_pinned` test catches. Every record is emitted already
//! normalized, so [`crate::validate::validate_musician`] and [`crate::validate::validate_gig`] return
//! it unchanged.

use crate::model::{Budget, GeoPoint, Gig, InstrumentSkill, Money, Musician, Rating, Slot};
use crate::validate::is_valid_date;
use std::io::{self, BufWriter, Write};

const CITIES_CSV: &str = include_str!("../data/cities.csv");
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// Record kinds, mixed into each record's seed; fixed forever.
const KIND_MUSICIAN: u64 = 0x6d75_7369_6369_616e; // ASCII "musician"
const KIND_GIG: u64 = 0x0067_6967_0067_6967; // ASCII "\0gig\0gig"
const KM_PER_DEG: f64 = 111.195; // mean Earth radius 6371 km
const SPREAD_KM: f64 = 25.0;

#[rustfmt::skip]
const INSTRUMENTS: [&str; 20] = [
    "vocals", "guitar", "piano", "drums", "bass", "violin", "saxophone", "trumpet", "keyboards",
    "cello", "flute", "clarinet", "trombone", "accordion", "percussion", "ukulele", "harp",
    "double bass", "dj", "banjo",
];
/// Zipf-like: about 1000 / rank.
#[rustfmt::skip]
const INSTRUMENT_W: [u32; 20] = [
    1000, 500, 333, 250, 200, 167, 143, 125, 111, 100, 91, 83, 77, 71, 67, 63, 59, 56, 53, 50,
];
#[rustfmt::skip]
const GENRES: [&str; 20] = [
    "jazz", "rock", "pop", "classical", "bossa nova", "salsa", "flamenco", "blues", "funk", "soul",
    "reggae", "metal", "folk", "country", "electronic", "hip hop", "latin", "tango", "gospel",
    "indie",
];
#[rustfmt::skip]
const GENRE_W: [u32; 20] = [
    1000, 900, 850, 600, 250, 300, 200, 400, 350, 300, 250, 250, 350, 250, 400, 350, 300, 150,
    150, 300,
];
#[rustfmt::skip]
const FIRST_NAMES: [&str; 36] = [
    "Ana", "María", "José", "Lucía", "João", "Chloé", "François", "Jürgen", "Søren", "Zoë",
    "Björn", "Mateo", "Sofía", "Aiko", "Hiroshi", "Wei", "Mei", "Priya", "Arjun", "Olusegun",
    "Amara", "Fatima", "Omar", "Liam", "Emma", "Noah", "Olivia", "Dmitri", "Olga", "Chidi",
    "Yuki", "Camila", "Diego", "Ingrid", "Kofi", "Leïla",
];
#[rustfmt::skip]
const LAST_NAMES: [&str; 36] = [
    "Pérez", "García", "Silva", "Müller", "Dubois", "Rossi", "Kowalski", "Nakamura", "Tanaka",
    "Wang", "Li", "Kim", "Park", "Sharma", "Patel", "Okafor", "Adeyemi", "Nguyen", "Smith",
    "Johnson", "O'Brien", "Andersson", "Jensen", "Novak", "Yılmaz", "Hernández", "Gómez", "Costa",
    "Fernández", "Haddad", "Mensah", "Cohen", "Schmidt", "Lefèvre", "Bianchi", "Santos",
];
#[rustfmt::skip]
const GIG_KINDS: [&str; 15] = [
    "Wedding reception", "Corporate party", "Festival stage", "Birthday party", "Gala dinner",
    "Sunday brunch set", "Church service", "Recording session", "Theatre pit orchestra",
    "Street festival", "Hotel lobby evening", "Charity concert", "Graduation ceremony",
    "Open-air concert", "Private dinner party",
];
#[rustfmt::skip]
const VENUES: [&str; 8] = [
    "Café Central", "the Grand Hotel", "the Old Harbour", "Club Luna", "the Botanical Garden",
    "the Riverside Bar", "City Hall", "La Terraza",
];

/// What to generate: how many musicians and gigs, from which seed, over which dates.
///
/// ```rust
/// use mussikon_engine::generate::GenConfig;
/// let cfg = GenConfig { seed: 7, musicians: 10, ..GenConfig::default() };
/// assert_eq!(cfg.gigs, 100);
/// assert_eq!(cfg.start_date, "2026-12-01");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenConfig {
    /// Seed of the whole data set.
    pub seed: u64,
    /// Number of musicians yielded by [`Generator::musicians`].
    pub musicians: usize,
    /// Number of gigs yielded by [`Generator::gigs`].
    pub gigs: usize,
    /// First date (`YYYY-MM-DD`) of the window for gig dates and busy days.
    pub start_date: String,
    /// Length of the window in days (≥ 1); dates fall in `[start_date, start_date + days)`.
    pub days: u32,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 42,
            musicians: 1000,
            gigs: 100,
            start_date: "2026-12-01".to_string(),
            days: 180,
        }
    }
}

/// Why a [`Generator`] could not be built.
///
/// ```rust
/// use mussikon_engine::generate::{GenConfig, GenError, Generator};
/// let bad = GenConfig { days: 0, ..GenConfig::default() };
/// assert!(matches!(Generator::new(bad), Err(GenError::ZeroDays)));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// `start_date` is not a calendar date `YYYY-MM-DD`, or the window ends after 9999-12-31.
    #[error(
        "bad start date {0:?}: must be a YYYY-MM-DD calendar date whose window ends by 9999-12-31"
    )]
    BadStartDate(String),
    /// `days` is zero, so there is no date to use.
    #[error("days must be at least 1")]
    ZeroDays,
    /// No line of the embedded cities file could be parsed.
    #[error("the embedded cities file has no usable city")]
    NoCities,
}

/// One parsed city.
#[derive(Clone, Debug)]
struct City {
    name: String,
    country: String,
    lat: f64,
    lon: f64,
}

/// A seeded generator with the parsed cities and their cumulative population weights.
///
/// ```rust
/// use mussikon_engine::generate::{GenConfig, Generator};
/// let g = Generator::new(GenConfig { musicians: 3, gigs: 2, ..GenConfig::default() }).unwrap();
/// assert_eq!(g.musicians().count(), 3);
/// assert_eq!(g.gigs().count(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct Generator {
    cfg: GenConfig,
    cities: Vec<City>,
    /// `cumulative[k]` = total population of cities `0..=k`.
    cumulative: Vec<u64>,
    start_day: i64,
}

impl Generator {
    /// Checks the config and parses the embedded cities.
    ///
    /// ```rust
    /// use mussikon_engine::generate::{GenConfig, Generator};
    /// assert!(Generator::new(GenConfig::default()).is_ok());
    /// let bad = GenConfig { start_date: "2026-02-30".into(), ..GenConfig::default() };
    /// assert!(Generator::new(bad).is_err());
    /// ```
    pub fn new(cfg: GenConfig) -> Result<Generator, GenError> {
        if cfg.days == 0 {
            return Err(GenError::ZeroDays);
        }
        let bad = || GenError::BadStartDate(cfg.start_date.clone());
        let start_day = parse_date(&cfg.start_date).ok_or_else(bad)?;
        if start_day + i64::from(cfg.days) - 1 > days_from_civil(9999, 12, 31) {
            return Err(bad());
        }
        let mut cities = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        for (city, pop) in CITIES_CSV.lines().filter_map(parse_city_line) {
            total += pop;
            cumulative.push(total);
            cities.push(city);
        }
        if cities.is_empty() || total == 0 {
            return Err(GenError::NoCities);
        }
        Ok(Generator {
            cfg,
            cities,
            cumulative,
            start_day,
        })
    }

    /// The config this generator was built with.
    ///
    /// ```rust
    /// use mussikon_engine::generate::{GenConfig, Generator};
    /// let g = Generator::new(GenConfig { seed: 9, ..GenConfig::default() }).unwrap();
    /// assert_eq!(g.config().seed, 9);
    /// ```
    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    /// Musician number `i`, with id `m-{i:07}`; depends only on the seed, `i` and the date window.
    ///
    /// ```rust
    /// use mussikon_engine::generate::{GenConfig, Generator};
    /// let g = Generator::new(GenConfig::default()).unwrap();
    /// let m = g.musician(12);
    /// assert_eq!(m.id, "m-0000012");
    /// assert_eq!(m, g.musician(12));
    /// assert!(mussikon_engine::validate_musician(m).is_ok());
    /// ```
    pub fn musician(&self, i: usize) -> Musician {
        let mut rng = Rng::for_record(self.cfg.seed, KIND_MUSICIAN, i as u64);
        let name = format!(
            "{} {}",
            FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize],
            LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize]
        );
        let n_instr = 1 + rng.weighted(&[60, 30, 10], &[]);
        let instruments: Vec<InstrumentSkill> = rng
            .distinct(&INSTRUMENT_W, n_instr)
            .into_iter()
            .map(|k| InstrumentSkill {
                name: INSTRUMENTS[k].to_string(),
                level: 1 + rng.weighted(&[8, 20, 40, 22, 10], &[]) as i64,
            })
            .collect();
        let n_genres = 1 + rng.weighted(&[40, 35, 15, 10], &[]);
        let mut genres: Vec<String> = rng
            .distinct(&GENRE_W, n_genres)
            .into_iter()
            .map(|k| GENRES[k].to_string())
            .collect();
        genres.sort();
        let (city, location) = self.place(&mut rng);
        let travel_radius_km = if rng.below(100) < 4 {
            [150.0, 200.0, 250.0, 300.0][rng.below(4) as usize]
        } else {
            [10.0, 20.0, 30.0, 50.0, 75.0, 100.0][rng.weighted(&[15, 20, 20, 25, 12, 8], &[])]
        };
        let (currency, typical) = money_for(&city.country);
        let factor = (0..3).fold(1.0, |f, _| f * (0.6 + 0.8 * rng.unit()));
        let fee = Money {
            amount: round_to_100(typical as f64 * factor),
            currency: currency.to_string(),
        };
        let rating = if rng.below(100) < 20 {
            None
        } else {
            let u = rng.unit();
            let count = 1 + (199.0 * u * u * u) as i64;
            let mean = if rng.below(100) < 85 {
                3.9 + 0.5 * (rng.unit() + rng.unit())
            } else {
                1.0 + 4.0 * rng.unit()
            };
            // A mean of `count` whole-star ratings, rounded to 0.1.
            let stars = ((mean * count as f64).round() as i64).clamp(count, 5 * count);
            let average = ((stars as f64 / count as f64) * 10.0).round() / 10.0;
            Some(Rating { average, count })
        };
        let n_busy = (rng.below(11) as usize).min(self.cfg.days as usize);
        let mut busy_days: Vec<u64> = Vec::with_capacity(n_busy);
        while busy_days.len() < n_busy {
            let d = rng.below(u64::from(self.cfg.days));
            if !busy_days.contains(&d) {
                busy_days.push(d);
            }
        }
        busy_days.sort_unstable();
        let busy = busy_days.into_iter().map(|d| self.date(d)).collect();
        let instr_names: Vec<&str> = instruments.iter().map(|s| s.name.as_str()).collect();
        let bio = format!(
            "{name} plays {} ({}) in and around {}.",
            join_and(&instr_names),
            genres.join(", "),
            city.name
        );
        let active = rng.below(100) < 95;
        Musician {
            id: format!("m-{i:07}"),
            name,
            instruments,
            genres,
            location,
            city: Some(city.name.clone()),
            travel_radius_km,
            fee,
            rating,
            busy,
            bio: Some(bio),
            active,
        }
    }

    /// Gig number `j`, with id `g-{j:06}`; depends only on the seed, `j` and the date window.
    ///
    /// ```rust
    /// use mussikon_engine::generate::{GenConfig, Generator};
    /// let g = Generator::new(GenConfig::default()).unwrap();
    /// let gig = g.gig(3);
    /// assert_eq!(gig.id, "g-000003");
    /// assert!(gig.date.as_str() >= "2026-12-01");
    /// assert!(mussikon_engine::validate_gig(gig).is_ok());
    /// ```
    pub fn gig(&self, j: usize) -> Gig {
        let mut rng = Rng::for_record(self.cfg.seed, KIND_GIG, j as u64);
        let date = self.date(rng.below(u64::from(self.cfg.days)));
        let (city, location) = self.place(&mut rng);
        let radius_km = if rng.below(100) < 8 {
            [100.0, 120.0, 150.0][rng.below(3) as usize]
        } else {
            [20.0, 30.0, 40.0, 50.0, 60.0, 80.0][rng.weighted(&[15, 25, 20, 20, 10, 10], &[])]
        };
        let n_slots = 1 + rng.weighted(&[35, 35, 20, 10], &[]);
        let slots = rng
            .distinct(&INSTRUMENT_W, n_slots)
            .into_iter()
            .map(|k| Slot {
                instrument: INSTRUMENTS[k].to_string(),
                count: 1 + i64::from(rng.below(100) < 20),
                min_level: 1 + rng.weighted(&[40, 30, 20, 10], &[]) as i64,
            })
            .collect();
        let n_genres = rng.weighted(&[30, 45, 25], &[]);
        let mut genres: Vec<String> = rng
            .distinct(&GENRE_W, n_genres)
            .into_iter()
            .map(|k| GENRES[k].to_string())
            .collect();
        let kind = GIG_KINDS[rng.below(GIG_KINDS.len() as u64) as usize];
        let venue = VENUES[rng.below(VENUES.len() as u64) as usize];
        let title = match (rng.weighted(&[50, 25, 25], &[]), genres.first()) {
            (1, Some(genre)) => format!("{} night at {venue}", capitalize(genre)),
            (1, None) => format!("Jazz night at {venue}"),
            (2, _) => format!("{kind} in {}", city.name),
            _ => kind.to_string(),
        };
        genres.sort();
        let (currency, typical) = money_for(&city.country);
        let budget = Budget {
            max_fee: round_to_100(typical as f64 * (1.0 + rng.unit())),
            currency: currency.to_string(),
        };
        let min_rating = if rng.below(100) < 70 {
            None
        } else {
            Some((30 + rng.below(16)) as f64 / 10.0)
        };
        Gig {
            id: format!("g-{j:06}"),
            title: truncate(&title, 200),
            date,
            location,
            radius_km,
            slots,
            genres,
            budget,
            min_rating,
            owner: None,
        }
    }

    /// Musicians `0..config().musicians`, in index order.
    ///
    /// ```rust
    /// use mussikon_engine::generate::{GenConfig, Generator};
    /// let g = Generator::new(GenConfig { musicians: 5, ..GenConfig::default() }).unwrap();
    /// let all: Vec<_> = g.musicians().collect();
    /// assert_eq!(all[4], g.musician(4));
    /// ```
    pub fn musicians(&self) -> impl Iterator<Item = Musician> + '_ {
        (0..self.cfg.musicians).map(move |i| self.musician(i))
    }

    /// Gigs `0..config().gigs`, in index order.
    ///
    /// ```rust
    /// use mussikon_engine::generate::{GenConfig, Generator};
    /// let g = Generator::new(GenConfig { gigs: 5, ..GenConfig::default() }).unwrap();
    /// assert_eq!(g.gigs().last().unwrap().id, "g-000004");
    /// ```
    pub fn gigs(&self) -> impl Iterator<Item = Gig> + '_ {
        (0..self.cfg.gigs).map(move |j| self.gig(j))
    }

    /// Writes every musician as one JSON object per line (the model's serde form).
    ///
    /// ```rust
    /// use mussikon_engine::generate::{GenConfig, Generator};
    /// let g = Generator::new(GenConfig { musicians: 2, ..GenConfig::default() }).unwrap();
    /// let mut out = Vec::new();
    /// g.write_musicians_jsonl(&mut out).unwrap();
    /// assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
    /// ```
    pub fn write_musicians_jsonl<W: Write>(&self, w: W) -> io::Result<()> {
        write_jsonl(w, self.musicians())
    }

    /// Writes every gig as one JSON object per line (the model's serde form).
    ///
    /// ```rust
    /// use mussikon_engine::generate::{GenConfig, Generator};
    /// let g = Generator::new(GenConfig { gigs: 3, ..GenConfig::default() }).unwrap();
    /// let mut out = Vec::new();
    /// g.write_gigs_jsonl(&mut out).unwrap();
    /// let text = String::from_utf8(out).unwrap();
    /// let first: mussikon_engine::Gig = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    /// assert_eq!(first, g.gig(0));
    /// ```
    pub fn write_gigs_jsonl<W: Write>(&self, w: W) -> io::Result<()> {
        write_jsonl(w, self.gigs())
    }

    /// A population-weighted city and a point uniformly within `SPREAD_KM` of it.
    fn place(&self, rng: &mut Rng) -> (&City, GeoPoint) {
        let total = self.cumulative.last().copied().unwrap_or(0);
        let r = rng.below(total);
        let k = self.cumulative.partition_point(|&c| c <= r);
        let city = &self.cities[k.min(self.cities.len() - 1)];
        // Uniform in the unit disk by rejection: no trigonometry needed.
        let (mut dx, mut dy) = (0.0, 0.0);
        for _ in 0..64 {
            let (x, y) = (2.0 * rng.unit() - 1.0, 2.0 * rng.unit() - 1.0);
            if x * x + y * y <= 1.0 {
                (dx, dy) = (x, y);
                break;
            }
        }
        let lat = (city.lat + dy * SPREAD_KM / KM_PER_DEG).clamp(-90.0, 90.0);
        let coslat = cos_deg(city.lat).max(0.01);
        let mut lon = city.lon + dx * SPREAD_KM / (KM_PER_DEG * coslat);
        if lon > 180.0 {
            lon -= 360.0;
        } else if lon < -180.0 {
            lon += 360.0;
        }
        (
            city,
            GeoPoint {
                lat: round6(lat),
                lon: round6(lon),
            },
        )
    }

    /// The date `offset` days after the start date.
    fn date(&self, offset: u64) -> String {
        format_date(self.start_day + offset as i64)
    }
}

fn write_jsonl<W: Write, T: serde::Serialize>(
    w: W,
    items: impl Iterator<Item = T>,
) -> io::Result<()> {
    let mut w = BufWriter::new(w);
    for item in items {
        serde_json::to_writer(&mut w, &item)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast and fixed forever.
struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn for_record(seed: u64, kind: u64, index: u64) -> Rng {
        Rng(mix(
            mix(seed ^ kind).wrapping_add(index.wrapping_mul(GOLDEN))
        ))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (0 when `n` is 0), by multiply-high.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index drawn with probability proportional to `weights`, never one in `except`.
    fn weighted(&mut self, weights: &[u32], except: &[usize]) -> usize {
        let live = |i: &usize| !except.contains(i);
        let total: u64 = (0..weights.len())
            .filter(live)
            .map(|i| u64::from(weights[i]))
            .sum();
        let mut r = self.below(total);
        for i in (0..weights.len()).filter(live) {
            let w = u64::from(weights[i]);
            if r < w {
                return i;
            }
            r -= w;
        }
        0
    }

    /// `k` distinct indices drawn by weight without replacement, in draw order.
    fn distinct(&mut self, weights: &[u32], k: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(k);
        while out.len() < k.min(weights.len()) {
            let i = self.weighted(weights, &out);
            out.push(i);
        }
        out
    }
}

/// Currency and typical fee (in minor units) for an ISO 3166 country code.
fn money_for(country: &str) -> (&'static str, i64) {
    match country {
        "ES" | "FR" | "DE" | "IT" | "NL" | "PT" | "BE" | "AT" | "IE" | "FI" | "GR" | "SK"
        | "SI" | "EE" | "LV" | "LT" | "LU" | "HR" | "CY" | "MT" => ("EUR", 25_000),
        "US" => ("USD", 30_000),
        "GB" => ("GBP", 22_000),
        "JP" => ("JPY", 30_000),
        "CN" => ("CNY", 150_000),
        "IN" => ("INR", 1_000_000),
        "BR" => ("BRL", 80_000),
        "MX" => ("MXN", 300_000),
        "CA" => ("CAD", 35_000),
        "AU" => ("AUD", 40_000),
        "KR" => ("KRW", 300_000),
        "RU" => ("RUB", 1_500_000),
        "TR" => ("TRY", 600_000),
        "AR" => ("ARS", 15_000_000),
        "CO" => ("COP", 50_000_000),
        "NG" => ("NGN", 10_000_000),
        "ZA" => ("ZAR", 300_000),
        _ => ("USD", 10_000),
    }
}

fn round_to_100(x: f64) -> i64 {
    ((x / 100.0).round() as i64).max(1) * 100
}

/// Rounds to 6 decimals (~0.1 m), so the value survives a JSON round trip exactly.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Cosine of an angle in degrees in [-90, 90] by Taylor series: the same bits on every machine.
fn cos_deg(deg: f64) -> f64 {
    let x = deg.clamp(-90.0, 90.0) * (std::f64::consts::PI / 180.0);
    let x2 = x * x;
    let (mut term, mut sum) = (1.0, 1.0);
    for k in 1..=10 {
        term *= -x2 / f64::from((2 * k - 1) * (2 * k));
        sum += term;
    }
    sum
}

fn truncate(s: &str, max: usize) -> String {
    s.trim().chars().take(max).collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// "a", "a and b", "a, b and c".
fn join_and(items: &[&str]) -> String {
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_string(),
        None => String::new(),
    }
}

/// Splits one CSV line into fields, honouring double quotes and `""` escapes.
fn split_csv(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, _) => cur.push(c),
            (false, '"') if cur.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut cur)),
            (false, _) => cur.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(cur);
    Some(fields)
}

/// Parses `geonameid,name,country,lat,lon,population,timezone` into a city and its population;
/// `None` for the header or a bad line.
fn parse_city_line(line: &str) -> Option<(City, u64)> {
    let f = split_csv(line)?;
    if f.len() != 7 {
        return None;
    }
    let name = truncate(&f[1], 200);
    let country = f[2].trim().to_string();
    let lat: f64 = f[3].trim().parse().ok()?;
    let lon: f64 = f[4].trim().parse().ok()?;
    let pop: u64 = f[5].trim().parse().ok()?;
    let ok = !name.is_empty()
        && country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
        && pop > 0;
    ok.then_some((
        City {
            name,
            country,
            lat,
            lon,
        },
        pop,
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`] (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a valid `YYYY-MM-DD` date.
fn parse_date(s: &str) -> Option<i64> {
    if !is_valid_date(s) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    Some(days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?))
}

fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{validate_gig, validate_musician};

    fn generator(seed: u64, n: usize) -> Generator {
        let cfg = GenConfig {
            seed,
            musicians: n,
            gigs: n,
            ..GenConfig::default()
        };
        Generator::new(cfg).expect("valid config")
    }

    fn km(a: GeoPoint, lat: f64, lon: f64) -> f64 {
        let (p1, p2) = (a.lat.to_radians(), lat.to_radians());
        let (dp, dl) = (p2 - p1, (lon - a.lon).to_radians());
        let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * 6371.0 * h.sqrt().asin()
    }

    fn weight(g: &Generator, k: usize) -> u64 {
        g.cumulative[k] - if k == 0 { 0 } else { g.cumulative[k - 1] }
    }

    #[test]
    fn records_are_valid_normalized_and_near_their_city() {
        let g = generator(7, 2000);
        let (first, last) = ("2026-12-01".to_string(), "2027-05-29".to_string());
        for m in g.musicians() {
            assert_eq!(validate_musician(m.clone()), Ok(m.clone()));
            assert!(
                m.busy.iter().all(|d| *d >= first && *d <= last),
                "{:?}",
                m.busy
            );
            let city = m.city.clone().unwrap_or_default();
            let near = g.cities.iter().filter(|c| c.name == city);
            let d = near
                .map(|c| km(m.location, c.lat, c.lon))
                .fold(f64::MAX, f64::min);
            assert!(d <= SPREAD_KM * 1.01, "{} is {d} km from {city}", m.id);
        }
        for gig in g.gigs() {
            assert_eq!(validate_gig(gig.clone()), Ok(gig.clone()));
            assert!(gig.date >= first && gig.date <= last, "{}", gig.date);
        }
    }

    #[test]
    fn same_seed_same_records_other_seed_other_records() {
        let (a, b, c) = (generator(7, 2000), generator(7, 2000), generator(8, 2000));
        assert!(a.musicians().eq(b.musicians()) && a.gigs().eq(b.gigs()));
        assert!((0..200).all(|i| a.musician(i) != c.musician(i) && a.gig(i) != c.gig(i)));
        assert!(a.musicians().enumerate().all(|(i, m)| m == a.musician(i)));
        assert!(a.gigs().enumerate().all(|(j, gig)| gig == a.gig(j)));
        assert_eq!(
            (a.musician(123_456).id, a.gig(654_321).id),
            ("m-0123456".into(), "g-654321".into())
        );
    }

    #[test]
    fn golden_output_is_pinned() {
        // FNV-1a of the JSONL of the first 200 records for the default config. If this fails, the
        // generator's output changed, which breaks the module's promise to existing data sets.
        let g = Generator::new(GenConfig {
            musicians: 200,
            gigs: 200,
            ..GenConfig::default()
        })
        .expect("valid config");
        let mut out = Vec::new();
        g.write_musicians_jsonl(&mut out).expect("write to Vec");
        g.write_gigs_jsonl(&mut out).expect("write to Vec");
        let hash = out.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!(format!("{hash:016x}"), "85581e9fbcfaf9f3");
    }

    #[test]
    fn population_weighting_favours_big_cities() {
        let g = Generator::new(GenConfig {
            seed: 11,
            musicians: 20_000,
            ..GenConfig::default()
        })
        .expect("valid config");
        let n = g.cities.len();
        let big = &g.cities[(0..n).max_by_key(|&k| weight(&g, k)).unwrap_or(0)];
        // The least populous city with no other city within 150 km.
        let isolated = |k: &usize| {
            let p = GeoPoint {
                lat: g.cities[*k].lat,
                lon: g.cities[*k].lon,
            };
            g.cities
                .iter()
                .enumerate()
                .all(|(o, c)| o == *k || km(p, c.lat, c.lon) > 150.0)
        };
        let small = (0..n)
            .filter(isolated)
            .min_by_key(|&k| weight(&g, k))
            .expect("one exists");
        let small = &g.cities[small];
        let (mut n_big, mut n_small) = (0, 0);
        for m in g.musicians() {
            n_big += usize::from(km(m.location, big.lat, big.lon) <= 50.0);
            n_small += usize::from(km(m.location, small.lat, small.lon) <= 50.0);
        }
        // Uniform over cities would give about 20_000 / 6_204 ≈ 3 per city (seed 11: 415 vs 0).
        assert!(n_big >= 100, "{} got {n_big}", big.name);
        assert!(
            n_small * 20 < n_big,
            "{} got {n_small}, {} got {n_big}",
            small.name,
            big.name
        );
    }

    #[test]
    fn jsonl_round_trips() {
        let g = generator(5, 2000);
        let (mut ms, mut gs) = (Vec::new(), Vec::new());
        g.write_musicians_jsonl(&mut ms).expect("write to Vec");
        g.write_gigs_jsonl(&mut gs).expect("write to Vec");
        let (ms, gs) = (
            String::from_utf8(ms).expect("utf-8"),
            String::from_utf8(gs).expect("utf-8"),
        );
        assert_eq!((ms.lines().count(), gs.lines().count()), (2000, 2000));
        for (line, m) in ms.lines().zip(g.musicians()) {
            assert_eq!(serde_json::from_str::<Musician>(line).expect("parses"), m);
        }
        for (line, gig) in gs.lines().zip(g.gigs()) {
            assert_eq!(serde_json::from_str::<Gig>(line).expect("parses"), gig);
        }
    }

    #[test]
    fn dates_round_trip_across_leap_years() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            parse_date("2000-03-01"),
            Some(days_from_civil(2000, 2, 29) + 1)
        );
        assert_eq!(format_date(days_from_civil(2100, 2, 28) + 1), "2100-03-01");
        assert_eq!(format_date(days_from_civil(2028, 2, 28) + 1), "2028-02-29");
        let mut prev = (0, 0, 0);
        for z in days_from_civil(1600, 1, 1)..days_from_civil(2401, 1, 1) {
            let s = format_date(z);
            assert!(is_valid_date(&s) && parse_date(&s) == Some(z), "{s}");
            assert!(civil_from_days(z) > prev);
            prev = civil_from_days(z);
        }
    }

    #[test]
    fn config_errors_and_csv_parsing() {
        let bad = |cfg: GenConfig| Generator::new(cfg).is_err();
        assert!(bad(GenConfig {
            days: 0,
            ..GenConfig::default()
        }));
        assert!(bad(GenConfig {
            start_date: "2026-1-01".into(),
            ..GenConfig::default()
        }));
        assert!(bad(GenConfig {
            start_date: "9999-12-01".into(),
            days: 40,
            ..GenConfig::default()
        }));
        let g = Generator::new(GenConfig {
            days: 3,
            ..GenConfig::default()
        })
        .expect("valid");
        assert!(g.musicians().all(|m| m.busy.len() <= 3) && g.cities.len() > 6000);
        let line = r#"1,"Mianzhu, ""Deyang""",CN,31.3,104.2,510000,Asia/Shanghai"#;
        let (c, pop) = parse_city_line(line).expect("quoted line parses");
        assert_eq!(
            (c.name.as_str(), c.country.as_str(), pop),
            ("Mianzhu, \"Deyang\"", "CN", 510_000)
        );
        assert!(parse_city_line("geonameid,name,country,lat,lon,population,timezone").is_none());
        assert!(parse_city_line(r#"1,"unterminated,CN,1,2,3,X"#).is_none());
        assert!((cos_deg(60.0) - 0.5).abs() < 1e-12 && (cos_deg(0.0) - 1.0).abs() < 1e-15);
    }
}
