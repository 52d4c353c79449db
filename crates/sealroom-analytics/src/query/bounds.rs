//! Declared column bounds and the per-row range of every numeric
//! expression, so that local evaluation is total and no row dominates.
//!
//! A client's participation must never depend on its rows (issue #12,
//! finding 4): an expression that fails, overflows or divides by a value
//! near zero only for some rows turns "did this client upload" into an
//! oracle on those rows, and an expression such as a 400-fold product lets
//! one row's value dominate a cell's sum and reveal its maximum. So:
//!
//! * every column used in arithmetic or inside an aggregate must have
//!   declared bounds in the spec (`"bounds": {"salary": [0, 500000]}`);
//!   clients read it as `clamp(value, lo, hi)` wherever it is a number, and
//!   count per cell the rows where a value was outside its bounds;
//! * the planner computes the range of every arithmetic expression and
//!   statistic with interval arithmetic (R. E. Moore, *Interval Analysis*,
//!   1966, ch. 2: the sum, difference, product and quotient of intervals)
//!   over those bounds, and refuses a query where a range exceeds
//!   [`MAX_MAGNITUDE`], a divisor's range contains zero, a polynomial degree
//!   exceeds [`MAX_DEGREE`] or an expression nests deeper than
//!   [`MAX_DEPTH`]; literals in arithmetic are limited to
//!   [`MIN_LITERAL`]..=[`MAX_BOUND`] in magnitude (or zero).
//!
//! With every input clamped and every operation bounded away from overflow
//! and division by zero, evaluation cannot fail on any row, on any backend
//! (PostgreSQL raises an error on floating-point overflow; SQLite does not).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::QueryError;
use super::expr::{ArithOp, ColumnRef, Expr};

/// Declared bounds and literals in arithmetic: magnitude at most 10^12.
pub const MAX_BOUND: f64 = 1e12;
/// Non-zero literals in arithmetic: magnitude at least 10^−9 (a smaller one
/// only serves to turn a difference into a near-zero divisor).
pub const MIN_LITERAL: f64 = 1e-9;
/// The largest magnitude any per-row value (an intermediate result or a
/// statistic's term) may reach: 2^52, where doubles still hold every
/// integer. A cell's local sum then saturates the encoding only beyond 2^23
/// rows at that magnitude (counted as adjusted when it does).
pub const MAX_MAGNITUDE: f64 = 4_503_599_627_370_496.0;
/// The highest polynomial degree of one statistic's term in the columns
/// (Σx⁴ for a kurtosis is the most any supported aggregate needs).
pub const MAX_DEGREE: u32 = 4;
/// The deepest an arithmetic expression may nest.
pub const MAX_DEPTH: usize = 16;

/// A closed interval of doubles.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

impl Interval {
    fn point(v: f64) -> Interval {
        Interval { lo: v, hi: v }
    }

    pub(crate) fn magnitude(&self) -> f64 {
        self.lo.abs().max(self.hi.abs())
    }

    fn from_corners(corners: [f64; 4]) -> Interval {
        Interval {
            lo: corners.into_iter().fold(f64::INFINITY, f64::min),
            hi: corners.into_iter().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    fn add(self, o: Interval) -> Interval {
        Interval {
            lo: self.lo + o.lo,
            hi: self.hi + o.hi,
        }
    }

    fn sub(self, o: Interval) -> Interval {
        Interval {
            lo: self.lo - o.hi,
            hi: self.hi - o.lo,
        }
    }

    fn mul(self, o: Interval) -> Interval {
        Interval::from_corners([
            self.lo * o.lo,
            self.lo * o.hi,
            self.hi * o.lo,
            self.hi * o.hi,
        ])
    }

    /// `None` when the divisor's range contains zero.
    fn div(self, o: Interval) -> Option<Interval> {
        if o.lo <= 0.0 && o.hi >= 0.0 {
            return None;
        }
        Some(Interval::from_corners([
            self.lo / o.lo,
            self.lo / o.hi,
            self.hi / o.lo,
            self.hi / o.hi,
        ]))
    }
}

impl core::fmt::Display for Interval {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "[{}, {}]", self.lo, self.hi)
    }
}

/// The spec's declared bounds, resolved to the plan's column references.
pub(crate) type Bounds = BTreeMap<ColumnRef, Interval>;

/// Checks one declared bound.
pub(crate) fn check_declared(column: &str, bound: [f64; 2]) -> Result<Interval, QueryError> {
    let [lo, hi] = bound;
    let what = || format!("bounds of {column:?}");
    if !(lo.is_finite() && hi.is_finite()) || lo.abs() > MAX_BOUND || hi.abs() > MAX_BOUND {
        return Err(QueryError::invalid(
            what(),
            format!("both ends must be finite numbers of magnitude at most {MAX_BOUND:e}"),
        ));
    }
    if lo >= hi {
        return Err(QueryError::invalid(
            what(),
            "the lower end must be below the upper end",
        ));
    }
    Ok(Interval { lo, hi })
}

/// The per-row range and polynomial degree of a numeric expression.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Range {
    pub(crate) interval: Interval,
    pub(crate) degree: u32,
}

