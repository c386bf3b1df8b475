//! Writing: the SVG charts.

use crate::markdown::{Figure, fmt};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use portnet_perf_report::Lib;
use std::path::Path;

/// A grouped bar chart: one group per transport, bars raw / portnet / message-io, with error
/// bars when the figure has a spread.
pub fn chart(path: &Path, figure: &Figure) -> Result<(), Box<dyn std::error::Error>> {
    const COLORS: [RGBColor; 3] =
        [RGBColor(150, 150, 150), RGBColor(31, 119, 180), RGBColor(255, 127, 14)];
    let kinds = &figure.kinds;
    let top = figure
        .values
        .values()
        .map(|(v, spread)| spread.map_or(*v, |(_, high)| high.max(*v)))
        .fold(0.0f64, f64::max);
    // Head room for the legend above the tallest bar.
    let top = if top > 0.0 { top * 1.4 } else { 1.0 };
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&figure.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..kinds.len() as f64, 0f64..top)?;
    chart.configure_mesh().disable_x_mesh().disable_x_axis().y_desc(figure.unit).draw()?;
    let width = 0.25;
    for (i, lib) in Lib::ALL.into_iter().enumerate() {
        let color = COLORS[i];
        let bars: Vec<(f64, f64)> = kinds
            .iter()
            .enumerate()
            .filter_map(|(k, kind)| {
                figure.get(lib, *kind).map(|v| (k as f64 + 0.125 + i as f64 * width, v))
            })
            .collect();
        chart
            .draw_series(
                bars.iter().map(|&(x, v)| {
                    Rectangle::new([(x, 0.0), (x + width * 0.9, v)], color.filled())
                }),
            )?
            .label(lib.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        let label = TextStyle::from(("sans-serif", 10).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(bars.iter().map(|&(x, v)| {
            // Above the error bar, if any.
            let kind = kinds[x.floor() as usize];
            let above = match figure.values.get(&(lib, kind)) {
                Some((_, Some((_, high)))) => high.max(v),
                _ => v,
            };
            let at = (x + width * 0.45, above + top * 0.01);
            Text::new(fmt(v, figure.digits), at, label.clone())
        }))?;
        for (k, kind) in kinds.iter().enumerate() {
            if let Some((v, Some((low, high)))) = figure.values.get(&(lib, *kind)) {
                let x = k as f64 + 0.125 + i as f64 * width + width * 0.45;
                chart.draw_series(std::iter::once(ErrorBar::new_vertical(
                    x,
                    *low,
                    *v,
                    *high,
                    BLACK.stroke_width(1),
                    6,
                )))?;
            }
        }
    }
    for (k, kind) in kinds.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(k as f64 + 0.5, 0.0));
        let centred =
            TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(kind.name(), (x, y + 8), centred))?;
    }
    chart
        .configure_series_labels()
        .position(if figure.higher_is_better {
            SeriesLabelPosition::UpperLeft
        } else {
            SeriesLabelPosition::UpperRight
        })
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
