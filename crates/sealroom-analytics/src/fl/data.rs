//! Public data sets for federated learning, a deterministic train/test split
//! and feature standardization that can be fed from a secure sum.
//!
//! The data are the public sets bundled by `linfa-datasets` (no network):
//! the red wine quality set (Cortez et al., 2009; 1,599 rows, 11 features)
//! and Fisher's iris (150 rows, 4 features).

use core::fmt;
use core::str::FromStr;

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use super::FlError;
use super::split::{SplitRng, shuffle};

/// The bundled data sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// Red wine quality: 11 physico-chemical features, the quality score as
    /// the class (6 scores occur, 3 to 8).
    Wine,
    /// Fisher's iris: 4 measurements, 3 species.
    Iris,
}

impl DatasetKind {
    /// The accepted names, as [`FromStr`] parses them.
    pub const CHOICES: &'static str = "wine, iris";

    /// The name [`FromStr`] accepts and [`fmt::Display`] prints.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Wine => "wine",
            DatasetKind::Iris => "iris",
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = FlError;

    /// Parses `wine` or `iris` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, FlError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "wine" => Ok(DatasetKind::Wine),
            "iris" => Ok(DatasetKind::Iris),
            _ => Err(FlError::UnknownDataset {
                name: s.to_owned(),
                choices: DatasetKind::CHOICES,
            }),
        }
    }
}

/// A labelled data set: one row of `x` per label in `y`.
///
/// Labels are contiguous class indices `0..n_classes`; `class_names[c]`
/// names class `c`. A client's rows are its private input, so `Debug`
/// prints only the shape.
#[derive(Clone, PartialEq)]
pub struct Dataset {
    /// Features, one row per sample.
    pub x: Array2<f64>,
    /// Class index of each row.
    pub y: Array1<usize>,
    /// Number of classes (labels lie in `0..n_classes`).
    pub n_classes: usize,
    /// One name per column of `x`.
    pub feature_names: Vec<String>,
    /// One name per class.
    pub class_names: Vec<String>,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Dataset(rows={}, features={}, classes={}, <redacted>)",
            self.n_rows(),
            self.n_features(),
            self.n_classes
        )
    }
}

impl Dataset {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.x.nrows()
    }

    /// Number of features (columns of `x`).
    pub fn n_features(&self) -> usize {
        self.x.ncols()
    }

    /// Rows per class, indexed by class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.n_classes];
        for &label in &self.y {
            if let Some(c) = counts.get_mut(label) {
                *c += 1;
            }
        }
        counts
    }

    /// The rows `rows` (in that order) as a new data set.
    ///
    /// Row indices must be below [`Dataset::n_rows`] (they come from
    /// [`train_test_split`] or [`super::dirichlet_split`] over this data set).
    pub fn select(&self, rows: &[usize]) -> Result<Dataset, FlError> {
        if let Some(&row) = rows.iter().find(|&&r| r >= self.n_rows()) {
            return Err(FlError::ShapeMismatch {
                what: "row index vs rows in the data set",
                expected: self.n_rows(),
                actual: row,
            });
        }
        Ok(Dataset {
            x: self.x.select(Axis(0), rows),
            y: self.y.select(Axis(0), rows),
            n_classes: self.n_classes,
            feature_names: self.feature_names.clone(),
            class_names: self.class_names.clone(),
        })
    }

    /// Checks the invariants: as many labels as rows, labels below
    /// `n_classes`, and one name per feature and per class.
    pub fn check(&self) -> Result<(), FlError> {
        check_labels(&self.x, &self.y, self.n_classes)?;
        if self.feature_names.len() != self.n_features() {
            return Err(FlError::ShapeMismatch {
                what: "feature names vs columns",
                expected: self.n_features(),
                actual: self.feature_names.len(),
            });
        }
        if self.class_names.len() != self.n_classes {
            return Err(FlError::ShapeMismatch {
                what: "class names vs classes",
                expected: self.n_classes,
                actual: self.class_names.len(),
            });
        }
        Ok(())
    }
}

