//! The demo's training chart: test accuracy and loss per federated round, as
//! an SVG drawn by plotters (SVG needs no system fonts, unlike bitmaps).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// One point of the chart.
#[derive(Clone, Copy, Debug)]
pub struct RoundPoint {
    /// Federated round (1-based).
    pub round: usize,
    /// Test accuracy of the global model after the round, in [0, 1].
    pub accuracy: f64,
    /// Test loss (mean cross-entropy) of the global model after the round.
    pub loss: f64,
}

/// Writes the chart to `path`: accuracy on the left (with the centralized
/// baseline as a dashed line when given), loss on the right.
pub fn training_chart(
    path: &Path,
    title: &str,
    points: &[RoundPoint],
    centralized_accuracy: Option<f64>,
) -> Result<()> {
    if points.is_empty() {
        return Err(anyhow!("no rounds to chart"));
    }
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow!("drawing the chart: {e}"))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| anyhow!("drawing the chart: {e}"))?;
    let (left, right) = root.split_horizontally(500);
    let last_round = points.iter().map(|p| p.round).max().unwrap_or(1).max(2);

    let mut acc_max: f64 = points.iter().map(|p| p.accuracy).fold(0.0, f64::max);
    if let Some(c) = centralized_accuracy {
        acc_max = acc_max.max(c);
    }
    let mut accuracy = ChartBuilder::on(&left)
        .caption("test accuracy", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(1usize..last_round, 0.0..(acc_max * 1.1).clamp(0.1, 1.0))
        .map_err(|e| anyhow!("drawing the chart: {e}"))?;
    accuracy
        .configure_mesh()
        .x_desc("round")
        .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
        .draw()
        .map_err(|e| anyhow!("drawing the chart: {e}"))?;
    accuracy
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.round, p.accuracy)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| anyhow!("drawing the chart: {e}"))?
        .label("secure FedAvg")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    if let Some(c) = centralized_accuracy {
        accuracy
            .draw_series(DashedLineSeries::new(
                [(1, c), (last_round, c)],
                6,
                4,
                BLACK.into(),
            ))
            .map_err(|e| anyhow!("drawing the chart: {e}"))?
            .label("centralized (pooled data)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
    }
    accuracy
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| anyhow!("drawing the chart: {e}"))?;

    let loss_max = points.iter().map(|p| p.loss).fold(0.0, f64::max);
    let mut loss = ChartBuilder::on(&right)
        .caption("test loss (cross-entropy)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(1usize..last_round, 0.0..(loss_max * 1.1).max(0.1))
        .map_err(|e| anyhow!("drawing the chart: {e}"))?;
    loss.configure_mesh()
        .x_desc("round")
        .draw()
        .map_err(|e| anyhow!("drawing the chart: {e}"))?;
    loss.draw_series(LineSeries::new(
        points.iter().map(|p| (p.round, p.loss)),
        RED.stroke_width(2),
    ))
    .map_err(|e| anyhow!("drawing the chart: {e}"))?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// One panel of a grouped bar chart: per group (x), one bar per series.
#[derive(Clone, Debug)]
pub struct BarPanel {
    /// The panel's caption.
    pub title: String,
    /// Group labels along x.
    pub groups: Vec<String>,
    /// Series labels (the legend), one bar per group each.
    pub series: Vec<String>,
    /// `values[group][series]`, accuracies in [0, 1].
    pub values: Vec<Vec<f64>>,
    /// A labelled horizontal reference line.
    pub reference: Option<(String, f64)>,
}

/// Writes `sealroom bench --poisoning`'s chart to `path`: one panel per
/// cohort, final test accuracy per attack (groups) and defence (bars),
/// and the clean run's accuracy less 2 points as a dashed line.
pub fn poisoning_chart(path: &Path, panels: &[BarPanel]) -> Result<()> {
    if panels.is_empty() {
        return Err(anyhow!("no panels to chart"));
    }
    let width = 560 * panels.len() as u32;
    let root = SVGBackend::new(path, (width, 440)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing the chart: {e}");
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "final test accuracy under poisoning (defences inside the MPC engine)",
            ("sans-serif", 18),
        )
        .map_err(err)?;
    let areas = root.split_evenly((1, panels.len()));
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (area, panel) in areas.iter().zip(panels) {
        let groups = panel.groups.len().max(1);
        let per = panel.series.len().max(1);
        // Each group is `per` one-unit bars plus one unit of space; its
        // label sits under its middle bar.
        let slots = (groups * (per + 1)) as i32;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(48)
            .build_cartesian_2d(0..slots, 0.0..1.0)
            .map_err(err)?;
        let labels = panel.groups.clone();
        let label_of = move |x: &i32| {
            let x = *x as usize;
            let (g, pos) = (x / (per + 1), x % (per + 1));
            if pos == per / 2 {
                labels.get(g).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .x_labels(slots as usize + 1)
            .x_label_formatter(&label_of)
            .y_labels(11)
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .draw()
            .map_err(err)?;
        for (s, name) in panel.series.iter().enumerate() {
            let color = colors[s % colors.len()];
            chart
                .draw_series(panel.values.iter().enumerate().map(|(g, row)| {
                    let x0 = (g * (per + 1) + s) as i32;
                    let v = row.get(s).copied().unwrap_or(0.0).clamp(0.0, 1.0);
                    Rectangle::new([(x0, 0.0), (x0 + 1, v)], color.filled())
                }))
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        if let Some((name, v)) = &panel.reference {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0, *v), (slots, *v)],
                    6,
                    4,
                    BLACK.into(),
                ))
                .map_err(err)?
                .label(name.as_str())
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(err)?;
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_grouped_bar_chart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bars.svg");
        let panel = BarPanel {
            title: "1 of 5".into(),
            groups: vec!["clean".into(), "flip".into()],
            series: vec!["none".into(), "clip".into()],
            values: vec![vec![0.9, 0.88], vec![0.1, 0.87]],
            reference: Some(("clean − 2".into(), 0.88)),
        };
        poisoning_chart(&path, &[panel.clone(), panel]).expect("chart");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("1 of 5") && svg.contains("clean − 2"));
        assert!(
            svg.contains(">\nflip\n<") || svg.contains(">flip<"),
            "group labels"
        );
        // Four bars per panel plus two legend swatches, two panels.
        assert!(svg.matches("<rect").count() >= 12, "{svg}");
        assert!(poisoning_chart(&path, &[]).is_err());
    }

    #[test]
    fn writes_an_svg_with_both_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chart.svg");
        let points: Vec<RoundPoint> = (1..=5)
            .map(|r| RoundPoint {
                round: r,
                accuracy: 0.4 + 0.03 * r as f64,
                loss: 1.5 - 0.1 * r as f64,
            })
            .collect();
        training_chart(&path, "test", &points, Some(0.6)).expect("chart");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("test accuracy"));
        assert!(svg.contains("centralized (pooled data)"));
        // One polyline per series at least (accuracy, baseline, loss).
        assert!(svg.matches("<polyline").count() >= 2, "{svg}");
        assert!(training_chart(&path, "empty", &[], None).is_err());
    }
}
