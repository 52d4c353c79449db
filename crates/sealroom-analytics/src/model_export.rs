//! The exported model of a table training: `model.safetensors` (the
//! tensors) and `model.json` (what they mean), readable from Python with
//! numpy alone (see `docs/analytics.md`, "The exported model").
//!
//! `model.safetensors` follows the safetensors format
//! (<https://github.com/huggingface/safetensors>): an 8-byte little-endian
//! header length `N`, `N` bytes of JSON mapping each tensor's name to its
//! `dtype`, `shape` and `data_offsets` (from the end of the header), then
//! the data, little-endian, row-major. Every tensor here is `F64`:
//!
//! | tensor | shape | holds |
//! |---|---|---|
//! | `params` | `[P]` | the resulting model (round `best_round`) |
//! | `mean`, `std` | `[F]` | the standardization: `x ↦ (x − mean) / std` |
//! | `history.params` | `[R + 1, P]` | the initial model, then the model after each round |
//! | `history.sums` | `[R, P + 1]` | each round's revealed secure sum (with robust aggregation, its numerator and denominator in the same form) |
//!
//! The FedAvg rule that reproduces `history.params` from `history.sums`
//! bit for bit, in IEEE-754 double precision: with `step` = `wire_step`
//! from `model.json`, `W = sums[r][P] / step` and
//! `params[r + 1] = params[r] + sums[r][:P] / W` (one division, then one
//! addition, per parameter).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fl::ModelKind;
use crate::table_training::{Metrics, TableTrainingReport};

/// `format` of a `model.json` written by this version.
pub const FORMAT: &str = "sealroom-model/1";
/// The tensor file.
pub const TENSORS_FILE: &str = "model.safetensors";
/// The description file.
pub const JSON_FILE: &str = "model.json";
/// Largest `model.safetensors` header the reader accepts.
const MAX_HEADER: u64 = 1 << 24;

/// One block of the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutEntry {
    /// Name: `W`, `b` (logistic, linear) or `W1`, `b1`, `W2`, `b2` (MLP).
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// First index in the parameter vector.
    pub offset: usize,
}

/// What `model.json` says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDescription {
    /// [`FORMAT`].
    pub format: String,
    /// The model kind.
    pub model: ModelKind,
    /// How to compute: `"softmax(x·W + b)"`, `"x·W + b"` or
    /// `"softmax(tanh(x·W1 + b1)·W2 + b2)"`, on standardized `x`.
    pub forward: String,
    /// Feature columns, in input order.
    pub features: Vec<String>,
    /// The label column.
    pub label: String,
    /// Class names (classifiers): output `i` is `classes[i]`.
    pub classes: Option<Vec<String>>,
    /// The blocks of `params`.
    pub layout: Vec<LayoutEntry>,
    /// Parameters.
    pub n_params: usize,
    /// Quantization of the deltas: signed bits, clip, weight cap, the step
    /// of one delta value and of one value of the secure sum.
    pub quantization: QuantizationDescription,
    /// The round whose model is `params` (0: the initial model).
    pub best_round: usize,
    /// Rounds run (`history.sums` has this many rows).
    pub rounds: usize,
    /// Whether early stopping ended the training.
    pub stopped_early: bool,
    /// Pooled validation metrics per round (index 0: the initial model).
    pub validation: Vec<Option<Metrics>>,
    /// Test metrics per round on the admin's rows (index 0: the initial model).
    pub test: Vec<Option<Metrics>>,
    /// The FedAvg rule, in words.
    pub fedavg_rule: String,
}

/// The quantization of an exported training.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizationDescription {
    /// Signed bits per delta value.
    pub bits: u8,
    /// Deltas were clipped to ±clip.
    pub clip: f64,
    /// A client's weight was min(its training rows, max_weight).
    pub max_weight: u32,
    /// Step of one quantized delta value (a power of two).
    pub delta_step: f64,
    /// Step of the values of the secure sum (equal to `delta_step`).
    pub wire_step: f64,
}

