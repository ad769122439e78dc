//! Plans: every number a model node trains or predicts with, as data (nnU-Net's plans).
//!
//! A profile (`pipelines/profiles/<name>.yaml`) holds one section per model step; the
//! pipeline's `plan` param overrides single entries (`--set plan.overall.lr=0.001`). The
//! `rsna.plan` node writes one JSON file per section, so a model node's key holds its own
//! numbers and nothing else: changing one entry re-runs the nodes that use it and no others.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, Rsna7Error};
use crate::overall::OverallRecipe;
use crate::segnet::{InferencePlan, SegRecipe};
use crate::stage1::STAGE1_CLASSES;

/// The profiles built into the binary (the files under `pipelines/profiles/`).
pub const PROFILES: [&str; 3] = ["tiny", "demo", "full"];

/// The sections of a profile, in file order; `rsna.plan` writes one `<section>.json` each.
pub const SECTIONS: [&str; 8] = [
    "stage1_lowres",
    "stage1_fullres",
    "roi",
    "fracture_round0",
    "fracture_round1",
    "fracture_round2",
    "fracture_round3",
    "overall",
];

/// The models that predict, in the order of [`InferencePlans`]: each has an inference entry
/// and `rsna.plan` writes `inference_<model>.json` for it.
pub const PREDICTING: [&str; 5] = [
    "stage1_lowres",
    "stage1_fullres",
    "fracture_round1",
    "fracture_round2",
    "fracture_round3",
];

/// How each predicting model predicts (the profile's `inference` section). Apart from the
/// training sections, so that an inference entry re-runs predictions, never training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferencePlans {
    pub stage1_lowres: InferencePlan,
    pub stage1_fullres: InferencePlan,
    pub fracture_round1: InferencePlan,
    pub fracture_round2: InferencePlan,
    pub fracture_round3: InferencePlan,
}

impl InferencePlans {
    /// The entry of a model of [`PREDICTING`].
    pub fn get(&self, model: &str) -> Option<&InferencePlan> {
        Some(match model {
            "stage1_lowres" => &self.stage1_lowres,
            "stage1_fullres" => &self.stage1_fullres,
            "fracture_round1" => &self.fracture_round1,
            "fracture_round2" => &self.fracture_round2,
            "fracture_round3" => &self.fracture_round3,
            _ => return None,
        })
    }
}

/// One profile's numbers. Seeds are not here: they are node params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plans {
    /// Stage 1, low resolution: background, C1..C7, T1; the whole neck in one window.
    pub stage1_lowres: SegRecipe,
    /// Stage 1, full resolution inside the low-resolution spine box.
    pub stage1_fullres: SegRecipe,
    /// The stage-2 region of interest.
    pub roi: RoiPlan,
    /// The label-free start: synthetic cracks on every training study's vertebrae, no labels
    /// (the weights later rounds and round 3's folds start from).
    pub fracture_round0: SegRecipe,
    pub fracture_round1: SegRecipe,
    pub fracture_round2: SegRecipe,
    pub fracture_round3: SegRecipe,
    /// The stage-3 `patient_overall` classifier.
    pub overall: OverallRecipe,
    /// Sliding-window steps and test-time mirroring of the predicting models.
    pub inference: InferencePlans,
}

/// The grid of the stage-2 region of interest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoiPlan {
    /// Voxel spacing `[x, y, z]` in mm.
    pub spacing_xyz: [f64; 3],
}

impl Plans {
    /// A built-in profile (`tiny`, `demo` or `full`).
    pub fn builtin(profile: &str) -> Result<Plans> {
        let text = builtin_text(profile)?;
        Plans::from_yaml(text, &format!("profiles/{profile}.yaml"), &Map::new())
    }

