//! Synthetic cervical-spine CT cohort generator (competition layout, hidden truth).
