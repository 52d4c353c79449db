//! The two text formats `/metrics` serves, chosen by the request's `Accept`
//! header ([`Format::negotiate`]):
//!
//! * OpenMetrics 1.0 text, what prometheus-client encodes
//!   (<https://github.com/prometheus/OpenMetrics/blob/v1.0.0/specification/OpenMetrics.md#text-format>);
//! * the Prometheus text format 0.0.4
//!   (<https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>),
//!   made from the OpenMetrics text by [`openmetrics_to_text`].
//!
//! The conversion is defined family by family:
//!
//! | OpenMetrics family `f` of type | 0.0.4 family | 0.0.4 type | samples kept |
//! | --- | --- | --- | --- |
//! | `counter` | `f_total` | `counter` | `f_total` (`f_created` dropped) |
//! | `gauge` | `f` | `gauge` | `f` |
//! | `histogram` | `f` | `histogram` | `f_bucket`, `f_sum`, `f_count` (`f_created` dropped) |
//! | `summary` | `f` | `summary` | `f`, `f_sum`, `f_count` (`f_created` dropped) |
//! | `unknown` | `f` | `untyped` | `f` |
//! | `info` | `f_info` | `gauge` | `f_info` |
//! | `stateset` | `f` | `gauge` | `f` |
//! | `gaugehistogram` | — refused ([`ConversionError::UnsupportedType`]) | | |
//!
//! `# UNIT` and `# EOF` lines are dropped, exemplars are dropped, HELP text
//! is re-escaped (OpenMetrics escapes `\`, `"` and newline; 0.0.4 only `\`
//! and newline), label values are kept as they are (both formats escape
//! them alike), and a timestamp in seconds becomes integer milliseconds.

use std::collections::HashMap;

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    PrometheusText,
}

/// Content type of an OpenMetrics 1.0.0 response.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of a Prometheus text 0.0.4 response.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Format {
    /// The `Content-Type` of a response in this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }

    /// The format to answer a request whose `Accept` header is `accept`:
    /// OpenMetrics when `application/openmetrics-text` is acceptable
    /// (q > 0) and preferred at least as much as any media range the
    /// Prometheus text format matches (`text/plain`, `text/*`, `*/*`);
    /// otherwise — no header, `*/*`, `text/plain`, anything unknown — the
    /// Prometheus text format. A malformed `q` counts as 0 (not acceptable).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let mut openmetrics: f32 = 0.0;
        let mut text: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let mut q = 1.0f32;
            for param in parts {
                if let Some((key, value)) = param.split_once('=')
                    && key.trim().eq_ignore_ascii_case("q")
                {
                    q = value
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .unwrap_or(0.0);
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// Why an OpenMetrics text could not be converted. Line numbers count from 1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConversionError {
    /// The text does not end with `# EOF`.
    #[error("the OpenMetrics text does not end with `# EOF`")]
    MissingEof,
    /// Something follows `# EOF`.
    #[error("line {line}: text after `# EOF`")]
    AfterEof {
        /// Where.
        line: usize,
    },
    /// A line is not what the OpenMetrics text format allows there.
    #[error("line {line}: malformed {what}")]
    Malformed {
        /// Where.
        line: usize,
        /// What kind of line or field.
        what: &'static str,
    },
    /// A metric type the 0.0.4 format cannot express (or not a type at all).
    #[error("line {line}: metric type {kind:?} has no Prometheus text 0.0.4 equivalent")]
    UnsupportedType {
        /// Where.
        line: usize,
        /// The type named (at most 32 characters of it).
        kind: String,
    },
}

/// An OpenMetrics family type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Unknown,
    Info,
    StateSet,
}

impl Kind {
    fn parse(kind: &str, line: usize) -> Result<Kind, ConversionError> {
        Ok(match kind {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            "unknown" => Kind::Unknown,
            "info" => Kind::Info,
            "stateset" => Kind::StateSet,
            other => {
                return Err(ConversionError::UnsupportedType {
                    line,
                    kind: other.chars().take(32).collect(),
                });
            }
        })
    }

