//! Horizontal stacked bar charts as PNG, drawn pixel by pixel with an 8×8
//! bitmap font: no font files, no drawing library, a small dependency
//! footprint (`png`, `font8x8`). Used for `bench/boot-timeline.png`.

use std::path::Path;

use anyhow::{Context, Result};
use font8x8::legacy::BASIC_LEGACY;

/// One bar: a label and its segments (seconds), left to right.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Shown left of the bar.
    pub label: String,
    /// Segment lengths, one per legend entry; NaN or ≤ 0 draws nothing.
    pub segments: Vec<f64>,
}

const W: usize = 1100;
const LEFT: usize = 200;
const RIGHT: usize = 40;
const TOP: usize = 50;
const BAR_H: usize = 34;
const GAP: usize = 18;
const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [20, 20, 20];
const GREY: [u8; 3] = [200, 200, 200];
const PALETTE: &[[u8; 3]] = &[
    [120, 120, 120],
    [66, 133, 244],
    [251, 188, 5],
    [52, 168, 83],
    [234, 67, 53],
    [155, 89, 182],
    [0, 172, 193],
];

/// An RGB canvas.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            px: WHITE.repeat(w * h),
        }
    }

    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let i = (y * self.w + x) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }

    /// Text with the 8×8 font scaled by `s`; returns its width.
    fn text(&mut self, x: usize, y: usize, s: usize, t: &str, c: [u8; 3]) -> usize {
        for (i, ch) in t.chars().enumerate() {
            let glyph = BASIC_LEGACY
                .get(ch as usize)
                .copied()
                .unwrap_or(BASIC_LEGACY[b'?' as usize]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        self.rect(x + (i * 8 + col) * s, y + row * s, s, s, c);
                    }
                }
            }
        }
        text_width(t, s)
    }
}

/// Width in pixels of `t` at scale `s`.
pub fn text_width(t: &str, s: usize) -> usize {
    t.chars().count() * 8 * s
}

/// A tick step giving about six ticks up to `max`.
pub fn tick_step(max: f64) -> f64 {
    let raw = (max / 6.0).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Draws `bars` (seconds) with `legend` names for the segments into an RGB
/// buffer; returns (width, height, pixels).
pub fn draw(title: &str, legend: &[&str], bars: &[Bar]) -> (usize, usize, Vec<u8>) {
    let legend_rows = legend.len().div_ceil(3);
    let plot_h = bars.len() * (BAR_H + GAP);
    let h = TOP + plot_h + 40 + legend_rows * 22 + 20;
    let mut c = Canvas::new(W, h);
    c.text(LEFT.min(20), 15, 2, title, BLACK);
    let total = |b: &Bar| {
        b.segments
            .iter()
            .filter(|v| v.is_finite() && **v > 0.0)
            .sum::<f64>()
    };
    let max = bars.iter().map(total).fold(0.0, f64::max).max(1.0);
    let step = tick_step(max);
    let axis_max = (max / step).ceil() * step;
    let plot_w = W - LEFT - RIGHT;
    let xpos = |v: f64| LEFT + ((v / axis_max) * plot_w as f64).round() as usize;
    // Grid and tick labels.
    let mut v = 0.0;
    while v <= axis_max + 1e-9 {
        let x = xpos(v);
        for y in TOP - 5..TOP + plot_h {
            c.set(x, y, GREY);
        }
        let label = format!("{v:.0}");
        let tw = text_width(&label, 1);
        c.text(x.saturating_sub(tw / 2), TOP + plot_h + 4, 1, &label, BLACK);
        v += step;
    }
    c.text(
        LEFT + plot_w / 2 - text_width("seconds since QEMU start", 1) / 2,
        TOP + plot_h + 18,
        1,
        "seconds since QEMU start",
        BLACK,
    );
    for (i, b) in bars.iter().enumerate() {
        let y = TOP + i * (BAR_H + GAP);
        c.text(8, y + BAR_H / 2 - 4, 1, &b.label, BLACK);
        let mut at = 0.0;
        for (j, seg) in b.segments.iter().enumerate() {
            if !seg.is_finite() || *seg <= 0.0 {
                continue;
            }
            let (x0, x1) = (xpos(at), xpos(at + seg));
            let color = PALETTE[j % PALETTE.len()];
            c.rect(x0, y, x1.saturating_sub(x0).max(1), BAR_H, color);
            let label = format!("{seg:.1}");
            if x1 - x0 > text_width(&label, 1) + 4 {
                c.text(x0 + 3, y + BAR_H / 2 - 4, 1, &label, WHITE);
            }
            at += seg;
        }
        let total_label = format!("{at:.1} s");
        c.text(xpos(at) + 4, y + BAR_H / 2 - 4, 1, &total_label, BLACK);
    }
    let ly = TOP + plot_h + 40;
    for (j, name) in legend.iter().enumerate() {
        let x = 20 + (j % 3) * 360;
        let y = ly + (j / 3) * 22;
        c.rect(x, y, 14, 14, PALETTE[j % PALETTE.len()]);
        c.text(x + 20, y + 3, 1, name, BLACK);
    }
    (W, h, c.px)
}

/// Writes the chart as an 8-bit RGB PNG.
pub fn write_png(path: &Path, title: &str, legend: &[&str], bars: &[Bar]) -> Result<()> {
    let (w, h, px) = draw(title, legend, bars);
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(&px)?;
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(30.0), 5.0);
        assert_eq!(tick_step(6.0), 1.0);
        assert_eq!(tick_step(100.0), 20.0);
    }

    #[test]
    fn bars_are_drawn_in_their_colours_and_proportions() {
        let bars = vec![
            Bar {
                label: "a".into(),
                segments: vec![10.0, 10.0],
            },
            Bar {
                label: "b".into(),
                segments: vec![5.0, f64::NAN],
            },
        ];
        let (w, h, px) = draw("t", &["x", "y"], &bars);
        let at = |x: usize, y: usize| {
            let i = (y * w + x) * 3;
            [px[i], px[i + 1], px[i + 2]]
        };
        assert_eq!(px.len(), w * h * 3);
        // Axis max is 20 (step 5): bar a's first segment ends half-way.
        let plot_w = W - LEFT - RIGHT;
        let y_a = TOP + 2;
        assert_eq!(at(LEFT + plot_w / 4, y_a), PALETTE[0]);
        assert_eq!(at(LEFT + plot_w * 3 / 4, y_a), PALETTE[1]);
        let y_b = TOP + BAR_H + GAP + 2;
        assert_eq!(at(LEFT + plot_w / 8, y_b), PALETTE[0]);
        assert_eq!(at(LEFT + plot_w * 7 / 10, y_b + BAR_H / 2 + 6), WHITE);
    }

    #[test]
    fn png_file_has_the_signature() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.png");
        write_png(
            &p,
            "t",
            &["x"],
            &[Bar {
                label: "a".into(),
                segments: vec![1.0],
            }],
        )
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}
