//! Content-addressed artifact store for flow.
//!
//! Blobs are files named by their BLAKE3 digest under `cas/ab/<hex>`, written atomically
//! (temp file, fsync, rename) and read-only. A directory artifact is a [`Manifest`] of
//! `(relative path, executable bit, digest, size)` entries, itself stored as a blob; the
//! directory's digest is the manifest's digest (a Merkle tree of depth one). The [`Index`]
//! (sled) holds the action cache (node key -> [`ActionResult`]) and a stat memo so unchanged
//! external inputs are not re-hashed.

mod digest;
mod error;
mod index;
mod manifest;
mod store;

pub use digest::{hash_bytes, hash_reader, Digest};
pub use error::CacheError;
pub use index::{ActionResult, CachedOutputs, Index, OutputRecord, StatMemo};
pub use manifest::{Manifest, ManifestEntry};
pub use store::{ArtifactKind, BlobStore, VerifyReport};

/// Result alias for this crate.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;