    /// The 0.0.4 type keyword.
    fn text_type(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::Info | Kind::StateSet => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
            Kind::Unknown => "untyped",
        }
    }

    /// The 0.0.4 family name of the OpenMetrics family `name`.
    fn text_name(self, name: &str) -> String {
        match self {
            Kind::Counter => format!("{name}_total"),
            Kind::Info => format!("{name}_info"),
            Kind::Gauge | Kind::Histogram | Kind::Summary | Kind::Unknown | Kind::StateSet => {
                name.to_string()
            }
        }
    }

    /// Whether the sample `sample` of family `family` is kept (`Some(true)`),
    /// dropped (`Some(false)`), or not of this family (`None`).
    fn keeps(self, family: &str, sample: &str) -> Option<bool> {
        let suffix = sample.strip_prefix(family)?;
        let kept: &[&str] = match self {
            Kind::Counter => &["_total"],
            Kind::Gauge | Kind::Unknown | Kind::StateSet => &[""],
            Kind::Histogram => &["_bucket", "_sum", "_count"],
            Kind::Summary => &["", "_sum", "_count"],
            Kind::Info => &["_info"],
        };
        if kept.contains(&suffix) {
            Some(true)
        } else if suffix == "_created"
            && matches!(self, Kind::Counter | Kind::Histogram | Kind::Summary)
        {
            Some(false)
        } else {
            None
        }
    }
}