/// The range of `e` (whose columns must all be bounded), or why the planner
/// refuses it. `whole` names the expression in errors.
pub(crate) fn range(e: &Expr, bounds: &Bounds, whole: &str) -> Result<Range, QueryError> {
    range_at(e, bounds, whole, 0)
}

fn range_at(e: &Expr, bounds: &Bounds, whole: &str, depth: usize) -> Result<Range, QueryError> {
    let refuse = |why: String| QueryError::unsupported(format!("the expression {whole}"), why);
    if depth > MAX_DEPTH {
        return Err(refuse(format!("it nests deeper than {MAX_DEPTH} levels")));
    }
    let r = match e {
        Expr::Column(c) => Range {
            interval: *bounds.get(c).ok_or_else(|| unbounded(c))?,
            degree: 1,
        },
        Expr::Number { value, .. } => {
            let m = value.abs();
            if m != 0.0 && !(MIN_LITERAL..=MAX_BOUND).contains(&m) {
                return Err(refuse(format!(
                    "the literal {value} is outside the allowed magnitudes ({MIN_LITERAL:e} to {MAX_BOUND:e}, or 0)"
                )));
            }
            Range {
                interval: Interval::point(*value),
                degree: 0,
            }
        }
        Expr::Neg(x) => {
            let r = range_at(x, bounds, whole, depth + 1)?;
            Range {
                interval: Interval {
                    lo: -r.interval.hi,
                    hi: -r.interval.lo,
                },
                degree: r.degree,
            }
        }
        Expr::Arith { op, left, right } => {
            let l = range_at(left, bounds, whole, depth + 1)?;
            let r = range_at(right, bounds, whole, depth + 1)?;
            match op {
                ArithOp::Add => Range {
                    interval: l.interval.add(r.interval),
                    degree: l.degree.max(r.degree),
                },
                ArithOp::Sub => Range {
                    interval: l.interval.sub(r.interval),
                    degree: l.degree.max(r.degree),
                },
                ArithOp::Mul => Range {
                    interval: l.interval.mul(r.interval),
                    degree: l.degree + r.degree,
                },
                ArithOp::Div => Range {
                    interval: l.interval.div(r.interval).ok_or_else(|| {
                        refuse(format!(
                            "its divisor ranges over {} within the declared bounds, which contains 0; divide only by an expression bounded away from zero",
                            r.interval
                        ))
                    })?,
                    // A quotient by a column-dependent divisor counts its
                    // degree too: 1/x is as steep as x.
                    degree: l.degree + r.degree,
                },
            }
        }
        // Conditions, text and booleans never stand where a number is
        // expected: the converter checked kinds.
        _ => {
            return Err(refuse(
                "a non-numeric part stands where a number is expected".into(),
            ));
        }
    };
    check_range(&r, whole)?;
    Ok(r)
}

/// Checks the numeric operands of a condition (a WHERE clause or a
/// statistic's filter): arithmetic inside a comparison, BETWEEN, IN or IS
/// NULL must be bounded like any other; a bare column or literal compared
/// with something cannot fail.
pub(crate) fn condition(e: &Expr, bounds: &Bounds, whole: &str) -> Result<(), QueryError> {
    // Arithmetic over literals only is the same for every row.
    let operand = |x: &Expr| match x {
        Expr::Arith { .. } | Expr::Neg(_) if has_column(x) => range(x, bounds, whole).map(|_| ()),
        _ => Ok(()),
    };
    match e {
        Expr::Cmp { left, right, .. } => {
            operand(left)?;
            operand(right)
        }
        Expr::And(l, r) | Expr::Or(l, r) => {
            condition(l, bounds, whole)?;
            condition(r, bounds, whole)
        }
        Expr::Not(x) => condition(x, bounds, whole),
        Expr::InList { expr, list, .. } => {
            operand(expr)?;
            list.iter().try_for_each(operand)
        }
        Expr::Between {
            expr, low, high, ..
        } => {
            operand(expr)?;
            operand(low)?;
            operand(high)
        }
        Expr::IsNull { expr, .. } | Expr::Like { expr, .. } => operand(expr),
        Expr::Bool(_)
        | Expr::Column(_)
        | Expr::Number { .. }
        | Expr::Text(_)
        | Expr::Neg(_)
        | Expr::Arith { .. } => operand(e),
    }
}

fn has_column(e: &Expr) -> bool {
    match e {
        Expr::Column(_) => true,
        Expr::Neg(x) => has_column(x),
        Expr::Arith { left, right, .. } => has_column(left) || has_column(right),
        _ => false,
    }
}

/// The range of a statistic's term: the product of its factors.
pub(crate) fn term(factors: &[Expr], bounds: &Bounds, label: &str) -> Result<Range, QueryError> {
    let mut acc = Range {
        interval: Interval::point(1.0),
        degree: 0,
    };
    for f in factors {
        let r = range(f, bounds, label)?;
        acc = Range {
            interval: acc.interval.mul(r.interval),
            degree: acc.degree + r.degree,
        };
        check_range(&acc, label)?;
    }
    Ok(acc)
}

