//! Matching: who can play a gig, how well, and the best way to fill its seats.
//!
//! The ranking is exact and documented; it is the contract the reference oracle checks.
//!
//! A musician is **eligible** for a slot when: active; plays the slot's instrument at level ≥
//! `min_level`; not busy and not booked on the gig's date; distance `d` (haversine, radius
//! 6371.0088 km) ≤ `R = min(gig.radius_km, musician.travel_radius_km)`; fee currency equals the
//! budget currency and fee ≤ `max_fee`; and, when the gig sets `min_rating`, Bayesian rating
//! `b ≥ min_rating`.
//!
//! **Components**, each in [0, 1]: proximity `1 − d/R`; rating `(b − 1)/4` with
//! `b = (count·average + 5·3.5)/(count + 5)`; genres `|gig ∩ musician| / |gig|` (1 when the gig
//! names none); price `1 − fee/max_fee` (1 when `max_fee` is 0); level
//! `(level − min_level + 1)/(6 − min_level)`.
//!
//! **Score** = weights · components with default weights 0.35, 0.30, 0.15, 0.10, 0.10
//! (normalized to sum 1). Ties go to the smaller musician id. Scoring runs in parallel with
//! rayon; the result does not depend on the thread count (each score is computed alone, then
//! the list is sorted by a total order).
//!
//! **Assignment**: seats (the slot's `count`, minus seats already booked for a stored gig) are
//! filled with distinct musicians maximizing the total score, by the Hungarian method
//! (Kuhn–Munkres). For each slot, the candidates considered are its top `L = max(k, seats)`
//! eligible musicians, where `seats` is the gig's total number of open seats. With that `L` the
//! assignment is optimal over *all* eligible musicians: an optimal assignment that used someone
//! outside a slot's top `L` could swap them for one of the top `L` (at most `seats − 1` of whom
//! are seated elsewhere) without lowering the total. Seats that no eligible musician can take
//! are reported as unfilled.

use crate::geo::{farther_than_by_latitude, haversine_km};
use crate::model::{Gig, Musician, Slot};
use crate::store::MusicianRecord;
use serde::{Deserialize, Serialize};

/// Weights of the five components. Finite, ≥ 0, not all zero; normalized to sum 1 before use.
///
/// ```
/// use mussikon_engine::Weights;
/// let w = Weights { proximity: 2.0, rating: 0.0, genres: 0.0, price: 0.0, level: 2.0 };
/// let n = w.normalized().unwrap();
/// assert_eq!(n.proximity, 0.5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Weight of proximity, a finite number >= 0.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub proximity: f64,
    /// Weight of rating, a finite number >= 0.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub rating: f64,
    /// Weight of genre overlap, a finite number >= 0.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub genres: f64,
    /// Weight of price, a finite number >= 0.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub price: f64,
    /// Weight of level, a finite number >= 0.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub level: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            proximity: 0.35,
            rating: 0.30,
            genres: 0.15,
            price: 0.10,
            level: 0.10,
        }
    }
}

impl Weights {
    fn as_array(&self) -> [f64; 5] {
        [
            self.proximity,
            self.rating,
            self.genres,
            self.price,
            self.level,
        ]
    }

    /// The weights scaled to sum 1, or the rule they break.
    pub fn normalized(&self) -> Result<Weights, &'static str> {
        let a = self.as_array();
        if a.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err("every weight must be a finite number >= 0");
        }
        // Scale by the largest first: finite weights near f64::MAX would otherwise sum to
        // infinity and all normalize to zero.
        let max = a.iter().copied().fold(0.0, f64::max);
        if max <= 0.0 {
            return Err("weights must not all be zero");
        }
        let sum: f64 = a.iter().map(|w| w / max).sum();
        let scale = |w: f64| (w / max) / sum;
        Ok(Weights {
            proximity: scale(self.proximity),
            rating: scale(self.rating),
            genres: scale(self.genres),
            price: scale(self.price),
            level: scale(self.level),
        })
    }
}

