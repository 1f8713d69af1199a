//! A text console on the firmware framebuffer (real PCs rarely have a serial port).

use bootloader_api::info::{FrameBufferInfo, PixelFormat};
use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};

const FONT_HEIGHT: RasterHeight = RasterHeight::Size16;
const LINE_HEIGHT: usize = 18;
const MARGIN: usize = 4;

/// Text drawn into a linear framebuffer, scrolling when it reaches the bottom.
pub struct FramebufferConsole {
    buf: &'static mut [u8],
    info: FrameBufferInfo,
    x: usize,
    y: usize,
}

impl FramebufferConsole {
    /// Take over the framebuffer and clear it.
    pub fn new(buf: &'static mut [u8], info: FrameBufferInfo) -> FramebufferConsole {
        let c = FramebufferConsole {
            buf,
            info,
            x: MARGIN,
            y: MARGIN,
        };
        c.buf.fill(0);
        c
    }

    fn char_width() -> usize {
        get_raster_width(FontWeight::Regular, FONT_HEIGHT)
    }

    /// Columns and rows of text that fit.
    pub fn size(&self) -> (usize, usize) {
        (
            (self.info.width - 2 * MARGIN) / Self::char_width(),
            (self.info.height - 2 * MARGIN) / LINE_HEIGHT,
        )
    }

    fn newline(&mut self) {
        self.x = MARGIN;
        self.y += LINE_HEIGHT;
        if self.y + LINE_HEIGHT + MARGIN > self.info.height {
            // Scroll a quarter screen at once: moving the whole framebuffer is the costly
            // part, so doing it less often keeps a chatty console fast.
            let rows = (self.size().1 / 4).max(1);
            let shift = rows * LINE_HEIGHT * self.info.stride * self.info.bytes_per_pixel;
            let len = self
                .buf
                .len()
                .min(self.info.height * self.info.stride * self.info.bytes_per_pixel);
            self.buf.copy_within(shift..len, 0);
            self.buf[len - shift..len].fill(0);
            self.y -= rows * LINE_HEIGHT;
        }
    }

    fn put_pixel(&mut self, x: usize, y: usize, intensity: u8) {
        let bpp = self.info.bytes_per_pixel;
        let off = (y * self.info.stride + x) * bpp;
        let Some(px) = self.buf.get_mut(off..off + bpp) else {
            return;
        };
        let color = [intensity, intensity, (intensity as u32 * 3 / 4) as u8];
        match self.info.pixel_format {
            PixelFormat::Rgb => px[..3].copy_from_slice(&color),
            PixelFormat::Bgr => px[..3].copy_from_slice(&[color[2], color[1], color[0]]),
            PixelFormat::U8 => px[0] = intensity,
            _ => px[0] = intensity,
        }
    }

    fn write_char(&mut self, c: char) {
        match c {
            '\n' => self.newline(),
            '\r' => self.x = MARGIN,
            '\u{8}' => self.x = self.x.saturating_sub(Self::char_width()).max(MARGIN),
            c => {
                let w = Self::char_width();
                if self.x + w + MARGIN > self.info.width {
                    self.newline();
                }
                let raster = get_raster(c, FontWeight::Regular, FONT_HEIGHT)
                    .or_else(|| get_raster('?', FontWeight::Regular, FONT_HEIGHT));
                if let Some(r) = raster {
                    for (dy, row) in r.rows().enumerate() {
                        for (dx, &v) in row.iter().enumerate() {
                            self.put_pixel(self.x + dx, self.y + dy, v);
                        }
                    }
                }
                self.x += w;
            }
        }
    }

    /// Number of non-black pixels in the text area (used by tests to see that text was drawn).
    pub fn lit_pixels(&self) -> usize {
        self.buf
            .chunks(self.info.bytes_per_pixel)
            .filter(|p| p.iter().any(|&b| b != 0))
            .count()
    }
}

impl core::fmt::Write for FramebufferConsole {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            self.write_char(c);
        }
        Ok(())
    }
}
