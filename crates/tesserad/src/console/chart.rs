//! Bar charts as inline SVG, drawn on the server (no script needed).

use maud::{Markup, html};

const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 90.0;

/// A bar chart of `values` (oldest first, one bar each) titled `title`,
/// with the largest value and the latest one written beside it.
pub fn bars(id: &str, title: &str, values: &[u64]) -> Markup {
    let max = values.iter().copied().max().unwrap_or(0);
    let latest = values.last().copied().unwrap_or(0);
    let slot = WIDTH / values.len().max(1) as f64;
    let bar_width = (slot - 1.0).max(1.0);
    html! {
        figure.chart id=(id) {
            figcaption {
                strong { (title) }
                " — this minute " span.latest { (latest) } ", peak " (max) " /min"
            }
            svg xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (WIDTH) " " (HEIGHT)}
                width=(WIDTH) height=(HEIGHT) role="img"
                aria-label={(title) " per minute over the last hour"} {
                rect x="0" y="0" width=(WIDTH) height=(HEIGHT) fill="#f6f7f9" {}
                @for (i, value) in values.iter().enumerate() {
                    @let height = if max == 0 { 0.0 } else { (*value as f64 / max as f64) * (HEIGHT - 4.0) };
                    @if *value > 0 {
                        rect x=(format!("{:.1}", i as f64 * slot)) y=(format!("{:.1}", HEIGHT - height))
                            width=(format!("{bar_width:.1}")) height=(format!("{height:.1}")) fill="#3b6ea5" {
                            title { (value) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bars;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let svg = bars("c", "Creations", &[0, 5, 10]).into_string();
        assert!(svg.contains("<svg"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 3, "background and two bars");
        assert!(
            svg.contains("height=\"86.0\""),
            "the largest fills the chart: {svg}"
        );
        assert!(svg.contains("height=\"43.0\""), "{svg}");
        let empty = bars("e", "Nothing", &[0; 60]).into_string();
        assert_eq!(empty.matches("<rect").count(), 1);
    }
}
