//! Loading a DICOM file with its element lengths checked before dicom-rs parses it.
//!
//! dicom-rs allocates a buffer of an element's declared length before reading it, so one
//! corrupted length field costs gigabytes and seconds. We walk the element headers of the file
//! meta group and the data set first (uncompressed little-endian encodings; nested sequences
//! and items included) and reject any length that runs past the end of the file, naming the
//! element. Only then is the in-memory file handed to dicom-rs.

use super::error::DicomReadError;
use super::header::SUPPORTED_SYNTAXES;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use std::path::Path;

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// A file read into memory whose structure passed [`walk_elements`].
pub(crate) struct LoadedFile {
    pub bytes: Vec<u8>,
}

impl LoadedFile {
    /// The bytes after the 128-byte preamble (starting with "DICM"), as dicom-rs wants them.
    pub fn without_preamble(&self) -> &[u8] {
        &self.bytes[128..]
    }
}

fn truncated(path: &Path, detail: String) -> DicomReadError {
    DicomReadError::Truncated {
        path: path.to_path_buf(),
        detail,
    }
}

/// Largest file read as one DICOM object. A CT slice is well under 10 MB and a multi-frame
/// series rarely over 1 GB; anything larger is refused before it is read.
pub const MAX_DICOM_FILE_BYTES: u64 = 2 << 30;

/// Read `path`, check preamble and magic, the meta group, the transfer syntax (supported?)
/// and every element length of the data set. Only the first 132 bytes are read before the
/// magic is checked, so a stray huge non-DICOM file in a series folder costs nothing.
pub(crate) fn load_file(path: &Path) -> Result<LoadedFile, DicomReadError> {
    use std::io::Read;
    let io = |source| DicomReadError::Io {
        path: path.to_path_buf(),
        cause: source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(132);
    (&mut file).take(132).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() == 132 && &bytes[128..132] == b"DICM" {
        let size = file.metadata().map_err(io)?.len();
        if size > MAX_DICOM_FILE_BYTES {
            return Err(DicomReadError::NotDicom {
                path: path.to_path_buf(),
                detail: format!(
                    "{size} bytes, more than MAX_DICOM_FILE_BYTES ({MAX_DICOM_FILE_BYTES}): not read"
                ),
            });
        }
        file.read_to_end(&mut bytes).map_err(io)?;
    }
    if bytes.len() < 132 {
        return Err(truncated(
            path,
            format!(
                "{} bytes, shorter than the 128-byte preamble and DICM magic",
                bytes.len()
            ),
        ));
    }
    if &bytes[128..132] != b"DICM" {
        return Err(DicomReadError::NotDicom {
            path: path.to_path_buf(),
            detail: "no DICM magic after the 128-byte preamble".into(),
        });
    }
    // The meta group is always explicit VR little endian.
    let meta_end = walk_elements(&bytes, 132, true, true).map_err(|e| e.into_error(path))?;
    check_meta_group_length(&bytes, meta_end).map_err(|e| e.into_error(path))?;
    let meta = dicom_object::FileMetaTable::from_reader(&bytes[128..meta_end]).map_err(|e| {
        DicomReadError::NotDicom {
            path: path.to_path_buf(),
            detail: format!("file meta group: {}", super::error::chain(&e)),
        }
    })?;
    let uid = meta
        .transfer_syntax()
        .trim_end_matches('\0')
        .trim()
        .to_string();
    if !SUPPORTED_SYNTAXES.contains(&uid.as_str()) {
        use dicom_encoding::TransferSyntaxIndex;
        let name = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(&uid)
            .map(|ts| ts.name().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        return Err(DicomReadError::UnsupportedTransferSyntax {
            path: path.to_path_buf(),
            uid,
            name,
        });
    }
    if uid == DEFLATED {
        // The lengths are those of the inflated data set: inflate it (bounded) and walk that.
        let inflated = inflate_bounded(&bytes[meta_end..]).map_err(|e| e.into_error(path))?;
        walk_elements(&inflated, 0, true, false).map_err(|e| e.into_error(path))?;
    } else {
        walk_elements(&bytes, meta_end, uid != IMPLICIT_VR_LE, false)
            .map_err(|e| e.into_error(path))?;
    }
    Ok(LoadedFile { bytes })
}

/// Most a deflated data set may inflate to (a CT slice is a few MB).
pub const MAX_INFLATED_BYTES: u64 = 1 << 30;

/// Inflates a Deflated Explicit VR Little Endian data set (raw deflate), refusing more than
/// [`MAX_INFLATED_BYTES`].
fn inflate_bounded(deflated: &[u8]) -> Result<Vec<u8>, WalkError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| WalkError::Malformed(format!("deflated data set: {e}")))?;
    if out.len() as u64 > MAX_INFLATED_BYTES {
        return Err(WalkError::Malformed(format!(
            "deflated data set inflates to more than MAX_INFLATED_BYTES ({MAX_INFLATED_BYTES})"
        )));
    }
    Ok(out)
}