/// The five score components of one candidate, each in [0, 1].
///
/// ```
/// use mussikon_engine::{Components, Weights};
/// let c = Components { proximity: 1.0, rating: 1.0, genres: 1.0, price: 1.0, level: 1.0 };
/// assert!((c.score(&Weights::default().normalized().unwrap()) - 1.0).abs() < 1e-12);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Components {
    /// `1 − d/R`.
    pub proximity: f64,
    /// `(b − 1)/4`.
    pub rating: f64,
    /// Share of the gig's genres the musician plays.
    pub genres: f64,
    /// `1 − fee/max_fee`.
    pub price: f64,
    /// `(level − min_level + 1)/(6 − min_level)`.
    pub level: f64,
}

impl Components {
    /// Weighted sum with (already normalized) weights.
    pub fn score(&self, w: &Weights) -> f64 {
        w.proximity * self.proximity
            + w.rating * self.rating
            + w.genres * self.genres
            + w.price * self.price
            + w.level * self.level
    }
}

/// One ranked candidate for a slot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Candidate {
    /// Musician id.
    pub musician_id: String,
    /// Weighted score in [0, 1].
    pub score: f64,
    /// The components the score is made of.
    pub components: Components,
    /// Distance from the musician's home to the gig, km.
    pub distance_km: f64,
}

/// Evaluates one musician for one slot of a gig: `None` when not eligible.
///
/// ```
/// use mussikon_engine::{matching::evaluate, Weights};
/// # let m: mussikon_engine::Musician = serde_json::from_str(r#"{"id":"m-1","name":"Ana","instruments":[{"name":"guitar","level":4}],
/// #   "location":{"lat":40.42,"lon":-3.70},"travel_radius_km":50,"fee":{"amount":10000,"currency":"EUR"}}"#).unwrap();
/// # let g: mussikon_engine::Gig = serde_json::from_str(r#"{"id":"g-1","title":"Wedding","date":"2026-12-05",
/// #   "location":{"lat":40.42,"lon":-3.70},"radius_km":30,"slots":[{"instrument":"guitar","count":1}],
/// #   "budget":{"max_fee":20000,"currency":"EUR"}}"#).unwrap();
/// let c = evaluate(&g, &g.slots[0], &m, &[], &Weights::default().normalized().unwrap()).unwrap();
/// assert_eq!(c.components.price, 0.5);
/// ```
pub fn evaluate(
    gig: &Gig,
    slot: &Slot,
    m: &Musician,
    booked_dates: &[&str],
    w: &Weights,
) -> Option<Candidate> {
    if !m.active {
        return None;
    }
    let level = m.level_on(&slot.instrument)?;
    if level < slot.min_level {
        return None;
    }
    if m.busy.contains(&gig.date) || booked_dates.contains(&gig.date.as_str()) {
        return None;
    }
    if m.fee.currency != gig.budget.currency {
        return None;
    }
    let facts = Facts {
        level,
        fee: m.fee.amount,
        bayesian: m.bayesian_rating(),
        location: m.location,
        travel_radius_km: m.travel_radius_km,
        shared_genres: gig.genres.iter().filter(|g| m.genres.contains(g)).count(),
    };
    let (score, components, distance_km) = score_facts(gig, slot, &facts, w)?;
    Some(Candidate {
        musician_id: m.id.clone(),
        score,
        components,
        distance_km,
    })
}

/// What the numeric part of eligibility and every score component depend on, once the
/// categorical rules (active, plays the instrument, free on the date, same currency) hold.
///
/// Both the record path ([`evaluate`]) and the index path (fast fields of the index) fill it
/// from the same stored values, and both score through [`score_facts`], so the two paths give
/// bit-identical scores.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    /// The musician's level on the slot's instrument.
    pub level: i64,
    /// Fee in minor units.
    pub fee: i64,
    /// Bayesian rating `b`.
    pub bayesian: f64,
    /// Home.
    pub location: crate::model::GeoPoint,
    /// Travel radius, km.
    pub travel_radius_km: f64,
    /// How many of the gig's genres the musician plays.
    pub shared_genres: usize,
}

/// The numeric rules (level, fee ≤ budget, min rating, distance ≤ R) and the score:
/// `(score, components, distance)`, or `None` when not eligible.
pub(crate) fn score_facts(
    gig: &Gig,
    slot: &Slot,
    f: &Facts,
    w: &Weights,
) -> Option<(f64, Components, f64)> {
    let reach = numeric_rules(gig, slot, f)?;
    let components = components_of(gig, slot, f, reach);
    Some((components.score(w), components, reach.distance_km))
}

