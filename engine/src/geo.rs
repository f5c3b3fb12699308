//! Distances on the sphere and the grid cells that let a term index answer "who is near here".
//!
//! tantivy has no geo query, so locations become terms. The grid is equal-angle: at level `k`
//! a cell spans `360 / 2^k` degrees in both latitude and longitude (level 0 is the whole globe,
//! level [`MAX_LEVEL`] about 2.4 km of latitude). A term is `"{k}/{row}/{col}"`.
//!
//! Three uses, one promise each:
//! - [`point_cells`]: the cells holding a point, one per level (what a point is indexed or
//!   looked up by);
//! - [`cover_cells`]: for a circle, the cells of the coarsest-but-fine-enough level that cover
//!   its latitude/longitude bounding box, at most `max_cells` of them;
//! - [`cover_cells_at`]: the same, restricted to some levels (those [`PLACE_LEVELS`] the index
//!   pairs with instruments), or nothing when none of them fits in `max_cells`; [`home_cover`]
//!   is it over the [`HOME_LEVELS`] the index records homes at.
//!
//! Promise: if `haversine_km(center, p) <= radius_km` then `cover_cells(center, radius_km, n)`
//! (and `cover_cells_at`'s cells, when it answers) contains the cell of `p` at the cover's
//! level, so a term query over the cover is a superset of the circle. Callers always follow it with the exact distance check. The bounding box is
//! computed for a spherical cap (with the poles and the antimeridian handled) and widened by a
//! small margin against rounding.

use crate::model::GeoPoint;

/// Mean Earth radius used for every distance, in km.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Finest grid level.
pub const MAX_LEVEL: u32 = 14;

/// Great-circle distance in km (haversine formula, radius [`EARTH_RADIUS_KM`]).
///
/// ```
/// use mussikon_engine::{geo::haversine_km, GeoPoint};
/// let madrid = GeoPoint { lat: 40.4168, lon: -3.7038 };
/// let barcelona = GeoPoint { lat: 41.3874, lon: 2.1686 };
/// let d = haversine_km(madrid, barcelona);
/// assert!((d - 505.0).abs() < 5.0);
/// ```
pub fn haversine_km(a: GeoPoint, b: GeoPoint) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Whether the great-circle distance between `a` and `b` is certainly greater than `km`, judged
/// from their latitudes alone, without trigonometry: that distance is at least the arc of the
/// latitude difference, `R·|Δφ|`. The relative margin of 1e-9 keeps the test on the safe side
/// of [`haversine_km`]'s rounding: `true` here implies `haversine_km(a, b) > km`; `false` says
/// nothing.
pub fn farther_than_by_latitude(a: GeoPoint, b: GeoPoint, km: f64) -> bool {
    let arc = EARTH_RADIUS_KM * (b.lat.to_radians() - a.lat.to_radians()).abs();
    arc > km * (1.0 + 1e-9) + 1e-9
}

fn cell_size(level: u32) -> f64 {
    360.0 / f64::from(1u32 << level)
}

fn rows(level: u32) -> i64 {
    // 180 degrees of latitude at this cell size, at least one row.
    ((180.0 / cell_size(level)).ceil() as i64).max(1)
}

fn cols(level: u32) -> i64 {
    1i64 << level
}

fn row_of(lat: f64, level: u32) -> i64 {
    (((lat + 90.0) / cell_size(level)).floor() as i64).clamp(0, rows(level) - 1)
}

fn col_of(lon: f64, level: u32) -> i64 {
    (((lon + 180.0) / cell_size(level)).floor() as i64).rem_euclid(cols(level))
}

fn term(level: u32, row: i64, col: i64) -> String {
    format!("{level}/{row}/{col}")
}

/// The cell of `p` at every level from 0 to [`MAX_LEVEL`].
///
/// ```
/// use mussikon_engine::{geo::point_cells, GeoPoint};
/// let cells = point_cells(GeoPoint { lat: 0.0, lon: 0.0 });
/// assert_eq!(cells[0], "0/0/0");
/// assert_eq!(cells.len(), 15);
/// ```
pub fn point_cells(p: GeoPoint) -> Vec<String> {
    (0..=MAX_LEVEL).map(|k| point_cell(p, k)).collect()
}

