//! Attachments (a table of their own, keyed by session id and kind) and
//! the journal (a table keyed by time and nonce, read newest first).

use async_trait::async_trait;
use tessera_core::store::{
    Attachment, AttachmentKind, AttachmentWrite, Attachments, Journal, JournalEntry, Page,
    StoreError, journal_cursor, parse_journal_cursor,
};
use tessera_core::{SessionId, Timestamp};

use crate::records::limit_plus_one;
use crate::rows::{column, from_db, to_db};
use crate::store::PostgresStore;

fn generation(row: &tokio_postgres::Row) -> Result<u64, StoreError> {
    column::<i64>(row, 0, "generation").map(from_db)
}

#[async_trait]
impl Attachments for PostgresStore {
    async fn load_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        now: Timestamp,
    ) -> Result<Option<Attachment>, StoreError> {
        let kind = i16::from(kind.tag());
        let row = self
            .query_opt(
                "load an attachment",
                &self.inner.sql.load_attachment,
                &[&&id.0[..], &kind, &now.as_millis()],
            )
            .await?;
        row.map(|row| {
            Ok(Attachment {
                generation: generation(&row)?,
                value: column::<Vec<u8>>(&row, 1, "value")?,
            })
        })
        .transpose()
    }

    async fn store_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        value: &[u8],
        expected: Option<u64>,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<AttachmentWrite, StoreError> {
        let sql = &self.inner.sql;
        let kind = i16::from(kind.tag());
        let (id, forget, now) = (&id.0[..], forget_at.as_millis(), now.as_millis());
        let written = match expected {
            None => {
                self.query_opt(
                    "write an attachment",
                    &sql.create_attachment,
                    &[&id, &kind, &forget, &value, &now],
                )
                .await?
            }
            Some(expected) => {
                self.query_opt(
                    "write an attachment",
                    &sql.swap_attachment,
                    &[&id, &kind, &forget, &value, &now, &to_db(expected)],
                )
                .await?
            }
        };
        if let Some(row) = written {
            return Ok(AttachmentWrite::Written {
                generation: generation(&row)?,
            });
        }
        let current = self
            .query_opt(
                "read an attachment's generation",
                &sql.current_attachment,
                &[&id, &kind, &now],
            )
            .await?
            .map(|row| generation(&row))
            .transpose()?;
        Ok(AttachmentWrite::Conflict { current })
    }

    async fn delete_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
    ) -> Result<bool, StoreError> {
        let kind = i16::from(kind.tag());
        let deleted = self
            .execute(
                "delete an attachment",
                &self.inner.sql.delete_attachment,
                &[&&id.0[..], &kind],
            )
            .await?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl Journal for PostgresStore {
    async fn append_journal(
        &self,
        entry: &JournalEntry,
        forget_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            "append to the journal",
            &self.inner.sql.append_journal,
            &[
                &entry.at.as_millis(),
                &&entry.nonce[..],
                &forget_at.as_millis(),
                &entry.value,
            ],
        )
        .await
        .map(drop)
    }

    async fn journal_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<JournalEntry>, StoreError> {
        let sql = &self.inner.sql;
        let after = cursor.map(parse_journal_cursor).transpose()?;
        let (now, rows) = (now.as_millis(), limit_plus_one(limit));
        let found = match &after {
            None => {
                self.query("read the journal", &sql.journal_first_page, &[&now, &rows])
                    .await?
            }
            Some((at, nonce)) => {
                self.query(
                    "read the journal",
                    &sql.journal_page,
                    &[&now, &rows, &at.as_millis(), &&nonce[..]],
                )
                .await?
            }
        };
        let items = found
            .iter()
            .map(|row| {
                let nonce: &[u8] = column(row, 1, "nonce")?;
                Ok(JournalEntry {
                    at: Timestamp(column(row, 0, "at")?),
                    nonce: nonce.try_into().map_err(|_| {
                        StoreError::corrupt(format!("a journal nonce of {} bytes", nonce.len()))
                    })?,
                    value: column(row, 2, "value")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page::of_one_more(items, limit, journal_cursor))
    }
}