    /// Parses a profile and applies `overrides` (a nested map of entries, as the pipeline's
    /// `plan` param holds them); `origin` names the file in errors.
    pub fn from_yaml(text: &str, origin: &str, overrides: &Map<String, Value>) -> Result<Plans> {
        // Parsed typed first, so that a mistake in the file is reported with its line.
        let plans: Plans = serde_yaml::from_str(text)
            .map_err(|e| Rsna7Error::Invalid(format!("{origin}: {e}")))?;
        let plans = if overrides.is_empty() {
            plans
        } else {
            let mut doc = serde_json::to_value(&plans).expect("plans serialise");
            apply_overrides(&mut doc, overrides, "plan")?;
            serde_json::from_value(doc).map_err(|e| {
                Rsna7Error::Invalid(format!("{origin} with the `plan` overrides: {e}"))
            })?
        };
        plans.validate().map_err(|e| match e {
            Rsna7Error::Invalid(m) => Rsna7Error::Invalid(format!("{origin}: {m}")),
            other => other,
        })?;
        Ok(plans)
    }

    /// Checks what serde cannot: nets that build, patches the nets can take, positive sizes.
    pub fn validate(&self) -> Result<()> {
        let invalid = |s: &str, m: String| Err(Rsna7Error::Invalid(format!("`{s}`: {m}")));
        for name in SECTIONS {
            let Some(r) = self.segmentation(name) else {
                continue;
            };
            if let Err(e) = r.net.validate() {
                return invalid(name, format!("net: {e}"));
            }
            let div = r.net.size_divisor();
            if (0..3).any(|a| r.patch_zyx[a] == 0 || r.patch_zyx[a] % div[a] != 0) {
                return invalid(
                    name,
                    format!(
                        "patch_zyx {:?} must be positive multiples of the net's divisor {div:?}",
                        r.patch_zyx
                    ),
                );
            }
            if r.epochs == 0 || r.iterations == 0 || r.batch == 0 || !positive(r.lr) {
                return invalid(
                    name,
                    "epochs, iterations, batch and lr must be positive".into(),
                );
            }
            if !r.spacing_xyz.iter().all(|s| positive(*s)) {
                return invalid(
                    name,
                    format!("spacing_xyz {:?} must be positive", r.spacing_xyz),
                );
            }
            let unit = 0.0..=1.0;
            if !(unit.contains(&r.p_foreground) && unit.contains(&r.synthetic_fracture_p)) {
                return invalid(
                    name,
                    "p_foreground and synthetic_fracture_p must lie in [0, 1]".into(),
                );
            }
        }
        for name in PREDICTING {
            if let Some(Err(m)) = self.inference.get(name).map(InferencePlan::validate) {
                return invalid(&format!("inference.{name}"), m);
            }
        }
        let classes = |name: &str, r: &SegRecipe, allowed: &[usize]| {
            if allowed.contains(&r.net.num_classes) {
                Ok(())
            } else {
                invalid(
                    name,
                    format!(
                        "net.num_classes is {}, expected one of {allowed:?}",
                        r.net.num_classes
                    ),
                )
            }
        };
        classes("stage1_lowres", &self.stage1_lowres, &[STAGE1_CLASSES])?;
        classes("stage1_fullres", &self.stage1_fullres, &[2, STAGE1_CLASSES])?;
        for (i, r) in self.fracture_rounds().iter().enumerate() {
            classes(&format!("fracture_round{i}"), r, &[2])?;
        }
        let inputs = |name: &str, r: &SegRecipe, base: usize| {
            let want = base + usize::from(r.position_channel);
            if r.net.in_channels == want {
                Ok(())
            } else {
                invalid(
                    name,
                    format!(
                        "net.in_channels is {}, expected {want} (CT{})",
                        r.net.in_channels,
                        if r.position_channel {
                            " + the height channel"
                        } else {
                            ""
                        }
                    ),
                )
            }
        };
        inputs("stage1_lowres", &self.stage1_lowres, 1)?;
        for (i, r) in self.fracture_rounds().iter().enumerate() {
            inputs(&format!("fracture_round{i}"), r, 1)?;
        }
        if self.fracture_round0.synthetic_fracture_p <= 0.0 {
            return invalid(
                "fracture_round0",
                "synthetic_fracture_p must be above 0: the label-free start learns from \
                 synthetic cracks only"
                    .into(),
            );
        }
        if self.roi.spacing_xyz.iter().any(|s| !positive(*s)) {
            return invalid(
                "roi",
                format!("spacing_xyz {:?} must be positive", self.roi.spacing_xyz),
            );
        }
        let o = &self.overall;
        if o.size < 8 || o.batch == 0 || o.epochs == 0 || o.iterations == 0 || !positive(o.lr) {
            return invalid(
                "overall",
                "size must be at least 8; batch, epochs, iterations and lr positive".into(),
            );
        }
        Ok(())
    }

