//! Query-string parameters, read with the same strictness as JSON bodies.
//!
//! [`Params`] decodes `a=1&b=x` once, hands out typed values and collects a [`FieldError`] for
//! every value that does not parse, every parameter given twice where one is expected, and every
//! parameter the route does not know (a typo such as `limt=5` is an error, not silently ignored).
//! [`Params::finish`] returns all of them at once as one 422.

use crate::http::problem::ApiError;
use mussikon_engine::FieldError;
use serde::Serialize;
use std::collections::BTreeSet;
use std::str::FromStr;

/// Decoded query parameters of one request.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
    known: BTreeSet<&'static str>,
    errors: Vec<FieldError>,
}

impl Params {
    /// Decodes a raw query string (`application/x-www-form-urlencoded`).
    pub fn parse(raw: &str) -> Params {
        Params {
            pairs: form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            known: BTreeSet::new(),
            errors: Vec::new(),
        }
    }

    /// Records a broken rule.
    pub fn fail(&mut self, field: &str, rule: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_string(),
            rule: rule.into(),
        });
    }

    /// The single value of `name`, if given. Given twice is an error.
    pub fn text(&mut self, name: &'static str) -> Option<String> {
        self.known.insert(name);
        let mut values = self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = values.next().cloned();
        if values.next().is_some() {
            self.fail(name, "must be given at most once");
        }
        first
    }

    /// Every value of `name`: repeated parameters and comma-separated lists both count
    /// (`genre=jazz&genre=soul` and `genre=jazz,soul` are the same). Empty items are dropped.
    pub fn list(&mut self, name: &'static str) -> Vec<String> {
        self.known.insert(name);
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The `limit` of a list route: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent (and when
    /// out of range, with the failure recorded).
    pub fn page_limit(&mut self) -> usize {
        let rule = "must be an integer from 1 to 1000";
        match self.parsed::<usize>("limit", rule) {
            Some(n) if (1..=MAX_PAGE).contains(&n) => n,
            Some(_) => {
                self.fail("limit", rule);
                DEFAULT_PAGE
            }
            None => DEFAULT_PAGE,
        }
    }

    /// The value of `name` parsed as `T`; on failure records `rule` and yields None.
    pub fn parsed<T: FromStr>(&mut self, name: &'static str, rule: &str) -> Option<T> {
        let text = self.text(name)?;
        match text.trim().parse::<T>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.fail(name, rule);
                None
            }
        }
    }

    /// A finite number.
    pub fn number(&mut self, name: &'static str) -> Option<f64> {
        let v = self.parsed::<f64>(name, "must be a number")?;
        if v.is_finite() {
            Some(v)
        } else {
            self.fail(name, "must be a finite number");
            None
        }
    }

    /// `true` or `false`.
    pub fn boolean(&mut self, name: &'static str) -> Option<bool> {
        self.parsed::<bool>(name, "must be true or false")
    }

    /// Ok when every value parsed and every parameter is known; otherwise every broken rule.
    pub fn finish(mut self) -> Result<(), ApiError> {
        let unknown: BTreeSet<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| !self.known.contains(k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        let known: Vec<&str> = self.known.iter().copied().collect();
        for name in unknown {
            self.errors.push(FieldError {
                field: if name.is_empty() {
                    "(empty parameter name)".to_string()
                } else {
                    name
                },
                rule: format!(
                    "is not a parameter of this route (known: {})",
                    known.join(", ")
                ),
            });
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.errors))
        }
    }
}

/// Most records one list page may hold.
pub const MAX_PAGE: usize = 1000;
/// Page size of lists when `limit` is absent.
pub const DEFAULT_PAGE: usize = 100;

/// `after` and `limit` of a list route (`GET /v1/musicians`, `GET /v1/gigs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// List ids greater than this one.
    pub after: Option<String>,
    /// Page size, 1–1000.
    pub limit: usize,
}

impl Page {
    /// Reads `after` and `limit` from a raw query string.
    ///
    /// ```
    /// use mussikon_server::http::query::Page;
    /// assert_eq!(Page::from_query("after=m-1&limit=5").unwrap(), Page { after: Some("m-1".into()), limit: 5 });
    /// assert!(Page::from_query("limit=0").is_err());
    /// assert!(Page::from_query("limt=5").is_err());
    /// ```
    pub fn from_query(raw: &str) -> Result<Page, ApiError> {
        let mut p = Params::parse(raw);
        let limit = p.page_limit();
        let after = p.text("after");
        if let Some(a) = &after {
            if !mussikon_engine::is_valid_id(a) {
                p.fail("after", "must be an id: 1-64 characters of [A-Za-z0-9._-]");
            }
        }
        p.finish()?;
        Ok(Page { after, limit })
    }
}

/// One page of a list route: `{"items":[…],"next":"ID"|null}`; `next` is the `after` of the
/// following page, null on the last one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListPage<T> {
    /// The records, in id order.
    pub items: Vec<T>,
    /// Where the next page starts: the `after` of the following page, null on the last one.
    pub next: Option<String>,
}

impl<T> ListPage<T> {
    /// A page from up to `limit + 1` records read after the cursor: the extra record only says
    /// that there is a next page.
    pub fn cut(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> &str) -> ListPage<T> {
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(|t| id(t).to_string())
        } else {
            None
        };
        ListPage { items, next }
    }
}