/// Loads a bundled data set (offline: the data are compiled into
/// `linfa-datasets`).
///
/// Wine quality scores become contiguous class indices: the distinct scores
/// present, in increasing order, map to `0, 1, …`, named `"quality {score}"`.
pub fn load(kind: DatasetKind) -> Dataset {
    match kind {
        DatasetKind::Wine => {
            let data = linfa_datasets::winequality();
            let feature_names = data.feature_names().to_vec();
            let (x, scores) = (data.records, data.targets);
            let mut distinct: Vec<usize> = scores.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            // Every score is in `distinct` by construction, so the search
            // always succeeds; `unwrap_or(0)` only satisfies the types.
            let y = scores.mapv(|s| distinct.binary_search(&s).unwrap_or(0));
            Dataset {
                x,
                y,
                n_classes: distinct.len(),
                feature_names,
                class_names: distinct.iter().map(|s| format!("quality {s}")).collect(),
            }
        }
        DatasetKind::Iris => {
            let data = linfa_datasets::iris();
            let feature_names = data.feature_names().to_vec();
            Dataset {
                x: data.records,
                y: data.targets,
                n_classes: 3,
                feature_names,
                class_names: ["setosa", "versicolor", "virginica"]
                    .map(String::from)
                    .to_vec(),
            }
        }
    }
}

/// Splits a data set into (train, test), stratified by class and
/// deterministic in `seed`.
///
/// Within each class the rows are shuffled with the seeded generator and the
/// first `round(count · test_fraction)` go to the test set; both sets keep
/// the original row order. `test_fraction` must lie strictly between 0 and 1
/// and both sets must end up non-empty.
pub fn train_test_split(
    data: &Dataset,
    test_fraction: f64,
    seed: u64,
) -> Result<(Dataset, Dataset), FlError> {
    data.check()?;
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(FlError::InvalidParameter {
            name: "test_fraction",
            value: test_fraction,
            expected: "strictly between 0 and 1",
        });
    }
    let mut rng = SplitRng::new(seed);
    let mut is_test = vec![false; data.n_rows()];
    for class in 0..data.n_classes {
        let mut rows: Vec<usize> = (0..data.n_rows()).filter(|&r| data.y[r] == class).collect();
        shuffle(&mut rng, &mut rows);
        let n_test = (rows.len() as f64 * test_fraction).round() as usize;
        for &r in rows.iter().take(n_test) {
            is_test[r] = true;
        }
    }
    let test: Vec<usize> = (0..data.n_rows()).filter(|&r| is_test[r]).collect();
    let train: Vec<usize> = (0..data.n_rows()).filter(|&r| !is_test[r]).collect();
    if test.is_empty() {
        return Err(FlError::Empty { what: "test split" });
    }
    if train.is_empty() {
        return Err(FlError::Empty {
            what: "training split",
        });
    }
    Ok((data.select(&train)?, data.select(&test)?))
}

/// Per-feature count, sums and sums of squares of one party's rows: what a
/// client contributes to a secure sum so that a [`Standardizer`] can be
/// built without pooling the data. A local statistic: `Debug` prints only
/// the shape.
#[derive(Clone, PartialEq)]
pub struct FeatureMoments {
    /// Rows counted.
    pub count: usize,
    /// Per-feature sum.
    pub sums: Array1<f64>,
    /// Per-feature sum of squares.
    pub sums_of_squares: Array1<f64>,
}

impl fmt::Debug for FeatureMoments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FeatureMoments(features={}, <redacted>)",
            self.sums.len()
        )
    }
}

impl FeatureMoments {
    /// The moments of the rows of `x`.
    pub fn of(x: &Array2<f64>) -> FeatureMoments {
        FeatureMoments {
            count: x.nrows(),
            sums: x.sum_axis(Axis(0)),
            sums_of_squares: x.mapv(|v| v * v).sum_axis(Axis(0)),
        }
    }

    /// Adds another party's moments (what the secure sum computes).
    pub fn add(&mut self, other: &FeatureMoments) -> Result<(), FlError> {
        if other.sums.len() != self.sums.len()
            || other.sums_of_squares.len() != self.sums_of_squares.len()
        {
            return Err(FlError::ShapeMismatch {
                what: "features in the moments being added",
                expected: self.sums.len(),
                actual: other.sums.len(),
            });
        }
        self.count += other.count;
        self.sums += &other.sums;
        self.sums_of_squares += &other.sums_of_squares;
        Ok(())
    }
}

/// Standard deviations at or below this are treated as a constant feature:
/// [`Standardizer::apply`] then only centres it (divides by 1).
pub const STD_FLOOR: f64 = 1e-12;