/// The parser finds the data set where (0002,0000) MetaElementGroupLength says the meta group
/// ends; when that disagrees with the walked group, it would read the data set from a place
/// the walk never checked (found by the fuzzer: a garbage 2 GB length, allocated up front).
fn check_meta_group_length(b: &[u8], meta_end: usize) -> Result<(), WalkError> {
    if meta_end < 144 || b[132..138] != [0x02, 0x00, 0x00, 0x00, b'U', b'L'] {
        return Ok(());
    }
    let declared = u32_at(b, 140) as usize;
    let walked = meta_end - 144;
    if declared != walked {
        return Err(WalkError::Malformed(format!(
            "file meta group length (0002,0000) says {declared} bytes but the group has {walked}"
        )));
    }
    Ok(())
}

/// A structural problem found while walking element headers.
#[derive(Debug, PartialEq)]
pub(crate) enum WalkError {
    /// An element header or value runs past the end of the file.
    Truncated(String),
    /// Bytes that cannot be an element header.
    Malformed(String),
}

impl WalkError {
    fn into_error(self, path: &Path) -> DicomReadError {
        match self {
            WalkError::Truncated(d) => truncated(path, d),
            WalkError::Malformed(detail) => DicomReadError::NotDicom {
                path: path.to_path_buf(),
                detail,
            },
        }
    }
}

fn u16_at(b: &[u8], p: usize) -> u16 {
    u16::from_le_bytes([b[p], b[p + 1]])
}

fn u32_at(b: &[u8], p: usize) -> u32 {
    u32::from_le_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]])
}

/// VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length.
fn long_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OW"
            | b"OF"
            | b"OD"
            | b"OL"
            | b"OV"
            | b"SQ"
            | b"UT"
            | b"UN"
            | b"UC"
            | b"UR"
            | b"SV"
            | b"UV"
    )
}

/// Every VR of the standard; anything else in an explicit-VR header is corruption.
fn known_vr(vr: &[u8]) -> bool {
    const ALL: [&[u8; 2]; 34] = [
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
        b"OD", b"OF", b"OL", b"OV", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC",
        b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV", b"OW",
    ];
    ALL.iter().any(|v| &v[..] == vr)
}

/// Bytes per value of a binary VR (1 for strings and bytes).
fn value_unit(vr: VR) -> u32 {
    match vr {
        VR::US | VR::SS | VR::OW => 2,
        VR::UL | VR::SL | VR::FL | VR::AT | VR::OL | VR::OF => 4,
        VR::FD | VR::SV | VR::UV | VR::OD | VR::OV => 8,
        _ => 1,
    }
}

fn is_sequence_implicit(tag: Tag) -> bool {
    StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| e.vr().relaxed() == VR::SQ)
}

