//! Document chunks in embedded LanceDB (under `<data dir>/lance`): one table per embedding
//! model (a model change re-embeds into a new table while search keeps using the old one),
//! each with the chunk's vector, text, owner, document, page range, heading path and position,
//! a native full-text (BM25) index on the text, and a vector index once the table is large
//! enough for one to beat an exact scan. Every query filters by owner.
//!
//! New rows are searchable at once (LanceDB scans what its indexes do not cover yet);
//! [`ChunkIndex::optimize`] folds them into the indexes and compacts the files after ingestion.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use lancedb::arrow::arrow_array::cast::AsArray;
use lancedb::arrow::arrow_array::types::{Float32Type, Int64Type, UInt32Type};
use lancedb::arrow::arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use lancedb::arrow::arrow_schema::{DataType, Field, Schema, SchemaRef};
use lancedb::database::CreateTableMode;
use lancedb::index::scalar::{FtsIndexBuilder, FullTextSearchQuery};
use lancedb::index::vector::IvfHnswSqIndexBuilder;
use lancedb::index::Index;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::OptimizeAction;
use lancedb::{Connection, DistanceType, Table};
use tokio::sync::Mutex;
use uuid::Uuid;

/// Rows from which a vector index is built (below, an exact scan is fast and exact).
const VECTOR_INDEX_MIN_ROWS: usize = 20_000;
/// Separates the headings of a heading path in the stored column.
const HEADING_SEPARATOR: char = '\u{1f}';

/// What can go wrong with the vector store.
#[derive(Debug, thiserror::Error)]
#[error("vector store: {0}")]
pub struct ChunkError(String);

impl From<lancedb::Error> for ChunkError {
    fn from(e: lancedb::Error) -> Self {
        ChunkError(e.to_string())
    }
}

impl From<lancedb::arrow::arrow_schema::ArrowError> for ChunkError {
    fn from(e: lancedb::arrow::arrow_schema::ArrowError) -> Self {
        ChunkError(e.to_string())
    }
}

/// One chunk to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRow {
    /// Its id.
    pub chunk_id: Uuid,
    /// Its document.
    pub document_id: Uuid,
    /// The document's owner.
    pub owner: Uuid,
    /// The document's kind (`pdf`...), for filtering.
    pub kind: String,
    /// The document's upload time (ms), for filtering.
    pub uploaded_at: i64,
    /// First page, for formats with pages.
    pub page: Option<u32>,
    /// Last page.
    pub page_end: Option<u32>,
    /// Archive member or attachment.
    pub member: Option<String>,
    /// The document section (1-based: a page, a sheet, a member...) it comes from.
    pub section: u32,
    /// Headings above it, outermost first.
    pub heading_path: Vec<String>,
    /// Its position in the document, from 0.
    pub chunk_index: u32,
    /// Its text.
    pub text: String,
    /// Its embedding (empty when read back without vectors).
    pub vector: Vec<f32>,
}

/// A chunk found, with its score (cosine similarity for vector search, BM25 for text).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkHit {
    /// The chunk (without its vector).
    pub row: ChunkRow,
    /// Higher is better.
    pub score: f32,
}

/// What a query keeps; the owner always.
#[derive(Debug, Clone)]
pub struct ChunkFilter {
    /// Only this owner's chunks.
    pub owner: Uuid,
    /// Only these documents.
    pub document_ids: Option<Vec<Uuid>>,
    /// Only these kinds (`pdf`...).
    pub kinds: Option<Vec<String>>,
    /// Uploaded at or after (ms).
    pub uploaded_after: Option<i64>,
    /// Uploaded before (ms).
    pub uploaded_before: Option<i64>,
}

impl ChunkFilter {
    /// Only `owner`'s chunks.
    pub fn owner(owner: Uuid) -> Self {
        Self {
            owner,
            document_ids: None,
            kinds: None,
            uploaded_after: None,
            uploaded_before: None,
        }
    }

