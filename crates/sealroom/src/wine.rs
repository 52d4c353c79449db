//! The wine-quality analytics of the demo: "what is the average of these
//! columns for each quality grade, over all wineries together?"
//!
//! It decomposes as *local computation → secure sum → public post-processing*
//! (DESIGN.md §8): each winery quantizes its rows and sums them per grade into
//! one vector `[count, Σ col₁, …, Σ col_k]` per grade; the secure sum of those
//! vectors, divided out, gives the joint averages. The data is the red-wine
//! quality set that `linfa-datasets` ships (1,599 rows), split into contiguous
//! slices, one per winery.

use anyhow::{Result, bail};
use sealroom_core::QuantSpec;

use crate::table::{Align, Table};

/// The columns averaged: (index in the data set, name).
pub const COLUMNS: [(usize, &str); 5] = [
    (10, "alcohol"),
    (8, "pH"),
    (3, "residual sugar"),
    (0, "fixed acidity"),
    (9, "sulphates"),
];

/// The public grade domain: wine quality is scored 0..=10. Declared up front,
/// so the vector layout reveals nothing about which grades a winery has.
pub const GRADES: std::ops::RangeInclusive<usize> = 0..=10;

/// Entries per grade: the row count, then one sum per column.
pub const PER_GRADE: usize = 1 + COLUMNS.len();

/// Length of every winery's vector.
pub fn vector_len() -> usize {
    GRADES.count() * PER_GRADE
}

/// One row: its quality grade and the selected column values.
#[derive(Clone, Debug)]
pub struct Row {
    /// Quality grade.
    pub grade: usize,
    /// Values of [`COLUMNS`], in order.
    pub values: [f64; COLUMNS.len()],
}

/// Loads the red-wine quality data shipped inside `linfa-datasets` (offline).
pub fn load() -> Result<Vec<Row>> {
    let dataset = linfa_datasets::winequality();
    let records = &dataset.records;
    let targets = &dataset.targets;
    let rows: Vec<Row> = records
        .rows()
        .into_iter()
        .zip(targets.iter())
        .map(|(record, &grade)| Row {
            grade,
            values: COLUMNS.map(|(i, _)| record[i]),
        })
        .collect();
    if rows.is_empty() {
        bail!("the wine-quality data set is empty");
    }
    Ok(rows)
}

/// Splits rows into `parties` contiguous slices of near-equal size.
pub fn partition(rows: &[Row], parties: usize) -> Vec<&[Row]> {
    let chunk = rows.len().div_ceil(parties.max(1));
    rows.chunks(chunk.max(1)).collect()
}

/// The task name of the wine analytics over the network.
pub const TASK: &str = "wine-grade-averages";

/// The quantization of the networked wine task: each client contributes its
/// per-grade *sums*, so the clip bound covers a sum over every row of the
/// data set (1,599 rows × the largest column value, about 16) with room to
/// spare: ±32768 at 16 fractional bits, 33 bits per value.
pub fn network_spec() -> QuantSpec {
    QuantSpec::new(16, 32768.0, 33).expect("the wine task's fixed spec is valid")
}

/// A client's input for the networked task: per grade, the row count and the
/// column sums, as floats (quantized by the protocol).
pub fn local_float_sums(rows: &[Row]) -> Result<Vec<f64>> {
    let mut sums = vec![0.0; vector_len()];
    for (n, row) in rows.iter().enumerate() {
        if !GRADES.contains(&row.grade) {
            bail!(
                "row {n} has grade {} outside the declared domain {GRADES:?}",
                row.grade
            );
        }
        let base = row.grade * PER_GRADE;
        sums[base] += 1.0;
        for (slot, v) in sums[base + 1..base + PER_GRADE].iter_mut().zip(&row.values) {
            *slot += v;
        }
    }
    Ok(sums)
}

/// The wine task's data source: one client's slice of the data set.
#[derive(Clone, Debug)]
pub struct WineInput {
    /// This client's rows.
    pub rows: Vec<Row>,
}

impl sealroom_node::tasks::InputSource for WineInput {
    fn input(
        &self,
        descriptor: &sealroom_protocol::VerifiedDescriptor,
    ) -> Result<Vec<f64>, String> {
        if descriptor.vector_len() != vector_len() {
            return Err(format!(
                "the {TASK} task has {} values, the round asks for {}",
                vector_len(),
                descriptor.vector_len()
            ));
        }
        local_float_sums(&self.rows).map_err(|e| e.to_string())
    }
}

/// The coordinator's definition of the wine task.
pub fn task_def() -> sealroom_node::tasks::TaskDef {
    sealroom_node::tasks::TaskDef {
        name: TASK.into(),
        default_len: vector_len() as u64,
        fixed_len: true,
        spec: Some(network_spec()),
        wide: true,
    }
}