    /// The recipe of a segmentation section (`None` for `roi` and `overall`).
    pub fn segmentation(&self, section: &str) -> Option<&SegRecipe> {
        Some(match section {
            "stage1_lowres" => &self.stage1_lowres,
            "stage1_fullres" => &self.stage1_fullres,
            "fracture_round0" => &self.fracture_round0,
            "fracture_round1" => &self.fracture_round1,
            "fracture_round2" => &self.fracture_round2,
            "fracture_round3" => &self.fracture_round3,
            _ => return None,
        })
    }

    /// Rounds 0 to 3, in order.
    fn fracture_rounds(&self) -> [&SegRecipe; 4] {
        [
            &self.fracture_round0,
            &self.fracture_round1,
            &self.fracture_round2,
            &self.fracture_round3,
        ]
    }

    /// One section as JSON, without the seed (a node param): what `<section>.json` holds.
    pub fn section_json(&self, section: &str) -> Result<Value> {
        let mut doc = serde_json::to_value(self).expect("plans serialise");
        let mut v = doc
            .get_mut(section)
            .map(Value::take)
            .ok_or_else(|| unknown_section(section))?;
        if let Some(m) = v.as_object_mut() {
            m.remove("seed");
        }
        Ok(v)
    }
}

impl Plans {
    /// A predicting model's inference entry as JSON: what `inference_<model>.json` holds.
    pub fn inference_json(&self, model: &str) -> Result<Value> {
        let plan = self.inference.get(model).ok_or_else(|| {
            Rsna7Error::Invalid(format!(
                "no inference entry `{model}`: the predicting models are {}",
                PREDICTING.join(", ")
            ))
        })?;
        Ok(serde_json::to_value(plan).expect("plans serialise"))
    }
}

/// A finite number above zero (NaN is not).
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

fn unknown_section(section: &str) -> Rsna7Error {
    Rsna7Error::Invalid(format!(
        "no plan section `{section}`: the sections are {}",
        SECTIONS.join(", ")
    ))
}

/// The text of a built-in profile.
pub fn builtin_text(profile: &str) -> Result<&'static str> {
    Ok(match profile {
        "tiny" => include_str!("../../../pipelines/profiles/tiny.yaml"),
        "demo" => include_str!("../../../pipelines/profiles/demo.yaml"),
        "full" => include_str!("../../../pipelines/profiles/full.yaml"),
        _ => {
            return Err(Rsna7Error::Invalid(format!(
                "unknown profile `{profile}`: use one of {}",
                PROFILES.join(", ")
            )))
        }
    })
}