    /// The SQL predicate. Only values we generate go in (ids, kind names from a fixed list,
    /// numbers): nothing a user typed.
    fn predicate(&self) -> String {
        let mut parts = vec![format!("owner = '{}'", self.owner)];
        if let Some(ids) = &self.document_ids {
            let list: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
            parts.push(if list.is_empty() {
                "false".to_owned()
            } else {
                format!("document_id IN ({})", list.join(", "))
            });
        }
        if let Some(kinds) = &self.kinds {
            let list: Vec<String> = kinds
                .iter()
                .filter(|k| k.chars().all(|c| c.is_ascii_alphanumeric()))
                .map(|k| format!("'{k}'"))
                .collect();
            parts.push(if list.is_empty() {
                "false".to_owned()
            } else {
                format!("kind IN ({})", list.join(", "))
            });
        }
        if let Some(after) = self.uploaded_after {
            parts.push(format!("uploaded_at >= {after}"));
        }
        if let Some(before) = self.uploaded_before {
            parts.push(format!("uploaded_at < {before}"));
        }
        parts.join(" AND ")
    }
}

/// The chunk tables; cheap to clone.
#[derive(Clone)]
pub struct ChunkIndex {
    /// The LanceDB database.
    db: Connection,
    /// Open tables by name.
    tables: Arc<Mutex<HashMap<String, Table>>>,
}

/// The table of an embedding model: its id made safe, and the vector length (two models
/// with the same id but another length never share a table).
fn table_name(model: &str, dimension: usize) -> String {
    let slug: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("chunks__{slug}__{dimension}")
}

/// The schema of a chunk table.
fn schema(dimension: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("chunk_id", DataType::Utf8, false),
        Field::new("document_id", DataType::Utf8, false),
        Field::new("owner", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("uploaded_at", DataType::Int64, false),
        Field::new("page", DataType::UInt32, true),
        Field::new("page_end", DataType::UInt32, true),
        Field::new("member", DataType::Utf8, true),
        Field::new("section", DataType::UInt32, false),
        Field::new("heading_path", DataType::Utf8, false),
        Field::new("chunk_index", DataType::UInt32, false),
        Field::new("text", DataType::Utf8, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dimension as i32),
            false,
        ),
    ]))
}

/// The columns read back (everything but the vector).
const READ_COLUMNS: [&str; 12] = [
    "chunk_id",
    "document_id",
    "owner",
    "kind",
    "uploaded_at",
    "page",
    "page_end",
    "member",
    "section",
    "heading_path",
    "chunk_index",
    "text",
];

