//! The vision half on its own: positions, resizing, patch order, the encoder batched.

use std::sync::Arc;

use super::positions::ImageGrid;
use super::preprocess::smart_resize;
use super::*;

fn processing(patch: usize, min_pixels: usize, max_pixels: usize) -> ImageProcessing {
    ImageProcessing {
        patch_size: patch,
        merge_size: 2,
        temporal_patch_size: 2,
        min_pixels,
        max_pixels,
        mean: [0.5; 3],
        std: [0.5; 3],
    }
}

#[test]
fn text_positions_are_the_ordinary_ones() {
    let (positions, delta) = mrope_positions(5, &[]).unwrap();
    assert_eq!(positions, (0..5).map(|p| [p; 3]).collect::<Vec<_>>());
    assert_eq!(delta, 0);
}

#[test]
fn an_image_sits_on_its_grid_and_text_continues_after_its_longer_side() {
    // Hugging Face's get_rope_index for [t t <img 2x3> t]: text 0, 1; the image at base 2
    // on rows 2..4 and columns 2..5; the last token at 2 + max(2, 3) = 5.
    let grid = ImageGrid {
        start: 2,
        rows: 2,
        cols: 3,
    };
    let (positions, delta) = mrope_positions(9, &[grid]).unwrap();
    assert_eq!(
        positions,
        vec![
            [0, 0, 0],
            [1, 1, 1],
            [2, 2, 2],
            [2, 2, 3],
            [2, 2, 4],
            [2, 3, 2],
            [2, 3, 3],
            [2, 3, 4],
            [5, 5, 5],
        ]
    );
    // Nine tokens end at position 5: later tokens are 3 positions behind their index.
    assert_eq!(delta, -3);
    let two = [
        ImageGrid {
            start: 0,
            rows: 1,
            cols: 1,
        },
        ImageGrid {
            start: 1,
            rows: 2,
            cols: 2,
        },
    ];
    let (positions, delta) = mrope_positions(6, &two).unwrap();
    assert_eq!(
        positions,
        vec![[0, 0, 0], [1, 1, 1], [1, 1, 2], [1, 2, 1], [1, 2, 2], [3, 3, 3]]
    );
    assert_eq!(delta, -2);
}

#[test]
fn overlapping_or_outside_images_are_refused() {
    let a = ImageGrid {
        start: 0,
        rows: 2,
        cols: 2,
    };
    let b = ImageGrid {
        start: 3,
        rows: 1,
        cols: 1,
    };
    assert!(mrope_positions(8, &[a, b]).is_err(), "overlap");
    assert!(mrope_positions(3, &[a]).is_err(), "past the end");
}

#[test]
fn interleaved_sections_share_the_frequencies_as_qwen3_vl_does() {
    // mrope_section [24, 20, 20] over 64 frequencies: rows at 1, 4, ..., 58, columns at
    // 2, 5, ..., 59, time at the rest.
    let axes = MropeSection([24, 20, 20]).axes(64);
    assert_eq!(axes.iter().filter(|&&a| a == 1).count(), 20);
    assert_eq!(axes.iter().filter(|&&a| a == 2).count(), 20);
    assert_eq!(axes.iter().filter(|&&a| a == 0).count(), 24);
    assert_eq!(&axes[..6], &[0, 1, 2, 0, 1, 2]);
    assert_eq!(&axes[57..], &[0, 1, 2, 0, 0, 0, 0]);
}

#[test]
fn smart_resize_rounds_to_merged_patches_within_the_budget() {
    let p = processing(16, 65_536, 16_777_216);
    // Python rounds half to even: 80 / 32 = 2.5 gives 2.
    assert_eq!(smart_resize(1000, 1000, &p).0 % 32, 0);
    assert_eq!(smart_resize(512, 512, &p), (512, 512));
    // Small images grow to the minimum pixels, large ones shrink to the maximum.
    let (h, w) = smart_resize(1, 1, &p);
    assert!(h * w >= 65_536 && h % 32 == 0 && w % 32 == 0, "{h}x{w}");
    let (h, w) = smart_resize(10_000, 10_000, &processing(16, 1024, 1024 * 1024));
    assert!(h * w <= 1024 * 1024 && h == w, "{h}x{w}");
    let ties = processing(16, 32 * 32, 1 << 30);
    assert_eq!(smart_resize(80, 96, &ties), (64, 96), "80/32 = 2.5 rounds to 2");
    // A 1 × 2000 sliver is widened to 1:200 rather than refused.
    let (h, w) = smart_resize(1, 2000, &p);
    assert!(h >= 32 && w / h <= 200, "{h}x{w}");
}

/// A PNG of `width × height` with distinct pixel values.
fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn patches_go_merged_patch_by_merged_patch() {
    // 8 × 8 pixels in patches of 2, merged 2 × 2: a 4 × 4 patch grid, 2 × 2 tokens.
    let p = processing(2, 16, 64);
    let image = prepare_image(&png(8, 8), &p).unwrap();
    assert_eq!(
        (image.patch_rows, image.patch_cols, image.token_rows, image.token_cols),
        (4, 4, 2, 2)
    );
    let values = 3 * 2 * 2 * 2;
    assert_eq!(image.patches.len(), 16 * values);
    // The third patch row is patch (1, 0): its first value is red of pixel (x 0, y 2).
    let red = |x: u32, _y: u32| ((x * 7 % 256) as f32 / 255.0 - 0.5) / 0.5;
    assert!((image.patches[2 * values] - red(0, 2)).abs() < 1e-6);
    // The fifth is patch (0, 2), the first of the second merged patch: pixel (4, 0).
    assert!((image.patches[4 * values] - red(4, 0)).abs() < 1e-6);
    // Both frames of a still image are the same.
    assert_eq!(image.patches[..4], image.patches[4..8]);
}

#[test]
fn images_encoded_together_match_images_encoded_alone() {
    let dir = tempfile::tempdir().unwrap();
    crate::engine::tiny::write_tiny_qwen3_vl(dir.path(), 5, &crate::engine::tiny::TinyVisionShape::default()).unwrap();
    let config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    let config: VisionConfig = serde_json::from_value(config_json["vision_config"].clone()).unwrap();
    let processing = ImageProcessing::from_json(&config, None).unwrap();
    let processing = ImageProcessing {
        min_pixels: 64,
        max_pixels: 4096,
        ..processing
    };
    let encoder = VisionEncoder::load(
        config,
        &[dir.path().join("model.safetensors")],
        "model.visual",
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let a = Arc::new(prepare_image(&png(16, 24), &processing).unwrap());
    let b = Arc::new(prepare_image(&png(40, 8), &processing).unwrap());
    assert_eq!((a.token_rows, a.token_cols), (3, 2));
    let together = encoder.encode(&[&a, &b]).unwrap();
    let alone = [encoder.encode(&[&a]).unwrap(), encoder.encode(&[&b]).unwrap()];
    for (t, alone) in together.iter().zip(alone.iter().map(|f| &f[0])) {
        assert_eq!(t.embeds.dims(), &[alone.embeds.dim(0).unwrap(), 64]);
        let diff = (&t.embeds - &alone.embeds)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
        assert_eq!(t.deepstack.len(), 2);
    }
}