/// Sets each leaf of `overrides` at the same path in `doc`. Every path must exist: a typo is
/// an error naming the path and the entries that exist there, never a silently ignored value.
pub fn apply_overrides(doc: &mut Value, overrides: &Map<String, Value>, at: &str) -> Result<()> {
    for (k, v) in overrides {
        let path = format!("{at}.{k}");
        let Some(slot) = doc.as_object_mut().and_then(|m| m.get_mut(k)) else {
            let known: Vec<String> = doc
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            return Err(Rsna7Error::Invalid(format!(
                "`{path}`: no such plan entry (entries here: {})",
                known.join(", ")
            )));
        };
        match (v, &*slot) {
            (Value::Object(inner), Value::Object(_)) => apply_overrides(slot, inner, &path)?,
            (Value::Object(_), _) => {
                return Err(Rsna7Error::Invalid(format!(
                    "`{path}` is a value, not a section: set it with `--set {path}=<value>`"
                )))
            }
            (_, Value::Object(m)) => {
                return Err(Rsna7Error::Invalid(format!(
                    "`{path}` is a section: set one of its entries ({})",
                    m.keys().cloned().collect::<Vec<_>>().join(", ")
                )))
            }
            _ => *slot = v.clone(),
        }
    }
    Ok(())
}

/// What the training studies look like (nnU-Net's dataset fingerprint), from the conversion's
/// per-study JSON: recorded in plans.json next to the numbers it is checked against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetFingerprint {
    pub studies: usize,
    /// Median voxel spacing `[x, y, z]` in mm.
    pub median_spacing_xyz: [f64; 3],
    /// Median volume size `[x, y, z]` in voxels.
    pub median_shape_xyz: [usize; 3],
    /// Median field of view `[x, y, z]` in mm.
    pub median_extent_mm: [f64; 3],
}

/// The conversion report fields the fingerprint reads.
#[derive(Deserialize)]
struct SeriesGeometry {
    slices: usize,
    rows: u32,
    columns: u32,
    /// `[between rows, between columns]`.
    pixel_spacing: [f64; 2],
    spacing: SliceSpacing,
}

#[derive(Deserialize)]
struct SliceSpacing {
    slice_spacing: f64,
}

impl DatasetFingerprint {
    /// Reads every `<UID>.json` of a converted-volumes folder (`dicom.to_nifti`).
    pub fn from_volumes(dir: &Path) -> Result<DatasetFingerprint> {
        let mut rows: Vec<([f64; 3], [usize; 3])> = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| Rsna7Error::io(dir, e))?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for path in &paths {
            let g: SeriesGeometry = crate::error::read_json(path)?;
            rows.push((
                [
                    g.pixel_spacing[1],
                    g.pixel_spacing[0],
                    g.spacing.slice_spacing,
                ],
                [g.columns as usize, g.rows as usize, g.slices],
            ));
        }
        if rows.is_empty() {
            return Err(Rsna7Error::BadFile {
                path: dir.into(),
                message: "no converted study (<UID>.json): nothing to fingerprint".into(),
            });
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                0.5 * (v[n / 2 - 1] + v[n / 2])
            }
        };
        let spacing: [f64; 3] =
            std::array::from_fn(|a| median(rows.iter().map(|r| r.0[a]).collect()));
        let shape: [usize; 3] = std::array::from_fn(|a| {
            median(rows.iter().map(|r| r.1[a] as f64).collect()).round() as usize
        });
        let extent: [f64; 3] =
            std::array::from_fn(|a| median(rows.iter().map(|r| r.0[a] * r.1[a] as f64).collect()));
        Ok(DatasetFingerprint {
            studies: rows.len(),
            median_spacing_xyz: spacing,
            median_shape_xyz: shape,
            median_extent_mm: extent,
        })
    }

    /// Where the plans look odd for this data: a grid much finer than the scans (the model
    /// sees interpolation, not detail) or a fine window larger than the scans themselves.
    pub fn warnings(&self, plans: &Plans) -> Vec<String> {
        let mut out = Vec::new();
        for name in SECTIONS {
            let Some(r) = plans.segmentation(name) else {
                continue;
            };
            let finest_scan = self
                .median_spacing_xyz
                .iter()
                .cloned()
                .fold(f64::INFINITY, f64::min);
            let finest_plan = r.spacing_xyz.iter().cloned().fold(f64::INFINITY, f64::min);
            if finest_plan * 2.0 < finest_scan {
                out.push(format!(
                    "`{name}`: spacing {:?} mm is less than half the scans' median {:?} mm",
                    r.spacing_xyz, self.median_spacing_xyz
                ));
            }
        }
        let roi = plans
            .roi
            .spacing_xyz
            .iter()
            .cloned()
            .fold(f64::INFINITY, f64::min);
        let finest_scan = self
            .median_spacing_xyz
            .iter()
            .cloned()
            .fold(f64::INFINITY, f64::min);
        if roi * 2.0 < finest_scan {
            out.push(format!(
                "`roi`: spacing {:?} mm is less than half the scans' median {:?} mm",
                plans.roi.spacing_xyz, self.median_spacing_xyz
            ));
        }
        out
    }
}

