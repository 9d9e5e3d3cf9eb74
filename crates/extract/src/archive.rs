//! ZIP archives: every member whose type Enclave reads, extracted in turn (archives inside
//! archives too, to the depth limit), its sections marked with the member's path. Also the
//! member readers the office formats use. Sizes are checked while reading, not trusted from
//! the archive's directory, so a zip bomb stops at the limit.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::{extract_member, Budget, ExtractError, Extracted};
use crate::detect::detect;

/// An archive over `bytes`.
pub(super) fn open(bytes: &[u8]) -> Result<ZipArchive<Cursor<&[u8]>>, ExtractError> {
    ZipArchive::new(Cursor::new(bytes)).map_err(|e| ExtractError::Corrupt(format!("ZIP: {e}")))
}

/// The bytes of member `index`, counted against the budget while they are read.
fn read_index(zip: &mut ZipArchive<Cursor<&[u8]>>, index: usize, budget: &mut Budget) -> Result<Vec<u8>, ExtractError> {
    let member = zip
        .by_index(index)
        .map_err(|e| ExtractError::Corrupt(format!("ZIP member {index}: {e}")))?;
    read_limited(member, budget)
}

/// Reads `reader` to the end, failing as soon as the budget's unpacked bytes run out.
fn read_limited(reader: impl Read, budget: &mut Budget) -> Result<Vec<u8>, ExtractError> {
    let left = budget.limits.max_unpacked_bytes;
    let mut bytes = Vec::new();
    reader
        .take(left.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ExtractError::Corrupt(format!("ZIP member: {e}")))?;
    budget.unpack(bytes.len() as u64)?;
    Ok(bytes)
}

/// The text of the member called `name`, or `None` when there is none.
pub(super) fn read_text(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    budget: &mut Budget,
) -> Result<Option<String>, ExtractError> {
    let member = match zip.by_name(name) {
        Ok(member) => member,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(ExtractError::Corrupt(format!("{name}: {e}"))),
    };
    let bytes = read_limited(member, budget)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The names of the archive's members.
pub(super) fn names(zip: &ZipArchive<Cursor<&[u8]>>) -> Vec<String> {
    zip.file_names()
        .filter_map(Result::ok)
        .map(|n| n.into_owned())
        .collect()
}

/// Every readable member of a ZIP archive found at `depth`.
pub(super) fn extract(bytes: &[u8], budget: &mut Budget, depth: u32) -> Result<Extracted, ExtractError> {
    if depth > budget.limits.max_depth {
        return Err(ExtractError::TooLarge(format!(
            "archives are nested more than {} deep",
            budget.limits.max_depth
        )));
    }
    let mut zip = open(bytes)?;
    if zip.len() > budget.limits.max_members {
        return Err(ExtractError::TooLarge(format!(
            "the archive has {} members; at most {} are read",
            zip.len(),
            budget.limits.max_members
        )));
    }
    let mut extracted = Extracted::default();
    for index in 0..zip.len() {
        let (name, is_dir) = {
            let member = zip
                .by_index(index)
                .map_err(|e| ExtractError::Corrupt(format!("ZIP member {index}: {e}")))?;
            (
                member.name().map(|n| n.into_owned()).unwrap_or_default(),
                member.is_dir(),
            )
        };
        if is_dir || name.starts_with("__MACOSX/") {
            continue;
        }
        let content = read_index(&mut zip, index, budget)?;
        let Some(kind) = detect(&content, &name) else {
            tracing::debug!(member = %name, "archive member of an unknown type skipped");
            continue;
        };
        extract_member(&mut extracted, &name, &content, kind, budget, depth)?;
    }
    Ok(extracted)
}

/// Fails when the archive's own directory declares more bytes (or members) than the budget
/// allows: formats that hand the archive to another parser (spreadsheets) are checked before.
pub(super) fn check_declared_sizes(bytes: &[u8], budget: &mut Budget) -> Result<(), ExtractError> {
    let mut zip = open(bytes)?;
    if zip.len() > budget.limits.max_members {
        return Err(ExtractError::TooLarge(format!(
            "the file has more than {} parts",
            budget.limits.max_members
        )));
    }
    let mut total = 0u64;
    for index in 0..zip.len() {
        if let Ok(member) = zip.by_index_raw(index) {
            total = total.saturating_add(member.size());
        }
    }
    budget.unpack(total)
}