/// The cell of `p` at `level` (one of [`point_cells`]' terms, without building the others).
///
/// ```
/// use mussikon_engine::{geo::{point_cell, point_cells}, GeoPoint};
/// let p = GeoPoint { lat: 40.4168, lon: -3.7038 };
/// assert_eq!(point_cell(p, 10), point_cells(p)[10]);
/// ```
pub fn point_cell(p: GeoPoint, level: u32) -> String {
    term(level, row_of(p.lat, level), col_of(p.lon, level))
}

/// The levels at which the search index pairs a musician's instruments with their home cell
/// (the `place` terms of [`crate::index`]'s documents): level 8 cells span about 156 km of
/// latitude, level 10 about 39 km. Chosen by measurement (docs/perf.md, "Place terms"): two
/// levels matched and searched as cheaply as all seven from 8 to 14, at a quarter of the terms.
pub const PLACE_LEVELS: &[u32] = &[8, 10];

/// The levels at which the search index records a musician's home cell (the `home` terms of
/// [`crate::index`]'s documents): every other level, 8 terms instead of 15. A `home` cover
/// ([`home_cover`]) is then at most one level coarser than the finest that fits, so it may
/// read up to four times the area; at 1M musicians searches near a point without an
/// instrument cost the same or less (fewer cells to union), while a 1M import costs a tenth
/// less CPU (22 → 20 µs per musician) and the index is 12 % smaller (docs/perf.md, "Home terms
/// at every other level").
pub const HOME_LEVELS: &[u32] = &[0, 2, 4, 6, 8, 10, 12, 14];

/// The `home` cells covering the circle of `radius_km` around `center`: [`cover_cells_at`]
/// over [`HOME_LEVELS`], at most `max_cells` (≥ 1) cells of the finest of them that fits, or
/// the whole-globe cell when none does. Contains the [`HOME_LEVELS`] cell of every point
/// within the circle.
///
/// ```
/// use mussikon_engine::{geo::{home_cover, point_cells}, GeoPoint};
/// let madrid = GeoPoint { lat: 40.4168, lon: -3.7038 };
/// let getafe = GeoPoint { lat: 40.3057, lon: -3.7329 }; // ~12 km away
/// let cover = home_cover(madrid, 50.0, 16);
/// assert!(cover.len() <= 16);
/// assert!(point_cells(getafe).iter().any(|c| cover.contains(c)));
/// ```
pub fn home_cover(center: GeoPoint, radius_km: f64, max_cells: usize) -> Vec<String> {
    cover_cells_at(center, radius_km, max_cells, HOME_LEVELS)
        .map_or_else(whole_globe, |(_, cells)| cells)
}

/// Most cells of a circle's `place` cover ([`cover_cells_at`] over [`PLACE_LEVELS`]). Each cell
/// costs the query a dictionary lookup and a posting list (about 10k instructions); 16 was the
/// cheapest of 4 to 64 at 1M musicians.
pub const PLACE_COVER_CELLS: usize = 16;

/// Degrees added on every side of a bounding box against floating-point rounding.
const MARGIN_DEG: f64 = 1e-6;

/// Cells covering the circle of `radius_km` around `center`: at most `max_cells` (≥ 1) cells of
/// the finest level that fits.
///
/// ```
/// use mussikon_engine::{geo::{cover_cells, point_cells}, GeoPoint};
/// let madrid = GeoPoint { lat: 40.4168, lon: -3.7038 };
/// let getafe = GeoPoint { lat: 40.3057, lon: -3.7329 }; // ~12 km away
/// let cover = cover_cells(madrid, 50.0, 16);
/// assert!(cover.len() <= 16);
/// assert!(point_cells(getafe).iter().any(|c| cover.contains(c)));
/// ```
pub fn cover_cells(center: GeoPoint, radius_km: f64, max_cells: usize) -> Vec<String> {
    let b = Bounds::of(center, radius_km);
    let max_cells = max_cells.max(1) as i64;
    for level in (0..=MAX_LEVEL).rev() {
        let span = b.span(level);
        if span.count() <= max_cells || level == 0 {
            return span.cells(level);
        }
    }
    whole_globe()
}

/// The one level-0 cell, which holds every point: the cover of last resort.
fn whole_globe() -> Vec<String> {
    vec![term(0, 0, 0)]
}

