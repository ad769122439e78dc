//! Cohort parameters: size profiles (`tiny`, `demo`, `full`), label frequencies and subsets.
//!
//! A [`CohortConfig`] fully determines the generated files: the same config gives
//! byte-identical output. Profiles are constructors; every field can be changed afterwards.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Names of the seven cervical labels, in the competition's column order.
pub const VERTEBRA_NAMES: [&str; 7] = ["C1", "C2", "C3", "C4", "C5", "C6", "C7"];

/// Per-vertebra positive counts of the competition's train.csv (C1..C7, out of 961 positive
/// studies among 2019).
pub const COMPETITION_VERTEBRA_COUNTS: [f64; 7] = [146.0, 285.0, 73.0, 108.0, 162.0, 277.0, 393.0];
/// Positive studies in the competition's train.csv.
pub const COMPETITION_POSITIVE_STUDIES: f64 = 961.0;
/// Studies in the competition's train.csv.
pub const COMPETITION_STUDIES: f64 = 2019.0;

/// A named size preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Seconds to generate; for tests: 64x64 in-plane, about 50 slices.
    Tiny,
    /// The pipeline default: about 64 studies of 128x128 at 1.1-1.3 mm, 1.25-1.5 mm slices.
    Demo,
    /// Real size: 512x512, about 250 slices of 0.625-0.8 mm.
    Full,
}

impl Profile {
    /// Parses `tiny`, `demo` or `full`.
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        match name {
            "tiny" => Ok(Self::Tiny),
            "demo" => Ok(Self::Demo),
            "full" => Ok(Self::Full),
            other => Err(ConfigError::UnknownProfile(other.to_string())),
        }
    }

    /// The profile's lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tiny => "tiny",
            Self::Demo => "demo",
            Self::Full => "full",
        }
    }
}

/// A closed interval `[lo, hi]` sampled uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub lo: f64,
    pub hi: f64,
}

impl Range {
    pub const fn new(lo: f64, hi: f64) -> Self {
        Self { lo, hi }
    }
}

/// Image grid and scanner parameters of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanConfig {
    /// Rows = columns of every slice.
    pub matrix: usize,
    /// In-plane pixel spacing in mm (raised per study when the neck would not fit).
    pub pixel_spacing_mm: Range,
    /// Distance between slice centres in mm.
    pub slice_spacing_mm: Range,
    /// Reconstructed slice thickness divided by slice spacing (>= 1 means overlapping slices).
    pub thickness_ratio: Range,
    /// Standard deviation of the additive image noise in HU.
    pub noise_hu: Range,
    /// Full width at half maximum of the in-plane point spread function in mm.
    pub psf_fwhm_mm: Range,
}

/// Everything that determines a cohort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortConfig {
    pub profile: Profile,
    /// Master seed; every study derives its own stream from it and its index.
    pub seed: u64,
    /// Studies in `train.csv` / `train_images/`.
    pub train_studies: usize,
    /// Studies in `test.csv` / `test_images/` (labels only in `truth/`).
    pub test_studies: usize,
    /// Probability that a study has at least one fracture (competition: 961/2019).
    pub fracture_prevalence: f64,
    /// Relative per-vertebra frequencies among positive studies (C1..C7).
    pub vertebra_weights: [f64; 7],
    /// Mean number of fractured vertebrae per positive study (1..=3; competition: 1444/961).
    pub mean_fractured_vertebrae: f64,
    /// Fraction of positive train studies that get bounding boxes (competition: 235/961).
    pub boxed_fraction: f64,
    /// Fraction of train studies that get a `segmentations/<UID>.nii` (competition: 87/2019).
    pub segmented_fraction: f64,
    /// Fraction of studies whose file numbers run inferior-to-superior.
    pub inferior_to_superior_fraction: f64,
    /// Fraction of studies stored as uint16 (the rest are int16).
    pub unsigned_fraction: f64,
    pub scan: ScanConfig,
    /// A PHI canary: when set, every series carries identifiers made from this marker
    /// (PatientName, PatientID, InstitutionName, PatientBirthDate 1923-04-05), so a test can
    /// check that none of them reaches a log, report or the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phi_canary: Option<String>,
}