impl ChunkIndex {
    /// Opens (or creates) the chunk store in `dir`.
    pub async fn open(dir: &Path) -> Result<Self, ChunkError> {
        std::fs::create_dir_all(dir).map_err(|e| ChunkError(format!("cannot create {}: {e}", dir.display())))?;
        let uri = dir
            .to_str()
            .ok_or_else(|| ChunkError("the data directory is not UTF-8".into()))?;
        let db = lancedb::connect(uri).execute().await?;
        Ok(Self {
            db,
            tables: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The table of `model` (created empty, with its full-text index, on first use).
    async fn table(&self, model: &str, dimension: usize) -> Result<Table, ChunkError> {
        let name = table_name(model, dimension);
        let mut tables = self.tables.lock().await;
        if let Some(table) = tables.get(&name) {
            return Ok(table.clone());
        }
        let table = self
            .db
            .create_empty_table(name.clone(), schema(dimension))
            .mode(CreateTableMode::exist_ok(|request| request))
            .execute()
            .await?;
        tables.insert(name, table.clone());
        Ok(table)
    }

    /// The table of `model` if it exists.
    async fn existing(&self, model: &str, dimension: usize) -> Result<Option<Table>, ChunkError> {
        let name = table_name(model, dimension);
        if let Some(table) = self.tables.lock().await.get(&name) {
            return Ok(Some(table.clone()));
        }
        let names = self.db.table_names().execute().await?;
        if names.contains(&name) {
            return self.table(model, dimension).await.map(Some);
        }
        Ok(None)
    }

    /// The vector length of `model`'s table, if it has one (for documents whose model is no
    /// longer loaded: their words can still be searched, their vectors deleted).
    pub async fn dimension_of(&self, model: &str) -> Result<Option<usize>, ChunkError> {
        let prefix = table_name(model, 0);
        // "chunks__{slug}__" (the name with dimension 0, less its last character).
        let prefix = &prefix[..prefix.len() - 1];
        let names = self.db.table_names().execute().await?;
        Ok(names
            .iter()
            .filter_map(|name| name.strip_prefix(prefix)?.parse().ok())
            .next())
    }

    /// Adds chunks embedded by `model`.
    pub async fn add(&self, model: &str, dimension: usize, rows: &[ChunkRow]) -> Result<(), ChunkError> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(bad) = rows.iter().find(|r| r.vector.len() != dimension) {
            return Err(ChunkError(format!(
                "chunk {} has {} dimensions, the table {}",
                bad.chunk_id,
                bad.vector.len(),
                dimension
            )));
        }
        let table = self.table(model, dimension).await?;
        let batch = to_batch(rows, dimension)?;
        table.add(batch).execute().await?;
        Ok(())
    }

    /// Removes every chunk of a document, from every model's table.
    pub async fn delete_document(&self, document_id: Uuid) -> Result<(), ChunkError> {
        for name in self.db.table_names().execute().await? {
            if !name.starts_with("chunks__") {
                continue;
            }
            let table = self.open_by_name(&name).await?;
            table.delete(format!("document_id = '{document_id}'").as_str()).await?;
        }
        Ok(())
    }

    /// Removes the chunks of a document from one model's table (a retry starts clean).
    pub async fn delete_document_in(&self, model: &str, dimension: usize, document_id: Uuid) -> Result<(), ChunkError> {
        if let Some(table) = self.existing(model, dimension).await? {
            table.delete(format!("document_id = '{document_id}'").as_str()).await?;
        }
        Ok(())
    }

    async fn open_by_name(&self, name: &str) -> Result<Table, ChunkError> {
        let mut tables = self.tables.lock().await;
        if let Some(table) = tables.get(name) {
            return Ok(table.clone());
        }
        let table = self.db.open_table(name).execute().await?;
        tables.insert(name.to_owned(), table.clone());
        Ok(table)
    }

    /// The `limit` chunks nearest to `vector` (cosine) that pass `filter`.
    pub async fn vector_search(
        &self,
        model: &str,
        vector: &[f32],
        filter: &ChunkFilter,
        limit: usize,
    ) -> Result<Vec<ChunkHit>, ChunkError> {
        let Some(table) = self.existing(model, vector.len()).await? else {
            return Ok(Vec::new());
        };
        let batches: Vec<RecordBatch> = table
            .query()
            .nearest_to(vector)?
            .distance_type(DistanceType::Cosine)
            .only_if(filter.predicate())
            .select(Select::columns(&READ_COLUMNS))
            .limit(limit)
            .execute()
            .await?
            .try_collect()
            .await?;
        // Cosine distance is 1 - similarity.
        read_hits(&batches, "_distance", |d| 1.0 - d)
    }

    /// The `limit` chunks that best match `query` by BM25 and pass `filter`.
    pub async fn text_search(
        &self,
        model: &str,
        dimension: usize,
        query: &str,
        filter: &ChunkFilter,
        limit: usize,
    ) -> Result<Vec<ChunkHit>, ChunkError> {
        let Some(table) = self.existing(model, dimension).await? else {
            return Ok(Vec::new());
        };
        if query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let search = FullTextSearchQuery::new(query.to_owned())
            .with_column("text".to_owned())
            .map_err(|e| ChunkError(e.to_string()))?;
        let batches: Vec<RecordBatch> = table
            .query()
            .full_text_search(search)
            .only_if(filter.predicate())
            .select(Select::columns(&READ_COLUMNS))
            .limit(limit)
            .execute()
            .await?
            .try_collect()
            .await?;
        read_hits(&batches, "_score", |s| s)
    }

    /// Every chunk of a document in one model's table, in order (without vectors).
    pub async fn chunks_of(
        &self,
        model: &str,
        dimension: usize,
        document_id: Uuid,
    ) -> Result<Vec<ChunkRow>, ChunkError> {
        let Some(table) = self.existing(model, dimension).await? else {
            return Ok(Vec::new());
        };
        let batches: Vec<RecordBatch> = table
            .query()
            .only_if(format!("document_id = '{document_id}'"))
            .select(Select::columns(&READ_COLUMNS))
            .execute()
            .await?
            .try_collect()
            .await?;
        let mut rows: Vec<ChunkRow> = read_hits(&batches, "", |s| s)?.into_iter().map(|h| h.row).collect();
        rows.sort_by_key(|r| r.chunk_index);
        Ok(rows)
    }

    /// Chunks in one model's table that pass `filter`.
    pub async fn count(&self, model: &str, dimension: usize, filter: &ChunkFilter) -> Result<usize, ChunkError> {
        match self.existing(model, dimension).await? {
            Some(table) => Ok(table.count_rows(Some(filter.predicate())).await?),
            None => Ok(0),
        }
    }

    /// Builds the indexes a table lacks (full text; vectors once large enough), folds new rows
    /// into them and compacts the files. Run after ingestion, not per chunk.
    pub async fn optimize(&self, model: &str, dimension: usize) -> Result<(), ChunkError> {
        let Some(table) = self.existing(model, dimension).await? else {
            return Ok(());
        };
        let rows = table.count_rows(None).await?;
        if rows == 0 {
            return Ok(());
        }
        let indices = table.list_indices().await?;
        let has = |column: &str| indices.iter().any(|i| i.columns.iter().any(|c| c == column));
        if !has("text") {
            table
                .create_index(&["text"], Index::FTS(FtsIndexBuilder::default()))
                .execute()
                .await?;
        }
        for column in ["owner", "document_id"] {
            if !has(column) {
                table
                    .create_index(&[column], Index::BTree(Default::default()))
                    .execute()
                    .await?;
            }
        }
        if !has("vector") && rows >= VECTOR_INDEX_MIN_ROWS {
            table
                .create_index(
                    &["vector"],
                    Index::IvfHnswSq(IvfHnswSqIndexBuilder::default().distance_type(DistanceType::Cosine)),
                )
                .execute()
                .await?;
        }
        table.optimize(OptimizeAction::All).await?;
        Ok(())
    }

    /// Drops a model's table (after re-embedding into another).
    pub async fn drop_model(&self, model: &str, dimension: usize) -> Result<(), ChunkError> {
        let name = table_name(model, dimension);
        self.tables.lock().await.remove(&name);
        if self.db.table_names().execute().await?.contains(&name) {
            self.db.drop_table(&name, &[]).await?;
        }
        Ok(())
    }
}

/// The rows as one Arrow batch.
fn to_batch(rows: &[ChunkRow], dimension: usize) -> Result<RecordBatch, ChunkError> {
    let strings =
        |f: &dyn Fn(&ChunkRow) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    let vectors: Vec<f32> = rows.iter().flat_map(|r| r.vector.iter().copied()).collect();
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let vector = FixedSizeListArray::try_new(item, dimension as i32, Arc::new(Float32Array::from(vectors)), None)?;
    let columns: Vec<ArrayRef> = vec![
        strings(&|r| r.chunk_id.to_string()),
        strings(&|r| r.document_id.to_string()),
        strings(&|r| r.owner.to_string()),
        strings(&|r| r.kind.clone()),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.uploaded_at))),
        Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.page))),
        Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.page_end))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.member.clone()))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.section))),
        strings(&|r| r.heading_path.join(&HEADING_SEPARATOR.to_string())),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.chunk_index))),
        strings(&|r| r.text.clone()),
        Arc::new(vector),
    ];
    Ok(RecordBatch::try_new(schema(dimension), columns)?)
}