/// Per-feature standardization `x ↦ (x − mean) / std`.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// Per-feature mean.
    pub mean: Array1<f64>,
    /// Per-feature population standard deviation (replaced by 1 where it is
    /// at most [`STD_FLOOR`]).
    pub std: Array1<f64>,
}

impl Standardizer {
    /// Fits mean and population standard deviation (two passes) to `x`.
    pub fn fit(x: &Array2<f64>) -> Result<Standardizer, FlError> {
        if x.nrows() == 0 {
            return Err(FlError::Empty {
                what: "data to standardize",
            });
        }
        let n = x.nrows() as f64;
        let mean = x.sum_axis(Axis(0)) / n;
        let centred = x - &mean;
        let var = centred.mapv(|v| v * v).sum_axis(Axis(0)) / n;
        Ok(Standardizer {
            std: var.mapv(floor_std),
            mean,
        })
    }

    /// Builds the standardizer from pooled moments (e.g. the secure sum of
    /// every client's [`FeatureMoments`]): `mean = Σx / n`,
    /// `var = max(Σx² / n − mean², 0)`.
    pub fn from_moments(
        count: usize,
        sums: &Array1<f64>,
        sums_of_squares: &Array1<f64>,
    ) -> Result<Standardizer, FlError> {
        if count == 0 {
            return Err(FlError::Empty {
                what: "rows in the moments",
            });
        }
        if sums.len() != sums_of_squares.len() {
            return Err(FlError::ShapeMismatch {
                what: "sums of squares vs sums",
                expected: sums.len(),
                actual: sums_of_squares.len(),
            });
        }
        if let Some(index) = sums
            .iter()
            .chain(sums_of_squares)
            .position(|v| !v.is_finite())
        {
            return Err(FlError::NonFinite {
                what: "feature moments (sums, then sums of squares)",
                index,
            });
        }
        let n = count as f64;
        let mean = sums / n;
        let var = (sums_of_squares / n - &mean * &mean).mapv(|v| v.max(0.0));
        Ok(Standardizer {
            std: var.mapv(floor_std),
            mean,
        })
    }

    /// A standardizer with a given mean and standard deviation (e.g. as
    /// carried in a round's public parameters): equal lengths, finite means,
    /// positive finite deviations.
    pub fn from_mean_std(mean: Array1<f64>, std: Array1<f64>) -> Result<Standardizer, FlError> {
        if mean.len() != std.len() {
            return Err(FlError::ShapeMismatch {
                what: "standard deviations vs means",
                expected: mean.len(),
                actual: std.len(),
            });
        }
        if let Some(index) = mean.iter().position(|m| !m.is_finite()) {
            return Err(FlError::NonFinite {
                what: "standardizer means",
                index,
            });
        }
        if let Some(&bad) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(FlError::InvalidParameter {
                name: "std",
                value: bad,
                expected: "positive and finite for every feature",
            });
        }
        Ok(Standardizer { mean, std })
    }

    /// Standardizes `x` in place; its columns must match the fitted features.
    pub fn apply(&self, x: &mut Array2<f64>) -> Result<(), FlError> {
        if x.ncols() != self.mean.len() {
            return Err(FlError::ShapeMismatch {
                what: "columns vs standardized features",
                expected: self.mean.len(),
                actual: x.ncols(),
            });
        }
        *x -= &self.mean;
        *x /= &self.std;
        Ok(())
    }
}

fn floor_std(var: f64) -> f64 {
    let std = var.sqrt();
    if std > STD_FLOOR { std } else { 1.0 }
}

