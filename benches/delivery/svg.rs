//! The headline's latency-versus-load curve as a hand-written SVG (no plotting dependency).
//!
//! Why: the knee, where latency leaves its floor as the offered rate nears what the server
//! sustains, is read at a glance on a curve and hardly in a table. Both axes are
//! logarithmic: offered rates span two decades, and latencies from a fraction of a
//! millisecond to seconds once the server falls behind.

#[allow(unused_imports)]
use super::*;

use headline::CurvePoint;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// The lowest latency drawn, ms; lower values sit on the axis.
const FLOOR_MS: f64 = 0.1;

/// The four lines: label, colour, dash pattern, and the value of a point in µs.
type Line = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CurvePoint) -> u64,
);

const LINES: [Line; 4] = [
    ("ingest p50", "#1f77b4", "", |p| p.load.p50_us),
    ("ingest p99", "#1f77b4", "6 4", |p| p.load.p99_us),
    ("end to end p50", "#d62728", "", |p| p.e2e.p50),
    ("end to end p99", "#d62728", "6 4", |p| p.e2e.p99),
];

/// Maps offered rates and latencies to the plot's coordinates.
struct Scale {
    x_min: f64,
    x_max: f64,
    y_max: f64,
}

impl Scale {
    fn of(points: &[CurvePoint]) -> Self {
        let rates = points.iter().map(|p| p.offered as f64);
        let (low, high) = rates.fold((f64::MAX, 0.0f64), |(l, h), r| (l.min(r), h.max(r)));
        let worst = points
            .iter()
            .flat_map(|p| LINES.iter().map(move |line| (line.3)(p)))
            .max()
            .unwrap_or(1_000) as f64
            / 1_000.0;
        Self {
            x_min: (low / 1.5).log10(),
            x_max: (high.max(low * 2.0) * 1.5).log10(),
            y_max: worst.max(10.0).log10().ceil(),
        }
    }

    fn x(&self, rate: f64) -> f64 {
        let share = (rate.log10() - self.x_min) / (self.x_max - self.x_min);
        LEFT + share * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, ms: f64) -> f64 {
        let floor = FLOOR_MS.log10();
        let share = (ms.max(FLOOR_MS).log10() - floor) / (self.y_max - floor);
        HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM)
    }
}

/// The SVG document of the curve.
pub(crate) fn curve(points: &[CurvePoint]) -> String {
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">Switchboard: latency \
         against offered load (open loop, from the scheduled send)</text>\n",
        WIDTH / 2.0
    );
    if points.is_empty() {
        svg.push_str(
            "<text x=\"50%\" y=\"50%\" text-anchor=\"middle\">no curve runs</text>\n</svg>\n",
        );
        return svg;
    }
    let scale = Scale::of(points);
    axes(&mut svg, &scale, points);
    for (index, (label, colour, dash, value)) in LINES.iter().enumerate() {
        let coordinates: Vec<String> = points
            .iter()
            .map(|p| {
                let ms = value(p) as f64 / 1_000.0;
                format!("{:.1},{:.1}", scale.x(p.offered as f64), scale.y(ms))
            })
            .collect();
        for xy in &coordinates {
            let (x, y) = xy.split_once(',').unwrap_or_default();
            let _ = writeln!(
                svg,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>"
            );
        }
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" \
             stroke-dasharray=\"{dash}\" points=\"{}\"/>",
            coordinates.join(" ")
        );
        let y = TOP + 20.0 + 20.0 * index as f64;
        let x = WIDTH - RIGHT + 20.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{colour}\" \
             stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>\
             <text x=\"{}\" y=\"{}\">{label}</text>",
            x + 30.0,
            x + 36.0,
            y + 4.0
        );
    }
    for point in points.iter().filter(|p| p.saturated.is_some()) {
        let x = scale.x(point.offered as f64);
        let _ = writeln!(
            svg,
            "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">saturated</text>",
            TOP + 12.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Frame, ticks and labels of both axes, and the 10 ms ingest p99 target.
fn axes(svg: &mut String, scale: &Scale, points: &[CurvePoint]) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (y0, y1) = (HEIGHT - BOTTOM, TOP);
    let _ = writeln!(
        svg,
        "<rect x=\"{x0}\" y=\"{y1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>",
        x1 - x0,
        y0 - y1
    );
    for point in points {
        let x = scale.x(point.offered as f64);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{y0}\" x2=\"{x:.1}\" y2=\"{y1}\" stroke=\"#eee\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            y0 + 16.0,
            short_rate(point.offered)
        );
    }
    let mut decade = FLOOR_MS.log10().round() as i32;
    while f64::from(decade) <= scale.y_max {
        let ms = 10f64.powi(decade);
        let y = scale.y(ms);
        let label = if ms < 1.0 {
            format!("{ms:.1}")
        } else {
            format!("{ms:.0}")
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            x0 - 6.0,
            y + 4.0
        );
        decade += 1;
    }
    let target = scale.y(10.0);
    let _ = writeln!(
        svg,
        "<line x1=\"{x0}\" y1=\"{target:.1}\" x2=\"{x1}\" y2=\"{target:.1}\" stroke=\"#2ca02c\" \
         stroke-dasharray=\"2 3\"/><text x=\"{}\" y=\"{:.1}\" fill=\"#2ca02c\">10 ms (ingest \
         p99 target)</text>",
        x0 + 6.0,
        target - 4.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">offered rate, events/s (log scale)</text>\
         <text transform=\"translate(18 {}) rotate(-90)\" text-anchor=\"middle\">latency, ms \
         (log scale)</text>",
        (x0 + x1) / 2.0,
        HEIGHT - 18.0,
        (y0 + y1) / 2.0
    );
}

/// `3300` → `3.3k`, `20000` → `20k`.
fn short_rate(rate: u64) -> String {
    if rate < 1_000 {
        return rate.to_string();
    }
    let thousands = rate as f64 / 1_000.0;
    if thousands.fract() == 0.0 {
        format!("{thousands:.0}k")
    } else {
        format!("{thousands:.1}k")
    }
}