/// Where a musician stands against the gig's circle: the distance and the radius that bounds it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reach {
    /// Haversine distance from home to the gig, km.
    pub distance_km: f64,
    /// `R = min(gig.radius_km, travel_radius_km)`.
    pub radius_km: f64,
}

/// The numeric rules of eligibility (level ≥ minimum, fee ≤ budget, min rating, distance ≤ R):
/// the [`Reach`] when they hold. The first half of [`score_facts`], for callers that score
/// in two steps.
pub(crate) fn numeric_rules(gig: &Gig, slot: &Slot, f: &Facts) -> Option<Reach> {
    let d = distance_within_gig_radius(gig, f.location)?;
    numeric_rules_at(gig, slot, f, d)
}

/// The distance from `home` to the gig when it is within the gig's own radius (the wider of
/// the two bounds of R), `None` otherwise: the distance rule's first half, which needs only the
/// home. Most of a dense cover's misses are outside the circle's latitude band and cost no
/// trigonometry.
pub(crate) fn distance_within_gig_radius(gig: &Gig, home: crate::model::GeoPoint) -> Option<f64> {
    if farther_than_by_latitude(home, gig.location, gig.radius_km) {
        return None;
    }
    let d = haversine_km(home, gig.location);
    (d <= gig.radius_km).then_some(d)
}

/// [`numeric_rules`] for a home already known to be `d` km from the gig, within its radius
/// ([`distance_within_gig_radius`]).
pub(crate) fn numeric_rules_at(gig: &Gig, slot: &Slot, f: &Facts, d: f64) -> Option<Reach> {
    if f.level < slot.min_level || f.fee > gig.budget.max_fee {
        return None;
    }
    if let Some(min) = gig.min_rating {
        if f.bayesian < min {
            return None;
        }
    }
    let r = gig.radius_km.min(f.travel_radius_km);
    if d > r {
        return None;
    }
    Some(Reach {
        distance_km: d,
        radius_km: r,
    })
}

/// The five components of an eligible musician; the second half of [`score_facts`].
pub(crate) fn components_of(gig: &Gig, slot: &Slot, f: &Facts, reach: Reach) -> Components {
    let genres = if gig.genres.is_empty() {
        1.0
    } else {
        f.shared_genres as f64 / gig.genres.len() as f64
    };
    let price = if gig.budget.max_fee == 0 {
        1.0
    } else {
        1.0 - f.fee as f64 / gig.budget.max_fee as f64
    };
    Components {
        proximity: 1.0 - reach.distance_km / reach.radius_km,
        rating: (f.bayesian - 1.0) / 4.0,
        genres,
        price,
        level: (f.level - slot.min_level + 1) as f64 / (6 - slot.min_level) as f64,
    }
}

/// Evaluates a stored record (booked dates included).
pub(crate) fn evaluate_record(
    gig: &Gig,
    slot: &Slot,
    rec: &MusicianRecord,
    w: &Weights,
) -> Option<Candidate> {
    let booked: Vec<&str> = rec.booked.iter().map(|b| b.date.as_str()).collect();
    evaluate(gig, slot, &rec.musician, &booked, w)
}

/// Orders candidates best first: score descending, then musician id ascending.
pub fn rank(cands: &mut [Candidate]) {
    cands.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.musician_id.cmp(&b.musician_id))
    });
}

/// One seat of the assignment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Seat {
    /// Slot index.
    pub slot: usize,
    /// Seat number within the slot's open seats.
    pub seat: usize,
    /// Who sits there; `None` when the seat cannot be filled.
    pub musician_id: Option<String>,
    /// That musician's score for the slot (0 when unfilled).
    pub score: f64,
}

/// The optimal filling of a gig's open seats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assignment {
    /// Every open seat, filled or not, by slot then seat.
    pub seats: Vec<Seat>,
    /// Sum of the scores of filled seats.
    pub total_score: f64,
    /// Number of open seats left unfilled.
    pub unfilled: usize,
}

/// Scale for turning scores into the integer weights Kuhn–Munkres needs (1e-12 resolution).
const SCALE: f64 = 1e12;