/// Reads hits from result batches; `score_column` (absent for plain reads) turned into a
/// score by `to_score`.
fn read_hits(
    batches: &[RecordBatch],
    score_column: &str,
    to_score: impl Fn(f32) -> f32,
) -> Result<Vec<ChunkHit>, ChunkError> {
    let mut hits = Vec::new();
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| ChunkError(format!("result has no {name} column")))
        };
        let text = |name: &str| -> Result<&StringArray, ChunkError> {
            column(name)?
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| ChunkError(format!("{name} is not text")))
        };
        let ids = text("chunk_id")?;
        let documents = text("document_id")?;
        let owners = text("owner")?;
        let kinds = text("kind")?;
        let members = text("member")?;
        let headings = text("heading_path")?;
        let texts = text("text")?;
        let uploaded = column("uploaded_at")?.as_primitive::<Int64Type>();
        let pages = column("page")?.as_primitive::<UInt32Type>();
        let page_ends = column("page_end")?.as_primitive::<UInt32Type>();
        let indices = column("chunk_index")?.as_primitive::<UInt32Type>();
        let sections = column("section")?.as_primitive::<UInt32Type>();
        let scores = match score_column {
            "" => None,
            name => Some(column(name)?.as_primitive::<Float32Type>()),
        };
        let uuid = |s: &str| Uuid::parse_str(s).map_err(|e| ChunkError(format!("bad id {s:?}: {e}")));
        for i in 0..batch.num_rows() {
            let heading = headings.value(i);
            hits.push(ChunkHit {
                row: ChunkRow {
                    chunk_id: uuid(ids.value(i))?,
                    document_id: uuid(documents.value(i))?,
                    owner: uuid(owners.value(i))?,
                    kind: kinds.value(i).to_owned(),
                    uploaded_at: uploaded.value(i),
                    page: pages.is_valid(i).then(|| pages.value(i)),
                    page_end: page_ends.is_valid(i).then(|| page_ends.value(i)),
                    member: members.is_valid(i).then(|| members.value(i).to_owned()),
                    section: sections.value(i),
                    heading_path: if heading.is_empty() {
                        Vec::new()
                    } else {
                        heading.split(HEADING_SEPARATOR).map(str::to_owned).collect()
                    },
                    chunk_index: indices.value(i),
                    text: texts.value(i).to_owned(),
                    vector: Vec::new(),
                },
                score: scores.map_or(0.0, |s| to_score(s.value(i))),
            });
        }
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(owner: Uuid, document: Uuid, index: u32, text: &str, vector: [f32; 4]) -> ChunkRow {
        ChunkRow {
            chunk_id: Uuid::now_v7(),
            document_id: document,
            owner,
            kind: "text".into(),
            uploaded_at: 1_000,
            page: Some(index + 1),
            page_end: None,
            member: None,
            section: index + 1,
            heading_path: vec!["Intro".into(), "Scope".into()],
            chunk_index: index,
            text: text.into(),
            vector: vector.to_vec(),
        }
    }

    #[tokio::test]
    async fn search_finds_by_vector_and_by_words_and_never_crosses_owners() {
        let dir = tempfile::tempdir().unwrap();
        let index = ChunkIndex::open(&dir.path().join("lance")).await.unwrap();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let (doc_a, doc_b) = (Uuid::now_v7(), Uuid::now_v7());
        let rows = vec![
            row(
                alice,
                doc_a,
                0,
                "the quarterly revenue grew by ten percent",
                [1.0, 0.0, 0.0, 0.0],
            ),
            row(alice, doc_a, 1, "the cafeteria opens at nine", [0.0, 1.0, 0.0, 0.0]),
            row(
                bob,
                doc_b,
                0,
                "the quarterly revenue of another company",
                [1.0, 0.0, 0.0, 0.0],
            ),
        ];
        index.add("m", 4, &rows).await.unwrap();

        let near = index
            .vector_search("m", &[0.9, 0.1, 0.0, 0.0], &ChunkFilter::owner(alice), 5)
            .await
            .unwrap();
        assert_eq!(near.len(), 2);
        assert_eq!(
            near[0].row,
            ChunkRow {
                vector: Vec::new(),
                ..rows[0].clone()
            }
        );
        assert!(near[0].score > near[1].score);

        let words = index
            .text_search("m", 4, "cafeteria", &ChunkFilter::owner(alice), 5)
            .await
            .unwrap();
        assert_eq!(words.len(), 1);
        assert_eq!(words[0].row.chunk_index, 1);
        // Bob's chunk with the same words is never Alice's hit.
        let revenue = index
            .text_search("m", 4, "revenue", &ChunkFilter::owner(alice), 5)
            .await
            .unwrap();
        assert!(revenue.iter().all(|h| h.row.owner == alice));

        // After the indexes are built, the same answers.
        index.optimize("m", 4).await.unwrap();
        let words = index
            .text_search("m", 4, "cafeteria", &ChunkFilter::owner(alice), 5)
            .await
            .unwrap();
        assert_eq!(words.len(), 1);

        index.delete_document(doc_a).await.unwrap();
        assert_eq!(index.count("m", 4, &ChunkFilter::owner(alice)).await.unwrap(), 0);
        assert_eq!(index.count("m", 4, &ChunkFilter::owner(bob)).await.unwrap(), 1);
        assert!(index.chunks_of("m", 4, doc_b).await.unwrap()[0].heading_path == ["Intro", "Scope"]);
    }

    #[test]
    fn filters_quote_only_generated_values() {
        let owner = Uuid::nil();
        let filter = ChunkFilter {
            kinds: Some(vec!["pdf".into(), "x' OR '1'='1".into()]),
            document_ids: Some(vec![]),
            ..ChunkFilter::owner(owner)
        };
        let predicate = filter.predicate();
        assert!(predicate.contains("kind IN ('pdf')"), "{predicate}");
        assert!(predicate.contains("false"), "{predicate}");
    }
}
