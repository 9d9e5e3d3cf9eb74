//! Spreadsheets (XLSX, XLS, ODS through calamine) and CSV: each sheet a section headed by its
//! name, its rows a table whose first non-empty row is the header.

use std::io::Cursor;

use calamine::{open_workbook_auto_from_rs, Data, Reader};

use super::{archive, Block, Budget, ExtractError, Extracted, Section, Table};

/// A table from rows of cells: the first row with any text is the header; empty rows are
/// dropped; every row padded to the widest.
fn table_of(rows: impl Iterator<Item = Vec<String>>, budget: &mut Budget) -> Result<Option<Table>, ExtractError> {
    let mut kept: Vec<Vec<String>> = Vec::new();
    for row in rows {
        let mut row: Vec<String> = row.into_iter().map(|c| c.trim().to_owned()).collect();
        while row.last().is_some_and(String::is_empty) {
            row.pop();
        }
        if row.is_empty() {
            continue;
        }
        budget.rows(1)?;
        budget.text(row.iter().map(String::len).sum())?;
        kept.push(row);
    }
    if kept.is_empty() {
        return Ok(None);
    }
    let width = kept.iter().map(Vec::len).max().unwrap_or(0);
    for row in &mut kept {
        row.resize(width, String::new());
    }
    let header = kept.remove(0);
    Ok(Some(Table { header, rows: kept }))
}

/// A workbook: one section per sheet.
pub(super) fn workbook(bytes: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    if bytes.starts_with(b"PK") {
        archive::check_declared_sizes(bytes, budget)?;
    }
    let mut book = open_workbook_auto_from_rs(Cursor::new(bytes))
        .map_err(|e| ExtractError::Corrupt(format!("spreadsheet: {e}")))?;
    let mut sections = Vec::new();
    for name in book.sheet_names() {
        let range = match book.worksheet_range(&name) {
            Ok(range) => range,
            Err(error) => {
                tracing::debug!(sheet = %name, %error, "sheet unreadable");
                continue;
            }
        };
        if range.height() > budget.limits.max_rows {
            return Err(ExtractError::TooLarge(format!(
                "sheet {name:?} has {} rows; at most {} are read",
                range.height(),
                budget.limits.max_rows
            )));
        }
        let rows = range.rows().map(|row| row.iter().map(cell_text).collect::<Vec<_>>());
        let mut blocks = vec![Block::Heading {
            level: 1,
            text: name.clone(),
        }];
        if let Some(table) = table_of(rows, budget)? {
            blocks.push(Block::Table(table));
        }
        let mut section = Section::of_blocks(None, blocks);
        section.has_text = section.blocks.len() > 1;
        sections.push(section);
    }
    Ok(Extracted { sections })
}

/// A cell as text (numbers without a spurious `.0`).
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        other => other.to_string(),
    }
}

/// A CSV file (comma, semicolon or tab, whichever the first line uses most).
pub(super) fn csv(bytes: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let text = super::decode_text(bytes);
    let first = text.lines().next().unwrap_or_default();
    let delimiter = [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| first.bytes().filter(|b| b == d).count())
        .unwrap_or(b',');
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| ExtractError::Corrupt(format!("CSV: {e}")))?;
        rows.push(record.iter().map(str::to_owned).collect::<Vec<_>>());
        if rows.len() > budget.limits.max_rows {
            return Err(ExtractError::TooLarge(format!(
                "the CSV file has more than {} rows",
                budget.limits.max_rows
            )));
        }
    }
    let blocks = table_of(rows.into_iter(), budget)?
        .map(Block::Table)
        .into_iter()
        .collect();
    Ok(Extracted {
        sections: vec![Section::of_blocks(None, blocks)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_their_header_and_quoted_commas() {
        let extracted = csv(
            b"city;population\n\"Lyon, France\";522000\n\nParis;2100000\n",
            &mut Budget::new(Default::default()),
        )
        .unwrap();
        let Block::Table(table) = &extracted.sections[0].blocks[0] else {
            panic!()
        };
        assert_eq!(table.header, ["city", "population"]);
        assert_eq!(table.rows, [["Lyon, France", "522000"], ["Paris", "2100000"]]);
    }

    #[test]
    fn too_many_rows_is_refused() {
        let limits = super::super::Limits {
            max_rows: 3,
            ..Default::default()
        };
        let body = "a,b\n".repeat(10);
        let error = csv(body.as_bytes(), &mut Budget::new(limits)).unwrap_err();
        assert!(matches!(error, ExtractError::TooLarge(_)));
    }
}