/// Like [`cover_cells`], but only at one of `levels`: the cells of the finest of them whose
/// cover has at most `max_cells` cells, with that level; `None` when none of them fits.
///
/// ```
/// use mussikon_engine::{geo::{cover_cells_at, point_cells}, GeoPoint};
/// let madrid = GeoPoint { lat: 40.4168, lon: -3.7038 };
/// let getafe = GeoPoint { lat: 40.3057, lon: -3.7329 }; // ~12 km away
/// let (level, cover) = cover_cells_at(madrid, 30.0, 32, &[9, 11, 13]).unwrap();
/// assert_eq!(level, 11);
/// assert!(cover.contains(&point_cells(getafe)[11]));
/// assert!(cover_cells_at(madrid, 5000.0, 32, &[9, 11, 13]).is_none());
/// ```
pub fn cover_cells_at(
    center: GeoPoint,
    radius_km: f64,
    max_cells: usize,
    levels: &[u32],
) -> Option<(u32, Vec<String>)> {
    let b = Bounds::of(center, radius_km);
    let max_cells = max_cells.max(1) as i64;
    levels
        .iter()
        .copied()
        .filter(|l| *l <= MAX_LEVEL)
        .filter_map(|level| {
            let span = b.span(level);
            (span.count() <= max_cells).then_some((level, span))
        })
        .max_by_key(|(level, _)| *level)
        .map(|(level, span)| (level, span.cells(level)))
}

/// The latitude/longitude bounding box of a spherical cap, widened by [`MARGIN_DEG`].
struct Bounds {
    lat_min: f64,
    lat_max: f64,
    center_lon: f64,
    /// Half the box's width in degrees of longitude; 180 or more when it goes all round.
    half_lon: f64,
}

/// The rows and (unwrapped) columns of a box at one level.
struct Span {
    r0: i64,
    r1: i64,
    c0: i64,
    ncols: i64,
}

impl Bounds {
    fn of(center: GeoPoint, radius_km: f64) -> Bounds {
        let delta = (radius_km / EARTH_RADIUS_KM).to_degrees();
        let lat_min = center.lat - delta - MARGIN_DEG;
        let lat_max = center.lat + delta + MARGIN_DEG;
        // Longitude half-width of a spherical cap: asin(sin δ / cos φ); the whole circle of
        // longitudes when the cap reaches a pole.
        let full_lon = lat_max >= 90.0 || lat_min <= -90.0 || delta >= 90.0 || {
            let s = (delta.to_radians()).sin() / center.lat.to_radians().cos();
            !(s.is_finite() && s < 1.0)
        };
        let half_lon = if full_lon {
            180.0
        } else {
            ((delta.to_radians()).sin() / center.lat.to_radians().cos())
                .asin()
                .to_degrees()
                + MARGIN_DEG
        };
        Bounds {
            lat_min,
            lat_max,
            center_lon: center.lon,
            half_lon,
        }
    }

    fn span(&self, level: u32) -> Span {
        let r0 = row_of(self.lat_min.max(-90.0), level);
        let r1 = row_of(self.lat_max.min(90.0), level);
        if self.half_lon >= 180.0 {
            return Span {
                r0,
                r1,
                c0: 0,
                ncols: cols(level),
            };
        }
        // Unwrapped column numbers, so a box crossing the antimeridian stays contiguous.
        let c0 = ((self.center_lon - self.half_lon + 180.0) / cell_size(level)).floor() as i64;
        let c1 = ((self.center_lon + self.half_lon + 180.0) / cell_size(level)).floor() as i64;
        Span {
            r0,
            r1,
            c0,
            ncols: (c1 - c0 + 1).min(cols(level)),
        }
    }
}

impl Span {
    fn count(&self) -> i64 {
        (self.r1 - self.r0 + 1) * self.ncols
    }