/// Checks that `y` has one label per row of `x`, each below `n_classes`.
pub(crate) fn check_labels(
    x: &Array2<f64>,
    y: &Array1<usize>,
    n_classes: usize,
) -> Result<(), FlError> {
    if y.len() != x.nrows() {
        return Err(FlError::ShapeMismatch {
            what: "labels vs rows of x",
            expected: x.nrows(),
            actual: y.len(),
        });
    }
    if let Some((row, &label)) = y.iter().enumerate().find(|&(_, &l)| l >= n_classes) {
        return Err(FlError::LabelOutOfRange {
            row,
            label,
            n_classes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn wine_has_contiguous_quality_classes() {
        let wine = load(DatasetKind::Wine);
        wine.check().unwrap();
        assert_eq!(wine.n_rows(), 1599);
        assert_eq!(wine.n_features(), 11);
        assert_eq!(wine.n_classes, 6);
        assert_eq!(wine.class_names[0], "quality 3");
        assert_eq!(wine.class_names[5], "quality 8");
        // Every class occurs, and the known sizes of the red wine set hold.
        assert_eq!(wine.class_counts(), vec![10, 53, 681, 638, 199, 18]);
    }

    #[test]
    fn iris_loads() {
        let iris = load(DatasetKind::Iris);
        iris.check().unwrap();
        assert_eq!((iris.n_rows(), iris.n_features()), (150, 4));
        assert_eq!(iris.class_counts(), vec![50, 50, 50]);
    }

    #[test]
    fn dataset_kind_parses_and_names_the_choices() {
        assert_eq!("wine".parse::<DatasetKind>(), Ok(DatasetKind::Wine));
        assert_eq!(" Iris ".parse::<DatasetKind>(), Ok(DatasetKind::Iris));
        assert_eq!(DatasetKind::Wine.to_string(), "wine");
        let err = "mnist".parse::<DatasetKind>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("mnist") && msg.contains("wine, iris"), "{msg}");
    }

    #[test]
    fn split_is_stratified_disjoint_and_deterministic() {
        let wine = load(DatasetKind::Wine);
        let (train, test) = train_test_split(&wine, 0.25, 7).unwrap();
        assert_eq!(train.n_rows() + test.n_rows(), wine.n_rows());
        for (c, (&all, (&tr, &te))) in wine
            .class_counts()
            .iter()
            .zip(train.class_counts().iter().zip(&test.class_counts()))
            .enumerate()
        {
            assert_eq!(tr + te, all, "class {c}");
            assert_eq!(te, (all as f64 * 0.25).round() as usize, "class {c}");
        }
        let (train2, test2) = train_test_split(&wine, 0.25, 7).unwrap();
        assert_eq!((train.x.clone(), test.y.clone()), (train2.x, test2.y));
        assert!(!format!("{train:?}").contains('.'), "Debug shows no values");
        let (_, test3) = train_test_split(&wine, 0.25, 8).unwrap();
        assert_ne!(test.x, test3.x, "another seed gives another split");
        assert!(train_test_split(&wine, 1.0, 7).is_err());
        assert!(train_test_split(&wine, f64::NAN, 7).is_err());
    }

    #[test]
    fn standardizer_from_moments_matches_fit() {
        let x = array![[1.0, 5.0, 2.0], [3.0, 5.0, -1.0], [8.0, 5.0, 0.5]];
        let fitted = Standardizer::fit(&x).unwrap();
        let mut moments = FeatureMoments::of(&x.select(Axis(0), &[0]));
        moments
            .add(&FeatureMoments::of(&x.select(Axis(0), &[1, 2])))
            .unwrap();
        let pooled =
            Standardizer::from_moments(moments.count, &moments.sums, &moments.sums_of_squares)
                .unwrap();
        for (a, b) in fitted.mean.iter().zip(&pooled.mean) {
            assert!((a - b).abs() < 1e-12);
        }
        for (a, b) in fitted.std.iter().zip(&pooled.std) {
            assert!((a - b).abs() < 1e-9);
        }
        // The constant column is centred, not divided by ~0.
        assert_eq!(fitted.std[1], 1.0);
        let mut z = x.clone();
        fitted.apply(&mut z).unwrap();
        assert!(z.iter().all(|v| v.is_finite()));
        assert!(z.column(0).sum().abs() < 1e-12);
        let var0 = z.column(0).mapv(|v| v * v).sum() / 3.0;
        assert!((var0 - 1.0).abs() < 1e-12);
        assert!(fitted.apply(&mut Array2::zeros((2, 2))).is_err());
        let rebuilt = Standardizer::from_mean_std(fitted.mean.clone(), fitted.std.clone()).unwrap();
        assert_eq!(rebuilt, fitted);
        assert!(Standardizer::from_mean_std(array![0.0], array![0.0]).is_err());
        assert!(Standardizer::from_mean_std(array![f64::NAN], array![1.0]).is_err());
        assert!(Standardizer::from_mean_std(array![0.0, 1.0], array![1.0]).is_err());
    }
}