/// A parameter that makes no sense.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("unknown profile `{0}` (expected tiny, demo or full)")]
    UnknownProfile(String),
    #[error("parameter `{name}` = {value} is outside {expected}")]
    OutOfRange {
        name: &'static str,
        value: f64,
        expected: &'static str,
    },
    #[error("a cohort needs at least one train study")]
    NoTrainStudies,
    #[error("{studies} studies is more than the supported maximum of {max}")]
    TooManyStudies { studies: usize, max: usize },
}

/// Upper bound on studies, to reject absurd requests before any work.
pub const MAX_STUDIES: usize = 100_000;

impl CohortConfig {
    /// The competition's label statistics with the given profile's scan and cohort size.
    pub fn for_profile(profile: Profile) -> Self {
        match profile {
            Profile::Tiny => Self::tiny(),
            Profile::Demo => Self::demo(),
            Profile::Full => Self::full(),
        }
    }

    /// Test-sized cohort: 6 train + 2 test studies of 64x64x~50; generates in seconds.
    pub fn tiny() -> Self {
        Self {
            profile: Profile::Tiny,
            train_studies: 6,
            test_studies: 2,
            boxed_fraction: 0.5,
            segmented_fraction: 0.5,
            scan: ScanConfig {
                matrix: 64,
                pixel_spacing_mm: Range::new(2.3, 2.6),
                slice_spacing_mm: Range::new(3.0, 3.6),
                thickness_ratio: Range::new(1.0, 1.0),
                noise_hu: Range::new(10.0, 25.0),
                psf_fwhm_mm: Range::new(0.8, 1.2),
            },
            ..Self::base()
        }
    }

    /// Pipeline default: 48 train + 16 test studies (enough for a test AUC to mean something)
    /// of 128x128 at 1.1-1.3 mm, 1.25-1.5 mm slices.
    pub fn demo() -> Self {
        Self {
            profile: Profile::Demo,
            train_studies: 48,
            test_studies: 16,
            boxed_fraction: 0.5,
            segmented_fraction: 0.5,
            scan: ScanConfig {
                matrix: 128,
                pixel_spacing_mm: Range::new(1.1, 1.3),
                slice_spacing_mm: Range::new(1.25, 1.5),
                thickness_ratio: Range::new(1.0, 1.25),
                noise_hu: Range::new(15.0, 35.0),
                psf_fwhm_mm: Range::new(0.6, 1.0),
            },
            ..Self::base()
        }
    }

    /// Real-size studies: 512x512, 0.625-0.8 mm slices (about 250 per study).
    pub fn full() -> Self {
        Self {
            profile: Profile::Full,
            train_studies: 8,
            test_studies: 2,
            boxed_fraction: 235.0 / COMPETITION_POSITIVE_STUDIES,
            segmented_fraction: 87.0 / COMPETITION_STUDIES,
            scan: ScanConfig {
                matrix: 512,
                pixel_spacing_mm: Range::new(0.28, 0.36),
                slice_spacing_mm: Range::new(0.625, 0.8),
                thickness_ratio: Range::new(1.0, 1.25),
                noise_hu: Range::new(25.0, 60.0),
                psf_fwhm_mm: Range::new(0.5, 0.8),
            },
            ..Self::base()
        }
    }

    fn base() -> Self {
        Self {
            profile: Profile::Demo,
            seed: 2022,
            train_studies: 0,
            test_studies: 0,
            fracture_prevalence: COMPETITION_POSITIVE_STUDIES / COMPETITION_STUDIES,
            vertebra_weights: COMPETITION_VERTEBRA_COUNTS,
            mean_fractured_vertebrae: COMPETITION_VERTEBRA_COUNTS.iter().sum::<f64>()
                / COMPETITION_POSITIVE_STUDIES,
            boxed_fraction: 0.5,
            segmented_fraction: 0.5,
            inferior_to_superior_fraction: 0.3,
            unsigned_fraction: 0.3,
            phi_canary: None,
            scan: ScanConfig {
                matrix: 128,
                pixel_spacing_mm: Range::new(1.0, 1.0),
                slice_spacing_mm: Range::new(1.0, 1.0),
                thickness_ratio: Range::new(1.0, 1.0),
                noise_hu: Range::new(20.0, 20.0),
                psf_fwhm_mm: Range::new(0.8, 0.8),
            },
        }
    }

    /// Sets the total number of studies (the `--studies N` of `flow synth`): one in eight
    /// (rounded, at least one when `n >= 2`) becomes a test study, the rest train studies.
    pub fn with_total_studies(mut self, n: usize) -> Self {
        let test = if n >= 2 {
            ((n as f64 / 8.0).round() as usize).max(1)
        } else {
            0
        };
        self.test_studies = test;
        self.train_studies = n - test;
        self
    }