    fn cells(&self, level: u32) -> Vec<String> {
        let mut out = Vec::with_capacity(self.count().max(0) as usize);
        for r in self.r0..=self.r1 {
            for i in 0..self.ncols {
                out.push(term(level, r, (self.c0 + i).rem_euclid(cols(level))));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn point() -> impl Strategy<Value = GeoPoint> {
        (-90.0f64..=90.0, -180.0f64..=180.0).prop_map(|(lat, lon)| GeoPoint { lat, lon })
    }

    /// The point `km` from `c` along `bearing` (degrees from north): the spherical destination.
    fn destination(c: GeoPoint, bearing: f64, km: f64) -> GeoPoint {
        let d = km / EARTH_RADIUS_KM;
        let (la, lo, b) = (c.lat.to_radians(), c.lon.to_radians(), bearing.to_radians());
        let lat2 = (la.sin() * d.cos() + la.cos() * d.sin() * b.cos()).asin();
        let lon2 = lo + (b.sin() * d.sin() * la.cos()).atan2(d.cos() - la.sin() * lat2.sin());
        let mut lon2 = lon2.to_degrees();
        if lon2 > 180.0 {
            lon2 -= 360.0
        } else if lon2 < -180.0 {
            lon2 += 360.0
        }
        GeoPoint {
            lat: lat2.to_degrees(),
            lon: lon2,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Both covers of a circle hold every point within it: `cover_cells` one of its cells at
        /// some level, in at most `max_cells` cells (or one cell, or the whole globe); a home
        /// cover, at its level (one of HOME_LEVELS), the point's cell at that level, in at most
        /// `max_cells` cells (or the whole globe).
        #[test]
        fn covers_contain_every_point_within_radius(
            c in point(), bearing in 0.0f64..360.0, frac in 0.0f64..=1.0,
            radius in prop_oneof![0.01f64..50.0, 50.0f64..2000.0, 2000.0f64..20000.0],
            max_cells in 1usize..70,
        ) {
            let p = destination(c, bearing, frac * radius);
            prop_assume!(haversine_km(c, p) <= radius);
            let cells = point_cells(p);
            let cover = cover_cells(c, radius, max_cells);
            prop_assert!(cover.len() <= max_cells.max(1) || cover.len() == 1 || cover[0].starts_with("0/"));
            prop_assert!(cells.iter().any(|x| cover.contains(x)), "{c:?} r={radius} p={p:?} cover={cover:?}");

            let cover = home_cover(c, radius, max_cells);
            prop_assert!(cover.len() <= max_cells || cover == whole_globe());
            let level: u32 = cover[0]
                .split('/')
                .next()
                .and_then(|l| l.parse().ok())
                .expect("a cell term starts with its level");
            prop_assert!(HOME_LEVELS.contains(&level), "level {level}");
            let prefix = format!("{level}/");
            prop_assert!(cover.iter().all(|x| x.starts_with(&prefix)));
            prop_assert!(cover.contains(&cells[level as usize]), "{c:?} r={radius} p={p:?} cover={cover:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20000))]
        /// The latitude test never rules out a point that the haversine keeps, even at the
        /// boundary (`km` exactly the haversine distance, or a hair above it).
        #[test]
        fn latitude_test_never_rules_out_a_point_within_reach(
            a in point(), b in point(), near in prop::bool::ANY, dlat in -1.0f64..1.0,
        ) {
            // Half the cases: b a short way north or south of a (the case the test exists for).
            let b = if near {
                GeoPoint { lat: (a.lat + dlat).clamp(-90.0, 90.0), lon: a.lon + dlat / 3.0 }
            } else {
                b
            };
            let d = haversine_km(a, b);
            prop_assert!(!farther_than_by_latitude(a, b, d), "{a:?} {b:?} d={d}");
            prop_assert!(!farther_than_by_latitude(a, b, d + 1e-12));
            // It does rule out what is far in latitude alone.
            let r = EARTH_RADIUS_KM * (b.lat - a.lat).abs().to_radians() * 0.999 - 1e-3;
            if r > 0.0 {
                prop_assert!(farther_than_by_latitude(a, b, r));
            }
        }
    }

    #[test]
    fn antimeridian_circle_covers_both_sides() {
        let c = GeoPoint {
            lat: -17.7,
            lon: 179.9,
        };
        let cover = cover_cells(c, 30.0, 16);
        let east = GeoPoint {
            lat: -17.7,
            lon: -179.95,
        };
        assert!(point_cells(east).iter().any(|x| cover.contains(x)));
    }

    #[test]
    fn haversine_is_symmetric_and_zero_on_self() {
        let a = GeoPoint { lat: 1.0, lon: 2.0 };
        let b = GeoPoint {
            lat: -3.0,
            lon: 4.5,
        };
        assert_eq!(haversine_km(a, a), 0.0);
        assert!((haversine_km(a, b) - haversine_km(b, a)).abs() < 1e-12);
    }
}