/// An exported model, read back.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportedModel {
    /// `model.json`.
    pub description: ModelDescription,
    /// Each tensor, flattened, with its shape.
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
}

/// Why an export could not be written or read: names the file and what is
/// wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading or writing a file failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not what this format says.
    #[error("{file}: {why}")]
    Malformed {
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// The report cannot be exported.
    #[error("cannot export: {0}")]
    Report(String),
}

/// The layout of a model's flat parameter vector.
pub fn layout(kind: ModelKind, n_features: usize, n_outputs: usize) -> Vec<LayoutEntry> {
    let entry = |name: &str, shape: Vec<usize>, offset| LayoutEntry {
        name: name.into(),
        shape,
        offset,
    };
    match kind {
        ModelKind::Logistic | ModelKind::Linear => vec![
            entry("W", vec![n_features, n_outputs], 0),
            entry("b", vec![n_outputs], n_features * n_outputs),
        ],
        ModelKind::Mlp { hidden } => {
            let w2 = n_features * hidden + hidden;
            vec![
                entry("W1", vec![n_features, hidden], 0),
                entry("b1", vec![hidden], n_features * hidden),
                entry("W2", vec![hidden, n_outputs], w2),
                entry("b2", vec![n_outputs], w2 + hidden * n_outputs),
            ]
        }
    }
}

fn forward(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Logistic => "softmax(x·W + b)",
        ModelKind::Linear => "x·W + b",
        ModelKind::Mlp { .. } => "softmax(tanh(x·W1 + b1)·W2 + b2)",
    }
}

/// Writes `model.safetensors` and `model.json` into `dir` (created if
/// missing).
pub fn write(report: &TableTrainingReport, dir: &Path) -> Result<(), ExportError> {
    let spec = &report.spec;
    let n_params = report.n_params;
    let fedavg = spec.quantization.fedavg();
    let delta = fedavg
        .delta_spec()
        .map_err(|e| ExportError::Report(e.to_string()))?;
    let wire = fedavg
        .wire_spec()
        .map_err(|e| ExportError::Report(e.to_string()))?;
    let params = report
        .history
        .get(report.best_round)
        .ok_or_else(|| ExportError::Report("the report holds no model history".into()))?;
    if report.history.len() != report.rounds.len() + 1 || report.sums.len() != report.rounds.len() {
        return Err(ExportError::Report(
            "the report's history does not match its rounds".into(),
        ));
    }
    let description = ModelDescription {
        format: FORMAT.into(),
        model: spec.model,
        forward: forward(spec.model).into(),
        features: spec.features.clone(),
        label: spec.label.clone(),
        classes: spec.classes.clone(),
        layout: layout(spec.model, spec.features.len(), spec.n_outputs()),
        n_params,
        quantization: QuantizationDescription {
            bits: fedavg.bits,
            clip: fedavg.delta_clip,
            max_weight: fedavg.max_weight,
            delta_step: delta.step(),
            wire_step: wire.step(),
        },
        best_round: report.best_round,
        rounds: report.rounds.len(),
        stopped_early: report.stopped_early,
        validation: std::iter::once(report.initial_validation)
            .chain(report.rounds.iter().map(|r| r.validation))
            .collect(),
        test: std::iter::once(report.initial_test)
            .chain(report.rounds.iter().map(|r| r.test))
            .collect(),
        fedavg_rule: "params[r+1] = params[r] + sums[r][:P] / (sums[r][P] / wire_step), \
                      in float64, one division then one addition per parameter"
            .into(),
    };
    let flat = |rows: &[Vec<f64>]| rows.iter().flatten().copied().collect::<Vec<f64>>();
    let tensors: Vec<(&str, Vec<usize>, Vec<f64>)> = vec![
        ("params", vec![n_params], params.clone()),
        ("mean", vec![report.mean.len()], report.mean.clone()),
        ("std", vec![report.std.len()], report.std.clone()),
        (
            "history.params",
            vec![report.history.len(), n_params],
            flat(&report.history),
        ),
        (
            "history.sums",
            vec![report.sums.len(), n_params + 1],
            flat(&report.sums),
        ),
    ];
    std::fs::create_dir_all(dir).map_err(|source| ExportError::Io {
        file: dir.display().to_string(),
        source,
    })?;
    let bytes = safetensors_bytes(&tensors, &[("format", FORMAT)]);
    let tensors_path = dir.join(TENSORS_FILE);
    std::fs::write(&tensors_path, bytes).map_err(|source| ExportError::Io {
        file: tensors_path.display().to_string(),
        source,
    })?;
    let json_path = dir.join(JSON_FILE);
    let json =
        serde_json::to_vec_pretty(&description).map_err(|e| ExportError::Report(e.to_string()))?;
    std::fs::write(&json_path, json).map_err(|source| ExportError::Io {
        file: json_path.display().to_string(),
        source,
    })
}