fn check_range(r: &Range, whole: &str) -> Result<(), QueryError> {
    let refuse = |why: String| QueryError::unsupported(format!("the expression {whole}"), why);
    if r.degree > MAX_DEGREE {
        return Err(refuse(format!(
            "it is a polynomial of degree {} in the columns (at most {MAX_DEGREE}): one row could dominate a sum",
            r.degree
        )));
    }
    let m = r.interval.magnitude();
    if !m.is_finite() || m > MAX_MAGNITUDE {
        return Err(refuse(format!(
            "within the declared bounds it can reach {:e} (at most {MAX_MAGNITUDE:e} per row); narrow the bounds or rescale",
            if m.is_finite() { m } else { f64::INFINITY }
        )));
    }
    Ok(())
}

fn unbounded(c: &ColumnRef) -> QueryError {
    QueryError::invalid(
        format!("column {}", c.name),
        format!(
            "it is used as a number in arithmetic or an aggregate but has no declared bounds; add \"bounds\": {{\"{}\": [lo, hi]}} to the spec (each client clamps values to them and counts the rows it adjusted)",
            c.name
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> Expr {
        Expr::Column(ColumnRef {
            name: name.into(),
            quoted: false,
        })
    }

    fn num(v: f64) -> Expr {
        Expr::Number {
            value: v,
            int: None,
        }
    }

    fn arith(op: ArithOp, l: Expr, r: Expr) -> Expr {
        Expr::Arith {
            op,
            left: Box::new(l),
            right: Box::new(r),
        }
    }

    fn bounds() -> Bounds {
        [
            (
                ColumnRef {
                    name: "x".into(),
                    quoted: false,
                },
                Interval { lo: -2.0, hi: 3.0 },
            ),
            (
                ColumnRef {
                    name: "y".into(),
                    quoted: false,
                },
                Interval { lo: 1.0, hi: 4.0 },
            ),
        ]
        .into()
    }

    #[test]
    fn interval_arithmetic_follows_moore() {
        let b = bounds();
        let r = range(&arith(ArithOp::Mul, col("x"), col("y")), &b, "x*y").expect("bounded");
        assert_eq!(r.interval, Interval { lo: -8.0, hi: 12.0 });
        assert_eq!(r.degree, 2);
        let r = range(&arith(ArithOp::Sub, col("x"), col("y")), &b, "x-y").expect("bounded");
        assert_eq!(r.interval, Interval { lo: -6.0, hi: 2.0 });
        let r = range(&arith(ArithOp::Div, col("x"), col("y")), &b, "x/y").expect("bounded");
        assert_eq!(r.interval, Interval { lo: -2.0, hi: 3.0 });
        let r = range(&Expr::Neg(Box::new(col("y"))), &b, "-y").expect("bounded");
        assert_eq!(r.interval, Interval { lo: -4.0, hi: -1.0 });
    }

    #[test]
    fn unbounded_steep_or_singular_expressions_are_refused() {
        let b = bounds();
        // A divisor that can be zero.
        let err = range(&arith(ArithOp::Div, num(1.0), col("x")), &b, "1/x").unwrap_err();
        assert!(err.to_string().contains("contains 0"), "{err}");
        // The finding-4 probe: 1 / (x - c + 1e-300).
        let probe = arith(
            ArithOp::Div,
            num(1.0),
            arith(
                ArithOp::Add,
                arith(ArithOp::Sub, col("y"), num(2.5)),
                num(1e-300),
            ),
        );
        assert!(range(&probe, &b, "probe").is_err());
        // Degree 5.
        let mut e = col("y");
        for _ in 0..4 {
            e = arith(ArithOp::Mul, e, col("y"));
        }
        let err = range(&e, &b, "y^5").unwrap_err();
        assert!(err.to_string().contains("degree 5"), "{err}");
        // A column without bounds.
        let err = range(&col("z"), &b, "z").unwrap_err();
        assert!(err.to_string().contains("no declared bounds"), "{err}");
        // A literal that only serves to dominate.
        let err = range(&arith(ArithOp::Mul, col("x"), num(1e15)), &b, "x*1e15").unwrap_err();
        assert!(err.to_string().contains("magnitudes"), "{err}");
        // Depth.
        let mut e = col("x");
        for _ in 0..20 {
            e = Expr::Neg(Box::new(e));
        }
        assert!(range(&e, &b, "deep").is_err());
        // A term of factors, each fine, whose product is too steep.
        let factors = vec![arith(ArithOp::Mul, col("x"), col("x")); 3];
        let err = term(&factors, &b, "t").unwrap_err();
        assert!(err.to_string().contains("degree 6"), "{err}");
    }

    #[test]
    fn declared_bounds_are_checked() {
        assert!(check_declared("a", [0.0, 1.0]).is_ok());
        assert!(check_declared("a", [1.0, 1.0]).is_err());
        assert!(check_declared("a", [f64::NAN, 1.0]).is_err());
        assert!(check_declared("a", [0.0, 1e13]).is_err());
    }
}