    /// Total studies (train + test).
    pub fn total_studies(&self) -> usize {
        self.train_studies + self.test_studies
    }

    /// Checks every parameter; called by the generator before any work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.train_studies == 0 {
            return Err(ConfigError::NoTrainStudies);
        }
        let total = self.train_studies.saturating_add(self.test_studies);
        if total > MAX_STUDIES {
            return Err(ConfigError::TooManyStudies {
                studies: total,
                max: MAX_STUDIES,
            });
        }
        let unit = "[0, 1]";
        for (name, value) in [
            ("fracture_prevalence", self.fracture_prevalence),
            ("boxed_fraction", self.boxed_fraction),
            ("segmented_fraction", self.segmented_fraction),
            (
                "inferior_to_superior_fraction",
                self.inferior_to_superior_fraction,
            ),
            ("unsigned_fraction", self.unsigned_fraction),
        ] {
            check(name, value, 0.0, 1.0, unit)?;
        }
        check(
            "mean_fractured_vertebrae",
            self.mean_fractured_vertebrae,
            1.0,
            2.5,
            "[1, 2.5]",
        )?;
        for w in self.vertebra_weights {
            check("vertebra_weights", w, 1e-9, 1e9, "(0, 1e9]")?;
        }
        let s = &self.scan;
        check("scan.matrix", s.matrix as f64, 32.0, 1024.0, "[32, 1024]")?;
        for (name, r, lo, hi, expected) in [
            (
                "scan.pixel_spacing_mm",
                s.pixel_spacing_mm,
                0.1,
                5.0,
                "[0.1, 5] mm",
            ),
            (
                "scan.slice_spacing_mm",
                s.slice_spacing_mm,
                0.3,
                6.0,
                "[0.3, 6] mm",
            ),
            (
                "scan.thickness_ratio",
                s.thickness_ratio,
                1.0,
                3.0,
                "[1, 3]",
            ),
            ("scan.noise_hu", s.noise_hu, 0.0, 300.0, "[0, 300] HU"),
            ("scan.psf_fwhm_mm", s.psf_fwhm_mm, 0.0, 5.0, "[0, 5] mm"),
        ] {
            check(name, r.lo, lo, hi, expected)?;
            check(name, r.hi, r.lo, hi, expected)?;
        }
        Ok(())
    }
}

fn check(
    name: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    expected: &'static str,
) -> Result<(), ConfigError> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            value,
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_validate_and_parse() {
        for p in [Profile::Tiny, Profile::Demo, Profile::Full] {
            let cfg = CohortConfig::for_profile(p);
            cfg.validate().unwrap();
            assert_eq!(cfg.profile, p);
            assert_eq!(Profile::parse(p.name()).unwrap(), p);
        }
        assert!(matches!(
            Profile::parse("huge"),
            Err(ConfigError::UnknownProfile(_))
        ));
    }

    #[test]
    fn total_studies_split_one_in_eight() {
        let c = CohortConfig::demo().with_total_studies(56);
        assert_eq!((c.train_studies, c.test_studies), (49, 7));
        let c = CohortConfig::tiny().with_total_studies(2);
        assert_eq!((c.train_studies, c.test_studies), (1, 1));
        let c = CohortConfig::tiny().with_total_studies(1);
        assert_eq!((c.train_studies, c.test_studies), (1, 0));
        assert_eq!(
            CohortConfig::tiny().with_total_studies(0).validate(),
            Err(ConfigError::NoTrainStudies)
        );
    }

    #[test]
    fn rejects_bad_parameters() {
        let mut cfg = CohortConfig::tiny();
        cfg.fracture_prevalence = 1.5;
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::OutOfRange {
                name: "fracture_prevalence",
                ..
            })
        ));
        let mut cfg = CohortConfig::tiny();
        cfg.train_studies = 0;
        assert_eq!(cfg.validate(), Err(ConfigError::NoTrainStudies));
        let mut cfg = CohortConfig::tiny();
        cfg.scan.matrix = 100_000;
        assert!(cfg.validate().is_err());
        let mut cfg = CohortConfig::tiny();
        cfg.scan.slice_spacing_mm = Range::new(2.0, 1.0);
        assert!(cfg.validate().is_err());
    }
}