/// Converts an OpenMetrics 1.0 text exposition into the Prometheus text
/// format 0.0.4 (see the module documentation for the rules).
pub fn openmetrics_to_text(openmetrics: &str) -> Result<String, ConversionError> {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let eof = lines
        .iter()
        .position(|l| *l == "# EOF")
        .ok_or(ConversionError::MissingEof)?;
    if eof + 1 != lines.len() {
        return Err(ConversionError::AfterEof { line: eof + 2 });
    }
    // Every family's type first: HELP comes before TYPE in a family.
    let mut kinds: HashMap<&str, Kind> = HashMap::new();
    for (i, line) in lines[..eof].iter().enumerate() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(ConversionError::Malformed {
                line: i + 1,
                what: "TYPE line",
            })?;
            kinds.insert(name, Kind::parse(kind, i + 1)?);
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    // The family whose samples follow.
    let mut current: Option<(&str, Kind)> = None;
    for (i, line) in lines[..eof].iter().enumerate() {
        let number = i + 1;
        let malformed = |what| ConversionError::Malformed { line: number, what };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = kinds.get(name).copied().unwrap_or(Kind::Unknown);
            current = Some((name, kind));
            out.push_str("# HELP ");
            out.push_str(&kind.text_name(name));
            out.push(' ');
            out.push_str(&reescape_help(help).ok_or(malformed("HELP text"))?);
            out.push('\n');
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, _) = rest.split_once(' ').ok_or(malformed("TYPE line"))?;
            let kind = kinds.get(name).copied().unwrap_or(Kind::Unknown);
            current = Some((name, kind));
            out.push_str("# TYPE ");
            out.push_str(&kind.text_name(name));
            out.push(' ');
            out.push_str(kind.text_type());
            out.push('\n');
        } else if line.starts_with("# UNIT ") {
            continue;
        } else if line.starts_with('#') || line.is_empty() {
            return Err(malformed("comment or empty line"));
        } else {
            let sample = Sample::parse(line).ok_or(malformed("sample"))?;
            match current.and_then(|(family, kind)| kind.keeps(family, sample.name)) {
                Some(false) => continue,
                Some(true) => {}
                // A sample of a family without metadata: untyped in both.
                None => current = None,
            }
            out.push_str(sample.name_and_labels);
            out.push(' ');
            out.push_str(sample.value);
            if let Some(seconds) = sample.timestamp {
                let seconds: f64 = seconds.parse().map_err(|_| malformed("timestamp"))?;
                let millis = (seconds * 1000.0).round();
                if !millis.is_finite() || millis.abs() > 9.0e15 {
                    return Err(malformed("timestamp"));
                }
                out.push(' ');
                out.push_str(&format!("{}", millis as i64));
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// One sample line, split (exemplar left out).
struct Sample<'a> {
    name: &'a str,
    /// The name and its label set, as written.
    name_and_labels: &'a str,
    value: &'a str,
    timestamp: Option<&'a str>,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Sample<'a>> {
        let name_end = line.find(['{', ' '])?;
        let name = &line[..name_end];
        if name.is_empty() {
            return None;
        }
        let labels_end = if line[name_end..].starts_with('{') {
            // The closing brace outside any quoted label value.
            let mut quoted = false;
            let mut escaped = false;
            let mut end = None;
            for (offset, c) in line[name_end..].char_indices() {
                match (quoted, escaped, c) {
                    (true, true, _) => escaped = false,
                    (true, false, '\\') => escaped = true,
                    (_, _, '"') => quoted = !quoted,
                    (false, _, '}') => {
                        end = Some(name_end + offset + 1);
                        break;
                    }
                    _ => {}
                }
            }
            end?
        } else {
            name_end
        };
        let rest = line[labels_end..].strip_prefix(' ')?;
        // An exemplar follows ` # `; values and timestamps hold no `#`.
        let rest = rest.split_once(" # ").map_or(rest, |(before, _)| before);
        let mut fields = rest.split(' ');
        let value = fields.next().filter(|v| !v.is_empty())?;
        let timestamp = fields.next();
        if fields.next().is_some() {
            return None;
        }
        Some(Sample {
            name,
            name_and_labels: &line[..labels_end],
            value,
            timestamp,
        })
    }
}

/// OpenMetrics HELP escapes (`\\`, `\"`, `\n`) to 0.0.4 HELP escapes (`\\`,
/// `\n`); `None` for an escape OpenMetrics does not define.
fn reescape_help(help: &str) -> Option<String> {
    let mut out = String::with_capacity(help.len());
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '\\' => out.push_str("\\\\"),
                '"' => out.push('"'),
                'n' => out.push_str("\\n"),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by hand from the two specifications: one family of each
    /// type, with escapes, an exemplar, a timestamp and `_created` samples.
    const OPENMETRICS: &str = "\
# HELP acme_requests Requests \\\"served\\\", by path\\nand code.
# TYPE acme_requests counter
acme_requests_total{path=\"/a\\\"b\",code=\"200\"} 3 # {trace_id=\"x\"} 1.0 1.5
acme_requests_created{path=\"/a\\\"b\",code=\"200\"} 1.7e9
# HELP acme_temperature_celsius A gauge.
# TYPE acme_temperature_celsius gauge
# UNIT acme_temperature_celsius celsius
acme_temperature_celsius -1.5 1700000000.25
# HELP acme_latency_seconds A histogram.
# TYPE acme_latency_seconds histogram
# UNIT acme_latency_seconds seconds
acme_latency_seconds_bucket{le=\"0.5\"} 1
acme_latency_seconds_bucket{le=\"+Inf\"} 2
acme_latency_seconds_sum 0.75
acme_latency_seconds_count 2
acme_latency_seconds_created 1.7e9
# HELP acme_rpc_seconds A summary.
# TYPE acme_rpc_seconds summary
acme_rpc_seconds{quantile=\"0.5\"} 0.1
acme_rpc_seconds_sum 1
acme_rpc_seconds_count 4
# HELP acme_build Build.
# TYPE acme_build info
acme_build_info{version=\"1 } 2\"} 1
# HELP acme_mystery Unknown.
# TYPE acme_mystery unknown
acme_mystery NaN
# HELP acme_mode A stateset.
# TYPE acme_mode stateset
acme_mode{acme_mode=\"on\"} 1
acme_loose 7
# EOF
";

    const TEXT: &str = "\
# HELP acme_requests_total Requests \"served\", by path\\nand code.
# TYPE acme_requests_total counter
acme_requests_total{path=\"/a\\\"b\",code=\"200\"} 3
# HELP acme_temperature_celsius A gauge.
# TYPE acme_temperature_celsius gauge
acme_temperature_celsius -1.5 1700000000250
# HELP acme_latency_seconds A histogram.
# TYPE acme_latency_seconds histogram
acme_latency_seconds_bucket{le=\"0.5\"} 1
acme_latency_seconds_bucket{le=\"+Inf\"} 2
acme_latency_seconds_sum 0.75
acme_latency_seconds_count 2
# HELP acme_rpc_seconds A summary.
# TYPE acme_rpc_seconds summary
acme_rpc_seconds{quantile=\"0.5\"} 0.1
acme_rpc_seconds_sum 1
acme_rpc_seconds_count 4
# HELP acme_build_info Build.
# TYPE acme_build_info gauge
acme_build_info{version=\"1 } 2\"} 1
# HELP acme_mystery Unknown.
# TYPE acme_mystery untyped
acme_mystery NaN
# HELP acme_mode A stateset.
# TYPE acme_mode gauge
acme_mode{acme_mode=\"on\"} 1
acme_loose 7
";

    #[test]
    fn every_family_type_converts_as_the_specifications_say() {
        assert_eq!(openmetrics_to_text(OPENMETRICS), Ok(TEXT.to_string()));
    }

    #[test]
    fn what_has_no_equivalent_or_is_malformed_is_refused_with_its_line() {
        assert_eq!(
            openmetrics_to_text("# TYPE a gaugehistogram\na_gcount 1\n# EOF\n"),
            Err(ConversionError::UnsupportedType {
                line: 1,
                kind: "gaugehistogram".into()
            })
        );
        assert_eq!(
            openmetrics_to_text("a 1\n"),
            Err(ConversionError::MissingEof)
        );
        assert_eq!(
            openmetrics_to_text("a 1\n# EOF\nb 2\n"),
            Err(ConversionError::AfterEof { line: 3 })
        );
        for (text, what) in [
            ("a{b=\"c\" 1\n# EOF\n", "sample"),
            ("a\n# EOF\n", "sample"),
            ("a 1 2 3\n# EOF\n", "sample"),
            ("a 1 soon\n# EOF\n", "timestamp"),
            ("# HELP a bad \\t escape\n# EOF\n", "HELP text"),
            ("# a comment\n# EOF\n", "comment or empty line"),
            ("\n# EOF\n", "comment or empty line"),
            ("# TYPE a\n# EOF\n", "TYPE line"),
        ] {
            assert_eq!(
                openmetrics_to_text(text),
                Err(ConversionError::Malformed { line: 1, what }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn negotiation_prefers_openmetrics_only_when_asked_for() {
        use Format::{OpenMetrics, PrometheusText};
        for (accept, expected) in [
            (None, PrometheusText),
            (Some(""), PrometheusText),
            (Some("*/*"), PrometheusText),
            (Some("text/plain; version=0.0.4"), PrometheusText),
            (
                Some("text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
                PrometheusText,
            ),
            (Some("application/openmetrics-text"), OpenMetrics),
            (
                Some("Application/OpenMetrics-Text; version=1.0.0; charset=utf-8"),
                OpenMetrics,
            ),
            // What Prometheus 2.x and 3.x send by default.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;q=0.5,\
                     application/openmetrics-text;version=0.0.1;q=0.4,\
                     text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                ),
                OpenMetrics,
            ),
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
                     text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
                     text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                ),
                OpenMetrics,
            ),
            // Prometheus with `scrape_protocols: [PrometheusText0.0.4]`.
            (
                Some("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"),
                PrometheusText,
            ),
            (Some("application/openmetrics-text;q=0"), PrometheusText),
            (Some("application/openmetrics-text;q=high"), PrometheusText),
            (Some("application/json"), PrometheusText),
        ] {
            assert_eq!(Format::negotiate(accept), expected, "{accept:?}");
        }
        assert!(
            OpenMetrics
                .content_type()
                .starts_with("application/openmetrics-text;")
        );
        assert!(
            PrometheusText
                .content_type()
                .starts_with("text/plain; version=0.0.4")
        );
    }
}