/// plans.json: the profile's name, the fingerprint, warnings and every section.
pub fn plans_document(
    profile: &str,
    plans: &Plans,
    fingerprint: Option<&DatasetFingerprint>,
    overrides: &Map<String, Value>,
) -> Result<Value> {
    let mut sections = BTreeMap::new();
    for s in SECTIONS {
        sections.insert(s, plans.section_json(s)?);
    }
    sections.insert(
        "inference",
        serde_json::to_value(&plans.inference).expect("plans serialise"),
    );
    Ok(serde_json::json!({
        "profile": profile,
        "overrides": overrides,
        "fingerprint": fingerprint,
        "warnings": fingerprint.map(|f| f.warnings(plans)).unwrap_or_default(),
        "sections": sections,
    }))
}

/// Reads a `<section>.json` written by `rsna.plan` as a segmentation recipe with `seed`.
pub fn read_seg_section(path: &Path, seed: u64) -> Result<SegRecipe> {
    let mut r: SegRecipe = crate::error::read_json(path)?;
    r.seed = seed;
    Ok(r)
}

/// Reads `overall.json` written by `rsna.plan` with `seed`.
pub fn read_overall_section(path: &Path, seed: u64) -> Result<OverallRecipe> {
    let mut r: OverallRecipe = crate::error::read_json(path)?;
    r.seed = seed;
    Ok(r)
}

/// Reads an `inference_<model>.json` written by `rsna.plan`.
pub fn read_inference_section(path: &Path) -> Result<InferencePlan> {
    crate::error::read_json(path)
}

