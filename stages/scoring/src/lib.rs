//! The RSNA 2022 metric, AUC, stage-3 quantile scores and their fitting, submission files.
