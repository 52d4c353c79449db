//! The release thresholds of a query: small-cell suppression by rows and by
//! contributing clients.

use serde::{Deserialize, Serialize};

use super::error::QueryError;
use super::{MAX_CLIENTS, MAX_MIN_ROWS};

/// The small-cell suppression thresholds of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Minimum total rows of a released cell, `1..=2^24 − 1`.
    pub min_rows: u64,
    /// Minimum contributing clients of a released cell, `1..=1024`.
    pub min_clients: u32,
}

impl Policy {
    /// Checks the thresholds' ranges: row counts are capped at `min_rows` on
    /// the wire, so it must fit one 24-bit element.
    pub fn new(min_rows: u64, min_clients: u32) -> Result<Policy, QueryError> {
        if !(1..=MAX_MIN_ROWS).contains(&min_rows) {
            return Err(QueryError::Policy {
                why: format!("min_rows must be between 1 and {MAX_MIN_ROWS}"),
            });
        }
        if !(1..=MAX_CLIENTS).contains(&min_clients) {
            return Err(QueryError::Policy {
                why: format!("min_clients must be between 1 and {MAX_CLIENTS}"),
            });
        }
        Ok(Policy {
            min_rows,
            min_clients,
        })
    }

    /// Refuses a policy weaker than a party's own `floor` in either
    /// threshold: a client calls this before it answers a query.
    pub fn check_floor(&self, floor: &Policy) -> Result<(), QueryError> {
        if self.min_rows < floor.min_rows || self.min_clients < floor.min_clients {
            return Err(QueryError::Policy {
                why: format!(
                    "the query asks min_rows {} / min_clients {}, below this party's floor of {} / {}",
                    self.min_rows, self.min_clients, floor.min_rows, floor.min_clients
                ),
            });
        }
        Ok(())
    }
}