/// Reads `roi.json` written by `rsna.plan`.
pub fn read_roi_section(path: &Path) -> Result<RoiPlan> {
    crate::error::read_json(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_builtin_profile_parses_and_validates() {
        for p in PROFILES {
            let plans = Plans::builtin(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(plans.fracture_round0.synthetic_fracture_p > 0.0);
            assert!(plans.fracture_round1.synthetic_fracture_p > 0.0);
            // Round 0's weights start rounds 1 and 3: the same net.
            assert_eq!(plans.fracture_round0.net, plans.fracture_round1.net, "{p}");
            assert_eq!(
                plans.fracture_round0.net.base_channels, plans.fracture_round3.net.base_channels,
                "{p}"
            );
            for s in SECTIONS {
                let v = plans.section_json(s).unwrap();
                assert!(v.get("seed").is_none(), "{p}.{s}");
            }
        }
        assert_eq!(
            Plans::builtin("full").unwrap().stage1_fullres.net,
            flow_nn3d::UNetConfig::stage1()
        );
        assert!(Plans::builtin("huge")
            .unwrap_err()
            .to_string()
            .contains("tiny, demo, full"));
    }

    #[test]
    fn inference_entries_stay_out_of_the_training_sections() {
        let plans = Plans::builtin("full").unwrap();
        for s in SECTIONS {
            let v = plans.section_json(s).unwrap();
            assert!(
                v.get("tta_axes").is_none() && v.get("step_fraction").is_none(),
                "{s}"
            );
        }
        for m in PREDICTING {
            let v = plans.inference_json(m).unwrap();
            assert_eq!(v["tta_axes"], json!([2]), "{m}");
        }
        assert!(plans.inference_json("fracture_round0").is_err());
        let text = builtin_text("tiny").unwrap();
        let bad = json!({"inference": {"stage1_lowres": {"step_fraction": 0.0}}});
        let e = Plans::from_yaml(text, "tiny.yaml", bad.as_object().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("inference.stage1_lowres")
                && e.to_string().contains("step_fraction"),
            "{e}"
        );
        let bad = json!({"inference": {"fracture_round2": {"tta_axes": [3]}}});
        let e = Plans::from_yaml(text, "tiny.yaml", bad.as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("tta_axes"), "{e}");
    }

    #[test]
    fn overrides_set_one_entry_and_reject_unknown_paths() {
        let text = builtin_text("tiny").unwrap();
        let o = json!({"overall": {"lr": 0.5}, "fracture_round2": {"net": {"base_channels": 6}}});
        let plans = Plans::from_yaml(text, "tiny.yaml", o.as_object().unwrap()).unwrap();
        let base = Plans::builtin("tiny").unwrap();
        assert_eq!(plans.overall.lr, 0.5);
        assert_eq!(plans.fracture_round2.net.base_channels, 6);
        assert_eq!(plans.stage1_lowres, base.stage1_lowres);
        assert_eq!(plans.fracture_round1, base.fracture_round1);

        let typo = json!({"overall": {"learning_rate": 0.5}});
        let e = Plans::from_yaml(text, "tiny.yaml", typo.as_object().unwrap()).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("plan.overall.learning_rate") && e.contains("lr"),
            "{e}"
        );

        let whole = json!({"overall": 3});
        let e = Plans::from_yaml(text, "tiny.yaml", whole.as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("is a section"), "{e}");

        let bad = json!({"stage1_fullres": {"patch_zyx": [17, 16, 16]}});
        let e = Plans::from_yaml(text, "tiny.yaml", bad.as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("divisor"), "{e}");

        let no_cracks = json!({"fracture_round0": {"synthetic_fracture_p": 0.0}});
        let e = Plans::from_yaml(text, "tiny.yaml", no_cracks.as_object().unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .contains("`fracture_round0`: synthetic_fracture_p must be above 0"),
            "{e}"
        );
    }

    #[test]
    fn a_mistake_in_the_file_names_its_line() {
        let text = builtin_text("tiny").unwrap().replacen("  lr:", "  lrr:", 1);
        let e = Plans::from_yaml(&text, "my.yaml", &Map::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("my.yaml: ") && e.contains("lrr") && e.contains("line"),
            "{e}"
        );
    }

    #[test]
    fn fingerprint_takes_medians_of_the_conversion_reports() {
        let dir = tempfile::tempdir().unwrap();
        for (i, (ps, ss, n)) in [(1.0, 1.5, 100), (1.2, 1.25, 120), (0.8, 2.0, 90)]
            .iter()
            .enumerate()
        {
            let j = json!({"slices": n, "rows": 128, "columns": 64, "pixel_spacing": [ps, ps],
                           "spacing": {"slice_spacing": ss}, "other": "ignored"});
            std::fs::write(dir.path().join(format!("{i}.json")), j.to_string()).unwrap();
        }
        std::fs::write(dir.path().join("0.nii.gz"), b"not read").unwrap();
        let f = DatasetFingerprint::from_volumes(dir.path()).unwrap();
        assert_eq!(f.studies, 3);
        assert_eq!(f.median_spacing_xyz, [1.0, 1.0, 1.5]);
        assert_eq!(f.median_shape_xyz, [64, 128, 100]);
        assert_eq!(f.median_extent_mm, [64.0, 128.0, 150.0]);
        let mut plans = Plans::builtin("tiny").unwrap();
        assert!(f.warnings(&plans).is_empty());
        plans.roi.spacing_xyz = [0.3; 3];
        assert!(f.warnings(&plans)[0].contains("`roi`"));
    }
}