/// Per-grade averages recovered from a (dequantized) sum vector.
#[derive(Clone, Debug, PartialEq)]
pub struct GradeAverages {
    /// Quality grade.
    pub grade: usize,
    /// Rows with that grade.
    pub count: f64,
    /// Average of each column.
    pub averages: [f64; COLUMNS.len()],
}

/// Divides the column sums by the count, for every grade that has rows.
pub fn averages(sums: &[f64]) -> Vec<GradeAverages> {
    sums.chunks_exact(PER_GRADE)
        .enumerate()
        .filter(|(_, cell)| cell[0] > 0.0)
        .map(|(grade, cell)| GradeAverages {
            grade,
            count: cell[0],
            averages: std::array::from_fn(|i| cell[i + 1] / cell[0]),
        })
        .collect()
}

/// The same averages computed in the clear from the raw floats, for comparison.
pub fn plaintext_averages(rows: &[Row]) -> Vec<GradeAverages> {
    let mut sums = vec![0.0; vector_len()];
    for row in rows {
        let base = row.grade * PER_GRADE;
        sums[base] += 1.0;
        for (slot, v) in sums[base + 1..base + PER_GRADE].iter_mut().zip(&row.values) {
            *slot += v;
        }
    }
    averages(&sums)
}

/// Largest difference between secure and plaintext averages, or an error if
/// the two disagree on which grades exist or how many rows they hold.
pub fn max_difference(secure: &[GradeAverages], plain: &[GradeAverages]) -> Result<f64> {
    if secure.len() != plain.len() {
        bail!(
            "secure result has {} grades, plaintext {}",
            secure.len(),
            plain.len()
        );
    }
    let mut worst = 0.0f64;
    for (s, p) in secure.iter().zip(plain) {
        if s.grade != p.grade || s.count != p.count {
            bail!(
                "grade {} count {} (secure) differs from grade {} count {} (plaintext)",
                s.grade,
                s.count,
                p.grade,
                p.count
            );
        }
        for (a, b) in s.averages.iter().zip(&p.averages) {
            worst = worst.max((a - b).abs());
        }
    }
    Ok(worst)
}

/// Renders secure and plaintext averages, one line each per grade.
pub fn render(secure: &[GradeAverages], plain: &[GradeAverages]) -> String {
    let mut columns = vec![
        ("grade".to_string(), Align::Right),
        ("computed".to_string(), Align::Left),
        ("rows".to_string(), Align::Right),
    ];
    columns.extend(
        COLUMNS
            .iter()
            .map(|(_, name)| (format!("avg {name}"), Align::Right)),
    );
    let mut table = Table::new(columns);
    for (s, p) in secure.iter().zip(plain) {
        for (label, g) in [("secure", s), ("plaintext", p)] {
            let mut cells = vec![
                if label == "secure" {
                    g.grade.to_string()
                } else {
                    String::new()
                },
                label.to_string(),
                format!("{}", g.count),
            ];
            cells.extend(g.averages.iter().map(|a| format!("{a:.5}")));
            table.row(cells);
        }
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_loads_and_fits_the_spec() {
        let rows = load().expect("shipped data");
        assert_eq!(rows.len(), 1599);
        let sums = local_float_sums(&rows).expect("valid");
        let q = network_spec().quantize(&sums).expect("finite");
        assert_eq!(
            q.clipped, 0,
            "even one client holding every row stays inside the clip range"
        );
        let counts: f64 = sums.chunks_exact(PER_GRADE).map(|c| c[0]).sum();
        assert_eq!(counts, 1599.0);
        assert!(sealroom_core::fits(sealroom_core::RingKind::Z2_64, 16, network_spec()).is_ok());
    }

    #[test]
    fn partition_covers_every_row_once() {
        let rows = load().expect("shipped data");
        let parts = partition(&rows, 3);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), rows.len());
    }

    #[test]
    fn out_of_domain_grades_are_refused() {
        let rows = [Row {
            grade: 11,
            values: [0.0; COLUMNS.len()],
        }];
        assert!(local_float_sums(&rows).is_err());
    }

    #[test]
    fn max_difference_catches_disagreement() {
        let a = vec![GradeAverages {
            grade: 5,
            count: 2.0,
            averages: [1.0; 5],
        }];
        let mut b = a.clone();
        assert_eq!(max_difference(&a, &b).expect("same grades"), 0.0);
        b[0].averages[2] = 1.5;
        assert_eq!(max_difference(&a, &b).expect("same grades"), 0.5);
        b[0].count = 3.0;
        assert!(max_difference(&a, &b).is_err());
    }
}