/// Fills `open[s]` seats of each slot from `lists[s]` (ranked candidates), maximizing the total
/// score with distinct musicians. Deterministic.
///
/// ```
/// use mussikon_engine::matching::{assign, Candidate, Components};
/// let c = |id: &str, s: f64| Candidate { musician_id: id.into(), score: s, distance_km: 0.0,
///     components: Components { proximity: 0.0, rating: 0.0, genres: 0.0, price: 0.0, level: 0.0 } };
/// // "a" is best for both slots, but the total is higher with a in slot 1 and b in slot 0.
/// let lists = vec![vec![c("a", 0.9), c("b", 0.8)], vec![c("a", 0.9), c("c", 0.1)]];
/// let a = assign(&lists, &[1, 1]);
/// assert_eq!(a.seats[0].musician_id.as_deref(), Some("b"));
/// assert_eq!(a.seats[1].musician_id.as_deref(), Some("a"));
/// ```
pub fn assign(lists: &[Vec<Candidate>], open: &[usize]) -> Assignment {
    let mut seats: Vec<(usize, usize)> = Vec::new();
    for (s, n) in open.iter().enumerate() {
        for i in 0..*n {
            seats.push((s, i));
        }
    }
    if seats.is_empty() {
        return Assignment {
            seats: Vec::new(),
            total_score: 0.0,
            unfilled: 0,
        };
    }
    // Columns: every distinct candidate (sorted by id for determinism), then one "empty"
    // column per seat.
    let mut ids: Vec<&str> = lists
        .iter()
        .flatten()
        .map(|c| c.musician_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let ncols = ids.len() + seats.len();
    // A seat may take the empty column at weight 0; a real candidate earns its score plus one
    // unit, so filling a seat is preferred at equal score; a pair that is not eligible gets a
    // weight below anything a full assignment of empty columns could lose.
    let forbidden: i64 = -(SCALE as i64) * 4 * (seats.len() as i64 + 1);
    let mut weights = pathfinding::matrix::Matrix::new(seats.len(), ncols, forbidden);
    for (row, (s, _)) in seats.iter().enumerate() {
        for c in &lists[*s] {
            if let Ok(col) = ids.binary_search(&c.musician_id.as_str()) {
                weights[(row, col)] = (c.score * SCALE).round() as i64 + 1;
            }
        }
        for e in 0..seats.len() {
            weights[(row, ids.len() + e)] = 0;
        }
    }
    let (_, cols) = pathfinding::kuhn_munkres::kuhn_munkres(&weights);
    let mut out = Vec::with_capacity(seats.len());
    let mut total = 0.0;
    let mut unfilled = 0;
    for (row, (s, i)) in seats.iter().enumerate() {
        let col = cols[row];
        let cand = if col < ids.len() && weights[(row, col)] > 0 {
            lists[*s].iter().find(|c| c.musician_id == ids[col])
        } else {
            None
        };
        match cand {
            Some(c) => {
                total += c.score;
                out.push(Seat {
                    slot: *s,
                    seat: *i,
                    musician_id: Some(c.musician_id.clone()),
                    score: c.score,
                });
            }
            None => {
                unfilled += 1;
                out.push(Seat {
                    slot: *s,
                    seat: *i,
                    musician_id: None,
                    score: 0.0,
                });
            }
        }
    }
    // Within a slot, list seated musicians best first (seats of a slot are interchangeable).
    out.sort_by(|a, b| {
        a.slot
            .cmp(&b.slot)
            .then(a.musician_id.is_none().cmp(&b.musician_id.is_none()))
            .then(b.score.total_cmp(&a.score))
            .then(a.musician_id.cmp(&b.musician_id))
    });
    let mut seat_no = 0;
    for i in 0..out.len() {
        seat_no = if i > 0 && out[i - 1].slot == out[i].slot {
            seat_no + 1
        } else {
            0
        };
        out[i].seat = seat_no;
    }
    Assignment {
        seats: out,
        total_score: total,
        unfilled,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn huge_finite_weights_normalize_instead_of_overflowing() {
        let w = Weights {
            proximity: 1e308,
            rating: 1e308,
            genres: 0.0,
            price: 1e308,
            level: 0.0,
        }
        .normalized()
        .unwrap();
        let sum: f64 = w.as_array().iter().sum();
        assert!((sum - 1.0).abs() < 1e-12, "{w:?}");
        assert!((w.rating - 1.0 / 3.0).abs() < 1e-12);
        assert!(Weights {
            proximity: 0.0,
            rating: 0.0,
            genres: 0.0,
            price: 0.0,
            level: 0.0
        }
        .normalized()
        .is_err());
    }
}
