//! WCAG contrast of the colour pairs the style sheet uses for text and controls, in both
//! themes: text at least 4.5:1 (AA), focus outlines at least 3:1.

use std::collections::HashMap;

/// The style sheet the app ships.
const STYLE: &str = include_str!("../static/style.css");

/// The `--name: #rrggbb;` variables of the block that starts at `selector`.
fn variables(selector: &str) -> HashMap<String, [f64; 3]> {
    let start = STYLE.find(selector).unwrap_or_else(|| panic!("no {selector} block")) + selector.len();
    let block = &STYLE[start..start + STYLE[start..].find('}').expect("a closed block")];
    block
        .split(';')
        .filter_map(|decl| {
            let (name, value) = decl.trim().split_once(':')?;
            let hex = value.trim().strip_prefix('#')?;
            if hex.len() != 6 {
                return None;
            }
            let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok().map(f64::from);
            Some((name.trim().to_owned(), [channel(0)?, channel(2)?, channel(4)?]))
        })
        .collect()
}

/// WCAG relative luminance.
fn luminance(rgb: [f64; 3]) -> f64 {
    let linear = |c: f64| {
        let c = c / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * linear(rgb[0]) + 0.7152 * linear(rgb[1]) + 0.0722 * linear(rgb[2])
}

/// WCAG contrast ratio of two colours.
fn contrast(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

#[test]
fn text_and_controls_have_enough_contrast_in_both_themes() {
    let light = variables(":root {");
    let mut dark = light.clone();
    dark.extend(variables("[data-theme=\"dark\"] {"));
    let text_pairs: &[(&str, &[&str])] = &[
        (
            "--text",
            &[
                "--bg",
                "--bg-soft",
                "--bg-sidebar",
                "--bg-hover",
                "--bg-active",
                "--bubble",
                "--code-bg",
                "--code-head",
            ],
        ),
        (
            "--text-muted",
            &[
                "--bg",
                "--bg-soft",
                "--bg-sidebar",
                "--bg-hover",
                "--bubble",
                "--code-head",
            ],
        ),
        ("--accent", &["--bg", "--bg-soft"]),
        ("--accent-text", &["--accent"]),
        ("--danger", &["--bg", "--danger-soft"]),
        ("--ok", &["--bg"]),
        ("--hl-keyword", &["--code-bg"]),
        ("--hl-string", &["--code-bg"]),
        ("--hl-number", &["--code-bg"]),
        ("--hl-comment", &["--code-bg"]),
        ("--hl-title", &["--code-bg"]),
        ("--hl-type", &["--code-bg"]),
        ("--hl-attr", &["--code-bg"]),
    ];
    let mut failures = Vec::new();
    for (theme, colours) in [("light", &light), ("dark", &dark)] {
        let get = |name: &str| *colours.get(name).unwrap_or_else(|| panic!("{theme}: no {name}"));
        for (fg, backgrounds) in text_pairs {
            for bg in backgrounds.iter() {
                let ratio = contrast(get(fg), get(bg));
                if ratio < 4.5 {
                    failures.push(format!("{theme}: {fg} on {bg} is {ratio:.2}:1"));
                }
            }
        }
        for bg in ["--bg", "--bg-sidebar", "--bg-input"] {
            let ratio = contrast(get("--focus"), get(bg));
            if ratio < 3.0 {
                failures.push(format!("{theme}: focus outline on {bg} is {ratio:.2}:1"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_ratio_is_computed_as_wcag_says() {
    assert!((contrast([0.0; 3], [255.0; 3]) - 21.0).abs() < 1e-9);
    assert!((contrast([119.0; 3], [255.0; 3]) - 4.48).abs() < 0.01);
}