/// Walk element headers from `start`; returns where the walk ended (end of the file, or the
/// first element outside group 2 when `meta_only`). Sequences and items are descended into
/// (so nested lengths are checked too); fragments of encapsulated PixelData are skipped.
pub(crate) fn walk_elements(
    b: &[u8],
    start: usize,
    explicit: bool,
    meta_only: bool,
) -> Result<usize, WalkError> {
    let mut pos = start;
    let mut in_fragments = false;
    // Where the defined-length sequences and items we are inside end: the elements in them
    // must end exactly there, as a parser that trusts those lengths reads them (found by the
    // fuzzer: an item ending inside an element made the parser read a value as a header).
    let mut ends: Vec<usize> = Vec::new();
    loop {
        while let Some(&end) = ends.last() {
            if pos == end {
                ends.pop();
            } else if pos > end {
                return Err(WalkError::Malformed(format!(
                    "a sequence or item ends at byte {end}, inside the element that ends at byte {pos}"
                )));
            } else {
                break;
            }
        }
        if pos >= b.len() {
            break;
        }
        let remaining = b.len() - pos;
        if remaining < 8 {
            return Err(WalkError::Truncated(format!(
                "file ends inside an element header at byte {pos}"
            )));
        }
        let tag = Tag(u16_at(b, pos), u16_at(b, pos + 2));
        if meta_only && tag.0 != 0x0002 {
            return Ok(pos);
        }
        if tag.0 == 0xFFFE {
            // Item, item delimiter or sequence delimiter: 4-byte length, never a VR.
            let len = u32_at(b, pos + 4);
            pos += 8;
            match tag.1 {
                0xE000 if in_fragments => {
                    if len as usize > b.len() - pos {
                        return Err(WalkError::Truncated(format!(
                            "PixelData fragment at byte {} declares {len} bytes but {} remain",
                            pos - 8,
                            b.len() - pos
                        )));
                    }
                    pos += len as usize;
                }
                0xE000 => {
                    if len != u32::MAX && len as usize > b.len() - pos {
                        return Err(WalkError::Truncated(format!(
                            "item at byte {} declares {len} bytes but {} remain",
                            pos - 8,
                            b.len() - pos
                        )));
                    }
                    if len != u32::MAX {
                        ends.push(pos + len as usize);
                    }
                }
                // Delimiters carry no value; a length there is a corrupt header (a parser may
                // take it for an element and allocate it: found by the fuzzer).
                0xE0DD | 0xE00D if len != 0 => {
                    return Err(WalkError::Malformed(format!(
                        "delimiter {tag} at byte {} has length {len}, not 0",
                        pos - 8
                    )))
                }
                0xE0DD => in_fragments = false,
                0xE00D => {}
                _ => {
                    return Err(WalkError::Malformed(format!(
                        "invalid item tag {tag} at byte {}",
                        pos - 8
                    )))
                }
            }
            continue;
        }
        // Undefined length (0xFFFFFFFF) is only valid for a sequence, encapsulated PixelData
        // or an explicit UN (an encoded sequence); a parser handed it on any other element
        // reserves memory for four billion bytes.
        let mut undefined_ok = tag == Tag(0x7FE0, 0x0010);
        let unit;
        let (header, len, is_sq) = if explicit {
            let vr = &b[pos + 4..pos + 6];
            undefined_ok |= vr == b"SQ" || vr == b"UN";
            unit = VR::from_binary([vr[0], vr[1]]).map_or(1, value_unit);
            if !known_vr(vr) {
                return Err(WalkError::Malformed(format!(
                    "element {tag} at byte {pos} has no valid VR"
                )));
            }
            if long_vr(vr) {
                if remaining < 12 {
                    return Err(WalkError::Truncated(format!(
                        "file ends inside the header of element {tag}"
                    )));
                }
                (12, u32_at(b, pos + 8), vr == b"SQ")
            } else {
                (8, u16_at(b, pos + 6) as u32, false)
            }
        } else {
            let entry = StandardDataDictionary.by_tag(tag);
            // A sequence by the dictionary; or a tag it does not know (private) whose value
            // starts with an item, which parsers read as a sequence too, so its items' lengths
            // are walked (found by the fuzzer: a private nested sequence hid a 2 GB length).
            let item_follows = pos + 12 <= b.len()
                && u16_at(b, pos + 8) == 0xFFFE
                && u16_at(b, pos + 10) == 0xE000;
            let sq = is_sequence_implicit(tag) || (entry.is_none() && item_follows);
            undefined_ok |= sq || entry.is_none();
            unit = entry.map_or(1, |e| value_unit(e.vr().relaxed()));
            (8, u32_at(b, pos + 4), sq)
        };
        if len == u32::MAX && !undefined_ok {
            return Err(WalkError::Malformed(format!(
                "element {tag} at byte {pos} has an undefined length, which only a sequence or PixelData may have"
            )));
        }
        pos += header;
        if len == u32::MAX {
            // Undefined length: a sequence, or encapsulated PixelData made of fragments.
            if tag == Tag(0x7FE0, 0x0010) {
                in_fragments = true;
            }
            continue;
        }
        if len as usize > b.len() - pos {
            return Err(WalkError::Truncated(format!(
                "element {tag} declares {len} bytes but {} remain",
                b.len() - pos
            )));
        }
        // dicom-parser reads whole values of a binary VR and skips the rest of the length
        // without consuming it, so a ragged length shifts every later header (found by the
        // fuzzer: a 14-byte UL made it read a 2 GB length and allocate it).
        if len % unit != 0 {
            return Err(WalkError::Malformed(format!(
                "element {tag} at byte {} has {len} bytes, not a multiple of its value size {unit}",
                pos - header
            )));
        }
        if is_sq {
            ends.push(pos + len as usize);
        } else {
            pos += len as usize;
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit_element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&tag.0.to_le_bytes());
        v.extend_from_slice(&tag.1.to_le_bytes());
        v.extend_from_slice(vr);
        if long_vr(vr) {
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn lengths_past_the_end_are_caught_at_any_depth() {
        let ok = [
            explicit_element((0x0008, 0x0060), b"CS", b"CT"),
            explicit_element((0x7FE0, 0x0010), b"OW", &[0; 8]),
        ]
        .concat();
        assert_eq!(walk_elements(&ok, 0, true, false), Ok(ok.len()));

        let mut bad = ok.clone();
        bad[6] = 200; // CS length 200 > remaining
        assert!(
            matches!(walk_elements(&bad, 0, true, false), Err(WalkError::Truncated(m)) if m.contains("(0008,0060) declares 200"))
        );

        // A defined-length sequence holding an item whose element lies about its length.
        let inner = explicit_element((0x0008, 0x0100), b"SH", b"AB");
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        item.extend_from_slice(&inner);
        let mut seq = explicit_element((0x0008, 0x1140), b"SQ", &item);
        assert!(walk_elements(&seq, 0, true, false).is_ok());
        let n = seq.len();
        seq[n - 4] = 0xFF; // inner length low byte -> 0x00FF... beyond the end
        seq[n - 3] = 0x7F;
        assert!(matches!(
            walk_elements(&seq, 0, true, false),
            Err(WalkError::Truncated(_))
        ));
    }

    /// Found by the fuzzer: an implicit-VR UL element with undefined length passed the walk and
    /// made dicom-parser reserve 1.9 GiB.
    #[test]
    fn undefined_length_only_on_sequences_and_pixel_data() {
        let implicit = |tag: (u16, u16), len: u32| {
            let mut v = Vec::new();
            v.extend_from_slice(&tag.0.to_le_bytes());
            v.extend_from_slice(&tag.1.to_le_bytes());
            v.extend_from_slice(&len.to_le_bytes());
            v
        };
        let ul = implicit((0x0028, 0x0010), u32::MAX);
        assert!(matches!(
            walk_elements(&ul, 0, false, false),
            Err(WalkError::Malformed(m)) if m.contains("undefined length")
        ));
        // A sequence (Referenced Image Sequence) with undefined length and its delimiter.
        let mut seq = implicit((0x0008, 0x1140), u32::MAX);
        seq.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert!(walk_elements(&seq, 0, false, false).is_ok());
        let mut cs = explicit_element((0x0008, 0x0060), b"CS", b"CT");
        cs[6] = 0xFF;
        cs[7] = 0xFF;
        assert!(
            walk_elements(&cs, 0, true, false).is_err(),
            "short VR: 0xFFFF is a length"
        );
    }

    #[test]
    fn an_item_that_ends_inside_an_element_is_malformed() {
        // A defined-length sequence holding one item of 10 bytes, whose element takes 12.
        let inner = explicit_element((0x0008, 0x0100), b"SH", b"ABCD");
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&10u32.to_le_bytes());
        item.extend_from_slice(&inner);
        let seq = explicit_element((0x0008, 0x1140), b"SQ", &item);
        assert!(matches!(
            walk_elements(&seq, 0, true, false),
            Err(WalkError::Malformed(m)) if m.contains("ends at byte")
        ));
        let mut ok = seq.clone();
        ok[16] = 12; // the item's length, now right
        assert_eq!(walk_elements(&ok, 0, true, false), Ok(ok.len()));
    }

    #[test]
    fn a_delimiter_with_a_length_is_malformed() {
        let b = [0xFE, 0xFF, 0xDD, 0xE0, 0x00, 0x00, 0xE0, 0x7F];
        assert!(matches!(
            walk_elements(&b, 0, false, false),
            Err(WalkError::Malformed(m)) if m.contains("not 0")
        ));
    }

    #[test]
    fn a_private_implicit_sequence_is_walked_into() {
        // (0009,1010), unknown to the dictionary, 16 bytes holding one item of 8 bytes whose
        // one element claims 0x7FFFFFF0 bytes.
        let mut b = vec![0x09, 0x00, 0x10, 0x10, 16, 0, 0, 0];
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0]);
        b.extend_from_slice(&[0x09, 0x00, 0x20, 0x10, 0xF0, 0xFF, 0xFF, 0x7F]);
        assert!(matches!(
            walk_elements(&b, 0, false, false),
            Err(WalkError::Truncated(_))
        ));
    }

    #[test]
    fn a_binary_value_of_ragged_length_is_malformed() {
        let ul = explicit_element((0x0028, 0x0010), b"US", &[6, 0, 1]);
        assert!(matches!(
            walk_elements(&ul, 0, true, false),
            Err(WalkError::Malformed(m)) if m.contains("not a multiple of its value size 2")
        ));
        // Implicit VR: the dictionary's VR (CommandGroupLength is UL).
        let mut implicit = vec![0, 0, 0, 0, 14, 0, 0, 0];
        implicit.extend_from_slice(b"1.2.3.1.1.2.3\0");
        assert!(matches!(
            walk_elements(&implicit, 0, false, false),
            Err(WalkError::Malformed(m)) if m.contains("value size 4")
        ));
        let ok = explicit_element((0x0028, 0x0010), b"US", &[6, 0]);
        assert!(walk_elements(&ok, 0, true, false).is_ok());
    }

    #[test]
    fn a_meta_group_length_that_disagrees_with_the_group_is_malformed() {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        b.extend(explicit_element(
            (0x0002, 0x0000),
            b"UL",
            &18u32.to_le_bytes(),
        ));
        b.extend(explicit_element((0x0002, 0x0010), b"UI", b"1.2.840.1\0"));
        let end = walk_elements(&b, 132, true, true).unwrap();
        assert_eq!(check_meta_group_length(&b, end), Ok(()));
        b[140] = 19;
        assert!(matches!(
            check_meta_group_length(&b, end),
            Err(WalkError::Malformed(m)) if m.contains("says 19 bytes but the group has 18")
        ));
    }

    #[test]
    fn missing_vr_is_malformed() {
        let bytes = [0x08, 0x00, 0x60, 0x00, 0x01, 0x02, 0x02, 0x00, b'C', b'T'];
        assert!(matches!(
            walk_elements(&bytes, 0, true, false),
            Err(WalkError::Malformed(_))
        ));
    }
}