/// Encodes F64 tensors in the safetensors format.
fn safetensors_bytes(
    tensors: &[(&str, Vec<usize>, Vec<f64>)],
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let meta: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let len = data.len() * 8;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F64", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut head = serde_json::Value::Object(header).to_string().into_bytes();
    // Pad with spaces so the data starts 8-byte aligned.
    while !(8 + head.len()).is_multiple_of(8) {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend((head.len() as u64).to_le_bytes());
    out.extend(head);
    for (_, _, data) in tensors {
        for v in data {
            out.extend(v.to_le_bytes());
        }
    }
    out
}

/// Reads an export back (checking every tensor's dtype, shape and bounds).
pub fn read(dir: &Path) -> Result<ExportedModel, ExportError> {
    let json_path = dir.join(JSON_FILE);
    let json_file = json_path.display().to_string();
    let text = std::fs::read(&json_path).map_err(|source| ExportError::Io {
        file: json_file.clone(),
        source,
    })?;
    let description: ModelDescription =
        serde_json::from_slice(&text).map_err(|e| ExportError::Malformed {
            file: json_file.clone(),
            why: e.to_string(),
        })?;
    if description.format != FORMAT {
        return Err(ExportError::Malformed {
            file: json_file,
            why: format!(
                "format {:?}, this reader knows {FORMAT:?}",
                description.format
            ),
        });
    }
    let tensors_path = dir.join(TENSORS_FILE);
    let file = tensors_path.display().to_string();
    let bytes = std::fs::read(&tensors_path).map_err(|source| ExportError::Io {
        file: file.clone(),
        source,
    })?;
    let tensors = parse_safetensors(&bytes).map_err(|why| ExportError::Malformed {
        file: file.clone(),
        why,
    })?;
    let p = description.n_params;
    let expect = |name: &str, shape: Vec<usize>| -> Result<(), ExportError> {
        match tensors.get(name) {
            Some((s, _)) if *s == shape => Ok(()),
            Some((s, _)) => Err(ExportError::Malformed {
                file: file.clone(),
                why: format!("tensor {name:?} has shape {s:?}, model.json implies {shape:?}"),
            }),
            None => Err(ExportError::Malformed {
                file: file.clone(),
                why: format!("no tensor {name:?}"),
            }),
        }
    };
    let f = description.features.len();
    let r = description.rounds;
    expect("params", vec![p])?;
    expect("mean", vec![f])?;
    expect("std", vec![f])?;
    expect("history.params", vec![r + 1, p])?;
    expect("history.sums", vec![r, p + 1])?;
    Ok(ExportedModel {
        description,
        tensors,
    })
}

type Tensors = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

fn parse_safetensors(bytes: &[u8]) -> Result<Tensors, String> {
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("shorter than the 8-byte header length")?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || 8 + header_len > bytes.len() as u64 {
        return Err(format!(
            "a header of {header_len} bytes does not fit the file ({} bytes)",
            bytes.len()
        ));
    }
    let data = &bytes[8 + header_len as usize..];
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + header_len as usize])
            .map_err(|e| format!("header: {e}"))?;
    let mut out = BTreeMap::new();
    for (name, entry) in header {
        if name == "__metadata__" {
            continue;
        }
        #[derive(Deserialize)]
        struct Entry {
            dtype: String,
            shape: Vec<usize>,
            data_offsets: [usize; 2],
        }
        let e: Entry =
            serde_json::from_value(entry).map_err(|e| format!("tensor {name:?}: {e}"))?;
        if e.dtype != "F64" {
            return Err(format!("tensor {name:?}: dtype {}, expected F64", e.dtype));
        }
        let [begin, end] = e.data_offsets;
        let count = e
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| format!("tensor {name:?}: shape overflows"))?;
        if begin > end || end > data.len() || end - begin != count.saturating_mul(8) {
            return Err(format!(
                "tensor {name:?}: offsets {begin}..{end} do not match its shape or the data"
            ));
        }
        let values = data[begin..end]
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b)
            })
            .collect();
        out.insert(name, (e.shape, values));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip() {
        let tensors = vec![
            ("a", vec![2, 2], vec![1.0, -2.0, 0.5, 1e300]),
            ("b", vec![0], vec![]),
        ];
        let bytes = safetensors_bytes(&tensors, &[("format", FORMAT)]);
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!((8 + header_len) % 8, 0, "data is 8-byte aligned");
        let back = parse_safetensors(&bytes).unwrap();
        assert_eq!(back["a"], (vec![2, 2], vec![1.0, -2.0, 0.5, 1e300]));
        assert_eq!(back["b"], (vec![0], vec![]));
    }

    /// Malformed tensor files are refused with the reason, never a panic.
    #[test]
    fn malformed_safetensors_are_refused() {
        let good = safetensors_bytes(&[("a", vec![2], vec![1.0, 2.0])], &[]);
        let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        let with_header = |h: &str| {
            let mut b = (h.len() as u64).to_le_bytes().to_vec();
            b.extend(h.as_bytes());
            b.extend([0u8; 16]);
            b
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "shorter than"),
            (vec![1, 2, 3], "shorter than"),
            (u64::MAX.to_le_bytes().to_vec(), "does not fit"),
            (good[..8 + header_len - 1].to_vec(), "does not fit"),
            (with_header("{"), "header"),
            (with_header("[]"), "header"),
            (
                with_header(r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#),
                "dtype",
            ),
            (
                with_header(r#"{"a": {"dtype": "F64", "shape": [3], "data_offsets": [0, 16]}}"#),
                "offsets",
            ),
            (
                with_header(r#"{"a": {"dtype": "F64", "shape": [2], "data_offsets": [8, 24]}}"#),
                "offsets",
            ),
            (
                with_header(r#"{"a": {"dtype": "F64", "shape": [2], "data_offsets": [16, 0]}}"#),
                "offsets",
            ),
            (
                with_header(
                    r#"{"a": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}}"#,
                ),
                "overflows",
            ),
            (with_header(r#"{"a": {"dtype": "F64"}}"#), "tensor \"a\""),
        ];
        for (bytes, expected) in cases {
            let err = parse_safetensors(&bytes).unwrap_err();
            assert!(err.contains(expected), "{err} (expected {expected:?})");
        }
    }

    #[test]
    fn layouts_cover_the_parameters() {
        for kind in [
            ModelKind::Logistic,
            ModelKind::Linear,
            ModelKind::Mlp { hidden: 5 },
        ] {
            let outputs = if kind.is_regression() { 1 } else { 3 };
            let l = layout(kind, 4, outputs);
            let last = l.last().unwrap();
            let end = last.offset + last.shape.iter().product::<usize>();
            assert_eq!(end, kind.n_params(4, outputs), "{kind}");
            for pair in l.windows(2) {
                assert_eq!(
                    pair[0].offset + pair[0].shape.iter().product::<usize>(),
                    pair[1].offset
                );
            }
        }
    }
}
